//! `WappiClient`: the [`WappiApi`] port over HTTP, written once for every runtime, as
//! `specs/wappi.md` describes the API (raw token in `Authorization`, `profile_id` in the query
//! of every call, raw base64 for images).
//!
//! The client builds each request, hands it to an [`HttpTransport`] (the server's is reqwest,
//! the Worker's `fetch`), and classifies whatever comes back into a [`WappiError`]: HTTP answers
//! through [`WappiError::from_http`] / [`WappiError::from_error_body`], transport failures by
//! whether the request may have been carried out. A refused connection never carried it (safe
//! to retry); after that, a send of unknown fate is `Unknown`, so the ledger settles it instead
//! of sending twice. The token never reaches an error text or a log line.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::{
    ChatsPage, Dialog, GroupFacts, MessagesPage, ProfileStatus, Sent, WappiCreds, WappiError,
};
use crate::model::ids::GroupJid;
use crate::ports::{async_trait, MaybeSendSync, WappiApi};

/// The production service.
pub const WAPPI_URL: &str = "https://wappi.pro";
/// `Retry-After` value assumed when the header is present but unreadable.
pub const RETRY_AFTER_FALLBACK_SECS: u64 = 5;
/// Upper bound on a `Retry-After`, so that a silly value cannot park a profile for ever.
pub const RETRY_AFTER_MAX_SECS: u64 = 24 * 3600;

// ---------------------------------------------------------------------------------------------
// The transport port

/// The HTTP method of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        })
    }
}

/// One request for a transport to send. Deliberately not `Debug`: a header holds the token.
pub struct HttpRequest {
    pub method: HttpMethod,
    /// The whole URL, query included.
    pub url: String,
    /// Header names in lower case (`authorization`).
    pub headers: Vec<(&'static str, String)>,
    /// A JSON body (the transport sends it as `application/json`).
    pub body: Option<Vec<u8>>,
    /// Time allowed for the whole call, answer included.
    pub timeout: Duration,
}

/// An HTTP answer, whatever its status.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// The `Retry-After` header read with [`parse_retry_after`], if there was one.
    pub retry_after_secs: Option<u64>,
    /// The body, or how reading it failed (the status line came, the rest did not).
    pub body: Result<Vec<u8>, TransportError>,
    /// How long the exchange took, for the log line (zero where no clock is at hand).
    pub took: Duration,
}

/// A call that got no (complete) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    pub kind: TransportErrorKind,
    /// What went wrong, for the error text; never a secret or a URL with its query.
    pub message: String,
    /// How long the attempt took, for the log line.
    pub took: Duration,
}

/// Where a transport failure happened, which tells whether the request may have been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportErrorKind {
    /// A header value the HTTP stack refused (only the token varies): never sent.
    BadHeader,
    /// The request could not be built (a bad URL): never sent.
    NotBuilt,
    /// The connection could not be opened: never sent.
    Connect,
    /// No complete answer in time: the request may have been carried out.
    Timeout,
    /// The connection broke after the request went out: it may have been carried out.
    Lost,
}

impl TransportError {
    pub fn new(kind: TransportErrorKind, message: impl Into<String>, took: Duration) -> Self {
        TransportError {
            kind,
            message: message.into(),
            took,
        }
    }
}

/// Sends one HTTP request and reads the whole answer within `request.timeout`.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait HttpTransport: MaybeSendSync {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError>;
}

// ---------------------------------------------------------------------------------------------
// The client

/// The Wappi HTTP client over a transport `T`.
#[derive(Debug, Clone)]
pub struct WappiClient<T> {
    base: String,
    timeout: Duration,
    transport: T,
}

/// Whether a call only reads (safe to repeat) or sends a message (repeating may duplicate it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Send,
}

impl<T: Default> WappiClient<T> {
    /// A client for `base_url` ([`WAPPI_URL`], or a local fake such as `http://127.0.0.1:PORT`)
    /// allowing `timeout` for each whole call.
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        WappiClient::with_transport(base_url, timeout, T::default())
    }
}

impl<T> WappiClient<T> {
    /// Like [`WappiClient::new`], over the given transport.
    pub fn with_transport(base_url: &str, timeout: Duration, transport: T) -> Self {
        WappiClient {
            base: base_url.trim().trim_end_matches('/').to_string(),
            timeout,
            transport,
        }
    }

