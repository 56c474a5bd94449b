//! Reconciliation of `in_doubt` rows through the group's recent Wappi history: our part there,
//! sent by us after the mailing began, means the send went through; its absence means it did
//! not, and the row is sent again.

use super::outcome::{self, Event};
use super::{EngineError, Step};
use crate::model::ledger::{Delivery, DeliveryState, Mailing};
use crate::services::EngineServices;
use crate::wappi::{ChatMessage, WappiCreds};

/// Settles the first due `in_doubt` row (before any new send). `None`: no row is due; else how
/// the step ends: `Continue` once the row is settled, or a sleep while the profile's
/// Retry-After pause lasts (reading the chat is a call from the profile too).
pub(super) async fn settle_due(
    svc: &EngineServices,
    m: &Mailing,
    creds: &WappiCreds,
    rows: &mut [Delivery],
    fence: u64,
    now: i64,
) -> Result<Option<Step>, EngineError> {
    let Some(i) = rows
        .iter()
        .position(|r| r.state == DeliveryState::InDoubt && r.next_attempt_at <= now)
    else {
        return Ok(None);
    };
    if let Some(t) = svc.pacer.backoff_until(&m.profile_id).await? {
        if t > now {
            return Ok(Some(Step::SleepUntil(t)));
        }
    }
    let earlier_images = earlier_image_parts_sent(rows, i);
    settle(svc, m, creds, &mut rows[i], earlier_images, fence, now).await?;
    Ok(Some(Step::Continue))
}

/// How many image parts before row `i` of the same group are sent (rows in sending order).
fn earlier_image_parts_sent(rows: &[Delivery], i: usize) -> usize {
    rows[..i]
        .iter()
        .filter(|r| r.group == rows[i].group && r.part != 0 && r.state == DeliveryState::Sent)
        .count()
}

/// Reads the group's recent history and records what it shows (see [`ours`]); a history that
/// cannot be read leaves the row `in_doubt` for a later try.
async fn settle(
    svc: &EngineServices,
    m: &Mailing,
    creds: &WappiCreds,
    row: &mut Delivery,
    earlier_images: usize,
    fence: u64,
    now: i64,
) -> Result<(), EngineError> {
    let cfg = &svc.settings.engine;
    let history = svc
        .wappi
        .chat_messages(creds, &row.group, cfg.settle_lookback)
        .await;
    let change = match history {
        Ok(messages) => match ours(&messages, m, row.part, earlier_images) {
            Some(msg) => outcome::apply(row, Event::Found(&msg.id), cfg, now),
            None => outcome::apply(row, Event::Absent, cfg, now),
        },
        Err(e) => outcome::apply(row, Event::Unverified(&e), cfg, now),
    };
    if let Some(until) = change.backoff_until {
        svc.pacer.set_backoff(&m.profile_id, until).await?;
    }
    let outcome = change.label;
    tracing::info!(event = "settle", outcome, mailing = m.id.0, group = %row.group, part = row.part, "in-doubt send checked");
    svc.db.update_delivery(row, fence).await?;
    Ok(())
}

/// Our part in the group's recent history, if it is there.
///
/// What is matched: for the text part (0) a message whose body or caption is our text (a
/// text message, or the captioned collage); for an uncaptioned image part, the number of our
/// image messages since the mailing began: more than `earlier_images` (this group's image
/// parts already recorded as sent) means this one arrived too.
fn ours<'h>(
    messages: &'h [ChatMessage],
    m: &Mailing,
    part: u32,
    earlier_images: usize,
) -> Option<&'h ChatMessage> {
    let since_start = |msg: &&ChatMessage| msg.from_me && msg.time * 1000 >= m.created_at - 60_000;
    if part == 0 {
        messages.iter().filter(since_start).find(|msg| {
            msg.body.trim() == m.content.text.trim() || msg.caption.trim() == m.content.text.trim()
        })
    } else {
        messages
            .iter()
            .filter(since_start)
            .filter(|msg| msg.kind == "image" && msg.caption.trim().is_empty())
            .collect::<Vec<_>>()
            .into_iter()
            .rev() // oldest first
            .nth(earlier_images)
    }
}
