//! `HttpWappi`: the [`WappiApi`] port over HTTP with reqwest, as `specs/wappi.md` describes the
//! API (raw token in `Authorization`, `profile_id` in the query of every call). Every failure
//! is classified into a [`WappiError`] here, at the boundary: HTTP answers through the core's
//! `from_http` / `from_error_body`, transport failures by whether the request may have been
//! carried out (a send whose fate is unknown is `Unknown`, so the ledger settles it instead of
//! sending twice). The token never reaches an error text or a log line.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use groupcast_core::ids::GroupJid;
use groupcast_core::ports::{async_trait, WappiApi};
use groupcast_core::wappi::{
    ChatMessage, ChatsPage, Dialog, MessagesPage, ProfileStatus, Sent, WappiCreds, WappiError,
};
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::Method;
use serde_json::{json, Value};

/// Default time allowed to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed for a whole call, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// `Retry-After` value assumed when the header is present but unreadable.
pub const RETRY_AFTER_FALLBACK_SECS: u64 = 5;
/// Upper bound on a `Retry-After`, so that a silly value cannot park a profile for ever.
pub const RETRY_AFTER_MAX_SECS: u64 = 24 * 3600;

/// The Wappi HTTP client.
#[derive(Debug, Clone)]
pub struct HttpWappi {
    base: String,
    client: reqwest::Client,
    connect_timeout: Duration,
    request_timeout: Duration,
}

/// Whether a call only reads (safe to repeat) or sends a message (repeating may duplicate it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Send,
}

impl HttpWappi {
    /// A client for `base_url` (`https://wappi.pro`, or a local fake such as
    /// `http://127.0.0.1:PORT`), with the default timeouts.
    pub fn new(base_url: &str) -> Self {
        let base = base_url.trim().trim_end_matches('/').to_string();
        HttpWappi {
            client: build_client(CONNECT_TIMEOUT, REQUEST_TIMEOUT),
            base,
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
        }
    }

    /// Sets the time allowed for a whole call (default 30 s).
    pub fn with_timeout(mut self, request: Duration) -> Self {
        self.request_timeout = request;
        self.client = build_client(self.connect_timeout, self.request_timeout);
        self
    }

    /// Sets the time allowed to open a connection (default 5 s).
    pub fn with_connect_timeout(mut self, connect: Duration) -> Self {
        self.connect_timeout = connect;
        self.client = build_client(self.connect_timeout, self.request_timeout);
        self
    }

    /// The base URL calls go to, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// One call: sends, classifies failures, and returns the JSON of a successful answer.
    async fn call(
        &self,
        creds: &WappiCreds,
        method: Method,
        path: &'static str,
        query: &[(&str, String)],
        body: Option<Value>,
        kind: Kind,
    ) -> Result<Value, WappiError> {
        // Known to the log redactor from its first use on (see `logging`).
        crate::logging::register(creds.token.expose());
        let started = Instant::now();
        let profile = creds.profile_id.as_str();
        let result = self
            .exchange(creds, method.clone(), path, query, body, kind)
            .await;
        let took = started.elapsed();
        crate::metrics::wappi_latency(took);
        let latency_ms = took.as_millis() as u64;
        let result = result.map_err(|e| scrub(e, creds.token.expose()));
        match &result {
            Ok((status, _)) => {
                tracing::info!(%method, path, profile, status, latency_ms, "wappi call ok")
            }
            Err((status, e)) => tracing::info!(
                %method, path, profile, status = status.unwrap_or(0), latency_ms, error = %e,
                "wappi call failed"
            ),
        }
        result.map(|(_, v)| v).map_err(|(_, e)| e)
    }

