//! Wappi wire models (see `shared/specs/wappi.md`) and the classification of its failures into
//! what the mailing engine should do: retry later, never retry, pause the account, or settle
//! an unknown outcome. [`client`] is the HTTP client itself, over a transport each runtime
//! provides.

pub mod client;

use crate::model::ids::{GroupJid, ProfileId};
use crate::model::secret::Secret;
use serde::{Deserialize, Serialize};

/// A user's Wappi credentials: the raw API token (sent as `Authorization`) and the profile id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WappiCreds {
    pub token: Secret,
    pub profile_id: ProfileId,
}

/// `GET /api/sync/get/status`: whether the WhatsApp number is connected.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ProfileStatus {
    #[serde(default)]
    pub app_status: Option<String>,
    #[serde(default)]
    pub authorized: bool,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub profile_id: Option<String>,
}

impl ProfileStatus {
    /// Healthy = authorized and the app is open (how production health checks read it).
    pub fn is_ready(&self) -> bool {
        self.authorized && self.app_status.as_deref().unwrap_or("open") == "open"
    }
}

/// The answer to a successful send (`message/send`, `message/img/send`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Sent {
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub task_id: Option<String>,
}

/// One dialog of `chats/get`. Only `id` is confirmed; the name is looked for in the fields
/// seen in the wild.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Dialog {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<serde_json::Value>,
}

impl Dialog {
    /// The group's id, when this dialog is a group.
    pub fn group(&self) -> Option<GroupJid> {
        if self.id.ends_with("@g.us") {
            GroupJid::parse(&self.id)
        } else {
            None
        }
    }

    /// The best human name available, else the id.
    pub fn display_name(&self) -> String {
        let from = |v: &Option<serde_json::Value>, keys: &[&str]| {
            v.as_ref().and_then(|v| {
                keys.iter().find_map(|k| {
                    v.get(*k)
                        .and_then(|s| s.as_str())
                        .filter(|s| !s.trim().is_empty())
                        .map(str::to_string)
                })
            })
        };
        self.name
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| from(&self.chat, &["Name", "name", "Subject", "subject"]))
            .or_else(|| {
                from(
                    &self.contact,
                    &["FullName", "FirstName", "PushName", "BusinessName"],
                )
            })
            .unwrap_or_else(|| self.id.clone())
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ChatsPage {
    #[serde(default)]
    pub dialogs: Vec<Dialog>,
}

/// One message of `messages/get`, the fields reconciliation reads.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ChatMessage {
    #[serde(default)]
    pub id: String,
    #[serde(default, rename = "fromMe")]
    pub from_me: bool,
    /// Unix seconds.
    #[serde(default)]
    pub time: i64,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub caption: String,
    #[serde(default, rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct MessagesPage {
    #[serde(default)]
    pub messages: Vec<ChatMessage>,
}

/// A failed Wappi call, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WappiError {
    /// 429 or `Retry-After`: the whole profile must wait this long (ms).
    #[error("wappi: rate limited, retry after {0} ms")]
    RateLimited(u64),
    /// 5xx or a connection that failed before the request was sent: safe to retry.
    #[error("wappi: temporary failure: {0}")]
    Temporary(String),
    /// The request may or may not have been carried out (timeout or connection lost after
    /// the request was sent). A send in this state is `in_doubt` and must be settled.
    #[error("wappi: outcome unknown: {0}")]
    Unknown(String),
    /// WhatsApp is not connected on this profile ("Not authorized in whatsapp"): pause.
    #[error("wappi: WhatsApp is not authorized on this profile")]
    NotAuthorized,
    /// The token was refused.
    #[error("wappi: the token was refused")]
    BadToken,
    /// The profile id does not exist ("Profile not found").
    #[error("wappi: profile not found")]
    ProfileNotFound,
    /// The profile is not paid at Wappi (HTTP 402).
    #[error("wappi: the profile is not paid")]
    NotPaid,
    /// Refused for good for this recipient (bad group id, not a member, …).
    #[error("wappi: refused: {0}")]
    Rejected(String),
}

/// What the engine does after a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// Pause the whole profile for this long (ms), then try the same row again.
    PauseProfile(u64),
    /// Retry this row later with exponential backoff.
    Retry,
    /// Mark the row `in_doubt` and settle it through the chat history.
    Settle,
    /// Stop the mailing and tell the user (the account needs attention).
    PauseMailing,
    /// Fail this row with the error as the reason.
    FailRow,
}

