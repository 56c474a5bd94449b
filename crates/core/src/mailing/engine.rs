//! The step itself, in order: load (the mailing, once per drive the ledger and the account),
//! the guards (cancel, account, lease), settle one `in_doubt` row, pick the next due row, take
//! its pacing slot, send, record. The rules the order keeps are in the module above.

use super::breaker;
use super::canary;
use super::followup;
use super::outcome::{self, Event};
use super::report::{finish, pause, progress, show_progress, wait_for_start};
use super::settle;
use super::slot::{self, Slot};
use crate::model::ids::ImageId;
use crate::model::ids::MailingId;
use crate::model::ledger::{
    part_order, Delivery, DeliveryState, Mailing, MailingStatus, SendOutcome,
};
use crate::ports::{DbError, Lease};
use crate::services::EngineServices;
use crate::texts::{self};
use crate::wappi::{Sent, WappiCreds, WappiError};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

// The paths drivers and the bot use today.
use super::{
    AccountPace, Cursor, EngineError, Look, Step, ANNOUNCE_POLL_MS, ARM_LEAD_MS, VOUCH_MS,
};

/// Runs one step of a mailing for the holder of `lease`. `cursor` belongs to this holder:
/// start each drive (each lease) with a fresh one.
pub async fn step(
    svc: &EngineServices,
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
    svc: &EngineServices,
    id: MailingId,
    lease: &Lease,
    cursor: &mut Cursor,
) -> Result<Step, EngineError> {
    let Some(m) = mailing(svc, id, cursor).await? else {
        return Ok(Step::Finished);
    };
    if m.status != MailingStatus::Running {
        return Ok(Step::Finished);
    }
    if m.fence != lease.fence {
        return Ok(Step::LostLease);
    }
    let fence = lease.fence;
    let now = svc.now_ms();
    load(svc, &m, cursor, fence, now).await?;
    let vouched = cursor.vouched_at.is_some_and(|t| now - t <= VOUCH_MS) && cursor.armed.is_some();
    let creds = match guards(svc, &m, cursor, fence, vouched).await? {
        ControlFlow::Continue(creds) => creds,
        ControlFlow::Break(step) => return Ok(step),
    };
    if let Some(reason) = cursor.owed_pause.take() {
        return pause_after_start(svc, &m, cursor, fence, reason).await;
    }
    if cursor.armed.is_none() {
        let look = cursor.look();
        let rows = cursor
            .rows
            .as_deref_mut()
            .expect("the ledger is loaded first");
        let targets = cursor.targets.as_ref();
        if let Some(step) = settle::settle_due(svc, &m, &creds, rows, targets, fence, now).await? {
            progress(svc, &m, rows, look, now).await?;
            return Ok(step);
        }
    }
    let Some(i) = cursor.armed.or_else(|| slot::next_due(cursor.rows(), now)) else {
        return idle(svc, &m, cursor.rows(), cursor.look(), fence, now).await;
    };
    if cursor.armed.is_none() {
        if let Some(step) = canary::gate(svc, &m, &creds, cursor, i, fence, now).await? {
            return Ok(step);
        }
        if let Some(step) = hold_for_pace(svc, &m, cursor, i, now).await? {
            return Ok(step);
        }
    }
    let image = match image_of(svc, &m, cursor, i, fence, now).await? {
        ControlFlow::Continue(image) => image,
        ControlFlow::Break(step) => return Ok(step),
    };
    let target = match followup::target_of(svc, &m, cursor, i, fence, now).await? {
        ControlFlow::Continue(target) => target,
        ControlFlow::Break(step) => return Ok(step),
    };
    let planned = match slot::wait_and_take(svc, &m, lease, cursor, i, now, vouched).await? {
        Slot::Open(planned) => planned,
        Slot::Paused(t) => {
            progress(svc, &m, cursor.rows(), cursor.look(), now).await?;
            return Ok(Step::SleepUntil(t));
        }
        Slot::Wait(step) => return Ok(step),
    };
    let row = &cursor.rows()[i];
    let result = match (m.content.follow_up, &target) {
        (Some(f), Some(target)) => followup::call(svc, &creds, &m, f, row, target).await,
        _ => send(svc, &m, &creds, row, image.as_deref()).await,
    };
    let look = cursor.look();
    let sent = Sending {
        result,
        planned,
        look,
    };
    let step = record(svc, &m, cursor, i, sent, fence).await?;
    if step != Step::Continue {
        return Ok(step);
    }
    if let Some(reason) = breaker::signal(svc, &creds, cursor, i, look.lang).await? {
        tracing::warn!(
            event = "breaker",
            mailing = m.id.0,
            reason,
            "a ban signal paused the mailing"
        );
        return pause_after_start(svc, &m, cursor, fence, reason).await;
    }
    Ok(step)
}

