//! The mailing engine: one [`step`] at a time over the ledger. A step sends at most one
//! message (or settles one `in_doubt` row) and says when the next step is due. The server
//! drives it from a tokio task per profile; the Worker from a Durable Object alarm. Nothing here
//! sleeps or spawns, so the same code runs on both and under a fake clock.
//!
//! Exactly-once per group rests on three rules: a row is written `sending` (durably, fenced)
//! before the Wappi call; a row found `sending` at the next step is a crash leftover and becomes
//! `in_doubt`; an `in_doubt` row is resent only after the group's recent history shows our
//! text is not there.

use crate::model::ids::MailingId;
use crate::model::ledger::{part_order, Delivery, DeliveryState, Mailing, MailingStatus, Tally};
use crate::ports::ImageId;
use crate::ports::{DbError, Lease, Pace, StateError};
use crate::services::{EngineServices, Ports};
use crate::telegram::{InlineKeyboardMarkup, MessageId, ReplyMarkup};
use crate::texts::{self, Lang, ReportLine};
use crate::wappi::{Remedy, WappiCreds, WappiError};
use std::collections::HashMap;
use std::sync::Arc;

/// What the driver does after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Step again right away.
    Continue,
    /// Step again at this unix-ms time (or earlier if a cancel arrives).
    SleepUntil(i64),
    /// The mailing is over (done, cancelled or paused): stop driving it.
    Finished,
    /// Another runner owns the mailing now (stale fence): stop at once, write nothing.
    LostLease,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// `in_doubt` rows that could not be settled keep this `next_attempt_at`: final, reported.
pub const UNSETTLED: i64 = i64::MAX;

/// How long before its pacing slot a row is marked `sending`, so the durable write is done
/// by the time the slot opens and never delays the send (or shortens the next gap).
pub const ARM_LEAD_MS: i64 = 250;

/// What a driver keeps between the steps of one mailing while it holds the lease. It is lost
/// with the process, which is exactly what makes a `sending` row found without it a crash
/// leftover.
#[derive(Debug, Default)]
pub struct Cursor {
    /// The mailing as last read.
    mailing: Option<Mailing>,
    /// The ledger as last written: while the lease is held this driver is its only writer.
    rows: Option<Vec<Delivery>>,
    /// The user's credentials and language.
    account: Option<(Option<WappiCreds>, Lang)>,
    /// The row this driver marked `sending` and is waiting to send at its pacing slot.
    armed: Option<usize>,
    /// When this driver last started a Wappi send (see [`min_gap_ms`]).
    last_call_at: Option<i64>,
    /// The pacing slot already taken for the armed row: the call goes out at this time.
    slot: Option<i64>,
    /// When the driver last checked the cancel flag and renewed the lease itself (see
    /// [`Cursor::vouch`]).
    vouched_at: Option<i64>,
    /// The base64 of each image part, read and encoded once per drive of the mailing (not
    /// once per group); `None` when the image is no longer stored.
    images: HashMap<ImageId, Option<Arc<str>>>,
}

/// How long before its time a row's pacing slot is taken (see [`Cursor::holds_slot`]).
pub const PRE_PACE_MS: i64 = 2;

/// How fresh a driver's own cancel check and lease renewal must be for a step to skip them.
pub const VOUCH_MS: i64 = 5;

impl Cursor {
    /// The driver has just (at `now`) seen the cancel flag unset and renewed the lease: the
    /// next step, if within [`VOUCH_MS`], sends an armed row without asking again, so those
    /// round trips happen before the slot instead of between the slot and the send.
    pub fn vouch(&mut self, now: i64) {
        self.vouched_at = Some(now);
    }

