//! The mailing engine under a fake clock: a tiny driver steps [`mailing::step`] (a sleep is a
//! jump of the clock) against the in-memory fakes, and the tests assert on what Wappi
//! received, in which order and at which fake times, and on the ledger.

use crate::config::CoreSettings;
use crate::mailing::{self, Cursor, Step, ARM_LEAD_MS, UNSETTLED};
use crate::model::ids::{ChatId, GroupJid, MailingId, ProfileId, UserId};
use crate::model::lang::Lang;
use crate::model::ledger::{Content, DeliveryState, MailingStatus, NewMailing, ANNOUNCE_WAIT_MS};
use crate::model::pacing::Gcra;
use crate::ports::Lease;
use crate::services::EngineServices;
use crate::telegram::{MessageId, ReplyMarkup};
use crate::testing::*;
use crate::texts::{self};
use crate::wappi::WappiError;

const TTL: u64 = 60_000;
const USER: UserId = UserId(4242);
const CHAT: ChatId = ChatId(4242);
const TEXT: &str = "*Sale* today: 2-room flat, 5 min from the metro";
const MAX_STEPS: usize = 20_000;

fn settings(rate: f64) -> CoreSettings {
    let mut s = CoreSettings::default();
    s.pacing.profile_rate_per_sec = rate;
    s
}

struct World {
    /// The engine's bundle (the bot is not part of these tests).
    svc: EngineServices,
    f: Fakes,
    prof: ProfileId,
}

async fn world(settings: CoreSettings) -> World {
    let (svc, f) = services(settings);
    let svc = f.engine(&svc);
    let prof = profile("2f099bc3-478d");
    register_user(&svc, USER, &prof, Lang::En).await;
    World { svc, f, prof }
}

impl World {
    async fn mailing(&self, groups: &[GroupJid]) -> MailingId {
        create_mailing(&self.svc, USER, &self.prof, groups, TEXT).await
    }

    /// A mailing created now whose start message is still to come, as the bot hands it over.
    async fn announced_mailing(&self, groups: &[GroupJid]) -> MailingId {
        let now = self.f.clock.now();
        let new = NewMailing {
            user_id: USER,
            chat_id: CHAT,
            profile_id: self.prof.clone(),
            content: Content::text_only(TEXT),
            groups: groups.to_vec(),
            skipped: vec![],
            now,
            announce_until: now + ANNOUNCE_WAIT_MS,
        };
        self.svc.db.create_mailing(&new).await.unwrap()
    }

    async fn lease(&self, id: MailingId) -> Lease {
        take_mailing(&self.svc, id, TTL).await
    }

    async fn drive(&self, id: MailingId, lease: &Lease, cursor: &mut Cursor) -> Step {
        drive(&self.svc, &self.f.clock, id, lease, cursor, MAX_STEPS)
            .await
            .expect("engine step")
    }

    /// Takes the mailing with a fresh lease and drives it to the end.
    async fn run(&self, id: MailingId) -> Step {
        let lease = self.lease(id).await;
        let step = self.drive(id, &lease, &mut Cursor::default()).await;
        self.svc.leases.release_lease(&lease).await.unwrap();
        step
    }

    /// Steps until a row is `sending` (armed), without sleeping past that step.
    async fn drive_until_armed(
        &self,
        id: MailingId,
        lease: &Lease,
        cursor: &mut Cursor,
    ) -> GroupJid {
        let db = self.f.db.clone();
        let armed = || {
            db.rows(id)
                .iter()
                .any(|r| r.state == DeliveryState::Sending)
        };
        let step = drive_until(
            &self.svc,
            &self.f.clock,
            id,
            lease,
            cursor,
            MAX_STEPS,
            armed,
        )
        .await
        .unwrap();
        assert!(
            matches!(step, Step::SleepUntil(_)),
            "armed rows wait for their slot, got {step:?}"
        );
        let rows = db.rows(id);
        rows.iter()
            .find(|r| r.state == DeliveryState::Sending)
            .expect("a row is armed")
            .group
            .clone()
    }

    /// The recipients of every send, in order.
    fn recipients(&self) -> Vec<GroupJid> {
        self.f
            .wappi
            .sends()
            .into_iter()
            .map(|c| c.to.unwrap())
            .collect()
    }

    /// The times of every send, in ms after T0.
    fn send_times(&self) -> Vec<i64> {
        self.f.wappi.sends().iter().map(|c| c.at - T0).collect()
    }

    /// How many messages of ours each group holds.
    fn delivered_counts(&self, groups: &[GroupJid]) -> Vec<usize> {
        groups
            .iter()
            .map(|g| self.f.wappi.delivered_to(g, &self.prof).len())
            .collect()
    }

    /// The last message sent to the user (the report, after a finish).
    fn last_text(&self) -> String {
        self.f
            .telegram
            .last_sent(CHAT)
            .map(|(_, t, _)| t)
            .unwrap_or_default()
    }

    fn states(&self, id: MailingId) -> Vec<DeliveryState> {
        self.f.db.rows(id).iter().map(|r| r.state).collect()
    }
}