    /// The call itself; the HTTP status (if any answer came) goes along for logging.
    async fn exchange(
        &self,
        creds: &WappiCreds,
        method: Method,
        path: &'static str,
        query: &[(&str, String)],
        body: Option<Value>,
        kind: Kind,
    ) -> Result<(u16, Value), (Option<u16>, WappiError)> {
        let mut auth = HeaderValue::from_str(creds.token.expose())
            .map_err(|_| (None, WappiError::BadToken))?;
        auth.set_sensitive(true);
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .header(AUTHORIZATION, auth)
            .query(&[("profile_id", creds.profile_id.as_str())])
            .query(query);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| (None, transport_error(e, kind)))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .map(|v| parse_retry_after(v.to_str().unwrap_or(""), unix_now()));
        let text = match resp.text().await {
            Ok(t) => t,
            // The status line already tells a refusal; only a "success" with a lost body is
            // of unknown outcome.
            Err(_) if !(200..300).contains(&status) => String::new(),
            Err(e) => return Err((Some(status), transport_error(e, kind))),
        };
        if !(200..300).contains(&status) {
            return Err((
                Some(status),
                WappiError::from_http(status, retry_after, &text),
            ));
        }
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => {
                let msg = format!("HTTP {status} with an unreadable answer");
                let e = match kind {
                    Kind::Send => WappiError::Unknown(msg),
                    Kind::Read => WappiError::Temporary(msg),
                };
                return Err((Some(status), e));
            }
        };
        if is_error_reply(&value, kind) {
            return Err((Some(status), WappiError::from_error_body(&text)));
        }
        Ok((status, value))
    }
}

impl Default for HttpWappi {
    /// The production service, `https://wappi.pro`.
    fn default() -> Self {
        HttpWappi::new("https://wappi.pro")
    }
}