    /// The pacing slot of the armed row is taken: the driver only waits for it, the checks
    /// were made just before (so the call leaves at the slot, not a round trip later).
    pub fn holds_slot(&self) -> bool {
        self.slot.is_some()
    }
}

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
            row.state = DeliveryState::InDoubt;
            row.error = Some("interrupted while sending".into());
            row.next_attempt_at = now;
            row.updated_at = now;
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
    if m.cancel_requested || (!vouched && svc.cancels.is_cancelled(id).await?) {
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
        if let Some(i) = rows
            .iter()
            .position(|r| r.state == DeliveryState::InDoubt && r.next_attempt_at <= now)
        {
            // Reading the chat is a call from the profile too: none during a Retry-After pause.
            if let Some(t) = svc.pacer.backoff_until(&m.profile_id).await? {
                if t > now {
                    progress(svc, &m, rows, lang, now).await?;
                    return Ok(Step::SleepUntil(t));
                }
            }
            let earlier_images = earlier_image_parts_sent(rows, i);
            settle(svc, &m, &creds, &mut rows[i], earlier_images, fence, now).await?;
            progress(svc, &m, rows, lang, now).await?;
            return Ok(Step::Continue);
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
                row.state = DeliveryState::Failed;
                row.error = Some("the image is no longer stored".into());
                row.updated_at = now;
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
            svc.pacer
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
            .leases
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
                .pacer
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
    row.updated_at = now;
    match result {
        Ok(sent) => {
            row.state = DeliveryState::Sent;
            row.message_id = sent.message_id;
            row.error = None;
            tracing::info!(event = "send", outcome = "sent", mailing = m.id.0, group = %row.group, part = row.part, attempt = row.attempts, "sent");
        }
        Err(e) => {
            let outcome = match e.remedy() {
                Remedy::PauseProfile(_) => "rate_limited",
                Remedy::Retry if row.attempts < cfg.max_attempts => "retried",
                Remedy::Retry | Remedy::FailRow => "failed",
                Remedy::Settle => "in_doubt",
                Remedy::PauseMailing => "paused",
            };
            tracing::info!(event = "send", outcome, mailing = m.id.0, group = %row.group, part = row.part, attempt = row.attempts, error = %e, "send failed");
            match e.remedy() {
                Remedy::PauseProfile(ms) => {
                    let until = now + ms as i64;
                    svc.pacer.set_backoff(&m.profile_id, until).await?;
                    // Due at once, so it is the first sent when the profile's pause (held by
                    // the state backend) ends; rate limits are not counted as attempts.
                    row.state = DeliveryState::Pending;
                    row.attempts -= 1;
                    row.next_attempt_at = now;
                    row.error = Some(reason_text(&e));
                }
                Remedy::Retry if row.attempts < cfg.max_attempts => {
                    row.state = DeliveryState::Pending;
                    row.next_attempt_at = now + backoff_ms(svc, row) as i64;
                    row.error = Some(reason_text(&e));
                }
                Remedy::Retry | Remedy::FailRow => {
                    row.state = DeliveryState::Failed;
                    row.error = Some(reason_text(&e));
                }
                Remedy::Settle => {
                    row.state = DeliveryState::InDoubt;
                    row.next_attempt_at = now + cfg.settle_delay_ms;
                    row.error = Some(reason_text(&e));
                }
                Remedy::PauseMailing => {
                    row.state = DeliveryState::Pending;
                    row.attempts -= 1;
                    svc.db.update_delivery(row, fence).await?;
                    let reason = texts::account_problem(lang, &e);
                    return pause(svc, &m, lang, fence, &reason).await;
                }
            }
        }
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

/// How many image parts before row `i` of the same group are sent (rows in sending order).
fn earlier_image_parts_sent(rows: &[Delivery], i: usize) -> usize {
    rows[..i]
        .iter()
        .filter(|r| r.group == rows[i].group && r.part != 0 && r.state == DeliveryState::Sent)
        .count()
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

/// Records the intent to send a row, durably (fenced), before its slot.
async fn arm(
    svc: &EngineServices,
    row: &mut Delivery,
    fence: u64,
    now: i64,
) -> Result<(), EngineError> {
    row.state = DeliveryState::Sending;
    row.attempts += 1;
    row.updated_at = now;
    svc.db.update_delivery(row, fence).await?;
    Ok(())
}

/// Puts an armed row that was not sent back to `pending`.
async fn disarm(
    svc: &EngineServices,
    rows: &mut [Delivery],
    armed: &mut Option<usize>,
    fence: u64,
) -> Result<(), EngineError> {
    if let Some(i) = armed.take() {
        let row = &mut rows[i];
        row.state = DeliveryState::Pending;
        row.attempts -= 1;
        row.updated_at = svc.now_ms();
        svc.db.update_delivery(row, fence).await?;
    }
    Ok(())
}

/// Exponential backoff with deterministic jitter (±25 %, from the row's identity, so the core
/// needs no random source and a replay is reproducible).
fn backoff_ms(svc: &EngineServices, row: &Delivery) -> u64 {
    let cfg = &svc.settings.engine;
    let exp = cfg
        .backoff_base_ms
        .saturating_mul(1u64 << row.attempts.saturating_sub(1).min(16));
    let base = exp.min(cfg.backoff_max_ms);
    let mut h: u64 = 1469598103934665603;
    for b in row.group.as_str().bytes().chain(row.attempts.to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(1099511628211);
    }
    let jitter = (h % 501) as i64 - 250; // per mille, -250..=250
    (base as i64 + base as i64 * jitter / 1000).max(0) as u64
}

fn reason_text(e: &WappiError) -> String {
    let s = e.to_string();
    s.strip_prefix("wappi: ").unwrap_or(&s).to_string()
}

/// Reads the group's recent history: our part there, sent by us after the mailing began,
/// means the send went through; its absence means it did not and the row is sent again.
///
/// What is matched: for the text part (0) a message whose body or caption is our text (a
/// text message, or the captioned collage); for an uncaptioned image part, the number of our
/// image messages since the mailing began: more than `earlier_images` (this group's image
/// parts already recorded as sent) means this one arrived too.
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
    row.updated_at = now;
    match history {
        Ok(messages) => {
            let since_start = |msg: &&crate::wappi::ChatMessage| {
                msg.from_me && msg.time * 1000 >= m.created_at - 60_000
            };
            let ours = if row.part == 0 {
                messages.iter().filter(since_start).find(|msg| {
                    msg.body.trim() == m.content.text.trim()
                        || msg.caption.trim() == m.content.text.trim()
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
            };
            match ours {
                Some(msg) => {
                    row.state = DeliveryState::Sent;
                    row.message_id = Some(msg.id.clone()).filter(|s| !s.is_empty());
                    row.error = None;
                }
                None => {
                    row.state = DeliveryState::Pending;
                    row.next_attempt_at = now;
                    row.error = None;
                }
            }
        }
        Err(e) => {
            if let Remedy::PauseProfile(ms) = e.remedy() {
                svc.pacer
                    .set_backoff(&m.profile_id, now + ms as i64)
                    .await?;
            }
            row.attempts += 1;
            row.error = Some(format!("could not verify the send: {}", reason_text(&e)));
            row.next_attempt_at = if row.attempts > cfg.max_attempts {
                UNSETTLED
            } else {
                now + backoff_ms(svc, row) as i64
            };
        }
    }
    let outcome = match (row.state, row.next_attempt_at) {
        (DeliveryState::Sent, _) => "found",
        (DeliveryState::Pending, _) => "resend",
        (_, UNSETTLED) => "unverified",
        _ => "retry",
    };
    tracing::info!(event = "settle", outcome, mailing = m.id.0, group = %row.group, part = row.part, "in-doubt send checked");
    svc.db.update_delivery(row, fence).await?;
    Ok(())
}

/// Sends or edits the progress message, at most every `progress_interval_ms`.
async fn progress(
    svc: &EngineServices,
    m: &Mailing,
    rows: &[Delivery],
    lang: Lang,
    now: i64,
) -> Result<(), EngineError> {
    if m.progress_message_id.is_some()
        && now - m.progress_at < svc.settings.engine.progress_interval_ms
    {
        return Ok(());
    }
    if !svc.telegram.can_send_now(m.chat_id) {
        return Ok(()); // shed: the next step tries again
    }
    let tally = Tally::of(rows);
    let eta = svc.eta_secs(crate::model::ledger::sends_left(rows));
    // When nothing is due now, the next due time is a pause (Retry-After or backoff): show it.
    let due_now = rows
        .iter()
        .any(|r| r.state == DeliveryState::Pending && r.next_attempt_at <= now);
    let backoff = if due_now {
        None
    } else {
        rows.iter()
            .filter(|r| r.state == DeliveryState::Pending)
            .map(|r| r.next_attempt_at)
            .min()
            .filter(|t| *t > now + 1500)
    };
    let text = texts::progress(
        lang,
        m.id.0,
        &tally,
        eta,
        backoff.map(texts::clock_time).as_deref(),
    );
    let keyboard = cancel_keyboard(lang, m.id);
    let message_id = match m.progress_message_id {
        Some(mid) => {
            if let Err(e) = svc
                .telegram
                .edit_message_text(m.chat_id, MessageId(mid), &text, Some(&keyboard))
                .await
            {
                if !e.is_not_modified() {
                    tracing::warn!(mailing = m.id.0, error = %e, "progress edit failed");
                }
            }
            None
        }
        None => match svc
            .telegram
            .send_message(m.chat_id, &text, Some(&ReplyMarkup::Inline(keyboard)))
            .await
        {
            Ok(mid) => Some(mid.0),
            Err(e) => {
                tracing::warn!(mailing = m.id.0, error = %e, "progress message failed");
                None
            }
        },
    };
    // Counted from when Telegram got it, so edits are never closer than the interval.
    svc.db.set_progress(m.id, message_id, svc.now_ms()).await?;
    Ok(())
}

pub fn cancel_keyboard(lang: Lang, id: MailingId) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::rows(vec![vec![(
        texts::cancel_button(lang),
        crate::bot::dialogue::Callback::CancelMailing(id.0).data(),
    )]])
}

/// Ends a mailing: final status (fenced), final progress, one report message.
async fn finish(
    svc: &EngineServices,
    m: &Mailing,
    rows: &[Delivery],
    lang: Lang,
    fence: u64,
    status: MailingStatus,
) -> Result<Step, EngineError> {
    let now = svc.now_ms();
    svc.db
        .set_mailing_status(m.id, status, None, fence, now)
        .await?;
    let tally = Tally::of(rows);
    let event = if status == MailingStatus::Cancelled {
        "mailing_cancelled"
    } else {
        "mailing_done"
    };
    tracing::info!(
        event,
        mailing = m.id.0,
        sent = tally.sent,
        failed = tally.failed,
        in_doubt = tally.in_doubt,
        left = tally.left,
        "mailing finished"
    );
    if let Some(mid) = m.progress_message_id {
        let text = texts::progress_final(lang, m.id.0, &tally);
        let _ = svc
            .telegram
            .edit_message_text(
                m.chat_id,
                MessageId(mid),
                &text,
                Some(&InlineKeyboardMarkup::default()),
            )
            .await;
    }
    let report = report_text(svc, m, rows, lang, status == MailingStatus::Cancelled).await;
    let _ = svc.telegram.send_message(m.chat_id, &report, None).await;
    Ok(Step::Finished)
}

/// The report of a finished mailing (also shown by /status afterwards).
pub async fn report_text(
    svc: &Ports,
    m: &Mailing,
    rows: &[Delivery],
    lang: Lang,
    cancelled: bool,
) -> String {
    let names = svc.db.get_groups(m.user_id).await.unwrap_or_default();
    let name_of = |jid: &str| {
        names
            .iter()
            .find(|g| g.jid.as_str() == jid)
            .and_then(|g| g.name.as_deref())
    };
    let groups = crate::model::ledger::group_outcomes(rows);
    let lines = |state: DeliveryState| -> Vec<ReportLine<'_>> {
        groups
            .iter()
            .filter(|g| g.state == state)
            .map(|g| g.row)
            .map(|r| ReportLine {
                group: r.group.as_str(),
                name: name_of(r.group.as_str()),
                reason: r.error.as_deref().unwrap_or("—"),
            })
            .collect()
    };
    texts::report(
        lang,
        m.id.0,
        &Tally::of(rows),
        cancelled,
        &lines(DeliveryState::Failed),
        &lines(DeliveryState::InDoubt),
    )
}

/// Pauses a mailing whose account needs attention, and tells the user how to resume.
async fn pause(
    svc: &EngineServices,
    m: &Mailing,
    lang: Lang,
    fence: u64,
    reason: &str,
) -> Result<Step, EngineError> {
    let now = svc.now_ms();
    svc.db
        .set_mailing_status(m.id, MailingStatus::Paused, Some(reason), fence, now)
        .await?;
    tracing::info!(
        event = "mailing_paused",
        mailing = m.id.0,
        reason,
        "mailing paused"
    );
    let keyboard = InlineKeyboardMarkup::rows(vec![vec![
        (
            texts::resume_button(lang),
            crate::bot::dialogue::Callback::ResumeMailing(m.id.0).data(),
        ),
        (
            texts::cancel_button(lang),
            crate::bot::dialogue::Callback::CancelMailing(m.id.0).data(),
        ),
    ]]);
    let _ = svc
        .telegram
        .send_message(
            m.chat_id,
            &texts::paused(lang, m.id.0, reason),
            Some(&ReplyMarkup::Inline(keyboard)),
        )
        .await;
    Ok(Step::Finished)
}
