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
    /// When WhatsApp was last linked to the profile (RFC 3339, e.g.
    /// `2026-08-07T02:40:35.189138+03:00`): how young the number is on this gateway.
    #[serde(default)]
    pub authorized_at: Option<String>,
}

impl ProfileStatus {
    /// [`ProfileStatus::authorized_at`] as unix ms; `None` when missing or unreadable.
    pub fn authorized_at_ms(&self) -> Option<i64> {
        let s = self.authorized_at.as_deref()?;
        chrono::DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|t| t.timestamp_millis())
    }

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
    /// A group's `group` object (see [`GroupFacts`]), when Wappi sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<serde_json::Value>,
}

impl Dialog {
    /// The facts of the dialog's `group` object, if it has one.
    pub fn group_facts(&self) -> Option<GroupFacts> {
        self.group.as_ref().map(GroupFacts::from_json)
    }

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

/// What Wappi tells of a WhatsApp group (the `group` object of a `chats/get` dialog, or of
/// `contact/info`'s `profile`; whatsmeow's `GroupInfo` keys, INFERRED in `specs/wappi.md`
/// §2 rows 3–5). Every fact a reply did not carry stays `None`: unknown, never guessed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupFacts {
    /// `Name`.
    pub name: Option<String>,
    /// `IsAnnounce`: only admins may post.
    pub announce: Option<bool>,
    /// `Participants[].JID` (digits before the `@`), when the participants were listed.
    pub participants: Option<Vec<String>>,
    /// Those participants with `IsAdmin` or `IsSuperAdmin`.
    pub admins: Option<Vec<String>>,
}

impl GroupFacts {
    /// Reads a whatsmeow-`GroupInfo`-shaped object leniently (embedded Go structs flatten, so
    /// the keys sit at the top: `Name`, `IsAnnounce`, `Participants`, …). Whatever is missing,
    /// `null` or of another type stays `None`:
    ///
    /// - `name`: `Name`, else `name`, `Subject`, `subject`; a blank name is `None`.
    /// - `announce`: `IsAnnounce` (else `isAnnounce`, `is_announce`, `announce`), a bool only.
    /// - `participants`: the numbers of `Participants` (else `participants`), each the digits
    ///   before the `@` and before any device (`:12`) or agent (`.0`) suffix of its `JID`
    ///   (else `jid`, `id`), a bare JID string being read the same way. A participant whose
    ///   `JID` is a `…@lid` and who carries a `PhoneNumber` is listed by that phone number
    ///   (what the account's own phone is compared with). The list is `None` unless every
    ///   entry could be read and there was at least one: a group always has a member, and a
    ///   list read in part cannot tell that someone is missing from it.
    /// - `admins`: the participants with `IsAdmin` or `IsSuperAdmin` true (also `isAdmin`,
    ///   `isSuperAdmin`, `is_admin`, or an `admin` of `"admin"`/`"superadmin"`); `None`
    ///   whenever `participants` is.
    pub fn from_json(v: &serde_json::Value) -> GroupFacts {
        let Some(o) = v.as_object() else {
            return GroupFacts::default();
        };
        let name = ["Name", "name", "Subject", "subject"].iter().find_map(|k| {
            o.get(*k)
                .and_then(|n| n.as_str())
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
        });
        let announce = ["IsAnnounce", "isAnnounce", "is_announce", "announce"]
            .iter()
            .find_map(|k| o.get(*k).and_then(|b| b.as_bool()));
        let read: Option<Vec<(String, bool)>> = o
            .get("Participants")
            .or_else(|| o.get("participants"))
            .and_then(|p| p.as_array())
            .filter(|list| !list.is_empty())
            .and_then(|list| list.iter().map(participant).collect());
        GroupFacts {
            name,
            announce,
            participants: read
                .as_ref()
                .map(|l| l.iter().map(|(p, _)| p.clone()).collect()),
            admins: read.map(|l| l.into_iter().filter(|(_, a)| *a).map(|(p, _)| p).collect()),
        }
    }

    /// Whether the number `phone` (digits) is listed among the participants; `None` when the
    /// participants are unknown.
    pub fn has_member(&self, phone: &str) -> Option<bool> {
        self.participants
            .as_ref()
            .map(|p| p.iter().any(|j| j == phone))
    }

    /// Whether `phone` may post: `Some(false)` only when the group is announcement-only and the
    /// admins are known and do not include it.
    pub fn may_post(&self, phone: &str) -> Option<bool> {
        match (self.announce, &self.admins) {
            (Some(false), _) => Some(true),
            (Some(true), Some(admins)) => Some(admins.iter().any(|a| a == phone)),
            _ => None,
        }
    }
}

