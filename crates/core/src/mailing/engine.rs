//! The mailing engine: one [`step`] at a time over the ledger. A step sends at most one
//! message (or settles one `in_doubt` row) and says when the next step is due. The server
//! drives it from a tokio task per profile; the Worker from a Durable Object alarm. Nothing here
//! sleeps or spawns, so the same code runs on both and under a fake clock.
//!
//! Exactly-once per group rests on three rules: a row is written `sending` (durably, fenced)
//! before the Wappi call; a row found `sending` at the next step is a crash leftover and becomes
//! `in_doubt`; an `in_doubt` row is resent only after the group's recent history shows our
//! text is not there.

use super::outcome::{self, Event};
use super::report::{finish, pause, progress};
use super::settle;
use crate::model::ids::MailingId;
use crate::model::ledger::{part_order, Delivery, DeliveryState, MailingStatus};
use crate::ports::ImageId;
use crate::ports::{DbError, Lease, Pace};
use crate::services::Services;
use crate::texts;
use crate::wappi::WappiError;
use std::collections::HashMap;
use std::sync::Arc;

// The paths drivers and the bot use today.
pub use super::report::{cancel_keyboard, report_text};
pub use super::{Cursor, EngineError, Step, ARM_LEAD_MS, PRE_PACE_MS, UNSETTLED, VOUCH_MS};

/// Runs one step of a mailing for the holder of `lease`. `cursor` belongs to this holder:
/// start each drive (each lease) with a fresh one.
pub async fn step(
    svc: &Services,
    id: MailingId,
    lease: &Lease,
    cursor: &mut Cursor,
) -> Result<Step, EngineError> {
    match run_step(svc, id, lease, cursor).await {
        Err(EngineError::Db(DbError::StaleFence)) => Ok(Step::LostLease),
        other => other,
    }
}

