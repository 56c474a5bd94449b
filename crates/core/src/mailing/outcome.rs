//! Every change of a delivery row, as pure functions: the row as it was, what happened to it
//! and the time give the row as it is now, plus what the engine does besides writing it (a
//! profile pause, a mailing pause). Nothing here awaits or touches a port: the engine writes
//! the row (fenced) and carries out the rest.

use super::{ARM_LEAD_MS, UNSETTLED};
use crate::config::EngineConfig;
use crate::model::ledger::{Delivery, DeliveryState};
use crate::wappi::{Remedy, WappiError};

/// What happened to a row.
#[derive(Debug, Clone, Copy)]
pub(super) enum Event<'a> {
    /// Found `sending` when a drive starts: a crash leftover, it may or may not have reached
    /// WhatsApp.
    Interrupted,
    /// Marked `sending` shortly before its pacing slot (one more attempt).
    Armed,
    /// Armed but not sent (a cancel, an account problem, a long wait): back to `pending`.
    Disarmed,
    /// Its image is no longer stored.
    ImageGone,
    /// A follow-up's edit comes after WhatsApp's edit window of its message closed.
    EditWindowClosed,
    /// Wappi took the send (the message id, if it gave one).
    Sent(Option<&'a str>),
    /// The send failed.
    SendFailed(&'a WappiError),
    /// Reconciliation found our message in the group's history (its id, maybe empty).
    Found(&'a str),
    /// Reconciliation read the history back to before the row's first attempt and our
    /// message is not there: send it again (or fail the row, its sends used up).
    Absent,
    /// Reconciliation could not read the history.
    Unverified(&'a WappiError),
    /// Reconciliation read what it could, but not back to before the row's first attempt (why
    /// is the text): our message may be further back, so the row stays in doubt, for good.
    Uncovered(&'a str),
}

/// What the engine does besides writing the changed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Change {
    /// The outcome as logged (`sent`, `retried`, `found`, …).
    pub label: &'static str,
    /// The whole profile waits until this unix-ms time (a Retry-After).
    pub backoff_until: Option<i64>,
    /// The mailing pauses: the account needs the user's attention.
    pub pause_mailing: bool,
}

impl Change {
    fn just(label: &'static str) -> Change {
        Change {
            label,
            backoff_until: None,
            pause_mailing: false,
        }
    }
}

/// Changes `row` for `event` at unix-ms `now`.
///
/// A `sending` row's `updated_at` is when it was armed, a moment before its call started: the
/// start its settling is timed from.
pub(super) fn apply(row: &mut Delivery, event: Event<'_>, cfg: &EngineConfig, now: i64) -> Change {
    let armed_at = row.updated_at;
    row.updated_at = now;
    match event {
        Event::Interrupted => {
            // Found after a restart or an activation: the call may still be under way.
            row.state = DeliveryState::InDoubt;
            row.error = Some("interrupted while sending".into());
            row.next_attempt_at = now.max(settle_not_before(armed_at, cfg));
            Change::just("interrupted")
        }
        Event::Armed => {
            row.state = DeliveryState::Sending;
            row.attempts += 1;
            if row.first_attempt_at == 0 {
                row.first_attempt_at = now;
            }
            Change::just("armed")
        }
        Event::Disarmed => {
            row.state = DeliveryState::Pending;
            row.attempts -= 1;
            Change::just("disarmed")
        }
        Event::ImageGone => {
            row.state = DeliveryState::Failed;
            row.error = Some("the image is no longer stored".into());
            Change::just("image_gone")
        }
        Event::EditWindowClosed => {
            row.state = DeliveryState::Failed;
            row.error = Some("too late to edit: WhatsApp's edit window has closed".into());
            Change::just("window_closed")
        }
        Event::Sent(message_id) => {
            row.state = DeliveryState::Sent;
            row.message_id = message_id.map(str::to_string);
            row.error = None;
            Change::just("sent")
        }
        Event::SendFailed(e) => send_failed(row, e, cfg, now, armed_at),
        Event::Found(message_id) => {
            row.state = DeliveryState::Sent;
            row.message_id = Some(message_id.to_string()).filter(|s| !s.is_empty());
            row.error = None;
            Change::just("found")
        }
        Event::Absent if row.attempts >= cfg.max_attempts => {
            row.state = DeliveryState::Failed;
            let last = row.error.take().unwrap_or_default();
            row.error = Some(format!(
                "not delivered after {} attempts ({last})",
                row.attempts
            ));
            Change::just("failed")
        }
        Event::Absent => {
            row.state = DeliveryState::Pending;
            row.next_attempt_at = now;
            row.error = None;
            Change::just("resend")
        }
        Event::Unverified(e) => unverified(row, e, cfg, now),
        Event::Uncovered(why) => {
            row.next_attempt_at = UNSETTLED;
            row.error = Some(format!("could not verify the send: {why}"));
            Change::just("uncovered")
        }
    }
}

/// The earliest time a send armed at `armed_at` may be settled: its call could have lasted
/// until the Wappi timeout, and Wappi may carry it out a little after that.
fn settle_not_before(armed_at: i64, cfg: &EngineConfig) -> i64 {
    armed_at
        .saturating_add(ARM_LEAD_MS)
        .saturating_add(cfg.wappi_timeout_ms)
        .saturating_add(cfg.settle_margin_ms)
}

/// A failed send, by the error's remedy.
fn send_failed(
    row: &mut Delivery,
    e: &WappiError,
    cfg: &EngineConfig,
    now: i64,
    armed_at: i64,
) -> Change {
    match e.remedy() {
        Remedy::PauseProfile(ms) => {
            // Due at once, so it is the first sent when the profile's pause (held by the state
            // backend) ends; rate limits are not counted as attempts.
            row.state = DeliveryState::Pending;
            row.attempts -= 1;
            row.next_attempt_at = now;
            row.error = Some(reason_text(e));
            Change {
                backoff_until: Some(now + ms as i64),
                ..Change::just("rate_limited")
            }
        }
        Remedy::Retry if row.attempts < cfg.max_attempts => {
            row.state = DeliveryState::Pending;
            row.next_attempt_at = now + backoff_ms(cfg, row, row.attempts) as i64;
            row.error = Some(reason_text(e));
            Change::just("retried")
        }
        Remedy::Retry | Remedy::FailRow => {
            row.state = DeliveryState::Failed;
            row.error = Some(reason_text(e));
            Change::just("failed")
        }
        Remedy::Settle => {
            // Maybe sent (a timeout, a lost connection, a 5xx): look before any resend, once
            // the call could have finished.
            row.state = DeliveryState::InDoubt;
            row.next_attempt_at = (now + cfg.settle_delay_ms).max(settle_not_before(armed_at, cfg));
            row.error = Some(reason_text(e));
            Change::just("in_doubt")
        }
        Remedy::PauseMailing => {
            // Not an attempt: the row goes out once the user has fixed the account.
            row.state = DeliveryState::Pending;
            row.attempts -= 1;
            Change {
                pause_mailing: true,
                ..Change::just("paused")
            }
        }
    }
}

/// A history that could not be read: the row stays `in_doubt`. A rate limit pauses the profile
/// and is no check (the row is due again when the pause ends); any other failure is a check
/// (counted apart from the sends), tried again after a backoff, or given up on
/// ([`UNSETTLED`]) after the last one.
fn unverified(row: &mut Delivery, e: &WappiError, cfg: &EngineConfig, now: i64) -> Change {
    row.error = Some(format!("could not verify the send: {}", reason_text(e)));
    if let Remedy::PauseProfile(ms) = e.remedy() {
        row.next_attempt_at = now;
        return Change {
            backoff_until: Some(now + ms as i64),
            ..Change::just("rate_limited")
        };
    }
    row.checks += 1;
    if row.checks >= cfg.max_attempts {
        row.next_attempt_at = UNSETTLED;
        return Change::just("unverified");
    }
    row.next_attempt_at = now + backoff_ms(cfg, row, row.checks) as i64;
    Change::just("retry")
}

/// Exponential backoff with deterministic jitter (±25 %, from the row's identity, so the core
/// needs no random source and a replay is reproducible).
/// `tries` is how many tries of this kind (sends, or history checks) were made.
fn backoff_ms(cfg: &EngineConfig, row: &Delivery, tries: u32) -> u64 {
    let exp = cfg
        .backoff_base_ms
        .saturating_mul(1u64 << tries.saturating_sub(1).min(16));
    let base = exp.min(cfg.backoff_max_ms);
    let mut h: u64 = 1469598103934665603;
    for b in row.group.as_str().bytes().chain(tries.to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(1099511628211);
    }
    let jitter = (h % 501) as i64 - 250; // per mille, -250..=250
    (base as i64 + base as i64 * jitter / 1000).max(0) as u64
}

/// The error as a row's readable reason.
fn reason_text(e: &WappiError) -> String {
    let s = e.to_string();
    s.strip_prefix("wappi: ").unwrap_or(&s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::{GroupJid, MailingId};
    use std::ops::RangeInclusive;
    use DeliveryState::*;

    const NOW: i64 = 1_000_000;
    const DUE: i64 = 500;

    fn cfg() -> EngineConfig {
        EngineConfig {
            max_attempts: 5,
            backoff_base_ms: 1000,
            backoff_max_ms: 60_000,
            settle_delay_ms: 2000,
            ..EngineConfig::default()
        }
    }

    fn row(state: DeliveryState, attempts: u32) -> Delivery {
        Delivery {
            mailing_id: MailingId(7),
            group: GroupJid::parse("120363041234567890@g.us").unwrap(),
            part: 0,
            position: 0,
            state,
            attempts,
            checks: 0,
            first_attempt_at: 0,
            next_attempt_at: DUE,
            message_id: None,
            error: Some("before".into()),
            updated_at: 0,
        }
    }

    /// A row in `state` with `attempts`, then `event` at [`NOW`]: its new state, attempts,
    /// `next_attempt_at` (within the range: backoffs carry jitter) and the logged outcome.
    struct Case<'a> {
        state: DeliveryState,
        attempts: u32,
        event: Event<'a>,
        then: DeliveryState,
        then_attempts: u32,
        next_at: RangeInclusive<i64>,
        label: &'static str,
    }

    fn case<'a>(
        (state, attempts): (DeliveryState, u32),
        event: Event<'a>,
        (then, then_attempts): (DeliveryState, u32),
        next_at: RangeInclusive<i64>,
        label: &'static str,
    ) -> Case<'a> {
        Case {
            state,
            attempts,
            event,
            then,
            then_attempts,
            next_at,
            label,
        }
    }

    fn at(t: i64) -> RangeInclusive<i64> {
        t..=t
    }

    #[test]
    fn every_row_change_by_state_and_event() {
        let rate_limited = WappiError::RateLimited(3000);
        let temporary = WappiError::Temporary("502".into());
        let unknown = WappiError::Unknown("timeout".into());
        let rejected = WappiError::Rejected("not a member".into());
        let not_paid = WappiError::NotPaid;
        let bad_token = WappiError::BadToken;
        #[rustfmt::skip]
        let cases = [
            // crash leftovers, arming
            case((Sending, 1), Event::Interrupted, (InDoubt, 1), at(NOW), "interrupted"),
            case((Pending, 0), Event::Armed, (Sending, 1), at(DUE), "armed"),
            case((Pending, 2), Event::Armed, (Sending, 3), at(DUE), "armed"),
            case((Sending, 1), Event::Disarmed, (Pending, 0), at(DUE), "disarmed"),
            case((Sending, 1), Event::ImageGone, (Failed, 1), at(DUE), "image_gone"),
            case((Pending, 0), Event::EditWindowClosed, (Failed, 0), at(DUE), "window_closed"),
            // after a send
            case((Sending, 1), Event::Sent(Some("m1")), (Sent, 1), at(DUE), "sent"),
            case((Sending, 1), Event::Sent(None), (Sent, 1), at(DUE), "sent"),
            case((Sending, 2), Event::SendFailed(&rate_limited), (Pending, 1), at(NOW), "rate_limited"),
            case((Sending, 1), Event::SendFailed(&temporary), (Pending, 1), NOW + 750..=NOW + 1250, "retried"),
            case((Sending, 3), Event::SendFailed(&temporary), (Pending, 3), NOW + 3000..=NOW + 5000, "retried"),
            case((Sending, 4), Event::SendFailed(&temporary), (Pending, 4), NOW + 6000..=NOW + 10_000, "retried"),
            case((Sending, 5), Event::SendFailed(&temporary), (Failed, 5), at(DUE), "failed"),
            case((Sending, 1), Event::SendFailed(&rejected), (Failed, 1), at(DUE), "failed"),
            case((Sending, 1), Event::SendFailed(&unknown), (InDoubt, 1), at(NOW + 2000), "in_doubt"),
            case((Sending, 2), Event::SendFailed(&not_paid), (Pending, 1), at(DUE), "paused"),
            case((Sending, 1), Event::SendFailed(&bad_token), (Pending, 0), at(DUE), "paused"),
            // after reconciliation
            case((InDoubt, 1), Event::Found("m2"), (Sent, 1), at(DUE), "found"),
            case((InDoubt, 1), Event::Found(""), (Sent, 1), at(DUE), "found"),
            case((InDoubt, 1), Event::Absent, (Pending, 1), at(NOW), "resend"),
            case((InDoubt, 5), Event::Absent, (Failed, 5), at(DUE), "failed"),
            // a failed check is no send: the sends are never used up by checks
            case((InDoubt, 1), Event::Unverified(&temporary), (InDoubt, 1), NOW + 750..=NOW + 1250, "retry"),
            case((InDoubt, 5), Event::Unverified(&temporary), (InDoubt, 5), NOW + 750..=NOW + 1250, "retry"),
            // a rate-limited check pauses the profile and is due again when the pause ends
            case((InDoubt, 1), Event::Unverified(&rate_limited), (InDoubt, 1), at(NOW), "rate_limited"),
            case((InDoubt, 1), Event::Uncovered("too long"), (InDoubt, 1), at(UNSETTLED), "uncovered"),
        ];
        for c in cases {
            let mut r = row(c.state, c.attempts);
            let change = apply(&mut r, c.event, &cfg(), NOW);
            let what = format!("{:?} with {} attempts, {:?}", c.state, c.attempts, c.event);
            assert_eq!(r.state, c.then, "state after {what}");
            assert_eq!(r.attempts, c.then_attempts, "attempts after {what}");
            assert!(
                c.next_at.contains(&r.next_attempt_at),
                "next_attempt_at {} after {what}, wanted {:?}",
                r.next_attempt_at,
                c.next_at
            );
            assert_eq!(change.label, c.label, "outcome of {what}");
            assert_eq!(r.updated_at, NOW, "updated_at after {what}");
        }
    }

    #[test]
    fn a_rate_limit_pauses_the_profile_and_an_account_problem_the_mailing() {
        let mut r = row(Sending, 1);
        let change = apply(
            &mut r,
            Event::SendFailed(&WappiError::RateLimited(3000)),
            &cfg(),
            NOW,
        );
        assert_eq!(change.backoff_until, Some(NOW + 3000));
        assert!(!change.pause_mailing);
        assert_eq!(
            r.error.as_deref(),
            Some("rate limited, retry after 3000 ms")
        );

        let mut r = row(InDoubt, 1);
        let change = apply(
            &mut r,
            Event::Unverified(&WappiError::RateLimited(4000)),
            &cfg(),
            NOW,
        );
        assert_eq!(change.backoff_until, Some(NOW + 4000));
        assert!(!change.pause_mailing);

        let mut r = row(Sending, 1);
        let change = apply(
            &mut r,
            Event::SendFailed(&WappiError::NotAuthorized),
            &cfg(),
            NOW,
        );
        assert_eq!(change.backoff_until, None);
        assert!(change.pause_mailing);
        assert_eq!(
            r.error.as_deref(),
            Some("before"),
            "a pause keeps the row's reason"
        );
    }

    #[test]
    fn other_events_pause_nothing() {
        for e in [
            WappiError::Temporary("502".into()),
            WappiError::Unknown("timeout".into()),
            WappiError::Rejected("no".into()),
        ] {
            let change = apply(&mut row(Sending, 1), Event::SendFailed(&e), &cfg(), NOW);
            assert_eq!(
                (change.backoff_until, change.pause_mailing),
                (None, false),
                "{e}"
            );
        }
        for event in [
            Event::Interrupted,
            Event::Armed,
            Event::Sent(None),
            Event::Absent,
        ] {
            let change = apply(&mut row(Sending, 1), event, &cfg(), NOW);
            assert_eq!((change.backoff_until, change.pause_mailing), (None, false));
        }
    }

    #[test]
    fn reasons_and_message_ids_on_the_row() {
        let mut r = row(Sending, 1);
        apply(&mut r, Event::Interrupted, &cfg(), NOW);
        assert_eq!(r.error.as_deref(), Some("interrupted while sending"));

        let mut r = row(Sending, 1);
        apply(&mut r, Event::ImageGone, &cfg(), NOW);
        assert_eq!(r.error.as_deref(), Some("the image is no longer stored"));

        let mut r = row(Sending, 1);
        apply(&mut r, Event::Sent(Some("m1")), &cfg(), NOW);
        assert_eq!((r.message_id.as_deref(), r.error), (Some("m1"), None));

        let mut r = row(Sending, 1);
        let e = WappiError::Rejected("not a member".into());
        apply(&mut r, Event::SendFailed(&e), &cfg(), NOW);
        assert_eq!(r.error.as_deref(), Some("refused: not a member"));

        let mut r = row(InDoubt, 1);
        apply(&mut r, Event::Found("m2"), &cfg(), NOW);
        assert_eq!((r.message_id.as_deref(), r.error), (Some("m2"), None));

        let mut r = row(InDoubt, 1);
        apply(&mut r, Event::Found(""), &cfg(), NOW);
        assert_eq!(r.message_id, None, "an empty id is no id");

        let mut r = row(InDoubt, 1);
        apply(&mut r, Event::Absent, &cfg(), NOW);
        assert_eq!(r.error, None);

        let mut r = row(InDoubt, 1);
        let e = WappiError::Temporary("502".into());
        apply(&mut r, Event::Unverified(&e), &cfg(), NOW);
        assert_eq!(
            r.error.as_deref(),
            Some("could not verify the send: temporary failure: 502")
        );
    }

    #[test]
    fn checks_are_counted_apart_from_sends_and_a_rate_limit_is_none() {
        let temporary = WappiError::Temporary("502".into());
        let mut r = row(InDoubt, 1);
        for n in 1..cfg().max_attempts {
            let change = apply(&mut r, Event::Unverified(&temporary), &cfg(), NOW);
            assert_eq!((r.checks, r.attempts, change.label), (n, 1, "retry"));
        }
        let change = apply(&mut r, Event::Unverified(&temporary), &cfg(), NOW);
        assert_eq!((r.checks, r.next_attempt_at), (5, UNSETTLED));
        assert_eq!(change.label, "unverified");

        let mut r = row(InDoubt, 1);
        for _ in 0..10 {
            apply(
                &mut r,
                Event::Unverified(&WappiError::RateLimited(1000)),
                &cfg(),
                NOW,
            );
        }
        assert_eq!((r.checks, r.attempts, r.next_attempt_at), (0, 1, NOW));
    }

    #[test]
    fn a_row_is_settled_only_once_its_last_attempt_could_have_finished() {
        let cfg = EngineConfig {
            wappi_timeout_ms: 10_000,
            settle_margin_ms: 5000,
            settle_delay_ms: 2000,
            ..EngineConfig::default()
        };
        let ready = |armed_at: i64| armed_at + ARM_LEAD_MS + 15_000;
        // Found `sending` right after a restart or an activation.
        let mut r = row(Sending, 1);
        r.updated_at = NOW - 100;
        apply(&mut r, Event::Interrupted, &cfg, NOW);
        assert_eq!(r.next_attempt_at, ready(NOW - 100));
        // Found long after: at once.
        let mut r = row(Sending, 1);
        r.updated_at = NOW - 60_000;
        apply(&mut r, Event::Interrupted, &cfg, NOW);
        assert_eq!(r.next_attempt_at, NOW);
        // A send that timed out, or a 5xx that came early: never before the call could end.
        for failed_at in [NOW, NOW + 10_000] {
            let mut r = row(Sending, 1);
            r.updated_at = NOW;
            let e = WappiError::Unknown("timed out".into());
            apply(&mut r, Event::SendFailed(&e), &cfg, failed_at);
            assert_eq!(r.next_attempt_at, ready(NOW).max(failed_at + 2000));
        }
    }

    #[test]
    fn the_first_attempt_is_remembered() {
        let mut r = row(Pending, 0);
        apply(&mut r, Event::Armed, &cfg(), NOW);
        assert_eq!(r.first_attempt_at, NOW);
        apply(&mut r, Event::Disarmed, &cfg(), NOW + 5);
        apply(&mut r, Event::Armed, &cfg(), NOW + 10);
        assert_eq!(r.first_attempt_at, NOW, "kept across attempts");
        let mut r = row(InDoubt, 5);
        r.error = Some("outcome unknown: HTTP 502".into());
        apply(&mut r, Event::Absent, &cfg(), NOW);
        assert_eq!(
            r.error.as_deref(),
            Some("not delivered after 5 attempts (outcome unknown: HTTP 502)")
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_a_reproducible_jitter() {
        let cfg = EngineConfig {
            backoff_base_ms: 1000,
            backoff_max_ms: 8000,
            ..EngineConfig::default()
        };
        for attempts in 1..=10u32 {
            let r = row(Pending, attempts);
            let base = (1000u64 << (attempts - 1)).min(8000);
            let ms = backoff_ms(&cfg, &r, attempts);
            assert!(
                (base * 3 / 4..=base * 5 / 4).contains(&ms),
                "attempt {attempts}: {ms} ms"
            );
            assert_eq!(
                ms,
                backoff_ms(&cfg, &r, attempts),
                "the same row, the same backoff"
            );
        }
    }
}
