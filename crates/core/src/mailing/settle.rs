//! Reconciliation of `in_doubt` rows through the group's Wappi history: our part there, sent by
//! us since the row's first attempt, means the send went through; its absence from a history
//! read back to before that attempt means it did not, and the row is sent again. A history that
//! cannot be read that far back (a paging limit, an API that does not page) proves nothing: the
//! row stays in doubt and is reported, never resent on a partial look.

use super::history::{read_back, CLOCK_SKEW_MS};
use super::outcome::{self, Event};
use super::{EngineError, Step};
use crate::model::ids::GroupJid;
use crate::model::ledger::{Delivery, DeliveryState, Mailing};
use crate::services::EngineServices;
use crate::wappi::{ChatMessage, WappiCreds};

/// The messages a follow-up acts on (see `model::followup::targets`).
pub(super) type Targets =
    std::collections::HashMap<(GroupJid, u32), crate::model::followup::Target>;

/// Settles the first due `in_doubt` row (before any new send). `None`: no row is due; else how
/// the step ends: `Continue` once the row is settled, or a sleep while the profile's
/// Retry-After pause lasts (reading the chat is a call from the profile too). A follow-up's
/// row is settled by its own rule (`followup::settle`), from the messages it acts on.
pub(super) async fn settle_due(
    svc: &EngineServices,
    m: &Mailing,
    creds: &WappiCreds,
    rows: &mut [Delivery],
    targets: Option<&Targets>,
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
    match m.content.follow_up {
        Some(f) => {
            let row = &mut rows[i];
            let target = targets.and_then(|t| t.get(&(row.group.clone(), row.part)));
            super::followup::settle(svc, m, f, creds, row, target, fence, now).await?
        }
        None => settle(svc, m, creds, rows, i, fence, now).await?,
    }
    Ok(Some(Step::Continue))
}

/// How many image parts before row `i` of the same group are sent (rows in sending order).
fn earlier_image_parts_sent(rows: &[Delivery], i: usize) -> usize {
    rows[..i]
        .iter()
        .filter(|r| r.group == rows[i].group && r.part != 0 && r.state == DeliveryState::Sent)
        .count()
}

/// Unix ms from which a message may be one of this group's parts: the first attempt of the
/// group's earliest part (the mailing's start for rows from before attempts were timed), less
/// the clock skew.
fn since_ms(m: &Mailing, rows: &[Delivery], i: usize) -> i64 {
    rows.iter()
        .filter(|r| r.group == rows[i].group && r.first_attempt_at > 0)
        .map(|r| r.first_attempt_at)
        .min()
        .unwrap_or(m.created_at)
        - CLOCK_SKEW_MS
}

/// Reads row `i`'s group history back far enough and records what it shows (see [`ours`]); a
/// history that cannot be read leaves the row `in_doubt` for a later try.
async fn settle(
    svc: &EngineServices,
    m: &Mailing,
    creds: &WappiCreds,
    rows: &mut [Delivery],
    i: usize,
    fence: u64,
    now: i64,
) -> Result<(), EngineError> {
    let cfg = &svc.settings.engine;
    let earlier_images = earlier_image_parts_sent(rows, i);
    let since = since_ms(m, rows, i);
    let history = read_back(svc, creds, &rows[i].group, since).await;
    let row = &mut rows[i];
    let found = |msgs: &[ChatMessage]| {
        ours(msgs, m, row.part, earlier_images, since).map(|msg| msg.id.clone())
    };
    let change = match &history {
        Ok(h) => match (found(&h.messages), &h.partial) {
            (Some(id), _) => outcome::apply(row, Event::Found(&id), cfg, now),
            (None, None) => outcome::apply(row, Event::Absent, cfg, now),
            (None, Some(why)) => outcome::apply(row, Event::Uncovered(why), cfg, now),
        },
        Err(e) => outcome::apply(row, Event::Unverified(e), cfg, now),
    };
    if let Some(until) = change.backoff_until {
        svc.pacer.set_backoff(&m.profile_id, until).await?;
    }
    let outcome = change.label;
    let pages = history.as_ref().map_or(0, |h| h.pages);
    tracing::info!(event = "settle", outcome, mailing = m.id.0, group = %row.group, part = row.part, pages, "in-doubt send checked");
    svc.db.update_delivery(row, fence).await?;
    Ok(())
}

/// Our part in what was read of the group's history (newest first), if it is there.
///
/// What is matched, among our messages since `since` (unix ms): for the text part (0) a message
/// whose body or caption is our text (a text message, or the captioned collage); for an
/// uncaptioned image part, the number of our image messages: more than `earlier_images` (this
/// group's image parts already recorded as sent) means this one arrived too.
fn ours<'h>(
    messages: &'h [ChatMessage],
    m: &Mailing,
    part: u32,
    earlier_images: usize,
    since: i64,
) -> Option<&'h ChatMessage> {
    // A message without a readable time (0) cannot be told from an older post: not ours.
    let mine = |msg: &&ChatMessage| msg.from_me && msg.time.saturating_mul(1000) >= since;
    if part == 0 {
        messages.iter().filter(mine).find(|msg| {
            msg.body.trim() == m.content.text.trim() || msg.caption.trim() == m.content.text.trim()
        })
    } else {
        messages
            .iter()
            .filter(mine)
            .filter(|msg| msg.kind == "image" && msg.caption.trim().is_empty())
            .collect::<Vec<_>>()
            .into_iter()
            .rev() // oldest first
            .nth(earlier_images)
    }
}