impl WappiError {
    pub fn remedy(&self) -> Remedy {
        match self {
            WappiError::RateLimited(ms) => Remedy::PauseProfile(*ms),
            WappiError::Temporary(_) => Remedy::Retry,
            WappiError::Unknown(_) => Remedy::Settle,
            WappiError::NotAuthorized
            | WappiError::BadToken
            | WappiError::ProfileNotFound
            | WappiError::NotPaid => Remedy::PauseMailing,
            WappiError::Rejected(_) => Remedy::FailRow,
        }
    }

    /// Classifies an HTTP answer that was not a success. `retry_after_secs` is the parsed
    /// `Retry-After` header, if any; `body` the raw answer (its `detail` is read).
    pub fn from_http(status: u16, retry_after_secs: Option<u64>, body: &str) -> WappiError {
        let detail = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                v.get("detail")
                    .or_else(|| v.get("error"))
                    .and_then(|d| d.as_str().map(str::to_string))
            })
            .unwrap_or_else(|| body.chars().take(200).collect());
        let lower = detail.to_lowercase();
        if status == 429 {
            return WappiError::RateLimited(retry_after_secs.unwrap_or(5) * 1000);
        }
        if let Some(secs) = retry_after_secs {
            if status == 503 {
                return WappiError::RateLimited(secs * 1000);
            }
        }
        if lower.contains("not authorized") {
            return WappiError::NotAuthorized;
        }
        if lower.contains("profile not found") {
            return WappiError::ProfileNotFound;
        }
        match status {
            401 | 403 => WappiError::BadToken,
            402 => WappiError::NotPaid,
            500..=599 => WappiError::Temporary(format!("HTTP {status}: {detail}")),
            _ => WappiError::Rejected(if detail.is_empty() {
                format!("HTTP {status}")
            } else {
                detail
            }),
        }
    }

    /// Classifies a `200` answer whose body says `"status": "error"`.
    pub fn from_error_body(body: &str) -> WappiError {
        WappiError::from_http(400, None, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let cases: Vec<(u16, Option<u64>, &str, WappiError)> = vec![
            (429, Some(7), "", WappiError::RateLimited(7000)),
            (429, None, "", WappiError::RateLimited(5000)),
            (503, Some(2), "", WappiError::RateLimited(2000)),
            (
                502,
                None,
                "bad gateway",
                WappiError::Temporary("HTTP 502: bad gateway".into()),
            ),
            (
                200,
                None,
                r#"{"detail":"Not authorized in whatsapp","status":"error"}"#,
                WappiError::NotAuthorized,
            ),
            (
                400,
                None,
                r#"{"detail":"Profile not found","status":"error"}"#,
                WappiError::ProfileNotFound,
            ),
            (
                401,
                None,
                r#"{"detail":"Unauthorized","status":"error"}"#,
                WappiError::BadToken,
            ),
            (402, None, "", WappiError::NotPaid),
            (
                400,
                None,
                r#"{"detail":"recipient not found","status":"error"}"#,
                WappiError::Rejected("recipient not found".into()),
            ),
        ];
        for (status, ra, body, want) in cases {
            assert_eq!(
                WappiError::from_http(status, ra, body),
                want,
                "{status} {body}"
            );
        }
    }

    #[test]
    fn remedies() {
        assert_eq!(
            WappiError::RateLimited(1000).remedy(),
            Remedy::PauseProfile(1000)
        );
        assert_eq!(WappiError::Unknown("reset".into()).remedy(), Remedy::Settle);
        assert_eq!(WappiError::NotAuthorized.remedy(), Remedy::PauseMailing);
        assert_eq!(WappiError::Rejected("x".into()).remedy(), Remedy::FailRow);
    }

    #[test]
    fn dialog_names() {
        let d: Dialog = serde_json::from_str(
            r#"{"id":"120363025246125486@g.us","contact":{"Found":true,"FullName":"Квартиры СПб"},"chat":{"VerifiedName":null}}"#,
        )
        .unwrap();
        assert_eq!(d.display_name(), "Квартиры СПб");
        assert!(d.group().is_some());
        let p: Dialog = serde_json::from_str(r#"{"id":"79115576367@c.us"}"#).unwrap();
        assert!(p.group().is_none());
        assert_eq!(p.display_name(), "79115576367@c.us");
    }
}