/// Asserts each consecutive gap is at least `min` and at most `max` ms.
fn assert_gaps(times: &[i64], min: f64, max: f64) {
    for (i, pair) in times.windows(2).enumerate() {
        let gap = (pair[1] - pair[0]) as f64;
        assert!(
            gap >= min && gap <= max,
            "gap {i}: {gap} ms not in [{min}, {max}] (times {times:?})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Pacing and order

/// The slot is stamped when the pacer decides, but the answer may come back late: a call that
/// left 30 ms after its slot must not be followed by one a full interval after that slot only.
#[tokio::test]
async fn a_late_pacing_answer_never_shortens_the_next_gap() {
    let w = world(settings(10.0)).await;
    w.f.state
        .set_pace_round_trips(w.f.clock.clone(), vec![30, 0]);
    let groups = jids(8);
    let id = w.mailing(&groups).await;

    assert_eq!(w.run(id).await, Step::Finished);

    let times = w.send_times();
    assert_eq!(times.len(), 8);
    assert_gaps(&times, 100.0, 130.0);
    assert_eq!(w.delivered_counts(&groups), vec![1; 8]);
}

#[tokio::test]
async fn every_group_once_in_order_at_one_per_second() {
    let w = world(settings(1.0)).await;
    let groups = jids(10);
    let id = w.mailing(&groups).await;

    assert_eq!(w.run(id).await, Step::Finished);

    assert_eq!(w.recipients(), groups, "every group once, in list order");
    assert_eq!(
        w.send_times(),
        (0..10).map(|i| i * 1000).collect::<Vec<_>>(),
        "exactly 1 s apart"
    );
    assert!(w
        .f
        .wappi
        .sends()
        .iter()
        .all(|c| c.text.as_deref() == Some(TEXT)));
    assert_eq!(w.delivered_counts(&groups), vec![1; 10]);
    for r in w.f.db.rows(id) {
        assert_eq!(
            (r.state, r.attempts, r.error.as_deref()),
            (DeliveryState::Sent, 1, None),
            "{}",
            r.group
        );
        assert!(r
            .message_id
            .as_deref()
            .is_some_and(|m| m.starts_with("wamid.")));
    }
    let m = w.f.db.mailing(id);
    assert_eq!(
        (m.status, m.finished_at),
        (MailingStatus::Done, Some(T0 + 9000))
    );
    assert!(
        w.last_text().starts_with('✅'),
        "clean report: {}",
        w.last_text()
    );
    // Only sends: no history reads when nothing was in doubt.
    assert_eq!(w.f.wappi.calls().len(), 10);
}

#[tokio::test]
async fn seven_per_second_keeps_the_interval_and_the_total() {
    let w = world(settings(7.0)).await;
    let groups = jids(50);
    let id = w.mailing(&groups).await;

    assert_eq!(w.run(id).await, Step::Finished);

    assert_eq!(w.recipients(), groups);
    let times = w.send_times();
    let interval = 1000.0 / 7.0;
    // Never closer than 1/rate; at most a millisecond of rounding later.
    assert_gaps(
        &times,
        interval,
        Gcra::per_second(7.0).interval_ms().ceil() + 1.0,
    );
    let total = (times[49] - times[0]) as f64;
    let ideal = 49.0 * interval;
    assert!(
        (total - ideal).abs() / ideal < 0.01,
        "49 gaps took {total} ms, ideally {ideal}"
    );
}

#[tokio::test]
async fn a_row_is_sending_in_the_ledger_before_its_wappi_call() {
    let w = world(settings(1.0)).await;
    let groups = jids(5);
    let id = w.mailing(&groups).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (db, log) = (w.f.db.clone(), seen.clone());
    w.f.wappi
        .on_send(move |_, to| log.lock().unwrap().push(db.row(id, to).state));

    w.run(id).await;

    assert_eq!(
        *seen.lock().unwrap(),
        vec![DeliveryState::Sending; 5],
        "the ledger at each Wappi call"
    );
    // Armed no earlier than ARM_LEAD_MS before the call, and by this driver's fence.
    let sends = w.f.wappi.sends();
    for (g, call) in groups.iter().zip(&sends) {
        let arm =
            w.f.db
                .delivery_writes()
                .into_iter()
                .find(|wr| &wr.row.group == g && wr.row.state == DeliveryState::Sending)
                .expect("an arming write");
        assert!(
            arm.row.updated_at <= call.at && call.at - arm.row.updated_at <= ARM_LEAD_MS,
            "{g}"
        );
        assert_eq!(arm.fence, 1);
    }
}

#[tokio::test]
async fn per_chat_window_holds_a_retry_to_the_same_group() {
    // One message per group per 5 s: the retry of a 5xx waits for the chat window, not only
    // for its ~1 s backoff.
    let mut s = settings(10.0);
    s.pacing.chat_burst = 1;
    s.pacing.chat_window_ms = 5000;
    let w = world(s).await;
    let g = jid(1);
    w.f.wappi.script_send_to(
        &g,
        SendScript::Fail(WappiError::Temporary("HTTP 502: bad gateway".into())),
    );
    let id = w.mailing(std::slice::from_ref(&g)).await;

    w.run(id).await;

    assert_eq!(w.send_times(), vec![0, 5000]);
    assert_eq!(w.states(id), vec![DeliveryState::Sent]);
}

#[tokio::test]
async fn two_profiles_are_paced_independently_even_to_the_same_groups() {
    let w = world(settings(1.0)).await;
    let other_user = UserId(777);
    let other = profile("aa11bb22-33cc");
    register_user(&w.svc, other_user, &other, Lang::En).await;
    let groups = jids(4);
    let a = w.mailing(&groups).await;
    let b = create_mailing(&w.svc, other_user, &other, &groups, TEXT).await;
    let (la, lb) = (w.lease(a).await, w.lease(b).await);
    let (mut ca, mut cb) = (Cursor::default(), Cursor::default());
    // A two-driver scheduler: always step the driver that is due first.
    let mut due = [Some(T0), Some(T0)];
    for _ in 0..MAX_STEPS {
        let Some(i) = (0..2).filter(|i| due[*i].is_some()).min_by_key(|i| due[*i]) else {
            break;
        };
        w.f.clock.advance_to(due[i].unwrap());
        let (id, lease, cursor) = if i == 0 {
            (a, &la, &mut ca)
        } else {
            (b, &lb, &mut cb)
        };
        due[i] = match mailing::step(&w.svc, id, lease, cursor).await.unwrap() {
            Step::Continue => Some(w.f.clock.now()),
            Step::SleepUntil(t) => Some(t),
            Step::Finished | Step::LostLease => None,
        };
    }
    assert_eq!(due, [None, None]);
    for p in [&w.prof, &other] {
        let times: Vec<i64> =
            w.f.wappi
                .sends()
                .iter()
                .filter(|c| &c.profile == p)
                .map(|c| c.at - T0)
                .collect();
        assert_eq!(
            times,
            vec![0, 1000, 2000, 3000],
            "profile {p}: its own 1/s, in parallel"
        );
    }
    assert_eq!(w.delivered_counts(&groups), vec![1; 4]);
    assert_eq!(
        groups
            .iter()
            .map(|g| w.f.wappi.delivered_to(g, &other).len())
            .collect::<Vec<_>>(),
        vec![1; 4]
    );
}

// ---------------------------------------------------------------------------------------------
// Failures of a send

#[tokio::test]
async fn rate_limited_pauses_the_profile_and_retries_the_row_uncounted() {
    let w = world(settings(1.0)).await;
    let groups = jids(5);
    w.f.wappi
        .script_send_to(&groups[1], SendScript::Fail(WappiError::RateLimited(2000)));
    let id = w.mailing(&groups).await;

    assert_eq!(w.run(id).await, Step::Finished);

    let times = w.send_times();
    assert_eq!(times[1], 1000, "the 429");
    assert_eq!(times[2], 3000, "nothing for 2 s, then at once");
    assert!(!times.iter().any(|t| *t > 1000 && *t < 3000));
    assert_gaps(&times, 1000.0, 2000.0);
    assert_eq!(
        w.f.wappi.sends_to(&groups[1]).len(),
        2,
        "the row is tried again"
    );
    assert_eq!(w.delivered_counts(&groups), vec![1; 5]);
    let row = w.f.db.row(id, &groups[1]);
    assert_eq!(
        (row.state, row.attempts),
        (DeliveryState::Sent, 1),
        "a 429 is not an attempt"
    );
    assert_eq!(w.f.state.pace_state(&w.prof).backoff_until, T0 + 3000);
    assert!(w.last_text().starts_with('✅'));
}

#[tokio::test]
async fn a_long_retry_after_is_waited_out_without_arming() {
    let w = world(settings(1.0)).await;
    let groups = jids(3);
    w.f.wappi.script_send_to(
        &groups[0],
        SendScript::Fail(WappiError::RateLimited(30_000)),
    );
    let id = w.mailing(&groups).await;
    let lease = w.lease(id).await;
    let mut cursor = Cursor::default();
    let db = w.f.db.clone();
    let mut armed_during_pause = false;
    let step = drive_until(
        &w.svc,
        &w.f.clock,
        id,
        &lease,
        &mut cursor,
        MAX_STEPS,
        || {
            let now = w.f.clock.now();
            let armed = db
                .rows(id)
                .iter()
                .any(|r| r.state == DeliveryState::Sending);
            armed_during_pause |= armed && now < T0 + 30_000 - ARM_LEAD_MS;
            false
        },
    )
    .await
    .unwrap();

    assert_eq!(step, Step::Finished);
    assert!(
        !armed_during_pause,
        "`sending` means about to be sent, not 30 s away"
    );
    assert_eq!(w.send_times(), vec![0, 30_000, 31_000, 32_000]);
    assert_eq!(w.delivered_counts(&groups), vec![1; 3]);
    assert_eq!(w.f.db.mailing(id).status, MailingStatus::Done);
}

#[tokio::test]
async fn rate_limited_row_is_the_first_sent_after_the_pause() {
    let w = world(settings(1.0)).await;
    let groups = jids(4);
    w.f.wappi
        .script_send_to(&groups[1], SendScript::Fail(WappiError::RateLimited(2000)));
    let id = w.mailing(&groups).await;
    w.run(id).await;
    let want = vec![
        groups[0].clone(),
        groups[1].clone(),
        groups[1].clone(),
        groups[2].clone(),
        groups[3].clone(),
    ];
    assert_eq!(w.recipients(), want);
}

#[tokio::test]
async fn temporary_errors_back_off_exponentially_then_fail_the_row() {
    // A fast profile so that pacing never hides the backoff.
    let mut s = settings(50.0);
    s.engine.max_attempts = 5;
    s.engine.backoff_base_ms = 1000;
    s.engine.backoff_max_ms = 60_000;
    let w = world(s).await;
    let g = jid(1);
    for _ in 0..5 {
        w.f.wappi.script_send_to(
            &g,
            SendScript::Fail(WappiError::Temporary("HTTP 502: bad gateway".into())),
        );
    }
    let id = w.mailing(std::slice::from_ref(&g)).await;

    assert_eq!(w.run(id).await, Step::Finished);

    let times = w.send_times();
    assert_eq!(
        times.len(),
        5,
        "max_attempts sends, then no more: {times:?}"
    );
    for (k, pair) in times.windows(2).enumerate() {
        let base = 1000.0 * f64::from(1u32 << k);
        let gap = (pair[1] - pair[0]) as f64;
        assert!(
            gap >= 0.75 * base && gap <= 1.25 * base,
            "retry {}: {gap} ms vs base {base}",
            k + 1
        );
    }
    let row = w.f.db.row(id, &g);
    assert_eq!((row.state, row.attempts), (DeliveryState::Failed, 5));
    assert_eq!(
        row.error.as_deref(),
        Some("temporary failure: HTTP 502: bad gateway")
    );
    let report = w.last_text();
    assert!(report.starts_with("⚠️"), "{report}");
    assert!(
        report.contains(g.as_str()) && report.contains("temporary failure"),
        "{report}"
    );
}

#[tokio::test]
async fn backoff_is_capped() {
    let mut s = settings(50.0);
    s.engine.max_attempts = 6;
    s.engine.backoff_base_ms = 1000;
    s.engine.backoff_max_ms = 3000;
    let w = world(s).await;
    let g = jid(1);
    for _ in 0..6 {
        w.f.wappi.script_send_to(
            &g,
            SendScript::Fail(WappiError::Temporary("network".into())),
        );
    }
    let id = w.mailing(std::slice::from_ref(&g)).await;
    w.run(id).await;
    let times = w.send_times();
    assert_eq!(times.len(), 6);
    for (k, pair) in times.windows(2).enumerate() {
        let base = (1000.0 * f64::from(1u32 << k)).min(3000.0);
        let gap = (pair[1] - pair[0]) as f64;
        assert!(
            gap >= 0.75 * base && gap <= 1.25 * base,
            "retry {}: {gap} ms vs base {base}",
            k + 1
        );
    }
}

#[tokio::test]
async fn temporary_error_then_success_and_others_are_not_held_back() {
    let w = world(settings(1.0)).await;
    let groups = jids(4);
    for _ in 0..2 {
        w.f.wappi.script_send_to(
            &groups[0],
            SendScript::Fail(WappiError::Temporary("HTTP 503".into())),
        );
    }
    let id = w.mailing(&groups).await;

    w.run(id).await;

    assert_eq!(w.f.wappi.sends().len(), 6);
    assert_eq!(w.f.wappi.sends_to(&groups[0]).len(), 3);
    assert_eq!(
        w.send_times()[1],
        1000,
        "the next group goes at the next slot"
    );
    assert_gaps(&w.send_times(), 1000.0, 5000.0);
    assert_eq!(w.delivered_counts(&groups), vec![1; 4]);
    let row = w.f.db.row(id, &groups[0]);
    assert_eq!(
        (row.state, row.attempts, row.error.as_deref()),
        (DeliveryState::Sent, 3, None)
    );
    assert!(w.last_text().starts_with('✅'));
}

#[tokio::test]
async fn rejected_fails_the_row_at_once_and_is_never_retried() {
    let w = world(settings(1.0)).await;
    let groups = jids(3);
    w.f.wappi.script_send_to(
        &groups[1],
        SendScript::Fail(WappiError::Rejected("not a member of the group".into())),
    );
    let id = w.mailing(&groups).await;

    w.run(id).await;

    assert_eq!(w.recipients(), groups, "one call each");
    assert_eq!(w.send_times(), vec![0, 1000, 2000]);
    let row = w.f.db.row(id, &groups[1]);
    assert_eq!((row.state, row.attempts), (DeliveryState::Failed, 1));
    assert_eq!(
        row.error.as_deref(),
        Some("refused: not a member of the group")
    );
    assert_eq!(
        w.states(id),
        vec![
            DeliveryState::Sent,
            DeliveryState::Failed,
            DeliveryState::Sent
        ]
    );
    let report = w.last_text();
    assert!(report.starts_with("⚠️"), "{report}");
    assert!(
        report.contains(&format!(
            "{} — refused: not a member of the group",
            groups[1]
        )),
        "{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// Unknown outcomes and reconciliation

#[tokio::test]
async fn unknown_but_delivered_is_settled_from_history_without_a_second_send() {
    let w = world(settings(1.0)).await;
    let groups = jids(3);
    w.f.wappi
        .script_send_to(&groups[1], SendScript::unknown_but_delivered());
    let id = w.mailing(&groups).await;
    let lease = w.lease(id).await;
    let mut cursor = Cursor::default();

    let db = w.f.db.clone();
    let g1 = groups[1].clone();
    drive_until(
        &w.svc,
        &w.f.clock,
        id,
        &lease,
        &mut cursor,
        MAX_STEPS,
        || db.row(id, &g1).state == DeliveryState::InDoubt,
    )
    .await
    .unwrap();
    // Not before the call could have finished: armed ARM_LEAD_MS before its slot at T0 + 1000,
    // plus the Wappi timeout and the margin.
    let cfg = &w.svc.settings.engine;
    let ready = T0 + 1000 + cfg.wappi_timeout_ms + cfg.settle_margin_ms;
    let row = w.f.db.row(id, &groups[1]);
    assert_eq!(row.next_attempt_at, ready);
    assert!(row.error.as_deref().unwrap().contains("outcome unknown"));

    assert_eq!(w.drive(id, &lease, &mut cursor).await, Step::Finished);

    assert_eq!(w.f.wappi.sends_to(&groups[1]).len(), 1, "never sent twice");
    let reads = w.f.wappi.calls_of(WappiMethod::ChatMessages);
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].to.as_ref(), Some(&groups[1]));
    assert_eq!(reads[0].at, ready, "read once the call could have finished");
    let row = w.f.db.row(id, &groups[1]);
    assert_eq!(
        (row.state, row.attempts, row.error.as_deref()),
        (DeliveryState::Sent, 1, None)
    );
    assert!(row.message_id.is_some(), "the id found in the history");
    assert_eq!(w.delivered_counts(&groups), vec![1; 3]);
    assert!(w.last_text().starts_with('✅'), "{}", w.last_text());
}

/// A lost answer followed by a 429: the row is due for settling (2 s later) while the
/// profile is paused for 30 s, and the history read waits for the pause like any send.
#[tokio::test]
async fn no_history_read_during_a_rate_limit_pause() {
    let w = world(settings(1.0)).await;
    let groups = jids(3);
    w.f.wappi
        .script_send_to(&groups[0], SendScript::unknown_but_delivered());
    w.f.wappi.script_send_to(
        &groups[1],
        SendScript::Fail(WappiError::RateLimited(30_000)),
    );
    let id = w.mailing(&groups).await;

    assert_eq!(w.run(id).await, Step::Finished);

    let calls = w.f.wappi.calls();
    let during_pause: Vec<_> = calls
        .iter()
        .filter(|c| c.at > T0 + 1000 && c.at < T0 + 31_000)
        .collect();
    assert!(
        during_pause.is_empty(),
        "calls in the pause: {during_pause:?}"
    );
    let reads = w.f.wappi.calls_of(WappiMethod::ChatMessages);
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].at, T0 + 31_000, "read when the pause ends");
    assert_eq!(w.delivered_counts(&groups), vec![1; 3]);
}

#[tokio::test]
async fn unknown_and_not_delivered_is_settled_to_pending_and_sent_once() {
    let w = world(settings(1.0)).await;
    let groups = jids(3);
    w.f.wappi
        .script_send_to(&groups[1], SendScript::unknown_not_delivered());
    let id = w.mailing(&groups).await;

    w.run(id).await;

    let g1_sends = w.f.wappi.sends_to(&groups[1]);
    assert_eq!(g1_sends.len(), 2);
    let read = &w.f.wappi.calls_of(WappiMethod::ChatMessages)[0];
    assert!(
        g1_sends[0].at < read.at && read.at <= g1_sends[1].at,
        "read before the resend"
    );
    assert_eq!(
        w.delivered_counts(&groups),
        vec![1; 3],
        "exactly one message in each group"
    );
    let row = w.f.db.row(id, &groups[1]);
    assert_eq!((row.state, row.attempts), (DeliveryState::Sent, 2));
    assert!(w.last_text().starts_with('✅'));
}

#[tokio::test]
async fn a_history_that_cannot_be_read_leaves_the_row_in_doubt_and_reported() {
    let w = world(settings(1.0)).await;
    let groups = jids(2);
    w.f.wappi
        .script_send_to(&groups[0], SendScript::unknown_but_delivered());
    for _ in 0..20 {
        w.f.wappi
            .fail_next_read(WappiError::Temporary("HTTP 500".into()));
    }
    let id = w.mailing(&groups).await;

    assert_eq!(w.run(id).await, Step::Finished);

    let reads = w.f.wappi.calls_of(WappiMethod::ChatMessages);
    assert_eq!(reads.len(), 5, "tries until the attempts are used up");
    assert_eq!(
        w.f.wappi.sends_to(&groups[0]).len(),
        1,
        "never resent blindly"
    );
    let row = w.f.db.row(id, &groups[0]);
    assert_eq!(
        (row.state, row.next_attempt_at),
        (DeliveryState::InDoubt, UNSETTLED)
    );
    assert!(row
        .error
        .as_deref()
        .unwrap()
        .starts_with("could not verify the send"));
    let m = w.f.db.mailing(id);
    assert_eq!(m.status, MailingStatus::Done);
    let report = w.last_text();
    assert!(report.starts_with("⚠️"), "{report}");
    assert!(
        report.contains("In doubt") && report.contains(groups[0].as_str()),
        "{report}"
    );
}

/// Group 1's send is delivered but its answer lost; then `chatter` messages of another member
/// follow it. Settling reads pages of 10, at most 3; with `paging` off the history ignores
/// `offset`.
async fn buried_post(chatter: usize, paging: bool) -> (World, MailingId, Vec<GroupJid>) {
    let mut s = settings(1.0);
    s.engine.history_page = 10;
    s.engine.history_max_pages = 3;
    let w = world(s).await;
    w.f.wappi.set_history_paging(paging);
    let groups = jids(3);
    w.f.wappi
        .script_send_to(&groups[1], SendScript::unknown_but_delivered());
    let id = w.mailing(&groups).await;
    let lease = w.lease(id).await;
    let mut cursor = Cursor::default();
    let db = w.f.db.clone();
    let g1 = groups[1].clone();
    drive_until(
        &w.svc,
        &w.f.clock,
        id,
        &lease,
        &mut cursor,
        MAX_STEPS,
        || db.row(id, &g1).state == DeliveryState::InDoubt,
    )
    .await
    .unwrap();
    let other = profile("9f099bc3-0000");
    for k in 0..chatter {
        let at = w.f.clock.now();
        w.f.wappi
            .inject_message(&groups[1], &other, &format!("member {k}"), at);
    }
    assert_eq!(w.drive(id, &lease, &mut cursor).await, Step::Finished);
    (w, id, groups)
}

#[tokio::test]
async fn a_buried_post_is_found_by_paging_back() {
    let (w, id, groups) = buried_post(25, true).await;
    assert_eq!(w.f.wappi.sends_to(&groups[1]).len(), 1, "never sent twice");
    let reads = w.f.wappi.calls_of(WappiMethod::ChatMessages);
    assert_eq!(reads.len(), 3, "pages 0, 10 and 20 of 26 messages");
    assert_eq!(w.f.db.row(id, &groups[1]).state, DeliveryState::Sent);
    assert!(w.last_text().starts_with('✅'));
}

#[tokio::test]
async fn a_history_too_long_to_cover_leaves_the_row_in_doubt_not_resent() {
    let (w, id, groups) = buried_post(40, true).await;
    assert_eq!(w.f.wappi.sends_to(&groups[1]).len(), 1, "not resent");
    assert_eq!(w.f.wappi.calls_of(WappiMethod::ChatMessages).len(), 3);
    let row = w.f.db.row(id, &groups[1]);
    assert_eq!(
        (row.state, row.next_attempt_at),
        (DeliveryState::InDoubt, UNSETTLED)
    );
    assert!(row.error.unwrap().contains("30 newest messages"));
    let report = w.last_text();
    assert!(
        report.contains("In doubt") && report.contains(groups[1].as_str()),
        "{report}"
    );
}

#[tokio::test]
async fn a_history_that_cannot_be_paged_proves_nothing() {
    let (w, id, groups) = buried_post(15, false).await;
    assert_eq!(w.f.wappi.sends_to(&groups[1]).len(), 1, "not resent");
    assert_eq!(w.f.wappi.calls_of(WappiMethod::ChatMessages).len(), 2);
    let row = w.f.db.row(id, &groups[1]);
    assert_eq!(
        (row.state, row.next_attempt_at),
        (DeliveryState::InDoubt, UNSETTLED)
    );
    assert!(row.error.unwrap().contains("cannot be paged"));
    // A history shorter than a page is read whole, paging or not.
    let (w, id, groups) = buried_post(3, false).await;
    assert_eq!(w.f.db.row(id, &groups[1]).state, DeliveryState::Sent);
}

#[tokio::test]
async fn a_rate_limited_history_read_pauses_and_uses_up_nothing() {
    let mut s = settings(1.0);
    s.engine.max_attempts = 2;
    let w = world(s).await;
    let groups = jids(2);
    w.f.wappi
        .script_send_to(&groups[0], SendScript::unknown_not_delivered());
    for _ in 0..5 {
        w.f.wappi.fail_next_read(WappiError::RateLimited(2000));
    }
    let id = w.mailing(&groups).await;
    assert_eq!(w.run(id).await, Step::Finished);
    assert_eq!(
        w.delivered_counts(&groups),
        vec![1, 1],
        "resent once the reads pass"
    );
    let row = w.f.db.row(id, &groups[0]);
    assert_eq!(
        (row.state, row.attempts, row.checks),
        (DeliveryState::Sent, 2, 0)
    );
    let reads = w.f.wappi.calls_of(WappiMethod::ChatMessages);
    for pair in reads.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= 2000,
            "each 429 paused the profile"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Crashes and leases

#[tokio::test]
async fn crash_after_arming_the_row_is_settled_then_sent_once() {
    let w = world(settings(1.0)).await;
    let groups = jids(3);
    let id = w.mailing(&groups).await;
    let old = w.lease(id).await;
    let armed = w.drive_until_armed(id, &old, &mut Cursor::default()).await; // cursor dropped: a crash
    assert_eq!(armed, groups[1]);
    assert_eq!(w.f.clock.now(), T0 + 1000 - ARM_LEAD_MS);

    w.f.state.expire_lease(&w.prof);
    let new = w.lease(id).await;
    assert!(new.fence > old.fence);
    assert_eq!(
        w.drive(id, &new, &mut Cursor::default()).await,
        Step::Finished
    );

    let in_doubt =
        w.f.db
            .delivery_writes()
            .into_iter()
            .find(|wr| wr.row.state == DeliveryState::InDoubt);
    let in_doubt = in_doubt.expect("the leftover became in_doubt");
    assert_eq!(
        (&in_doubt.row.group, in_doubt.fence),
        (&groups[1], new.fence)
    );
    assert_eq!(
        in_doubt.row.error.as_deref(),
        Some("interrupted while sending")
    );
    let calls = w.f.wappi.calls();
    let read = calls
        .iter()
        .position(|c| c.method == WappiMethod::ChatMessages)
        .expect("a history read");
    let resend = calls
        .iter()
        .position(|c| c.is_send() && c.to.as_ref() == Some(&groups[1]))
        .unwrap();
    assert!(read < resend, "settled before any resend");
    // The others go on at pace; the leftover waits until its call could have finished (it was
    // armed ARM_LEAD_MS before its slot at 1000).
    let cfg = &w.svc.settings.engine;
    let ready = 1000 + cfg.wappi_timeout_ms + cfg.settle_margin_ms;
    assert_eq!(calls[read].at - T0, ready, "not settled before");
    assert_eq!(
        w.recipients(),
        vec![groups[0].clone(), groups[2].clone(), groups[1].clone()]
    );
    assert_eq!(w.send_times(), vec![0, 1000, ready]);
    assert_eq!(w.delivered_counts(&groups), vec![1; 3]);
    assert!(w.last_text().starts_with('✅'));
}

#[tokio::test]
async fn crash_after_a_delivered_send_is_settled_without_a_resend() {
    let w = world(settings(1.0)).await;
    let groups = jids(3);
    let id = w.mailing(&groups).await;
    let old = w.lease(id).await;
    let armed = w.drive_until_armed(id, &old, &mut Cursor::default()).await;
    // The dead process's call went through before it could record it.
    w.f.wappi
        .inject_message(&armed, &w.prof, TEXT, w.f.clock.now() + ARM_LEAD_MS);
    w.f.clock.advance(ARM_LEAD_MS);

    w.f.state.expire_lease(&w.prof);
    let new = w.lease(id).await;
    w.drive(id, &new, &mut Cursor::default()).await;

    assert!(
        w.f.wappi.sends_to(&armed).is_empty(),
        "no second send to {armed}"
    );
    assert_eq!(w.delivered_counts(&groups), vec![1; 3]);
    assert_eq!(w.f.db.row(id, &armed).state, DeliveryState::Sent);
    assert!(w.f.db.row(id, &armed).message_id.is_some());
    assert!(w.last_text().starts_with('✅'));
}

#[tokio::test]
async fn crash_between_the_wappi_call_and_the_ledger_write_does_not_double_send() {
    let w = world(settings(1.0)).await;
    let groups = jids(3);
    let id = w.mailing(&groups).await;
    let lease = w.lease(id).await;
    let db = w.f.db.clone();
    w.f.wappi.on_send(move |i, _| {
        if i == 1 {
            db.fail_update_delivery(1);
        }
    });

    let err = drive(
        &w.svc,
        &w.f.clock,
        id,
        &lease,
        &mut Cursor::default(),
        MAX_STEPS,
    )
    .await;
    assert!(err.is_err(), "the step fails after the call");
    assert_eq!(w.f.db.row(id, &groups[1]).state, DeliveryState::Sending);

    // The runner starts again from what is stored, with the lease it still holds.
    assert_eq!(
        w.drive(id, &lease, &mut Cursor::default()).await,
        Step::Finished
    );

    assert_eq!(w.recipients(), groups, "no second send");
    assert_eq!(w.delivered_counts(&groups), vec![1; 3]);
    assert_eq!(w.f.wappi.calls_of(WappiMethod::ChatMessages).len(), 1);
    assert_eq!(w.states(id), vec![DeliveryState::Sent; 3]);
}

#[tokio::test]
async fn a_stale_lease_gets_lost_lease_and_writes_nothing() {
    let w = world(settings(1.0)).await;
    let groups = jids(3);
    let id = w.mailing(&groups).await;
    let old = w.lease(id).await;
    let mut old_cursor = Cursor::default();
    let first = mailing::step(&w.svc, id, &old, &mut old_cursor)
        .await
        .unwrap();
    assert_eq!(first, Step::Continue);
    let sleep = mailing::step(&w.svc, id, &old, &mut old_cursor)
        .await
        .unwrap();
    assert_eq!(sleep, Step::SleepUntil(T0 + 1000 - ARM_LEAD_MS));

    // The old runner stalls; its lease expires and another takes the mailing.
    w.f.state.expire_lease(&w.prof);
    let new = w.lease(id).await;
    let writes = w.f.db.delivery_writes().len();
    let calls = w.f.wappi.calls().len();
    let mailing = w.f.db.mailing(id);

    w.f.clock.advance_to(T0 + 1000 - ARM_LEAD_MS);
    assert_eq!(
        mailing::step(&w.svc, id, &old, &mut old_cursor)
            .await
            .unwrap(),
        Step::LostLease
    );
    assert_eq!(
        mailing::step(&w.svc, id, &old, &mut Cursor::default())
            .await
            .unwrap(),
        Step::LostLease
    );

    assert_eq!(w.f.db.delivery_writes().len(), writes, "no ledger write");
    assert_eq!(w.f.wappi.calls().len(), calls, "no Wappi call");
    assert_eq!(w.f.db.mailing(id), mailing, "the mailing untouched");
    // Its writes would be refused anyway.
    let mut row = w.f.db.row(id, &groups[1]);
    row.state = DeliveryState::Sent;
    assert_eq!(
        w.svc.db.update_delivery(&row, old.fence).await,
        Err(crate::ports::DbError::StaleFence)
    );

    assert_eq!(
        w.drive(id, &new, &mut Cursor::default()).await,
        Step::Finished
    );
    assert_eq!(w.delivered_counts(&groups), vec![1; 3]);
}

/// A runner paused past its lease (SIGSTOP, swap) while a row was armed must not send when it
/// wakes: the new holder may already have settled that row and armed it again. (Found as a
/// double send: the armed path used the cached mailing and never checked the lease.)
#[tokio::test]
async fn a_stale_lease_with_an_armed_row_does_not_send() {
    let w = world(settings(1.0)).await;
    let groups = jids(3);
    let id = w.mailing(&groups).await;
    let old = w.lease(id).await;
    let mut old_cursor = Cursor::default();
    let armed = w.drive_until_armed(id, &old, &mut old_cursor).await; // slot at T0 + 1000

    // The old runner stalls; its lease expires and a new runner takes over and arms the next
    // row for the same slot (the leftover waits until its call could have finished).
    w.f.state.expire_lease(&w.prof);
    let new = w.lease(id).await;
    let mut new_cursor = Cursor::default();
    let next = w.drive_until_armed(id, &new, &mut new_cursor).await;
    assert_ne!(next, armed);

    // Both wake at the slot; the stale one first (stepped directly: a driver loop would
    // notice the lost lease itself).
    w.f.clock.set(T0 + 1000);
    let calls = w.f.wappi.sends().len();
    let old_step = mailing::step(&w.svc, id, &old, &mut old_cursor)
        .await
        .unwrap();
    let stale_sends = w.f.wappi.sends().len() - calls;
    w.drive(id, &new, &mut new_cursor).await;

    assert_eq!(old_step, Step::LostLease);
    assert_eq!(
        (stale_sends, w.delivered_counts(&groups)),
        (0, vec![1; 3]),
        "(sends by the stale lease holder, messages per group)"
    );
}

#[tokio::test]
async fn an_unclaimed_lease_or_a_finished_mailing_does_nothing() {
    let w = world(settings(1.0)).await;
    let groups = jids(2);
    let id = w.mailing(&groups).await;
    let lease = w
        .svc
        .leases
        .acquire_lease(&w.prof, TTL, w.f.clock.now())
        .await
        .unwrap()
        .unwrap();
    // Not claimed: the mailing's fence is still 0.
    assert_eq!(
        mailing::step(&w.svc, id, &lease, &mut Cursor::default())
            .await
            .unwrap(),
        Step::LostLease
    );
    w.svc.db.claim_mailing(id, lease.fence).await.unwrap();
    w.drive(id, &lease, &mut Cursor::default()).await;
    let calls = w.f.wappi.calls().len();
    let tg = w.f.telegram.calls().len();
    assert_eq!(
        mailing::step(&w.svc, id, &lease, &mut Cursor::default())
            .await
            .unwrap(),
        Step::Finished
    );
    assert_eq!(
        (w.f.wappi.calls().len(), w.f.telegram.calls().len()),
        (calls, tg),
        "a done mailing is left alone"
    );
    assert_eq!(
        mailing::step(&w.svc, MailingId(999), &lease, &mut Cursor::default())
            .await
            .unwrap(),
        Step::Finished
    );
}

// ---------------------------------------------------------------------------------------------
// Cancel

#[tokio::test]
async fn cancel_in_state_while_armed_disarms_and_stops_before_the_send() {
    let w = world(settings(1.0)).await;
    let groups = jids(3);
    let id = w.mailing(&groups).await;
    let lease = w.lease(id).await;
    let mut cursor = Cursor::default();
    let armed = w.drive_until_armed(id, &lease, &mut cursor).await;

    w.svc.cancels.set_cancel(id).await.unwrap();
    // The runner wakes on a cancel; the step comes before the slot.
    assert_eq!(
        mailing::step(&w.svc, id, &lease, &mut cursor)
            .await
            .unwrap(),
        Step::Finished
    );

    assert_eq!(w.recipients(), vec![groups[0].clone()]);
    let row = w.f.db.row(id, &armed);
    assert_eq!(
        (row.state, row.attempts),
        (DeliveryState::Pending, 0),
        "back to pending, not left sending"
    );
    assert_eq!(w.f.db.mailing(id).status, MailingStatus::Cancelled);
    assert_eq!(w.f.db.mailing(id).finished_at, Some(w.f.clock.now()));
    let report = w.last_text();
    assert!(
        report.starts_with("⚠️") && report.contains("stopped") && report.contains("Not sent: 2"),
        "{report}"
    );
    // Driving on sends nothing.
    w.f.clock.advance(10_000);
    assert_eq!(
        mailing::step(&w.svc, id, &lease, &mut cursor)
            .await
            .unwrap(),
        Step::Finished
    );
    assert_eq!(w.f.wappi.sends().len(), 1);
}

#[tokio::test]
async fn cancel_in_the_database_takes_effect_before_the_next_send() {
    let w = world(settings(1.0)).await;
    let groups = jids(3);
    let id = w.mailing(&groups).await;
    let lease = w.lease(id).await;
    let mut cursor = Cursor::default();
    let wappi = w.f.wappi.clone();
    drive_until(
        &w.svc,
        &w.f.clock,
        id,
        &lease,
        &mut cursor,
        MAX_STEPS,
        || wappi.sends().len() == 1,
    )
    .await
    .unwrap();

    w.svc.db.request_cancel(id).await.unwrap();
    assert_eq!(w.drive(id, &lease, &mut cursor).await, Step::Finished);

    assert_eq!(w.f.wappi.sends().len(), 1);
    assert_eq!(
        w.states(id),
        vec![
            DeliveryState::Sent,
            DeliveryState::Pending,
            DeliveryState::Pending
        ]
    );
    assert_eq!(w.f.db.mailing(id).status, MailingStatus::Cancelled);
}

#[tokio::test]
async fn cancel_in_the_database_stops_an_armed_row() {
    let w = world(settings(1.0)).await;
    let groups = jids(3);
    let id = w.mailing(&groups).await;
    let lease = w.lease(id).await;
    let mut cursor = Cursor::default();
    let armed = w.drive_until_armed(id, &lease, &mut cursor).await;
    w.svc.db.request_cancel(id).await.unwrap();
    w.drive(id, &lease, &mut cursor).await;
    assert_eq!(
        w.f.wappi.sends().len(),
        1,
        "the armed row was sent after the cancel"
    );
    assert_eq!(w.f.db.row(id, &armed).state, DeliveryState::Pending);
}

#[tokio::test]
async fn cancel_during_a_rate_limit_pause_ends_at_once() {
    let w = world(settings(1.0)).await;
    let groups = jids(3);
    w.f.wappi.script_send_to(
        &groups[1],
        SendScript::Fail(WappiError::RateLimited(30_000)),
    );
    let id = w.mailing(&groups).await;
    let lease = w.lease(id).await;
    let mut cursor = Cursor::default();
    let state = w.f.state.clone();
    let prof = w.prof.clone();
    drive_until(
        &w.svc,
        &w.f.clock,
        id,
        &lease,
        &mut cursor,
        MAX_STEPS,
        || state.pace_state(&prof).backoff_until > 0,
    )
    .await
    .unwrap();
    let wait = mailing::step(&w.svc, id, &lease, &mut cursor)
        .await
        .unwrap();
    assert!(
        matches!(wait, Step::SleepUntil(t) if t > T0 + 30_000),
        "waits out the pause: {wait:?}"
    );
    assert!(
        !w.states(id).contains(&DeliveryState::Sending),
        "nothing armed during a long pause"
    );

    w.svc.cancels.set_cancel(id).await.unwrap();
    assert_eq!(
        mailing::step(&w.svc, id, &lease, &mut cursor)
            .await
            .unwrap(),
        Step::Finished
    );

    assert_eq!(w.f.wappi.sends().len(), 2);
    assert_eq!(w.f.db.mailing(id).status, MailingStatus::Cancelled);
    assert_eq!(
        w.f.db.mailing(id).finished_at,
        Some(T0 + 1000),
        "no waiting for the pause"
    );
}

#[tokio::test]
async fn a_cancel_during_a_send_lets_no_further_message_out() {
    let w = world(settings(1.0)).await;
    let groups = jids(4);
    let id = w.mailing(&groups).await;
    let state = w.f.state.clone();
    w.f.wappi.on_send(move |i, _| {
        if i == 1 {
            state.cancel_now(id);
        }
    });

    assert_eq!(w.run(id).await, Step::Finished);

    assert_eq!(
        w.recipients(),
        groups[..2].to_vec(),
        "the send in flight completes, nothing after"
    );
    assert_eq!(
        w.states(id),
        vec![
            DeliveryState::Sent,
            DeliveryState::Sent,
            DeliveryState::Pending,
            DeliveryState::Pending
        ]
    );
    assert_eq!(w.f.db.mailing(id).status, MailingStatus::Cancelled);
}

// ---------------------------------------------------------------------------------------------
// Account problems

#[tokio::test]
async fn not_authorized_pauses_and_a_resume_continues_without_resending() {
    let w = world(settings(1.0)).await;
    let groups = jids(5);
    w.f.wappi
        .script_send_to(&groups[2], SendScript::Fail(WappiError::NotAuthorized));
    let id = w.mailing(&groups).await;
    let lease = w.lease(id).await;

    assert_eq!(
        w.drive(id, &lease, &mut Cursor::default()).await,
        Step::Finished
    );
    w.svc.leases.release_lease(&lease).await.unwrap();

    let m = w.f.db.mailing(id);
    let reason = texts::account_problem(Lang::En, &WappiError::NotAuthorized);
    assert_eq!(
        (m.status, m.pause_reason.as_deref()),
        (MailingStatus::Paused, Some(reason.as_str()))
    );
    assert_eq!(m.finished_at, None);
    let row = w.f.db.row(id, &groups[2]);
    assert_eq!((row.state, row.attempts), (DeliveryState::Pending, 0));
    let (_, text, markup) = w.f.telegram.last_sent(CHAT).unwrap();
    assert_eq!(text, texts::paused(Lang::En, id.0, &reason));
    let Some(ReplyMarkup::Inline(kb)) = markup else {
        panic!("inline buttons expected")
    };
    let data: Vec<&str> = kb
        .inline_keyboard
        .iter()
        .flatten()
        .filter_map(|b| b.callback_data.as_deref())
        .collect();
    assert_eq!(
        data,
        vec![format!("resume:{}", id.0), format!("cancel:{}", id.0)]
    );
    assert_eq!(w.f.wappi.sends().len(), 3);

    // A paused mailing is not driven.
    let later = w.lease(id).await;
    assert_eq!(
        mailing::step(&w.svc, id, &later, &mut Cursor::default())
            .await
            .unwrap(),
        Step::Finished
    );
    assert_eq!(w.f.wappi.sends().len(), 3);
    w.svc.leases.release_lease(&later).await.unwrap();

    assert!(w.svc.db.resume_mailing(id, w.f.clock.now()).await.unwrap());
    assert_eq!(w.run(id).await, Step::Finished);

    let want: Vec<GroupJid> = [0, 1, 2, 2, 3, 4]
        .iter()
        .map(|i| groups[*i].clone())
        .collect();
    assert_eq!(w.recipients(), want, "sent groups are not sent again");
    assert_eq!(w.delivered_counts(&groups), vec![1; 5]);
    assert_eq!(w.f.db.mailing(id).status, MailingStatus::Done);
    assert!(w.last_text().starts_with('✅'));
}

#[tokio::test]
async fn missing_credentials_pause_the_mailing_without_calling_wappi() {
    let w = world(settings(1.0)).await;
    let stranger = UserId(9);
    w.svc
        .db
        .ensure_user(stranger, Lang::En, i64::MAX, T0)
        .await
        .unwrap();
    let id = create_mailing(&w.svc, stranger, &w.prof, &jids(2), TEXT).await;

    assert_eq!(w.run(id).await, Step::Finished);

    assert!(w.f.wappi.calls().is_empty());
    let m = w.f.db.mailing(id);
    assert_eq!(m.status, MailingStatus::Paused);
    assert_eq!(
        m.pause_reason,
        Some(texts::account_problem(Lang::En, &WappiError::BadToken))
    );
    assert!(w.f.telegram.sent_texts(ChatId(9))[0].starts_with('⏸'));
}

/// While the start message is on its way (the bot sends it after handing the mailing over),
/// the engine says nothing to the chat: a pause decided meanwhile waits for the start message,
/// and no further post goes out before it is made.
#[tokio::test]
async fn a_pause_waits_for_the_start_message_and_nothing_is_sent_meanwhile() {
    let w = world(settings(1.0)).await;
    let groups = jids(3);
    w.f.wappi
        .script_send_to(&groups[0], SendScript::Fail(WappiError::NotAuthorized));
    let id = w.announced_mailing(&groups).await;
    let lease = w.lease(id).await;
    let mut cursor = Cursor::default();

    let second_later = || w.f.clock.now() >= T0 + 1_000;
    let step = drive_until(
        &w.svc,
        &w.f.clock,
        id,
        &lease,
        &mut cursor,
        MAX_STEPS,
        second_later,
    )
    .await
    .unwrap();
    assert!(matches!(step, Step::SleepUntil(_)), "{step:?}");
    assert_eq!(
        w.f.wappi.sends().len(),
        1,
        "no post while the pause is owed"
    );
    assert_eq!(w.f.db.mailing(id).status, MailingStatus::Running);
    assert!(w.f.telegram.sent_texts(CHAT).is_empty());

    start_message(&w, id).await;
    assert_eq!(w.drive(id, &lease, &mut cursor).await, Step::Finished);

    assert_eq!(w.f.db.mailing(id).status, MailingStatus::Paused);
    assert_eq!(w.f.wappi.sends().len(), 1);
    let sent = w.f.telegram.sent_texts(CHAT);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent[0].starts_with('🚀') && sent[1].starts_with('⏸'),
        "{sent:?}"
    );
}

/// A start message that never comes holds nothing back for longer than
/// [`ANNOUNCE_WAIT_MS`]: the report goes then.
#[tokio::test]
async fn a_start_message_that_never_comes_holds_the_report_back_no_longer_than_the_wait() {
    let w = world(settings(1.0)).await;
    let id = w.announced_mailing(&jids(2)).await;

    assert_eq!(w.run(id).await, Step::Finished);

    assert_eq!(w.send_times(), vec![0, 1000]);
    let sent = w.f.telegram.sent_texts(CHAT);
    assert_eq!(sent.len(), 1, "the report only: {sent:?}");
    assert!(sent[0].starts_with('✅'), "{sent:?}");
    let at = w.f.db.mailing(id).finished_at.unwrap();
    assert!(
        (T0 + ANNOUNCE_WAIT_MS..T0 + ANNOUNCE_WAIT_MS + 200).contains(&at),
        "report at +{} ms",
        at - T0
    );
}

// ---------------------------------------------------------------------------------------------
// Progress and report

/// What the bot does on start: the start message becomes the progress message.
async fn start_message(w: &World, id: MailingId) -> MessageId {
    let kb = mailing::progress_keyboard(Lang::En, id);
    let mid = w
        .svc
        .telegram
        .send_message(CHAT, "🚀 started", Some(&ReplyMarkup::Inline(kb)))
        .await
        .unwrap();
    w.svc
        .db
        .set_progress(id, Some(mid.0), w.f.clock.now())
        .await
        .unwrap();
    mid
}

#[tokio::test]
async fn progress_edits_are_never_closer_than_the_interval() {
    let w = world(settings(1.0)).await;
    let groups = jids(12);
    let id = w.mailing(&groups).await;
    let mid = start_message(&w, id).await;

    w.run(id).await;

    let edits = w.f.telegram.edits_of(CHAT, mid);
    let (last, progress) = edits.split_last().expect("edits");
    assert!(last.1.starts_with("📊"), "the final edit: {}", last.1);
    assert!(progress.iter().all(|(_, t)| t.starts_with('⏳')));
    assert!(progress.len() >= 3, "11 s of sending at 3 s: {progress:?}");
    let times: Vec<i64> = std::iter::once(T0)
        .chain(progress.iter().map(|(t, _)| *t))
        .collect();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 3000,
            "edits {} ms apart",
            pair[1] - pair[0]
        );
    }
    // No second progress message: the start message and the report only.
    assert_eq!(w.f.telegram.sent_texts(CHAT).len(), 2);
    let shown = w.f.telegram.message(CHAT, mid).unwrap();
    assert!(
        shown.keyboard.inline_keyboard.is_empty(),
        "the final edit removes the Stop button"
    );
    assert!(w.last_text().starts_with("✅ Mailing"));
}