/// Pauses the mailing, unless its start message is still on its way: then the pause is owed
/// and made by the next step before anything else, so its notice never overtakes the start
/// message (see [`Mailing::announcing`]). The notice is in the user's language.
async fn pause_after_start(
    svc: &EngineServices,
    m: &Mailing,
    cursor: &mut Cursor,
    fence: u64,
    reason: String,
) -> Result<Step, EngineError> {
    if let Some(step) = wait_for_start(m, svc.now_ms()) {
        cursor.owed_pause = Some(reason);
        return Ok(step);
    }
    pause(svc, m, cursor.look().lang, fence, &reason).await
}

/// Holds row `i` back while the account's pace says its post may not go yet (the gap after
/// the last post, a batch pause, the window, a cap): the step ends with a sleep until then,
/// after showing the hold when it is more than the ordinary gap.
async fn hold_for_pace(
    svc: &EngineServices,
    m: &Mailing,
    cursor: &mut Cursor,
    i: usize,
    now: i64,
) -> Result<Option<Step>, EngineError> {
    let Some(forecast) = slot::planned(svc, m, cursor, i, now).await? else {
        cursor.aim = None;
        return Ok(None);
    };
    cursor.aim = Some(forecast.next.at);
    let newly_shown =
        forecast.next.hold.is_shown() && cursor.forecast.is_none_or(|f| f.next != forecast.next);
    if newly_shown && forecast.next.at - now > ARM_LEAD_MS && m.announcing(now) {
        // The hold is shown in the start message once that is there: look again soon.
        let again = (now + ANNOUNCE_POLL_MS).min(forecast.next.at - ARM_LEAD_MS);
        return Ok(Some(Step::SleepUntil(again)));
    }
    cursor.forecast = Some(forecast);
    // The last moments before the post are the slot's: it arms the row ahead of the time.
    if forecast.next.at - now <= ARM_LEAD_MS {
        return Ok(None);
    }
    if newly_shown {
        tracing::info!(
            event = "mailing_held",
            mailing = m.id.0,
            hold = ?forecast.next.hold,
            until = forecast.next.at,
            "mailing held by its pace"
        );
    }
    show_progress(svc, m, cursor.rows(), cursor.look(), now, newly_shown).await?;
    Ok(Some(Step::SleepUntil(forecast.next.at - ARM_LEAD_MS)))
}

/// The mailing: as remembered while a row is armed (it goes out at its slot without reading
/// the whole mailing first) but with its cancel flag read afresh, the one column, so a cancel
/// written only to the database still stops the armed row; otherwise read afresh. Once the
/// row's slot is held the flag was read by the step that took it, [`PRE_PACE_MS`] before the
/// call, and is not read again between the slot and the call.
async fn mailing(
    svc: &EngineServices,
    id: MailingId,
    cursor: &mut Cursor,
) -> Result<Option<Mailing>, EngineError> {
    if let (Some(m), Some(_)) = (&cursor.mailing, cursor.armed) {
        let mut m = m.clone();
        if cursor.slot.is_none() {
            m.cancel_requested = svc.db.cancel_requested(id).await?;
            cursor.mailing = Some(m.clone());
        }
        return Ok(Some(m));
    }
    let m = svc.db.get_mailing(id).await?;
    if let Some(m) = &m {
        cursor.mailing = Some(m.clone());
    }
    Ok(m)
}

