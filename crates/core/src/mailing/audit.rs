//! The delivery audit: `DELIVERY_AUDIT_DELAY_SECS` after a mailing ends, each post's
//! `delivery_status` is read back from its group's history, the user gets the counts
//! (delivered, read, pending, not delivered) and the groups that did not deliver, and what was
//! seen is remembered per group: the next preview leaves out a group whose last post was not
//! delivered (see `bot::preflight`), and per mailing (the CSV of `/history`). "Sent" only
//! means Wappi took the call; this is what WhatsApp did with it.
//!
//! A runtime's timer calls [`audit_due`] (the server's timer loop, the Worker's Cron). An audit
//! is taken once in the database before it reads anything, so two processes never audit the
//! same mailing; one cut off half-way is not done again (its counts are lost, the posts are
//! not). The reads go one at a time, outside any mailing's driver, so they never hold up a post.

use crate::model::ids::{GroupJid, MailingId};
use crate::model::ledger::{group_outcomes, DeliveryState};
use crate::ports::DbError;
use crate::services::Ports;
use crate::texts;
use crate::wappi::{WappiCreds, WappiError};

/// Messages read back per group (our post is among the newest).
const HISTORY: u32 = 50;
/// Mailings audited per pass.
const PER_PASS: u32 = 20;
/// A mailing that ended longer ago than this before its audit was due is not audited (it ended
/// while the service was down for a long time, or before audits existed).
const TOO_OLD_MS: i64 = 24 * 3_600_000;

/// What an audit saw, by `delivery_status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub delivered: u32,
    pub read: u32,
    pub pending: u32,
    /// `undelivered`, `error`, or our message not found in the history.
    pub undelivered: Vec<GroupJid>,
    /// The history could not be read.
    pub unknown: u32,
}

/// Audits every mailing whose audit is due; returns how many were audited.
pub async fn audit_due(svc: &Ports) -> Result<usize, DbError> {
    let now = svc.now_ms();
    let until = now - svc.settings.engine.audit_delay_ms;
    let mut done = 0;
    for id in svc
        .db
        .mailings_to_audit(until - TOO_OLD_MS, until, PER_PASS)
        .await?
    {
        if !svc.db.claim_audit(id, now).await? {
            continue;
        }
        match audit(svc, id).await {
            Ok(()) => done += 1,
            Err(e) => tracing::warn!(mailing = id.0, error = %e, "delivery audit failed"),
        }
    }
    Ok(done)
}

/// Reads every sent post of mailing `id` back, remembers it per group, and tells the user.
async fn audit(svc: &Ports, id: MailingId) -> Result<(), DbError> {
    let Some(m) = svc.db.get_mailing(id).await? else {
        return Ok(());
    };
    if m.content.follow_up.is_some() {
        // A fix or a delete posts nothing new: the post's own audit told its delivery.
        return Ok(());
    }
    let Some(user) = svc.db.get_user(m.user_id).await? else {
        return Ok(());
    };
    let Some(creds) = svc.creds_of(&user) else {
        return Ok(());
    };
    let rows = svc.db.deliveries(id).await?;
    let mut seen = Seen::default();
    for outcome in group_outcomes(&rows) {
        let row = outcome.row;
        let Some(message_id) = row
            .message_id
            .as_deref()
            .filter(|_| outcome.state == DeliveryState::Sent)
        else {
            continue;
        };
        let status = match read_status(svc, &creds, &row.group, message_id).await {
            Ok(status) => status.unwrap_or_else(|| "undelivered".to_string()),
            Err(e) => {
                tracing::info!(mailing = id.0, group = row.group.as_str(), error = %e, "audit: history not read");
                seen.unknown += 1;
                continue;
            }
        };
        let delivered = match status.as_str() {
            "delivered" => {
                seen.delivered += 1;
                true
            }
            "read" => {
                seen.read += 1;
                true
            }
            "pending" | "sent" | "" => {
                seen.pending += 1;
                false
            }
            _ => {
                seen.undelivered.push(row.group.clone());
                false
            }
        };
        svc.db
            .record_group_delivery(m.user_id, &row.group, &status, delivered, svc.now_ms())
            .await?;
        // This mailing's own record of it (the CSV of `/history`).
        svc.db.record_post_status(id, &row.group, &status).await?;
    }
    tracing::info!(
        event = "delivery_audit",
        mailing = id.0,
        delivered = seen.delivered,
        read = seen.read,
        pending = seen.pending,
        undelivered = seen.undelivered.len(),
        "delivery audited"
    );
    let labels = super::report::group_labels(
        svc,
        m.user_id,
        seen.undelivered.iter().map(GroupJid::as_str),
    )
    .await;
    let text = texts::audit(user.lang, id.0, &seen.counts(), &labels);
    if let Err(e) = svc.telegram.send_message(m.chat_id, &text, None).await {
        tracing::warn!(mailing = id.0, error = %e, "delivery audit not told");
    }
    Ok(())
}

/// Our message's `delivery_status` as the group's newest history shows it (trimmed, lower
/// case; possibly empty), or `None` when the history does not show the message. What the
/// canary and the audit both read.
pub(super) async fn read_status(
    svc: &Ports,
    creds: &WappiCreds,
    group: &GroupJid,
    message_id: &str,
) -> Result<Option<String>, WappiError> {
    let page = svc.wappi.chat_messages(creds, group, HISTORY, 0).await?;
    Ok(page
        .messages
        .iter()
        .find(|msg| msg.id == message_id)
        .map(|msg| msg.delivery_status.trim().to_lowercase()))
}

impl Seen {
    /// (delivered, read, pending, not delivered, not read back).
    pub fn counts(&self) -> [u32; 5] {
        [
            self.delivered,
            self.read,
            self.pending,
            self.undelivered.len() as u32,
            self.unknown,
        ]
    }
}