/// One entry of `Participants`: its number and whether it is an admin; `None` when no
/// number can be read from it.
fn participant(v: &serde_json::Value) -> Option<(String, bool)> {
    if let Some(jid) = v.as_str() {
        return jid_user(jid).map(|u| (u, false));
    }
    let o = v.as_object()?;
    let text = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| o.get(*k).and_then(|s| s.as_str()))
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let jid = text(&["JID", "jid", "id"]);
    let phone = text(&["PhoneNumber", "phoneNumber", "phone_number"]);
    let user = match (jid, phone) {
        (Some(j), Some(p)) if j.ends_with("@lid") => jid_user(p).or_else(|| jid_user(j)),
        (Some(j), _) => jid_user(j),
        (None, Some(p)) => jid_user(p),
        (None, None) => None,
    }?;
    let flag = |keys: &[&str]| {
        keys.iter()
            .any(|k| o.get(*k).and_then(|b| b.as_bool()) == Some(true))
    };
    let admin = flag(&["IsAdmin", "isAdmin", "is_admin"])
        || flag(&["IsSuperAdmin", "isSuperAdmin", "is_super_admin"])
        || matches!(
            o.get("admin").and_then(|a| a.as_str()),
            Some("admin" | "superadmin")
        );
    Some((user, admin))
}

/// The user part of a JID: `79990001122` of `79990001122@s.whatsapp.net`,
/// `79990001122:12@s.whatsapp.net` (a device), `79990001122.0:3@s.whatsapp.net` (an agent and
/// a device) or `+79990001122`; `None` when nothing is left.
fn jid_user(jid: &str) -> Option<String> {
    let user = jid.trim().split('@').next().unwrap_or_default();
    let user = user.split(':').next().unwrap_or_default();
    let user = user.split('.').next().unwrap_or_default();
    let user = user.trim().trim_start_matches('+');
    (!user.is_empty()).then(|| user.to_string())
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ChatsPage {
    #[serde(default)]
    pub dialogs: Vec<Dialog>,
}

/// One message of `messages/get`, the fields reconciliation reads. Decoded leniently (see
/// [`MessagesPage`]): a field that is missing, `null` or of another type takes its default.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatMessage {
    pub id: String,
    #[serde(rename = "fromMe")]
    pub from_me: bool,
    /// Unix seconds; 0 when the message carries no readable time.
    pub time: i64,
    pub body: String,
    pub caption: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `delivered`, `read`, `undelivered`, `temporary ban`, `error` (Wappi's values);
    /// empty when the answer has none.
    pub delivery_status: String,
    /// Deleted for everyone (`isDeleted`).
    #[serde(rename = "isDeleted")]
    pub is_deleted: bool,
}

impl ChatMessage {
    /// WhatsApp has suspended the number's sending for a while (a ban signal).
    pub fn is_temporary_ban(&self) -> bool {
        self.delivery_status
            .trim()
            .eq_ignore_ascii_case("temporary ban")
    }
}

impl ChatMessage {
    /// Reads one message field by field, each falling back to its default; `None` only for
    /// something that is not an object at all.
    pub fn lenient(v: &serde_json::Value) -> Option<ChatMessage> {
        let o = v.as_object()?;
        let text = |k: &str| {
            o.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let time = o.get("time").and_then(|t| {
            t.as_i64()
                .or_else(|| t.as_f64().map(|f| f as i64))
                .or_else(|| t.as_str().and_then(|s| s.trim().parse().ok()))
        });
        Some(ChatMessage {
            id: text("id"),
            from_me: o.get("fromMe").and_then(|b| b.as_bool()).unwrap_or(false),
            time: time.unwrap_or(0).max(0),
            body: text("body"),
            caption: text("caption"),
            kind: text("type"),
            delivery_status: text("delivery_status"),
            is_deleted: o
                .get("isDeleted")
                .and_then(|b| b.as_bool())
                .unwrap_or(false),
        })
    }
}

/// One page of `messages/get` (newest first): the messages read, and the chat's
/// `total_count` when the answer gives one. One odd message never costs the page: each is
/// read on its own ([`ChatMessage::lenient`]), and what is not a message at all is skipped
/// (counted in `skipped`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MessagesPage {
    pub messages: Vec<ChatMessage>,
    pub total_count: Option<u64>,
    pub skipped: usize,
}

impl<'de> Deserialize<'de> for MessagesPage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let list = v.get("messages").and_then(|m| m.as_array());
        let read: Vec<Option<ChatMessage>> = list
            .map(|l| l.iter().map(ChatMessage::lenient).collect())
            .unwrap_or_default();
        let skipped = read.iter().filter(|m| m.is_none()).count();
        Ok(MessagesPage {
            messages: read.into_iter().flatten().collect(),
            total_count: v.get("total_count").and_then(|t| t.as_u64()),
            skipped,
        })
    }
}

