//! The pacing slot: which row is due next and when, marking it `sending` shortly before its
//! slot opens (so the durable write is off the critical path), and taking the slot a moment
//! ahead of the call.

use super::outcome::{self, Event};
use super::{AccountPace, Cursor, EngineError, Step, ARM_LEAD_MS, PRE_PACE_MS, UNSETTLED};
use crate::model::ids::GroupJid;
use crate::model::ledger::{Delivery, DeliveryState, Mailing};
use crate::model::pacing::pace::{warmup_cap, Preset};
use crate::model::pacing::plan::{finish_at, Next, Plan};
use crate::model::pacing::{Pace, PacingConfig};
use crate::ports::Lease;
use crate::services::{EngineServices, Ports};
use std::ops::ControlFlow;

/// Where waiting for a row's slot got to.
pub(super) enum Slot {
    /// The slot is taken and open: send now. The time the call was planned for (see
    /// `Cursor::aim`), which the send's log line reports beside the call.
    Open(i64),
    /// A long wait (a Retry-After pause): the row is `pending` again; step again at this time.
    Paused(i64),
    /// The step ends here: a sleep (the row stays armed, maybe with its slot held) or a lost
    /// lease.
    Wait(Step),
}

/// Waits for and takes the pacing slot of row `i` (the armed row or the next due one).
/// `vouched`: the driver has just checked the cancel flag and renewed the lease itself.
pub(super) async fn wait_and_take(
    svc: &EngineServices,
    m: &Mailing,
    lease: &Lease,
    cursor: &mut Cursor,
    i: usize,
    now: i64,
    vouched: bool,
) -> Result<Slot, EngineError> {
    let fence = lease.fence;
    // The slot the pacer will give, as far as can be told without taking it; a post the
    // account's plan holds for later is armed ahead of its time like a pacer's slot, so its
    // durable write is done before the planned instant too.
    let (pace, planned) = match (peek(svc, m, cursor, i, now).await?, cursor.aim) {
        (Pace::Go, Some(a)) if a > now && cursor.slot.is_none() => (Pace::WaitUntil(a), true),
        (Pace::WaitUntil(t), Some(a)) if a > t => (Pace::WaitUntil(a), true),
        (pace, _) => (pace, false),
    };
    // Armed ahead of the plan's time, the row's first attempt is still that time: the plan
    // times the next post from it (a pacer's wait keeps the arming moment, as always).
    let armed_at = |opens_at: i64| if planned { opens_at.max(now) } else { now };
    let opens_at = match pace {
        Pace::Go => now,
        Pace::WaitUntil(t) if t - now > ARM_LEAD_MS => {
            // Keep `sending` meaning "about to be sent".
            disarm(svc, cursor, fence).await?;
            return Ok(Slot::Paused(t - ARM_LEAD_MS));
        }
        Pace::WaitUntil(t) => {
            arm(svc, cursor, i, fence, armed_at(t)).await?;
            aim(cursor, t, now);
            if t - now > PRE_PACE_MS {
                return Ok(Slot::Wait(Step::SleepUntil(t - PRE_PACE_MS)));
            }
            t
        }
    };
    arm(svc, cursor, i, fence, armed_at(opens_at)).await?;
    aim(cursor, opens_at, now);
    // Still the holder? A runner paused past its lease (SIGSTOP, swap) must not send: the
    // armed row stays `sending` and the new holder settles it.
    let ttl = svc.settings.engine.lease_ttl_ms;
    if !vouched && !svc.leases.renew_lease(lease, ttl, svc.now_ms()).await? {
        return Ok(Slot::Wait(Step::LostLease));
    }
    let slot = match cursor.slot {
        Some(slot) => slot,
        None => match take(svc, m, cursor, i, opens_at).await? {
            ControlFlow::Continue(at) => at,
            ControlFlow::Break(step) => return Ok(Slot::Wait(step)), // stays armed
        },
    };
    if svc.now_ms() < slot {
        cursor.slot = Some(slot);
        return Ok(Slot::Wait(Step::SleepUntil(slot))); // stays armed, slot held
    }
    cursor.slot = None;
    cursor.armed = None;
    cursor.vouched_at = None;
    cursor.last_call_at = Some(svc.now_ms());
    Ok(Slot::Open(cursor.aim.take().unwrap_or(slot)))
}

/// Notes what the armed row's call is planned for (`Cursor::aim`): decided once, when first
/// known, so a late wake-up does not move it; only a later slot than planned does.
fn aim(cursor: &mut Cursor, opens_at: i64, now: i64) {
    cursor.aim = Some(match cursor.aim {
        None => opens_at,
        Some(a) if opens_at > now => a.max(opens_at),
        Some(a) => a,
    });
}