/// Ends the step of a cancelled mailing, or pauses one whose account has no credentials
/// (an armed row goes back to `pending` first); else the credentials to send with.
async fn guards(
    svc: &EngineServices,
    m: &Mailing,
    cursor: &mut Cursor,
    fence: u64,
    vouched: bool,
) -> Result<ControlFlow<Step, WappiCreds>, EngineError> {
    let (creds, lang) = cursor.account.clone().expect("loaded first");
    if m.cancel_requested || (!vouched && svc.cancels.is_cancelled(m.id).await?) {
        slot::disarm(svc, cursor, fence).await?;
        let step = finish(svc, m, cursor.rows(), lang, fence, MailingStatus::Cancelled).await?;
        return Ok(ControlFlow::Break(step));
    }
    let Some(creds) = creds else {
        slot::disarm(svc, cursor, fence).await?;
        let reason = texts::account_problem(lang, &WappiError::BadToken);
        return Ok(ControlFlow::Break(
            pause_after_start(svc, m, cursor, fence, reason).await?,
        ));
    };
    Ok(ControlFlow::Continue(creds))
}

/// What a drive reads once: the ledger and the user's credentials and language.
async fn load(
    svc: &EngineServices,
    m: &Mailing,
    cursor: &mut Cursor,
    fence: u64,
    now: i64,
) -> Result<(), EngineError> {
    if cursor.rows.is_none() {
        cursor.rows = Some(ledger(svc, m.id, fence, now).await?);
    }
    followup::load_targets(svc, m, cursor).await?;
    if cursor.account.is_none() {
        let user = svc.db.get_user(m.user_id).await?;
        let lang = user.as_ref().map(|u| u.lang).unwrap_or_default();
        cursor.account = Some((user.as_ref().and_then(|u| svc.creds_of(u)), lang));
        let s = &svc.settings;
        cursor.pace = Some(match &user {
            Some(u) => AccountPace {
                pace: u.pace(s.default_pace),
                tz: u.zone(s.default_tz),
                number_since: u.number_since,
            },
            None => AccountPace {
                pace: s.default_pace.settings(),
                tz: s.default_tz,
                number_since: None,
            },
        });
    }
    Ok(())
}

/// The ledger in sending order, crash leftovers recorded as such.
async fn ledger(
    svc: &EngineServices,
    id: MailingId,
    fence: u64,
    now: i64,
) -> Result<Vec<Delivery>, EngineError> {
    let mut rows = svc.db.deliveries(id).await?;
    // Crash leftovers: a `sending` row may or may not have reached WhatsApp.
    for row in rows
        .iter_mut()
        .filter(|r| r.state == DeliveryState::Sending)
    {
        outcome::apply(row, Event::Interrupted, &svc.settings.engine, now);
        svc.db.update_delivery(row, fence).await?;
    }
    // Sending order: groups by position, and within a group its parts in order (images,
    // then the text), so a group's rows are contiguous.
    rows.sort_by_key(|r| (r.position, part_order(r.part)));
    Ok(rows)
}

/// Nothing is due now: sleep until a row is, or finish the mailing when none is left.
async fn idle(
    svc: &EngineServices,
    m: &Mailing,
    rows: &[Delivery],
    look: Look,
    fence: u64,
    now: i64,
) -> Result<Step, EngineError> {
    match slot::next_wake(rows) {
        Some(t) => {
            progress(svc, m, rows, look, now).await?;
            Ok(Step::SleepUntil(t))
        }
        None => finish(svc, m, rows, look.lang, fence, MailingStatus::Done).await,
    }
}