/// A failed Wappi call, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WappiError {
    /// 429 or `Retry-After`: the whole profile must wait this long (ms).
    #[error("wappi: rate limited, retry after {0} ms")]
    RateLimited(u64),
    /// A 5xx answer to a read, or a connection that failed before the request was sent: safe
    /// to retry.
    #[error("wappi: temporary failure: {0}")]
    Temporary(String),
    /// The request may or may not have been carried out (timeout or connection lost after
    /// the request was sent, or a 5xx answer to a send). A send in this state is `in_doubt`
    /// and must be settled.
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
    fn a_history_page_is_read_message_by_message() {
        let page: MessagesPage = serde_json::from_str(
            r#"{"status":"done","messages":[
                {"id":"A1","fromMe":true,"time":1720780615,"body":"ours","caption":null,"type":"chat","senderName":null},
                {"id":null,"fromMe":null,"time":"1720780600","body":null,"type":"image"},
                "not a message",
                {"id":"A3","fromMe":false,"time":null,"body":7}
            ],"total_count":1406}"#,
        )
        .unwrap();
        assert_eq!(page.total_count, Some(1406));
        assert_eq!(page.skipped, 1);
        let m = &page.messages;
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m[0].id.as_str(), m[0].from_me, m[0].time),
            ("A1", true, 1720780615)
        );
        assert_eq!((m[0].body.as_str(), m[0].caption.as_str()), ("ours", ""));
        assert_eq!(
            (m[1].id.as_str(), m[1].from_me, m[1].time),
            ("", false, 1720780600)
        );
        assert_eq!(m[1].kind, "image");
        assert_eq!((m[2].time, m[2].body.as_str()), (0, ""));
        let empty: MessagesPage = serde_json::from_str(r#"{"status":"done"}"#).unwrap();
        assert!(empty.messages.is_empty() && empty.total_count.is_none());
    }

    /// A group as a whatsmeow-backed gateway writes it (`GroupInfo` flattened), with a device
    /// suffix, LID participants (one with its phone number, one without) and `null`s.
    const GROUP_INFO: &str = r#"{
        "JID": "120363025246125486@g.us",
        "OwnerJID": "79990001122@s.whatsapp.net",
        "Name": "Квартиры СПб",
        "NameSetAt": "2024-03-01T10:00:00Z",
        "NameSetBy": "79990001122@s.whatsapp.net",
        "Topic": "",
        "TopicSetAt": "0001-01-01T00:00:00Z",
        "IsLocked": false,
        "IsAnnounce": true,
        "AnnounceVersionID": "1710000000000000",
        "IsEphemeral": false,
        "DisappearingTimer": 0,
        "IsParent": false,
        "LinkedParentJID": "",
        "IsDefaultSubGroup": false,
        "IsJoinApprovalRequired": false,
        "GroupCreated": "2024-03-01T10:00:00Z",
        "ParticipantVersionID": "1710000000000001",
        "Participants": [
            {"JID": "79990001122@s.whatsapp.net", "LID": "", "IsAdmin": true,
             "IsSuperAdmin": true, "DisplayName": "", "Error": 0, "AddRequest": null},
            {"JID": "79115576367:12@s.whatsapp.net", "LID": "", "IsAdmin": false,
             "IsSuperAdmin": false, "DisplayName": "", "Error": 0, "AddRequest": null},
            {"JID": "225170393161752@lid", "PhoneNumber": "79602041980@s.whatsapp.net",
             "IsAdmin": true, "IsSuperAdmin": false, "DisplayName": null},
            {"JID": "188277150343215@lid", "PhoneNumber": null, "IsAdmin": null,
             "IsSuperAdmin": null}
        ]
    }"#;

    fn facts(s: &str) -> GroupFacts {
        GroupFacts::from_json(&serde_json::from_str(s).unwrap())
    }

    fn strings(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn group_facts_of_a_whole_group_info() {
        let f = facts(GROUP_INFO);
        assert_eq!(f.name.as_deref(), Some("Квартиры СПб"));
        assert_eq!(f.announce, Some(true));
        assert_eq!(
            f.participants,
            strings(&[
                "79990001122",
                "79115576367",
                "79602041980",
                "188277150343215"
            ])
        );
        assert_eq!(f.admins, strings(&["79990001122", "79602041980"]));
        assert_eq!(
            f.has_member("79115576367"),
            Some(true),
            "device suffix dropped"
        );
        assert_eq!(f.has_member("79000000000"), Some(false));
        assert_eq!(f.may_post("79990001122"), Some(true));
        assert_eq!(f.may_post("79115576367"), Some(false));

        // The same object inside a `chats/get` dialog.
        let d: Dialog = serde_json::from_str(&format!(
            r#"{{"id":"120363025246125486@g.us","group":{GROUP_INFO}}}"#
        ))
        .unwrap();
        assert_eq!(d.group_facts(), Some(f));
        let plain: Dialog = serde_json::from_str(r#"{"id":"120363025246125486@g.us"}"#).unwrap();
        assert_eq!(plain.group_facts(), None);
    }

    #[test]
    fn group_facts_missing_null_or_mistyped_stay_unknown() {
        for unknown in [
            "null",
            r#""a group""#,
            "[]",
            "{}",
            // A Go nil slice is `null`; a name of another type; a flag as a string.
            r#"{"Name": 5, "IsAnnounce": "true", "Participants": null}"#,
            r#"{"Name": null, "IsAnnounce": null, "Participants": {"JID": "7999@s.whatsapp.net"}}"#,
        ] {
            let f = facts(unknown);
            assert_eq!(f, GroupFacts::default(), "{unknown}");
            assert_eq!((f.has_member("7999"), f.may_post("7999")), (None, None));
        }
        // A blank name is no name (the next key is not consulted for it either way: it is
        // unknown); an empty participant list is not "nobody".
        let f = facts(r#"{"Name": "  ", "IsAnnounce": false, "Participants": []}"#);
        assert_eq!(f.name, None);
        assert_eq!(
            (f.announce, &f.participants, &f.admins),
            (Some(false), &None, &None)
        );
        assert_eq!(
            f.may_post("79990001122"),
            Some(true),
            "not announcement-only"
        );
        // Announcement-only with the participants unknown: cannot tell.
        let f = facts(r#"{"IsAnnounce": true}"#);
        assert_eq!(f.may_post("79990001122"), None);
    }

    #[test]
    fn group_facts_in_other_spellings() {
        let f = facts(
            r#"{"subject": "Дачи", "announce": true, "participants": [
                "79990001122@s.whatsapp.net",
                {"id": "79115576367.0:3@s.whatsapp.net", "admin": "superadmin"},
                {"jid": "+79602041980@c.us", "isAdmin": true},
                {"PhoneNumber": "79001234567@s.whatsapp.net", "IsSuperAdmin": true}
            ]}"#,
        );
        assert_eq!(f.name.as_deref(), Some("Дачи"));
        assert_eq!(f.announce, Some(true));
        assert_eq!(
            f.participants,
            strings(&["79990001122", "79115576367", "79602041980", "79001234567"])
        );
        assert_eq!(
            f.admins,
            strings(&["79115576367", "79602041980", "79001234567"])
        );
        assert_eq!(f.may_post("79990001122"), Some(false));
        assert_eq!(
            facts(r#"{"name": "n", "Subject": "s"}"#).name.as_deref(),
            Some("n")
        );
    }

    #[test]
    fn a_participant_list_read_in_part_is_unknown() {
        for list in [
            r#"[{"JID": "79990001122@s.whatsapp.net"}, null]"#,
            r#"[{"JID": "79990001122@s.whatsapp.net"}, {"JID": null}]"#,
            r#"[{"JID": "79990001122@s.whatsapp.net"}, {"JID": "@s.whatsapp.net"}]"#,
            r#"[{"JID": "79990001122@s.whatsapp.net"}, 7]"#,
        ] {
            let f = facts(&format!(r#"{{"Name": "G", "Participants": {list}}}"#));
            assert_eq!((&f.participants, &f.admins), (&None, &None), "{list}");
            assert_eq!(f.name.as_deref(), Some("G"));
        }
        let f = facts(r#"{"Participants": [{"JID": "79990001122@s.whatsapp.net"}]}"#);
        assert_eq!(f.participants, strings(&["79990001122"]));
        assert_eq!(f.admins, Some(vec![]), "listed, and nobody is an admin");
    }

    #[test]
    fn jid_users() {
        for (jid, user) in [
            ("79990001122@s.whatsapp.net", Some("79990001122")),
            ("79990001122:12@s.whatsapp.net", Some("79990001122")),
            ("79990001122.0:1@s.whatsapp.net", Some("79990001122")),
            ("225170393161752@lid", Some("225170393161752")),
            (" +79990001122 ", Some("79990001122")),
            ("@s.whatsapp.net", None),
            ("", None),
        ] {
            assert_eq!(jid_user(jid).as_deref(), user, "{jid:?}");
        }
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
