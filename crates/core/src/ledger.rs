//! The mailing ledger: the system of record of what was sent where. One row per
//! (mailing, group, part); a row is marked `sending` durably before the Wappi call, so a crash
//! can never turn into a silent skip or a silent double.

use crate::ids::{ChatId, GroupJid, MailingId, ProfileId, UserId};
use serde::{Deserialize, Serialize};

/// The state of one delivery row: `pending → sending → sent | failed | in_doubt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Sending,
    Sent,
    Failed,
    /// Wappi may or may not have sent it (crash or lost answer); settled by reading the chat.
    InDoubt,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sending => "sending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
            DeliveryState::InDoubt => "in_doubt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeliveryState::Pending,
            "sending" => DeliveryState::Sending,
            "sent" => DeliveryState::Sent,
            "failed" => DeliveryState::Failed,
            "in_doubt" => DeliveryState::InDoubt,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, DeliveryState::Sent | DeliveryState::Failed)
    }
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub mailing_id: MailingId,
    pub group: GroupJid,
    /// 0 for the text; image parts come first when a post has several (images issue).
    pub part: u32,
    /// Order of sending within the mailing.
    pub position: u32,
    pub state: DeliveryState,
    /// Send attempts that reached Wappi or failed on the way (rate-limit pauses not counted).
    pub attempts: u32,
    /// Unix ms before which the row is not tried again (backoff, settle retry).
    pub next_attempt_at: i64,
    pub message_id: Option<String>,
    /// A readable reason for `failed` / `in_doubt`.
    pub error: Option<String>,
    /// Unix ms of the last change.
    pub updated_at: i64,
}

/// The lifecycle of a mailing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailingStatus {
    /// Being sent (or waiting for a runner to pick it up).
    Running,
    /// Stopped by the engine because the account needs attention; can be resumed.
    Paused,
    Cancelled,
    Done,
}

impl MailingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MailingStatus::Running => "running",
            MailingStatus::Paused => "paused",
            MailingStatus::Cancelled => "cancelled",
            MailingStatus::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => MailingStatus::Running,
            "paused" => MailingStatus::Paused,
            "cancelled" => MailingStatus::Cancelled,
            "done" => MailingStatus::Done,
            _ => return None,
        })
    }

    /// Running and paused mailings hold their profile: no second one may start.
    pub fn is_active(self) -> bool {
        matches!(self, MailingStatus::Running | MailingStatus::Paused)
    }
}

/// The content snapshot taken when a mailing starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// The text in WhatsApp markup.
    pub text: String,
}

/// A mailing as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailing {
    pub id: MailingId,
    pub user_id: UserId,
    /// Where progress and the report go.
    pub chat_id: ChatId,
    pub profile_id: ProfileId,
    pub status: MailingStatus,
    pub content: Content,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    /// The highest lease fencing number that has written to this mailing.
    pub fence: u64,
    pub cancel_requested: bool,
    pub progress_message_id: Option<i64>,
    /// Unix ms of the last progress edit.
    pub progress_at: i64,
    /// Why the mailing is paused, for the user.
    pub pause_reason: Option<String>,
}

/// What a new mailing is made of.
#[derive(Debug, Clone)]
pub struct NewMailing {
    pub user_id: UserId,
    pub chat_id: ChatId,
    pub profile_id: ProfileId,
    pub content: Content,
    pub groups: Vec<GroupJid>,
    pub now: i64,
}

/// Counts over a mailing's rows, for progress and the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub total: u32,
    pub sent: u32,
    pub failed: u32,
    pub in_doubt: u32,
    /// pending + sending
    pub left: u32,
}

impl Tally {
    pub fn of(rows: &[Delivery]) -> Tally {
        let mut t = Tally {
            total: rows.len() as u32,
            ..Tally::default()
        };
        for r in rows {
            match r.state {
                DeliveryState::Sent => t.sent += 1,
                DeliveryState::Failed => t.failed += 1,
                DeliveryState::InDoubt => t.in_doubt += 1,
                DeliveryState::Pending | DeliveryState::Sending => t.left += 1,
            }
        }
        t
    }

    pub fn done(&self) -> u32 {
        self.sent + self.failed
    }
}