#[tokio::test]
async fn progress_is_shed_while_telegram_is_busy_and_the_pace_is_kept() {
    let w = world(settings(1.0)).await;
    let groups = jids(8);
    let id = w.mailing(&groups).await;
    let mid = start_message(&w, id).await;
    w.f.telegram.set_busy(true);

    w.run(id).await;

    assert_eq!(w.send_times(), (0..8).map(|i| i * 1000).collect::<Vec<_>>());
    let edits = w.f.telegram.edits_of(CHAT, mid);
    assert_eq!(edits.len(), 1, "only the final edit: {edits:?}");
}

#[tokio::test]
async fn without_a_start_message_the_engine_sends_one_progress_message() {
    let w = world(settings(1.0)).await;
    let id = w.mailing(&jids(8)).await;

    w.run(id).await;

    let sent = w.f.telegram.sent_texts(CHAT);
    assert_eq!(
        sent.len(),
        2,
        "one progress message and the report: {sent:?}"
    );
    assert!(sent[0].starts_with('⏳') && sent[1].starts_with('✅'));
    assert_eq!(
        w.f.db.mailing(id).progress_message_id,
        Some(1001),
        "the first message id"
    );
}

// --- the user's pace ------------------------------------------------------------------------

/// A custom pace: gaps of 1-2 s, a 10-12 s pause after every 3rd post.
async fn set_pace(w: &World, args: &str) {
    let pace = crate::model::pacing::pace::Preset::Fast
        .settings()
        .apply(args, 0)
        .expect("a valid pace");
    w.svc
        .db
        .set_pace(USER, &serde_json::to_string(&pace).unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_users_pace_spaces_posts_with_gaps_and_batch_pauses() {
    let w = world(settings(10.0)).await;
    set_pace(&w, "gap=1-2s batch=3 pause=10-12s").await;
    let groups = jids(8);
    let id = w.mailing(&groups).await;
    assert_eq!(w.run(id).await, Step::Finished);
    assert_eq!(w.recipients(), groups);
    let times = w.send_times();
    assert_eq!(times[0], 0, "the first post goes at once");
    for (i, gap) in times.windows(2).map(|p| p[1] - p[0]).enumerate() {
        let range = if (i + 1) % 3 == 0 {
            10_000..=12_000
        } else {
            1_000..=2_000
        };
        assert!(range.contains(&gap), "after post {}: {gap} ms", i + 1);
    }
}

#[tokio::test]
async fn a_restart_mid_mailing_keeps_the_same_plan() {
    let plan_of = |restart_after: Option<usize>| async move {
        let w = world(settings(10.0)).await;
        set_pace(&w, "gap=1-5s batch=2-3 pause=8-20s").await;
        let groups = jids(9);
        let id = w.mailing(&groups).await;
        if let Some(n) = restart_after {
            let lease = w.lease(id).await;
            let sent = |w: &World| w.f.wappi.sends().len();
            drive_until(
                &w.svc,
                &w.f.clock,
                id,
                &lease,
                &mut Cursor::default(),
                MAX_STEPS,
                || sent(&w) >= n,
            )
            .await
            .unwrap();
            w.svc.leases.release_lease(&lease).await.unwrap();
        }
        // A new driver with a fresh cursor (a restart, another runner) finishes it.
        assert_eq!(w.run(id).await, Step::Finished);
        w.send_times()
    };
    let whole = plan_of(None).await;
    for cut in [1, 4, 7] {
        assert_eq!(plan_of(Some(cut)).await, whole, "restart after {cut} posts");
    }
}

#[tokio::test]
async fn a_window_that_excludes_now_holds_the_mailing_and_says_when_it_goes_on() {
    let w = world(settings(10.0)).await;
    // T0 is 01:13:20 in Moscow: outside 09:00-21:00, which opens 7 h 46 min 40 s later.
    set_pace(&w, "gap=1s window=09:00-21:00").await;
    let groups = jids(2);
    let id = w.mailing(&groups).await;
    assert_eq!(w.run(id).await, Step::Finished);
    assert_eq!(
        w.send_times(),
        vec![28_000_000, 28_001_000],
        "from 09:00 Moscow time"
    );
    let held =
        w.f.telegram
            .calls()
            .iter()
            .filter_map(|c| c.text().map(str::to_string))
            .find(|t| t.starts_with('⏸'))
            .expect("a ⏸ progress message");
    assert!(held.contains("at 09:00"), "{held}");
}

#[tokio::test]
async fn a_run_of_refused_posts_pauses_the_mailing_before_the_next() {
    let w = world(settings(10.0)).await;
    let groups = jids(8);
    for g in &groups[..6] {
        w.f.wappi.script_send_to(
            g,
            SendScript::Fail(WappiError::Rejected("not a member".into())),
        );
    }
    let id = w.mailing(&groups).await;
    assert_eq!(w.run(id).await, Step::Finished);
    assert_eq!(
        w.recipients(),
        groups[..5].to_vec(),
        "nothing after the fifth"
    );
    let m = w.f.db.mailing(id);
    assert_eq!(m.status, MailingStatus::Paused);
    assert!(
        w.last_text().contains("5 groups in a row"),
        "{}",
        w.last_text()
    );
}