async fn run_step(
    svc: &Services,
    id: MailingId,
    lease: &Lease,
    cursor: &mut Cursor,
) -> Result<Step, EngineError> {
    let cfg = &svc.settings.engine;
    // An armed row goes out at its slot without a database read first (the mailing is
    // remembered; its cancel flag is also in the state backend, checked below); otherwise the
    // mailing is read afresh.
    let m = match (&cursor.mailing, cursor.armed) {
        (Some(m), Some(_)) => m.clone(),
        _ => {
            let Some(m) = svc.db.get_mailing(id).await? else {
                return Ok(Step::Finished);
            };
            cursor.mailing = Some(m.clone());
            m
        }
    };
    if m.status != MailingStatus::Running {
        return Ok(Step::Finished);
    }
    if m.fence != lease.fence {
        return Ok(Step::LostLease);
    }
    let fence = lease.fence;
    let now = svc.now_ms();
    let first_step = cursor.rows.is_none();
    if first_step {
        let mut rows = svc.db.deliveries(id).await?;
        // Crash leftovers: a `sending` row may or may not have reached WhatsApp.
        for row in rows
            .iter_mut()
            .filter(|r| r.state == DeliveryState::Sending)
        {
            outcome::apply(row, Event::Interrupted, cfg, now);
            svc.db.update_delivery(row, fence).await?;
        }
        // Sending order: groups by position, and within a group its parts in order (images,
        // then the text), so a group's rows are contiguous.
        rows.sort_by_key(|r| (r.position, part_order(r.part)));
        cursor.rows = Some(rows);
    }
    if cursor.account.is_none() {
        let user = svc.db.get_user(m.user_id).await?;
        let lang = user.as_ref().map(|u| u.lang).unwrap_or_default();
        cursor.account = Some((user.as_ref().and_then(|u| svc.creds_of(u)), lang));
    }
    let (creds, lang) = cursor.account.clone().expect("loaded above");
    let rows = cursor.rows.as_mut().expect("loaded above");

    let vouched = cursor.vouched_at.is_some_and(|t| now - t <= VOUCH_MS) && cursor.armed.is_some();
    if m.cancel_requested || (!vouched && svc.state.is_cancelled(id).await?) {
        disarm(svc, rows, &mut cursor.armed, fence).await?;
        return finish(svc, &m, rows, lang, fence, MailingStatus::Cancelled).await;
    }
    let Some(creds) = creds else {
        disarm(svc, rows, &mut cursor.armed, fence).await?;
        let reason = texts::account_problem(lang, &WappiError::BadToken);
        return pause(svc, &m, lang, fence, &reason).await;
    };

    // Settle one due `in_doubt` row before any new send.
    if cursor.armed.is_none() {
        if let Some(step) = settle::settle_due(svc, &m, &creds, rows, fence, now).await? {
            progress(svc, &m, rows, lang, now).await?;
            return Ok(step);
        }
    }

    let due = cursor.armed.or_else(|| next_due(rows, now));
    let Some(i) = due else {
        // A later part waits for its group's earlier one: only each group's next row counts.
        let next = group_heads(rows)
            .map(|i| &rows[i])
            .filter(|r| r.state != DeliveryState::Sending)
            .map(|r| r.next_attempt_at)
            .min();
        return match next {
            Some(t) => {
                progress(svc, &m, rows, lang, now).await?;
                Ok(Step::SleepUntil(t))
            }
            None => finish(svc, &m, rows, lang, fence, MailingStatus::Done).await,
        };
    };

    // An image part's base64 is made before the slot (once per image per drive).
    let image = match m.content.part(rows[i].part).and_then(|p| p.image) {
        Some(id) => match load_image(svc, &mut cursor.images, id).await? {
            Some(b64) => Some(b64),
            None => {
                let row = &mut rows[i];
                outcome::apply(row, Event::ImageGone, cfg, now);
                svc.db.update_delivery(row, fence).await?;
                cursor.armed = None;
                return Ok(Step::Continue);
            }
        },
        None => None,
    };

    // Wait for the slot; mark the row `sending` shortly before it opens, so the durable write
    // is off the critical path.
    let pacing = &svc.settings.pacing;
    let peek = match cursor.slot {
        Some(_) => Pace::Go, // the slot is ours already
        None => {
            svc.state
                .pace_peek(&m.profile_id, &rows[i].group, pacing, now)
                .await?
        }
    };
    // The slot the pacer will give, as far as can be told without taking it.
    let mut opens_at = now;
    if let Pace::WaitUntil(t) = peek {
        if t - now > ARM_LEAD_MS {
            // A long wait (a Retry-After pause): keep `sending` meaning "about to be sent".
            disarm(svc, rows, &mut cursor.armed, fence).await?;
            progress(svc, &m, rows, lang, now).await?;
            return Ok(Step::SleepUntil(t - ARM_LEAD_MS));
        }
        if cursor.armed.is_none() {
            arm(svc, &mut rows[i], fence, now).await?;
            cursor.armed = Some(i);
        }
        if t - now > PRE_PACE_MS {
            return Ok(Step::SleepUntil(t - PRE_PACE_MS));
        }
        opens_at = t;
    }
    if cursor.armed.is_none() {
        arm(svc, &mut rows[i], fence, now).await?;
        cursor.armed = Some(i);
    }
    // Still the holder? A runner paused past its lease (SIGSTOP, swap) must not send: the
    // armed row stays `sending` and the new holder settles it.
    if !vouched
        && !svc
            .state
            .renew_lease(lease, cfg.lease_ttl_ms, svc.now_ms())
            .await?
    {
        return Ok(Step::LostLease);
    }
    // Take the pacing slot a moment ahead ([`PRE_PACE_MS`]), so the state round trip is not
    // between the slot and the call; and never start a call closer than the interval to this
    // driver's previous call (the slot is stamped when taken, a call may leave a little late),
    // so the gap WhatsApp sees is never short.
    let slot = match cursor.slot {
        Some(slot) => slot,
        None => {
            let now = svc.now_ms();
            let earliest = cursor.last_call_at.map_or(now, |t| t + min_gap_ms(pacing));
            let at = opens_at.max(earliest).max(now);
            if at - now > PRE_PACE_MS {
                return Ok(Step::SleepUntil(at - PRE_PACE_MS)); // stays armed
            }
            match svc
                .state
                .pace(&m.profile_id, &rows[i].group, pacing, at)
                .await?
            {
                Pace::Go => at,
                Pace::WaitUntil(t) => {
                    return Ok(Step::SleepUntil((t - PRE_PACE_MS).max(now))); // stays armed
                }
            }
        }
    };
    if svc.now_ms() < slot {
        cursor.slot = Some(slot);
        return Ok(Step::SleepUntil(slot)); // stays armed, slot held
    }
    cursor.slot = None;
    cursor.armed = None;
    cursor.vouched_at = None;
    cursor.last_call_at = Some(svc.now_ms());

    let row = &mut rows[i];
    let text = m.content.part(row.part).and_then(|p| p.text);
    let result = match &image {
        Some(b64) => svc.wappi.send_image(&creds, &row.group, b64, text).await,
        None => {
            svc.wappi
                .send_text(&creds, &row.group, text.unwrap_or(&m.content.text))
                .await
        }
    };
    let now = svc.now_ms();
    let attempt = row.attempts;
    let change = match &result {
        Ok(sent) => outcome::apply(row, Event::Sent(sent.message_id.as_deref()), cfg, now),
        Err(e) => outcome::apply(row, Event::SendFailed(e), cfg, now),
    };
    match &result {
        Ok(_) => {
            tracing::info!(event = "send", outcome = change.label, mailing = m.id.0, group = %row.group, part = row.part, attempt, "sent")
        }
        Err(e) => {
            tracing::info!(event = "send", outcome = change.label, mailing = m.id.0, group = %row.group, part = row.part, attempt, error = %e, "send failed")
        }
    }
    if let Some(until) = change.backoff_until {
        svc.state.set_backoff(&m.profile_id, until).await?;
    }
    if let (true, Err(e)) = (change.pause_mailing, &result) {
        svc.db.update_delivery(row, fence).await?;
        let reason = texts::account_problem(lang, e);
        return pause(svc, &m, lang, fence, &reason).await;
    }
    svc.db.update_delivery(row, fence).await?;
    progress(svc, &m, rows, lang, now).await?;
    Ok(Step::Continue)
}