fn build_client(connect: Duration, request: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(request)
        .user_agent(concat!("groupcast/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the reqwest client builds with static settings")
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

/// A failure with no HTTP answer. A refused or failed connection never carried the request,
/// so it is safe to retry. Anything later (timeout, connection dropped, body lost) leaves a
/// send of unknown outcome; a read is simply retried.
fn transport_error(e: reqwest::Error, kind: Kind) -> WappiError {
    let e = e.without_url();
    if e.is_connect() {
        return WappiError::Temporary(format!("connection failed: {}", describe(&e)));
    }
    if e.is_builder() {
        return WappiError::Rejected(format!("request not built: {}", describe(&e)));
    }
    let what = if e.is_timeout() {
        "timed out"
    } else {
        "connection lost"
    };
    let msg = format!("{what}: {}", describe(&e));
    match kind {
        Kind::Send => WappiError::Unknown(msg),
        Kind::Read => WappiError::Temporary(msg),
    }
}

/// The error and its causes, one line (reqwest's top message alone is vague).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

/// Belt and braces: an answer that echoes the token must not carry it into an error text.
fn scrub((status, e): (Option<u16>, WappiError), token: &str) -> (Option<u16>, WappiError) {
    if token.is_empty() {
        return (status, e);
    }
    let clean = |s: String| s.replace(token, "***");
    let e = match e {
        WappiError::Temporary(s) => WappiError::Temporary(clean(s)),
        WappiError::Unknown(s) => WappiError::Unknown(clean(s)),
        WappiError::Rejected(s) => WappiError::Rejected(clean(s)),
        other => other,
    };
    (status, e)
}

/// Parses a `Retry-After` value into seconds: delay-seconds, or an HTTP date (IMF-fixdate,
/// e.g. `Wed, 21 Oct 2015 07:28:00 GMT`) measured from `now_unix`. Anything unreadable is
/// [`RETRY_AFTER_FALLBACK_SECS`]; a date in the past is 0; the result is capped at
/// [`RETRY_AFTER_MAX_SECS`].
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
    let parts: Vec<&str> = v.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u32 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u32
        + 1;
    let year: i64 = year.parse().ok().filter(|y| (1970..=9999).contains(y))?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    if !(0..24).contains(h) || !(0..60).contains(m) || !(0..=60).contains(s) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Decodes a successful answer into its wire model. A send whose answer cannot be read was
/// still accepted (HTTP 2xx), so it yields empty ids rather than an error.
fn decode<T: serde::de::DeserializeOwned + Default>(v: Value, kind: Kind) -> Result<T, WappiError> {
    match serde_json::from_value(v) {
        Ok(t) => Ok(t),
        Err(_) if kind == Kind::Send => Ok(T::default()),
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
impl WappiApi for HttpWappi {
    async fn get_status(&self, creds: &WappiCreds) -> Result<ProfileStatus, WappiError> {
        let v = self
            .call(
                creds,
                Method::GET,
                "/api/sync/get/status",
                &[],
                None,
                Kind::Read,
            )
            .await?;
        decode(v, Kind::Read)
    }

    async fn send_text(
        &self,
        creds: &WappiCreds,
        to: &GroupJid,
        body: &str,
    ) -> Result<Sent, WappiError> {
        let payload = json!({ "body": body, "recipient": to.as_str() });
        let v = self
            .call(
                creds,
                Method::POST,
                "/api/sync/message/send",
                &[],
                Some(payload),
                Kind::Send,
            )
            .await?;
        decode(v, Kind::Send)
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
        let v = self
            .call(
                creds,
                Method::POST,
                "/api/sync/message/img/send",
                &[],
                Some(payload),
                Kind::Send,
            )
            .await?;
        decode(v, Kind::Send)
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
        let v = self
            .call(
                creds,
                Method::GET,
                "/api/sync/chats/get",
                &query,
                None,
                Kind::Read,
            )
            .await?;
        decode::<ChatsPage>(v, Kind::Read).map(|p| p.dialogs)
    }

    async fn chat_messages(
        &self,
        creds: &WappiCreds,
        chat: &GroupJid,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, WappiError> {
        let query = [
            ("chat_id", chat.as_str().to_string()),
            ("limit", limit.to_string()),
            ("order", "desc".to_string()),
        ];
        let v = self
            .call(
                creds,
                Method::GET,
                "/api/sync/messages/get",
                &query,
                None,
                Kind::Read,
            )
            .await?;
        decode::<MessagesPage>(v, Kind::Read).map(|p| p.messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_values() {
        let now = 1_445_412_480; // Wed, 21 Oct 2015 07:28:00 GMT
        let cases: &[(&str, u64)] = &[
            ("7", 7),
            (" 120 ", 120),
            ("0", 0),
            ("Wed, 21 Oct 2015 07:28:30 GMT", 30),
            ("Wed, 21 Oct 2015 07:27:00 GMT", 0),
            ("Thu, 22 Oct 2015 07:28:00 GMT", 86_400),
            ("soon", RETRY_AFTER_FALLBACK_SECS),
            ("", RETRY_AFTER_FALLBACK_SECS),
            ("-3", RETRY_AFTER_FALLBACK_SECS),
            ("Wed, 21 Foo 2015 07:28:30 GMT", RETRY_AFTER_FALLBACK_SECS),
            ("99999999999999999", RETRY_AFTER_MAX_SECS),
        ];
        for (value, want) in cases {
            assert_eq!(parse_retry_after(value, now), *want, "{value:?}");
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
    }

    #[test]
    fn error_replies() {
        let error = json!({"detail": "Not authorized in whatsapp", "status": "error"});
        let done = json!({"status": "done", "message_id": "3EB0128AE55B5D222DD0"});
        let status = json!({"app_status": "open", "authorized": true});
        let odd = json!({"status": "pending"});
        assert!(is_error_reply(&error, Kind::Send) && is_error_reply(&error, Kind::Read));
        assert!(!is_error_reply(&done, Kind::Send) && !is_error_reply(&done, Kind::Read));
        assert!(!is_error_reply(&status, Kind::Read));
        assert!(is_error_reply(&odd, Kind::Read) && !is_error_reply(&odd, Kind::Send));
    }

    #[test]
    fn base64_prefix_and_scrub() {
        assert_eq!(raw_base64("data:image/png;base64,iVBOR"), "iVBOR");
        assert_eq!(raw_base64("iVBOR"), "iVBOR");
        let (_, e) = scrub(
            (None, WappiError::Rejected("bad token abc123".into())),
            "abc123",
        );
        assert_eq!(e, WappiError::Rejected("bad token ***".into()));
    }

    #[tokio::test]
    async fn refused_connection_is_temporary_even_for_a_send() {
        // Bind then drop a listener: the port is very likely closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let wappi = HttpWappi::new(&format!("http://127.0.0.1:{port}/"));
        let creds = WappiCreds {
            token: groupcast_core::Secret::new("0123456789abcdef0123456789abcdef01234567"),
            profile_id: groupcast_core::ProfileId::parse("2f099bc3-478d").unwrap(),
        };
        let to = GroupJid::parse("120363025246125486@g.us").unwrap();
        match wappi.send_text(&creds, &to, "hi").await {
            Err(WappiError::Temporary(msg)) => assert!(!msg.contains("0123456789abcdef")),
            other => panic!("expected Temporary, got {other:?}"),
        }
    }
}