    /// The base URL calls go to, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The time allowed for each whole call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The request of one call: `profile_id` first in the query, the raw token as header.
    fn request(
        &self,
        creds: &WappiCreds,
        method: HttpMethod,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> HttpRequest {
        let mut url = format!(
            "{}{}?profile_id={}",
            self.base,
            path,
            urlencoding::encode(creds.profile_id.as_str())
        );
        for (k, v) in query {
            url.push_str(&format!("&{k}={}", urlencoding::encode(v)));
        }
        HttpRequest {
            method,
            url,
            headers: vec![("authorization", creds.token.expose().to_string())],
            body: body.map(|b| b.to_string().into_bytes()),
            timeout: self.timeout,
        }
    }
}

impl<T: HttpTransport> WappiClient<T> {
    /// A `GET` that only reads (safe to repeat), decoded into `M`.
    async fn read<M: DeserializeOwned + Default>(
        &self,
        creds: &WappiCreds,
        path: &'static str,
        query: &[(&str, String)],
    ) -> Result<M, WappiError> {
        let v = self
            .call(creds, HttpMethod::Get, path, query, None, Kind::Read)
            .await?;
        decode(v, Kind::Read)
    }

    /// A `POST` that sends a message (repeating it may duplicate the message).
    async fn send(
        &self,
        creds: &WappiCreds,
        path: &'static str,
        payload: Value,
    ) -> Result<Sent, WappiError> {
        let v = self
            .call(
                creds,
                HttpMethod::Post,
                path,
                &[],
                Some(payload),
                Kind::Send,
            )
            .await?;
        decode(v, Kind::Send)
    }

    /// One call: sends, classifies failures, logs the outcome, and returns the JSON of a
    /// successful answer.
    async fn call(
        &self,
        creds: &WappiCreds,
        method: HttpMethod,
        path: &'static str,
        query: &[(&str, String)],
        body: Option<Value>,
        kind: Kind,
    ) -> Result<Value, WappiError> {
        let request = self.request(creds, method, path, query, body);
        let (status, took, result) = match self.transport.send(request).await {
            Ok(resp) => (Some(resp.status), resp.took, interpret(resp, kind)),
            Err(e) => (None, e.took, Err(no_answer(e, kind))),
        };
        let result = result.map_err(|e| scrub(e, creds.token.expose()));
        let profile = creds.profile_id.as_str();
        let latency_ms = took.as_millis() as u64;
        match &result {
            Ok(_) => tracing::info!(
                %method, path, profile, status = status.unwrap_or(0), latency_ms, "wappi call ok"
            ),
            Err(e) => tracing::info!(
                %method, path, profile, status = status.unwrap_or(0), latency_ms, error = %e,
                "wappi call failed"
            ),
        }
        result
    }
}

/// Classifies an HTTP answer: a refusal by its status and body, a `200` that still says
/// `error`, or the JSON of a success.
fn interpret(resp: HttpResponse, kind: Kind) -> Result<Value, WappiError> {
    let status = resp.status;
    let success = (200..300).contains(&status);
    let body = match resp.body {
        Ok(b) => b,
        // The status line already tells a refusal; only a "success" with a lost body is of
        // unknown outcome.
        Err(_) if !success => Vec::new(),
        Err(e) => return Err(no_answer(e, kind)),
    };
    let text = String::from_utf8_lossy(&body);
    if !success {
        return Err(maybe_sent(
            WappiError::from_http(status, resp.retry_after_secs, &text),
            kind,
        ));
    }
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) => {
            return Err(unsure(
                format!("HTTP {status} with an unreadable answer"),
                kind,
            ))
        }
    };
    if is_error_reply(&value, kind) {
        return Err(WappiError::from_error_body(&text));
    }
    Ok(value)
}

/// A failure with no HTTP answer. What never left (a refused header, an unbuildable request,
/// a failed connection) is safe to retry; anything later leaves a send of unknown outcome,
/// while a read is simply retried.
fn no_answer(e: TransportError, kind: Kind) -> WappiError {
    let detail = |what: &str| {
        if e.message.is_empty() {
            what.to_string()
        } else {
            format!("{what}: {}", e.message)
        }
    };
    match e.kind {
        TransportErrorKind::BadHeader => WappiError::BadToken,
        TransportErrorKind::NotBuilt => WappiError::Rejected(detail("request not built")),
        TransportErrorKind::Connect => WappiError::Temporary(detail("connection failed")),
        TransportErrorKind::Timeout => unsure(detail("timed out"), kind),
        TransportErrorKind::Lost => unsure(detail("connection lost"), kind),
    }
}