/// The profile's emission interval in whole ms, rounded down (so it never adds to the pacing
/// itself): the least time between two calls of one driver.
fn min_gap_ms(pacing: &crate::ports::PacingConfig) -> i64 {
    let rate = pacing.profile_rate_per_sec;
    if rate.is_finite() && rate > 0.0 {
        (1000.0 / rate).floor() as i64
    } else {
        0
    }
}

/// The next row to send: the first pending, due row in sending order whose group has no
/// earlier part still unfinished (pending, sending, or in doubt and not yet given up on), so
/// a group's parts always go out in order. `rows` are in sending order.
fn next_due(rows: &[Delivery], now: i64) -> Option<usize> {
    group_heads(rows)
        .find(|&i| rows[i].state == DeliveryState::Pending && rows[i].next_attempt_at <= now)
}

/// The next unfinished row of each group (pending, sending, or in doubt and not yet given up
/// on), in sending order; `rows` are in sending order, each group's rows together.
fn group_heads(rows: &[Delivery]) -> impl Iterator<Item = usize> + '_ {
    let unfinished = |r: &Delivery| match r.state {
        DeliveryState::Pending | DeliveryState::Sending => true,
        DeliveryState::InDoubt => r.next_attempt_at != UNSETTLED,
        DeliveryState::Sent | DeliveryState::Failed => false,
    };
    let mut last_group: Option<&crate::model::ids::GroupJid> = None;
    rows.iter().enumerate().filter_map(move |(i, r)| {
        if last_group == Some(&r.group) || !unfinished(r) {
            return None;
        }
        last_group = Some(&r.group);
        Some(i)
    })
}

/// The base64 of a stored image, from the cursor's cache or read and encoded once.
async fn load_image(
    svc: &Services,
    cache: &mut HashMap<ImageId, Option<Arc<str>>>,
    id: ImageId,
) -> Result<Option<Arc<str>>, EngineError> {
    if let Some(b64) = cache.get(&id) {
        return Ok(b64.clone());
    }
    use base64::Engine as _;
    let b64 = svc
        .db
        .get_image(id)
        .await?
        .map(|img| Arc::from(base64::engine::general_purpose::STANDARD.encode(&img.jpeg)));
    cache.insert(id, b64.clone());
    Ok(b64)
}

/// Records the intent to send a row, durably (fenced), before its slot.
async fn arm(svc: &Services, row: &mut Delivery, fence: u64, now: i64) -> Result<(), EngineError> {
    outcome::apply(row, Event::Armed, &svc.settings.engine, now);
    svc.db.update_delivery(row, fence).await?;
    Ok(())
}

/// Puts an armed row that was not sent back to `pending`.
async fn disarm(
    svc: &Services,
    rows: &mut [Delivery],
    armed: &mut Option<usize>,
    fence: u64,
) -> Result<(), EngineError> {
    if let Some(i) = armed.take() {
        let row = &mut rows[i];
        outcome::apply(row, Event::Disarmed, &svc.settings.engine, svc.now_ms());
        svc.db.update_delivery(row, fence).await?;
    }
    Ok(())
}