/// When row `i`'s slot opens, without taking it (at once when the slot is ours already).
async fn peek(
    svc: &EngineServices,
    m: &Mailing,
    cursor: &Cursor,
    i: usize,
    now: i64,
) -> Result<Pace, EngineError> {
    if cursor.slot.is_some() {
        return Ok(Pace::Go);
    }
    let group = &cursor.rows()[i].group;
    Ok(svc
        .pacer
        .pace_peek(&m.profile_id, group, &svc.settings.pacing, now)
        .await?)
}

/// Takes the pacing slot a moment ahead ([`PRE_PACE_MS`]), so the state round trip is not
/// between the slot and the call; and never starts a call closer than the interval to this
/// driver's previous call (the slot is stamped when taken, a call may leave a little late), so
/// the gap WhatsApp sees is never short. `Continue(at)`: the call goes out at `at`.
async fn take(
    svc: &EngineServices,
    m: &Mailing,
    cursor: &Cursor,
    i: usize,
    opens_at: i64,
) -> Result<ControlFlow<Step, i64>, EngineError> {
    let pacing = &svc.settings.pacing;
    let now = svc.now_ms();
    let earliest = cursor.last_call_at.map_or(now, |t| t + min_gap_ms(pacing));
    let at = opens_at.max(earliest).max(now);
    if at - now > PRE_PACE_MS {
        return Ok(ControlFlow::Break(Step::SleepUntil(at - PRE_PACE_MS)));
    }
    let group = &cursor.rows()[i].group;
    Ok(
        match svc.pacer.pace(&m.profile_id, group, pacing, at).await? {
            Pace::Go => ControlFlow::Continue(at),
            Pace::WaitUntil(t) => ControlFlow::Break(Step::SleepUntil((t - PRE_PACE_MS).max(now))),
        },
    )
}

/// Records the intent to send row `i`, durably (fenced), before its slot; nothing when a row
/// is armed already.
async fn arm(
    svc: &EngineServices,
    cursor: &mut Cursor,
    i: usize,
    fence: u64,
    now: i64,
) -> Result<(), EngineError> {
    if cursor.armed.is_some() {
        return Ok(());
    }
    let row = &mut cursor.rows_mut()[i];
    outcome::apply(row, Event::Armed, &svc.settings.engine, now);
    svc.db.update_delivery(row, fence).await?;
    cursor.armed = Some(i);
    Ok(())
}

/// Puts an armed row that was not sent back to `pending`.
pub(super) async fn disarm(
    svc: &EngineServices,
    cursor: &mut Cursor,
    fence: u64,
) -> Result<(), EngineError> {
    if let Some(i) = cursor.armed.take() {
        let row = &mut cursor.rows_mut()[i];
        outcome::apply(row, Event::Disarmed, &svc.settings.engine, svc.now_ms());
        svc.db.update_delivery(row, fence).await?;
    }
    Ok(())
}

/// The profile's emission interval in whole ms, rounded down (so it never adds to the pacing
/// itself): the least time between two calls of one driver.
fn min_gap_ms(pacing: &PacingConfig) -> i64 {
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
pub(super) fn next_due(rows: &[Delivery], now: i64) -> Option<usize> {
    group_heads(rows)
        .find(|&i| rows[i].state == DeliveryState::Pending && rows[i].next_attempt_at <= now)
}

/// When a row is next due, with none due now; `None` when every row is finished. A later part
/// waits for its group's earlier one: only each group's next row counts.
pub(super) fn next_wake(rows: &[Delivery]) -> Option<i64> {
    group_heads(rows)
        .map(|i| &rows[i])
        .filter(|r| r.state != DeliveryState::Sending)
        .map(|r| r.next_attempt_at)
        .min()
}

/// The next unfinished row of each group (pending, sending, or in doubt and not yet given up
/// on), in sending order; `rows` are in sending order, each group's rows together.
fn group_heads(rows: &[Delivery]) -> impl Iterator<Item = usize> + '_ {
    let unfinished = |r: &Delivery| match r.state {
        DeliveryState::Pending | DeliveryState::Sending => true,
        DeliveryState::InDoubt => r.next_attempt_at != UNSETTLED,
        DeliveryState::Sent | DeliveryState::Failed => false,
    };
    let mut last_group: Option<&GroupJid> = None;
    rows.iter().enumerate().filter_map(move |(i, r)| {
        if last_group == Some(&r.group) || !unfinished(r) {
            return None;
        }
        last_group = Some(&r.group);
        Some(i)
    })
}

/// How far back the account's posts are read for the plan: a local day and an hour.
const PLAN_HISTORY_MS: i64 = 25 * 3_600_000;