/// A 5xx answer to a send means "maybe sent": a gateway's 502/504 often comes after WhatsApp
/// took the message (a slow synchronous send). So it is settled through the history before any
/// resend, never retried blind. A rate limit (429, 503 with `Retry-After`) stays one.
fn maybe_sent(e: WappiError, kind: Kind) -> WappiError {
    match (e, kind) {
        (WappiError::Temporary(s), Kind::Send) => WappiError::Unknown(s),
        (e, _) => e,
    }
}

/// A call whose effect is uncertain: a send may have gone through, a read is just retried.
fn unsure(msg: String, kind: Kind) -> WappiError {
    match kind {
        Kind::Send => WappiError::Unknown(msg),
        Kind::Read => WappiError::Temporary(msg),
    }
}

/// A `200` that is still a failure. `"status": "error"` always is. A read must say `done` if it
/// has a `status` at all: `get/status` answers carry no `status` key when healthy, and Wappi's
/// own plugin treats its presence as an error (spec §2.9). A `done` is let through in case the
/// service starts adding it.
fn is_error_reply(v: &Value, kind: Kind) -> bool {
    match v.get("status") {
        None => false,
        Some(s) => s == "error" || (kind == Kind::Read && s != "done"),
    }
}

/// Belt and braces: an answer that echoes the token must not carry it into an error text.
fn scrub(e: WappiError, token: &str) -> WappiError {
    if token.is_empty() {
        return e;
    }
    let clean = |s: String| s.replace(token, "***");
    match e {
        WappiError::Temporary(s) => WappiError::Temporary(clean(s)),
        WappiError::Unknown(s) => WappiError::Unknown(clean(s)),
        WappiError::Rejected(s) => WappiError::Rejected(clean(s)),
        other => other,
    }
}

/// Decodes a successful answer into its wire model. A send whose answer cannot be read was
/// still accepted (HTTP 2xx), so it yields empty ids rather than an error.
fn decode<M: DeserializeOwned + Default>(v: Value, kind: Kind) -> Result<M, WappiError> {
    match serde_json::from_value(v) {
        Ok(m) => Ok(m),
        Err(_) if kind == Kind::Send => Ok(M::default()),
        Err(e) => Err(WappiError::Temporary(format!(
            "unexpected answer shape: {e}"
        ))),
    }
}