/// The base64 of row `i`'s image (`None` for a text part), made before the slot, once per
/// image per drive. An image no longer stored fails the row and ends the step.
async fn image_of(
    svc: &EngineServices,
    m: &Mailing,
    cursor: &mut Cursor,
    i: usize,
    fence: u64,
    now: i64,
) -> Result<ControlFlow<Step, Option<Arc<str>>>, EngineError> {
    let Some(id) = m.content.part(cursor.rows()[i].part).and_then(|p| p.image) else {
        return Ok(ControlFlow::Continue(None));
    };
    if let Some(b64) = load_image(svc, &mut cursor.images, id).await? {
        return Ok(ControlFlow::Continue(Some(b64)));
    }
    let row = &mut cursor.rows_mut()[i];
    outcome::apply(row, Event::ImageGone, &svc.settings.engine, now);
    svc.db.update_delivery(row, fence).await?;
    cursor.armed = None;
    Ok(ControlFlow::Break(Step::Continue))
}

/// The base64 of a stored image, from the cursor's cache or read and encoded once.
async fn load_image(
    svc: &EngineServices,
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

/// Sends a row's part: its image (with the part's caption, if any) or its text.
async fn send(
    svc: &EngineServices,
    m: &Mailing,
    creds: &WappiCreds,
    row: &Delivery,
    image: Option<&str>,
) -> Result<Sent, WappiError> {
    let text = m.content.part(row.part).and_then(|p| p.text);
    match image {
        Some(b64) => svc.wappi.send_image(creds, &row.group, b64, text).await,
        None => {
            svc.wappi
                .send_text(creds, &row.group, text.unwrap_or(&m.content.text))
                .await
        }
    }
}

/// A call just made: its result, the time it was planned for, and how the user sees the
/// mailing.
struct Sending {
    result: Result<Sent, WappiError>,
    planned: i64,
    look: Look,
}

/// Records a send's result on row `i` (and pauses the profile or the mailing if it says so).
async fn record(
    svc: &EngineServices,
    m: &Mailing,
    cursor: &mut Cursor,
    i: usize,
    sent: Sending,
    fence: u64,
) -> Result<Step, EngineError> {
    let Sending {
        result,
        planned,
        look,
    } = sent;
    let lang = look.lang;
    let cfg = &svc.settings.engine;
    let now = svc.now_ms();
    let called_at = cursor.last_call_at;
    let row = &mut cursor.rows_mut()[i];
    let attempt = row.attempts;
    let change = match &result {
        Ok(sent) => outcome::apply(row, Event::Sent(sent.message_id.as_deref()), cfg, now),
        Err(e) => outcome::apply(row, Event::SendFailed(e), cfg, now),
    };
    let outcome = change.label;
    if let (Some(figures), Some(counted)) = (&svc.figures, send_outcome(outcome)) {
        figures.send(counted);
    }
    match &result {
        Ok(_) => {
            tracing::info!(event = "send", outcome, mailing = m.id.0, group = %row.group, part = row.part, attempt, planned_at = planned, called_at, "sent")
        }
        Err(e) => {
            tracing::info!(event = "send", outcome, mailing = m.id.0, group = %row.group, part = row.part, attempt, planned_at = planned, called_at, error = %e, "send failed")
        }
    }
    if let Some(until) = change.backoff_until {
        svc.pacer.set_backoff(&m.profile_id, until).await?;
    }
    svc.db.update_delivery(row, fence).await?;
    if let (true, Err(e)) = (change.pause_mailing, &result) {
        let reason = texts::account_problem(lang, e);
        return pause_after_start(svc, m, cursor, fence, reason).await;
    }
    progress(svc, m, cursor.rows(), look, now).await?;
    Ok(Step::Continue)
}

/// The counted outcome of a send's row change (its `label`); `None` for a label that names
/// no send result.
fn send_outcome(label: &str) -> Option<SendOutcome> {
    SendOutcome::ALL.into_iter().find(|o| o.as_str() == label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_send_outcome_is_counted_under_its_own_word() {
        for o in SendOutcome::ALL {
            assert_eq!(send_outcome(o.as_str()), Some(o));
        }
        assert_eq!(send_outcome("found"), None, "a settle result is no send");
    }
}