/// When row `i` may go under the account's pace, if it starts a new post (the first part a
/// group gets from this mailing) and the pace plans at all (`fast` leaves it to the pacer):
/// the plan's next post time, what holds it back, and when the whole mailing would end at
/// that pace. `None`: nothing to plan, the row goes as the pacer allows.
pub(super) async fn planned(
    svc: &EngineServices,
    m: &Mailing,
    cursor: &Cursor,
    i: usize,
    now: i64,
) -> Result<Option<Forecast>, EngineError> {
    let Some(account) = &cursor.pace else {
        return Ok(None);
    };
    let rows = cursor.rows();
    if post_started(rows, i) {
        return Ok(None);
    }
    let Some(plan) = plan_of(svc, account, seed_of(m), just_resumed(m, rows), now) else {
        return Ok(None);
    };
    let recent = svc
        .db
        .recent_posts(&m.profile_id, now - PLAN_HISTORY_MS)
        .await?;
    let (done, left) = posts_done_and_left(rows);
    let next = plan.next(done, &recent, now);
    let finish_at = finish_at(&plan, done, &recent, left, now);
    Ok(Some(Forecast { next, finish_at }))
}

/// The plan's answer for the next post of a mailing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forecast {
    pub next: Next,
    /// When the last post of the mailing would go out at this pace.
    pub finish_at: i64,
}

/// When a mailing of `posts` posts (`sends` messages in all) started now would end, and how
/// long it would take, at the account's pace: the engine's own plan run forward, from the
/// account's recent posts. `None` for the end when the pace plans nothing (`fast`: the ETA is
/// the operator's cadence).
pub async fn estimate(
    svc: &Ports,
    profile: &crate::model::ids::ProfileId,
    account: &AccountPace,
    posts: u64,
    sends: usize,
    now: i64,
) -> Result<(u64, Option<i64>), crate::ports::DbError> {
    // The preview's plan draws with seed 0: the same gaps' ranges, not the very draws of the
    // mailing its ✅ creates.
    let plan = match plan_of(svc, account, 0, false, now) {
        Some(plan) if posts > 0 => plan,
        _ => return Ok((svc.eta_secs(sends), None)),
    };
    let recent = svc.db.recent_posts(profile, now - PLAN_HISTORY_MS).await?;
    let end = finish_at(&plan, 0, &recent, posts, now);
    // The later parts of each post follow its first at the operator's cadence.
    let extra = svc.eta_secs(sends.saturating_sub(posts as usize));
    let end = end + extra as i64 * 1000;
    Ok((((end - now).max(0) as u64).div_ceil(1000), Some(end)))
}

/// The plan of the account's posts at `now`, or `None` when the pace plans nothing: `fast`
/// for a number that is neither young (warm-up) nor just resumed (half pace), which the
/// operator's pacer alone spaces.
fn plan_of<'a>(
    svc: &Ports,
    account: &'a AccountPace,
    seed: u64,
    slow: bool,
    now: i64,
) -> Option<Plan<'a>> {
    let warmup_day = warmup_cap(account.number_since.map(|t| now - t));
    if account.pace.preset() == Some(Preset::Fast) && warmup_day.is_none() && !slow {
        return None;
    }
    Some(Plan {
        pace: &account.pace,
        floor_ms: min_gap_ms(&svc.settings.pacing),
        warmup_day,
        tz: account.tz,
        seed,
        slow,
    })
}

/// Posts after a resume that go at half pace (a number that just came back from a pause, a
/// ban signal or a re-login, is watched most closely).
pub const HALF_PACE_POSTS: usize = 10;

/// Whether the mailing was resumed and has made fewer than [`HALF_PACE_POSTS`] posts since.
fn just_resumed(m: &Mailing, rows: &[Delivery]) -> bool {
    if m.resumed_at == 0 {
        return false;
    }
    let since = rows
        .chunk_by(|a, b| a.group == b.group)
        .filter(|g| g.iter().any(|r| r.first_attempt_at >= m.resumed_at))
        .count();
    since < HALF_PACE_POSTS
}

/// The seed of a mailing's plan: derived from what never changes in it, so every runner and
/// every restart draws the same gaps, batches and pauses.
fn seed_of(m: &Mailing) -> u64 {
    (m.id.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (m.created_at as u64)
}

/// Whether the group of row `i` got any part of this mailing already (its post has begun).
/// `rows` are in sending order, each group's rows together.
fn post_started(rows: &[Delivery], i: usize) -> bool {
    let group = &rows[i].group;
    let before = rows[..i].iter().rev().take_while(|r| &r.group == group);
    let after = rows[i..].iter().take_while(|r| &r.group == group);
    before.chain(after).any(|r| r.first_attempt_at > 0)
}

/// Posts this mailing began, and posts it has still to begin (groups with nothing attempted
/// and something left to send).
pub(super) fn posts_done_and_left(rows: &[Delivery]) -> (u64, u64) {
    rows.chunk_by(|a, b| a.group == b.group)
        .fold((0, 0), |(done, left), group| {
            if group.iter().any(|r| r.first_attempt_at > 0) {
                (done + 1, left)
            } else if group.iter().any(|r| r.state == DeliveryState::Pending) {
                (done, left + 1)
            } else {
                (done, left)
            }
        })
}