/// Wappi wants raw base64; a `data:…;base64,` prefix is removed if one slipped through.
fn raw_base64(b64: &str) -> &str {
    match b64
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
    {
        Some((_, raw)) => raw,
        None => b64,
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl<T: HttpTransport> WappiApi for WappiClient<T> {
    async fn get_status(&self, creds: &WappiCreds) -> Result<ProfileStatus, WappiError> {
        self.read(creds, "/api/sync/get/status", &[]).await
    }

    async fn send_text(
        &self,
        creds: &WappiCreds,
        to: &GroupJid,
        body: &str,
    ) -> Result<Sent, WappiError> {
        let payload = json!({ "body": body, "recipient": to.as_str() });
        self.send(creds, "/api/sync/message/send", payload).await
    }

    async fn send_image(
        &self,
        creds: &WappiCreds,
        to: &GroupJid,
        b64: &str,
        caption: Option<&str>,
    ) -> Result<Sent, WappiError> {
        let mut payload = json!({ "recipient": to.as_str(), "b64_file": raw_base64(b64) });
        if let Some(c) = caption {
            payload["caption"] = Value::from(c);
        }
        self.send(creds, "/api/sync/message/img/send", payload)
            .await
    }

    async fn edit_message(
        &self,
        creds: &WappiCreds,
        _group: &GroupJid,
        message_id: &str,
        body: &str,
    ) -> Result<Sent, WappiError> {
        // The body the spec's clients send; the answer is read like a send's (an edit whose
        // answer is lost is as unknown as a send, and is settled from the history).
        let payload = json!({ "message_id": message_id, "body": body });
        self.send(creds, "/api/sync/message/edit", payload).await
    }

    async fn delete_message(
        &self,
        creds: &WappiCreds,
        _group: &GroupJid,
        message_id: &str,
    ) -> Result<Sent, WappiError> {
        let payload = json!({ "message_id": message_id });
        self.send(creds, "/api/sync/message/delete", payload).await
    }

    async fn list_chats(
        &self,
        creds: &WappiCreds,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Dialog>, WappiError> {
        let query = [
            ("limit", limit.to_string()),
            ("offset", offset.to_string()),
            ("show_all", "false".to_string()),
        ];
        let page: ChatsPage = self.read(creds, "/api/sync/chats/get", &query).await?;
        Ok(page.dialogs)
    }

    async fn group_info(
        &self,
        creds: &WappiCreds,
        group: &GroupJid,
    ) -> Result<Option<GroupFacts>, WappiError> {
        let query = [("user_id", group.as_str().to_string())];
        match self
            .read::<Value>(creds, "/api/sync/contact/info", &query)
            .await
        {
            Ok(v) => Ok(group_of_contact(&v)),
            Err(WappiError::Rejected(detail)) if unresolved(&detail) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn chat_messages(
        &self,
        creds: &WappiCreds,
        chat: &GroupJid,
        limit: u32,
        offset: u32,
    ) -> Result<MessagesPage, WappiError> {
        let query = [
            ("chat_id", chat.as_str().to_string()),
            ("limit", limit.to_string()),
            ("offset", offset.to_string()),
            ("order", "desc".to_string()),
        ];
        self.read(creds, "/api/sync/messages/get", &query).await
    }
}

// ---------------------------------------------------------------------------------------------
// contact/info

/// The group in a `contact/info` answer (`{"status":"done","profile":{"id","is_group","group":
/// {…}}}`, spec §2.8, OBSERVED in one app). `None` only when the answer says it is no group:
/// no `profile` object, `is_group: false`, or neither an `is_group` flag nor a `group` object.
/// `is_group: true` without a readable `group` is a group whose facts are all unknown (the
/// answer did say it is a group, and "not a group" would make a caller give it up).
fn group_of_contact(v: &Value) -> Option<GroupFacts> {
    let profile = v.get("profile").filter(|p| p.is_object())?;
    let group = profile.get("group").filter(|g| g.is_object());
    match profile.get("is_group").and_then(Value::as_bool) {
        Some(false) => None,
        Some(true) => Some(group.map(GroupFacts::from_json).unwrap_or_default()),
        None => group.map(GroupFacts::from_json),
    }
}

/// Whether a refusal of `contact/info` says the id resolves to no group for this account: the
/// contact or group does not exist, the id is invalid, or the account is not in the group.
/// Wappi's wording is unknown (spec §7.8); whatsmeow says "that group does not exist" and
/// "you're not participating in that group", Wappi's Telegram side "error: not found
/// contact". Both a "what is missing" word and a "which thing" word are required, so that a
/// bare `Not Found` (a path the service lacks) or a refusal naming the profile or the token
/// stays an error: an unsure answer must not pass for "no such group".
fn unresolved(detail: &str) -> bool {
    let d = detail.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| d.contains(w));
    has(&[
        "not found",
        "no such",
        "not exist",
        "doesn't exist",
        "invalid",
        "not participating",
        "not a participant",
        "not a member",
    ]) && has(&[
        "contact",
        "chat",
        "group",
        "user",
        "jid",
        "recipient",
        "participa",
        "member",
    ]) && !has(&["profile", "token"])
}

// ---------------------------------------------------------------------------------------------
// Retry-After

/// Parses a `Retry-After` value into seconds: delay-seconds, or an HTTP date (IMF-fixdate,
/// e.g. `Wed, 21 Oct 2015 07:28:00 GMT`) measured from `now_unix`. Anything unreadable is
/// [`RETRY_AFTER_FALLBACK_SECS`]; a date in the past is 0; the result is capped at
/// [`RETRY_AFTER_MAX_SECS`]. Transports call it (they know the time).
pub fn parse_retry_after(value: &str, now_unix: i64) -> u64 {
    let v = value.trim();
    let secs = if let Ok(n) = v.parse::<u64>() {
        n
    } else if let Some(at) = parse_http_date(v) {
        at.saturating_sub(now_unix).max(0) as u64
    } else {
        RETRY_AFTER_FALLBACK_SECS
    };
    secs.min(RETRY_AFTER_MAX_SECS)
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) as unix seconds.
fn parse_http_date(v: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(v, "%a, %d %b %Y %H:%M:%S GMT")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
