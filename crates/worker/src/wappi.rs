//! `FetchWappi`: the core's `WappiApi` over `fetch`, with the server client's wire format
//! (raw token in `Authorization`, `profile_id` in the query) and classification: HTTP answers
//! through the core's `WappiError::from_http` / `from_error_body`; a send with no answer is
//! `Unknown` (the ledger settles it instead of sending twice), a read with none `Temporary`.
//! The token never reaches an error text.

use crate::fetch::{self, Body, Failure};
use crate::wire::{self, parse_retry_after, wappi_error_reply, WappiKind};
use groupcast_core::ids::GroupJid;
use groupcast_core::ports::{async_trait, WappiApi};
use groupcast_core::wappi::{
    ChatMessage, ChatsPage, Dialog, MessagesPage, ProfileStatus, Sent, WappiCreds, WappiError,
};
use serde_json::{json, Value};
use std::time::Duration;
use worker::Method;

pub struct FetchWappi {
    base: String,
    timeout: Duration,
}

impl FetchWappi {
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        FetchWappi {
            base: base_url.trim().trim_end_matches('/').to_string(),
            timeout,
        }
    }

    async fn call(
        &self,
        creds: &WappiCreds,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        kind: WappiKind,
    ) -> Result<Value, WappiError> {
        let token = creds.token.expose();
        self.exchange(creds, method, path, query, body, kind)
            .await
            .map_err(|e| scrub(e, token))
    }

    async fn exchange(
        &self,
        creds: &WappiCreds,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        kind: WappiKind,
    ) -> Result<Value, WappiError> {
        let mut url = format!(
            "{}{}?profile_id={}",
            self.base,
            path,
            urlencoding::encode(creds.profile_id.as_str())
        );
        for (k, v) in query {
            url.push_str(&format!("&{k}={}", urlencoding::encode(v)));
        }
        let headers = [("authorization", creds.token.expose())];
        let body = body.map(|b| Body::Json(b.to_string()));
        let reply = match fetch::call(method, &url, &headers, body, self.timeout).await {
            Ok(r) => r,
            // Only the token can make a header unacceptable; a URL that cannot be built is a
            // setting problem, never carried out.
            Err(Failure::Build(s)) if s.starts_with("header") => return Err(WappiError::BadToken),
            Err(Failure::Build(s)) => return Err(WappiError::Rejected(s)),
            Err(Failure::Timeout) => return Err(no_answer("timed out".into(), kind)),
            Err(Failure::Transport(s)) => {
                return Err(no_answer(format!("connection lost: {s}"), kind))
            }
        };
        let status = reply.status;
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        if !(200..300).contains(&status) {
            let now_secs = (worker::Date::now().as_millis() / 1000) as i64;
            let retry_after = reply
                .retry_after
                .as_deref()
                .map(|v| parse_retry_after(v, now_secs));
            return Err(WappiError::from_http(status, retry_after, &text));
        }
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => {
                let msg = format!("HTTP {status} with an unreadable answer");
                return Err(match kind {
                    WappiKind::Send => WappiError::Unknown(msg),
                    WappiKind::Read => WappiError::Temporary(msg),
                });
            }
        };
        if wappi_error_reply(&value, kind) {
            return Err(WappiError::from_error_body(&text));
        }
        Ok(value)
    }
}

/// A call that got no answer: a send may have gone through.
fn no_answer(msg: String, kind: WappiKind) -> WappiError {
    match kind {
        WappiKind::Send => WappiError::Unknown(msg),
        WappiKind::Read => WappiError::Temporary(msg),
    }
}

fn scrub(e: WappiError, token: &str) -> WappiError {
    match e {
        WappiError::Temporary(s) => WappiError::Temporary(wire::scrub(&s, token)),
        WappiError::Unknown(s) => WappiError::Unknown(wire::scrub(&s, token)),
        WappiError::Rejected(s) => WappiError::Rejected(wire::scrub(&s, token)),
        other => other,
    }
}

/// Decodes a successful answer; a send whose answer cannot be read was still accepted.
fn decode<T: serde::de::DeserializeOwned + Default>(
    v: Value,
    kind: WappiKind,
) -> Result<T, WappiError> {
    match serde_json::from_value(v) {
        Ok(t) => Ok(t),
        Err(_) if kind == WappiKind::Send => Ok(T::default()),
        Err(e) => Err(WappiError::Temporary(format!(
            "unexpected answer shape: {e}"
        ))),
    }
}

#[async_trait(?Send)]
impl WappiApi for FetchWappi {
    async fn get_status(&self, creds: &WappiCreds) -> Result<ProfileStatus, WappiError> {
        let v = self
            .call(
                creds,
                Method::Get,
                "/api/sync/get/status",
                &[],
                None,
                WappiKind::Read,
            )
            .await?;
        decode(v, WappiKind::Read)
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
                Method::Post,
                "/api/sync/message/send",
                &[],
                Some(payload),
                WappiKind::Send,
            )
            .await?;
        decode(v, WappiKind::Send)
    }

    async fn send_image(
        &self,
        creds: &WappiCreds,
        to: &GroupJid,
        b64: &str,
        caption: Option<&str>,
    ) -> Result<Sent, WappiError> {
        let mut payload = json!({ "recipient": to.as_str(), "b64_file": wire::raw_base64(b64) });
        if let Some(c) = caption {
            payload["caption"] = Value::from(c);
        }
        let v = self
            .call(
                creds,
                Method::Post,
                "/api/sync/message/img/send",
                &[],
                Some(payload),
                WappiKind::Send,
            )
            .await?;
        decode(v, WappiKind::Send)
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
                Method::Get,
                "/api/sync/chats/get",
                &query,
                None,
                WappiKind::Read,
            )
            .await?;
        decode::<ChatsPage>(v, WappiKind::Read).map(|p| p.dialogs)
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
                Method::Get,
                "/api/sync/messages/get",
                &query,
                None,
                WappiKind::Read,
            )
            .await?;
        decode::<MessagesPage>(v, WappiKind::Read).map(|p| p.messages)
    }
}
