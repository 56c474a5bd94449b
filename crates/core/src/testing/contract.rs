//! The contract of the coordination capabilities ([`Leases`], [`Cancels`], [`Pacer`],
//! [`Intake`] with [`IntakeConsumer`], [`Heartbeats`]): the behaviour every backend must show,
//! one function per capability, each generic over only the traits it checks, and
//! [`state_suite`] for a backend that has them all. The core runs it on its
//! [`MemoryState`](crate::memory_state::MemoryState), the server on its embedded state and on
//! Redis.
//!
//! Run it on a backend nobody else uses meanwhile. Each [`Run`] picks fresh profile and mailing
//! ids and times near the real clock, so leftovers of an earlier run do not disturb it, and
//! the queue checks drain the intake queue first. Backends must decide with the `now` they are
//! given (a Redis adapter passes it to its scripts; key TTLs there may only serve as garbage
//! collection, with a margin beyond the logical expiry). Every check panics on the first
//! deviation.

use crate::model::ids::{GroupJid, MailingId, ProfileId};
use crate::model::pacing::{Pace, PacingConfig};
use crate::ports::{
    Cancels, Heartbeats, Intake, IntakeConsumer, LeaseTry, Leases, Pacer, StateBackend,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

/// Checks every capability of a complete backend, in turn, with a fresh [`Run`].
pub async fn state_suite<S: StateBackend + ?Sized>(state: &S) {
    let run = Run::new();
    leases(state, &run).await;
    all_but_leases(state, &run).await;
}

/// Every capability but the lease check, whose times are the caller's: a backend that judges
/// leases by its own clock (Redis) runs its own real-time lease check beside this.
pub async fn all_but_leases<S: StateBackend + ?Sized>(state: &S, run: &Run) {
    cancels(state, run).await;
    pacing(state, run).await;
    backoff(state, run).await;
    intake(state, run).await;
    intake_claims(state, run).await;
    heartbeats(state, run).await;
}

/// One run of the contract: a random id that names its profiles, mailings and runners, and a
/// time base near the real clock.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: u64,
    /// Unix ms: now, when the run was made.
    pub t0: i64,
}

impl Run {
    /// A run with an id nobody used before: the real clock's nanoseconds, the process id and a
    /// counter, mixed.
    pub fn new() -> Run {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let seed = (since.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 40)
            ^ RUNS.fetch_add(1, Ordering::Relaxed).rotate_left(20);
        Run {
            id: crate::memory_state::splitmix64(seed),
            t0: i64::try_from(since.as_millis())
                .unwrap_or(i64::MAX / 4)
                .max(1_700_000_000_000),
        }
    }

    /// A profile id of this run.
    pub fn profile(&self, name: &str) -> ProfileId {
        ProfileId::parse(&format!("contract-{:016x}-{name}", self.id)).expect("profile id")
    }

    /// A mailing id of this run.
    pub fn mailing(&self, n: i64) -> MailingId {
        MailingId(i64::try_from(self.id >> 2).unwrap_or(0) + n)
    }
}

impl Default for Run {
    fn default() -> Self {
        Run::new()
    }
}

/// Polls all `futures` until every one is done, as `join!` does (without a runtime crate).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("ready")).collect()
}

/// Leases: exclusive while unexpired, renewed and released only with the holder's token, taken
/// over once expired, with fences that only grow.
pub async fn leases<S: Leases + ?Sized>(state: &S, run: &Run) {
    let (p, other, t0) = (&run.profile("lease"), &run.profile("lease2"), run.t0);
    const TTL: u64 = 10_000;
    let a = state
        .acquire_lease(p, TTL, t0)
        .await
        .unwrap()
        .expect("a free profile is acquired");
    assert_eq!(&a.profile, p);
    assert!(a.token.len() >= 16, "the token is a long random string");

    // Exclusive while unexpired (held while now < acquired + ttl).
    for now in [t0, t0 + 1, t0 + 9_999] {
        assert_eq!(
            state.acquire_lease(p, TTL, now).await.unwrap(),
            None,
            "held at {now}"
        );
    }
    // A try tells how long the lease can still last, never longer than it does.
    match state.try_lease(p, TTL, t0 + 1).await.unwrap() {
        LeaseTry::Held { free_in_ms } => assert!(
            free_in_ms.is_none_or(|ms| (1..TTL).contains(&ms)),
            "held for {free_in_ms:?} more of {TTL}"
        ),
        LeaseTry::Taken(l) => panic!("a held lease was taken: {l:?}"),
    }
    // Tried together, each profile is answered for in order.
    match &state
        .try_leases(std::slice::from_ref(p), TTL, t0 + 2)
        .await
        .unwrap()[..]
    {
        [LeaseTry::Held { .. }] => {}
        other => panic!("a held lease answered {other:?}"),
    }
    // Another profile is independent.
    let o = state
        .acquire_lease(other, TTL, t0)
        .await
        .unwrap()
        .expect("another profile is free");
    assert_ne!(o.token, a.token);
    assert!(o.fence != a.fence, "fences are never reused");

    // Renewal with the right token extends the lease.
    assert!(state.renew_lease(&a, TTL, t0 + 5_000).await.unwrap());
    assert_eq!(
        state.acquire_lease(p, TTL, t0 + 12_000).await.unwrap(),
        None,
        "renewed until t0+15000"
    );

    // Expired: taken over, with a new token and a larger fence.
    let b = state
        .acquire_lease(p, TTL, t0 + 15_000)
        .await
        .unwrap()
        .expect("an expired lease is taken over");
    assert_ne!(b.token, a.token);
    assert!(b.fence > a.fence, "fence {} after {}", b.fence, a.fence);

    // The old holder can neither renew nor release the new holder's lease.
    assert!(
        !state.renew_lease(&a, TTL, t0 + 15_001).await.unwrap(),
        "renew with a stale token"
    );
    state.release_lease(&a).await.unwrap();
    assert_eq!(
        state.acquire_lease(p, TTL, t0 + 15_002).await.unwrap(),
        None,
        "a stale release deleted nothing"
    );
    // Renewed together, each lease is answered for in order.
    assert_eq!(
        state
            .renew_leases(&[a.clone(), b.clone()], TTL, t0 + 15_003)
            .await
            .unwrap(),
        [false, true],
        "the stale lease lost, the new holder still holds it"
    );
    assert!(state.renew_leases(&[], TTL, t0).await.unwrap().is_empty());

    // A released lease is free at once, and the next fence is larger still.
    state.release_lease(&b).await.unwrap();
    assert!(
        !state.renew_lease(&b, TTL, t0 + 15_004).await.unwrap(),
        "released means lost"
    );
    let c = state
        .acquire_lease(p, TTL, t0 + 15_005)
        .await
        .unwrap()
        .expect("free after release");
    assert!(c.fence > b.fence);

    // A lease that ran out cannot be renewed, even if nobody took it meanwhile.
    assert!(
        !state
            .renew_lease(&c, TTL, t0 + 15_005 + TTL as i64)
            .await
            .unwrap(),
        "expired means lost"
    );
    state.release_lease(&c).await.unwrap();
    state.release_lease(&o).await.unwrap();
}

/// Cancel flags: idempotent, per mailing.
pub async fn cancels<S: Cancels + ?Sized>(state: &S, run: &Run) {
    let (m, other) = (run.mailing(1), run.mailing(2));
    assert!(!state.is_cancelled(m).await.unwrap());
    state.set_cancel(m).await.unwrap();
    state.set_cancel(m).await.unwrap();
    assert!(state.is_cancelled(m).await.unwrap());
    assert!(
        !state.is_cancelled(other).await.unwrap(),
        "flags are per mailing"
    );
}

fn jid(n: u32) -> GroupJid {
    GroupJid::parse(&format!("1203630000000{n:05}")).expect("group id")
}

/// Pacing: the profile rate at exact `WaitUntil` times, one winner among concurrent callers,
/// profiles apart, the per-chat burst.
pub async fn pacing<S: Pacer + ?Sized>(state: &S, run: &Run) {
    let (p, other, t0) = (&run.profile("pace"), &run.profile("pace2"), run.t0);
    let per_second = PacingConfig {
        profile_rate_per_sec: 1.0,
        chat_burst: 12,
        chat_window_ms: 2000,
    };
    let g = jid(1);

    // A burst at the same instant: one Go, then exact WaitUntil times.
    assert_eq!(state.pace(p, &g, &per_second, t0).await.unwrap(), Pace::Go);
    for chat in [1, 2, 1, 3] {
        assert_eq!(
            state.pace(p, &jid(chat), &per_second, t0).await.unwrap(),
            Pace::WaitUntil(t0 + 1000)
        );
    }
    assert_eq!(
        state.pace(p, &g, &per_second, t0 + 999).await.unwrap(),
        Pace::WaitUntil(t0 + 1000)
    );
    assert_eq!(
        state.pace(p, &g, &per_second, t0 + 1000).await.unwrap(),
        Pace::Go
    );
    // Concurrent callers: exactly one takes the slot.
    let chats = [jid(1), jid(2), jid(3), jid(4)];
    let answers: Vec<Pace> = join_all(
        chats
            .iter()
            .map(|chat| state.pace(p, chat, &per_second, t0 + 2000))
            .collect(),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    assert_eq!(
        answers.iter().filter(|a| **a == Pace::Go).count(),
        1,
        "{answers:?}"
    );
    assert!(
        answers
            .iter()
            .all(|a| *a == Pace::Go || *a == Pace::WaitUntil(t0 + 3000)),
        "{answers:?}"
    );
    // Profiles are paced independently.
    assert_eq!(
        state.pace(other, &g, &per_second, t0 + 2000).await.unwrap(),
        Pace::Go
    );

    // The per-chat burst: a fast profile, at most 3 per chat in any second.
    let fast = PacingConfig {
        profile_rate_per_sec: 100.0,
        chat_burst: 3,
        chat_window_ms: 1000,
    };
    let t1 = t0 + 10_000;
    for i in 0..3 {
        assert_eq!(
            state.pace(other, &g, &fast, t1 + 10 * i).await.unwrap(),
            Pace::Go,
            "send {i}"
        );
    }
    assert_eq!(
        state.pace(other, &g, &fast, t1 + 30).await.unwrap(),
        Pace::WaitUntil(t1 + 1000)
    );
    assert_eq!(
        state.pace(other, &jid(2), &fast, t1 + 30).await.unwrap(),
        Pace::Go,
        "another chat goes"
    );
    assert_eq!(
        state.pace(other, &g, &fast, t1 + 999).await.unwrap(),
        Pace::WaitUntil(t1 + 1000)
    );
    assert_eq!(
        state.pace(other, &g, &fast, t1 + 1000).await.unwrap(),
        Pace::Go
    );
}

/// Backoff: pauses every send of the profile, is never shortened, and the rate applies again
/// after it.
pub async fn backoff<S: Pacer + ?Sized>(state: &S, run: &Run) {
    let (p, t0) = (&run.profile("backoff"), run.t0);
    let cfg = PacingConfig::default();
    let g = jid(7);
    let paused = |until: Option<i64>, at: i64| until.is_some_and(|u| u > at);
    assert!(!paused(state.backoff_until(p).await.unwrap(), t0));
    state.set_backoff(p, t0 + 5_000).await.unwrap();
    assert_eq!(state.backoff_until(p).await.unwrap(), Some(t0 + 5_000));
    assert_eq!(
        state.pace(p, &g, &cfg, t0).await.unwrap(),
        Pace::WaitUntil(t0 + 5_000)
    );
    // An earlier backoff never shortens a later one.
    state.set_backoff(p, t0 + 3_000).await.unwrap();
    assert_eq!(state.backoff_until(p).await.unwrap(), Some(t0 + 5_000));
    assert_eq!(
        state.pace(p, &g, &cfg, t0 + 4_000).await.unwrap(),
        Pace::WaitUntil(t0 + 5_000)
    );
    assert_eq!(
        state.pace(p, &g, &cfg, t0 + 4_999).await.unwrap(),
        Pace::WaitUntil(t0 + 5_000)
    );
    assert_eq!(state.pace(p, &g, &cfg, t0 + 5_000).await.unwrap(), Pace::Go);
    // After a Go the rate applies again; a later backoff extends the wait.
    assert_eq!(
        state.pace(p, &g, &cfg, t0 + 5_000).await.unwrap(),
        Pace::WaitUntil(t0 + 6_000)
    );
    state.set_backoff(p, t0 + 8_000).await.unwrap();
    assert_eq!(
        state.pace(p, &g, &cfg, t0 + 6_000).await.unwrap(),
        Pace::WaitUntil(t0 + 8_000)
    );
}

/// The intake queue: FIFO, a repeated id is a second entry, nothing lost when interleaved. It
/// drains the queue first.
pub async fn intake<S: Intake + IntakeConsumer + ?Sized>(state: &S, run: &Run) {
    let mailing = |n: i64| run.mailing(100 + n);
    while state.dequeue().await.unwrap().is_some() {}
    assert_eq!(state.dequeue().await.unwrap(), None);

    // FIFO, and a repeated id is a second entry (the runner ignores mailings it already drives).
    let order = [1, 2, 3, 1];
    for n in order {
        state.enqueue(mailing(n)).await.unwrap();
    }
    for n in order {
        assert_eq!(state.dequeue().await.unwrap(), Some(mailing(n)));
    }
    assert_eq!(state.dequeue().await.unwrap(), None);

    // Interleaved, nothing lost.
    let mut out = Vec::new();
    for n in 0..200 {
        state.enqueue(mailing(n)).await.unwrap();
        if n % 3 == 0 {
            out.extend(state.dequeue().await.unwrap());
        }
    }
    while let Some(m) = state.dequeue().await.unwrap() {
        out.push(m);
    }
    assert_eq!(out, (0..200).map(&mailing).collect::<Vec<_>>());
}

/// The claim lifecycle of the runners' end (see [`IntakeConsumer`]): a backend either keeps a
/// claim on every mailing it hands out until it is acked, or keeps none; what it answers says
/// which, and must hold to it. It first gives back and acks whatever this consumer held.
pub async fn intake_claims<S: Intake + IntakeConsumer + ?Sized>(state: &S, run: &Run) {
    loop {
        state.give_back().await.unwrap();
        let mut drained = false;
        while let Some(m) = state.dequeue().await.unwrap() {
            state.ack(m).await.unwrap();
            drained = true;
        }
        if !drained {
            break;
        }
    }
    assert_eq!(state.give_back().await.unwrap(), 0, "nothing held any more");
    let (a, b) = (run.mailing(500), run.mailing(501));
    assert!(
        !state.ack(a).await.unwrap(),
        "a mailing never taken has no claim"
    );
    state.enqueue(a).await.unwrap();
    state.enqueue(b).await.unwrap();
    if let Some(depth) = state.queue_depth().await.unwrap() {
        assert_eq!(depth, 2, "both wait");
    }
    assert_eq!(state.dequeue().await.unwrap(), Some(a));
    if let Some(depth) = state.queue_depth().await.unwrap() {
        assert_eq!(depth, 1, "a taken mailing no longer waits");
    }
    // `true`: this backend keeps claims until acked.
    let claims = state.ack(a).await.unwrap();
    assert!(!state.ack(a).await.unwrap(), "acked once");
    assert_eq!(state.dequeue().await.unwrap(), Some(b));
    assert_eq!(
        state.requeue_stale(3_600_000).await.unwrap(),
        0,
        "the claims of a live consumer stay"
    );
    let back = state.give_back().await.unwrap();
    if claims {
        assert_eq!(back, 1, "the unacked claim comes back");
        assert_eq!(state.dequeue().await.unwrap(), Some(b), "at the head");
        assert!(state.ack(b).await.unwrap());
    } else {
        assert_eq!(back, 0, "without claims nothing comes back");
        assert!(!state.ack(b).await.unwrap());
    }
    assert_eq!(state.dequeue().await.unwrap(), None);
    assert_eq!(state.give_back().await.unwrap(), 0);
}

/// Heartbeats: the newest of any runner.
pub async fn heartbeats<S: Heartbeats + ?Sized>(state: &S, run: &Run) {
    let t0 = run.t0;
    let run = run.id;
    // Above anything an earlier run on the same backend left.
    let base = state
        .last_heartbeat()
        .await
        .unwrap()
        .map_or(t0, |last| last.max(t0))
        + 1;
    let (a, b) = (
        format!("contract-{run:016x}-a"),
        format!("contract-{run:016x}-b"),
    );
    state.heartbeat(&a, base).await.unwrap();
    assert_eq!(state.last_heartbeat().await.unwrap(), Some(base));
    state.heartbeat(&b, base + 500).await.unwrap();
    state.heartbeat(&a, base + 200).await.unwrap();
    assert_eq!(
        state.last_heartbeat().await.unwrap(),
        Some(base + 500),
        "the newest of any runner"
    );
    state.heartbeat(&a, base + 900).await.unwrap();
    assert_eq!(state.last_heartbeat().await.unwrap(), Some(base + 900));
}

// ---------------------------------------------------------------------------------------------
// The store contract (`Db`: the mailing store and the image store)

pub use store::db_contract_suite;

mod store {
    use crate::testing::*;

    /// Previews: numbered per user, only the newest one with an unchanged digest is taken, once.
    async fn preview_contract(db: &dyn crate::ports::Db) {
        let user = UserId(910_000_002);
        db.ensure_user(user, Lang::En, 0, T0).await.unwrap();
        let taken = |r: Result<Option<String>, DbError>| r.unwrap();
        // Nothing shown yet: not even number 0 (an unnumbered old button) is taken.
        assert_eq!(taken(db.take_preview(user, 0, "a").await), None);
        assert_eq!(db.begin_preview(user, "a", "").await.unwrap(), 1);
        assert_eq!(
            db.begin_preview(user, "b", "[[\"1@g.us\",\"left\"]]")
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            taken(db.take_preview(user, 1, "a").await),
            None,
            "superseded"
        );
        assert_eq!(
            taken(db.take_preview(user, 2, "a").await),
            None,
            "changed since"
        );
        assert_eq!(
            taken(db.take_preview(user, 2, "b").await).as_deref(),
            Some("[[\"1@g.us\",\"left\"]]"),
            "taken with what it leaves out"
        );
        assert_eq!(
            taken(db.take_preview(user, 2, "b").await),
            None,
            "taken once"
        );
        assert_eq!(db.begin_preview(user, "b", "").await.unwrap(), 3);
        assert_eq!(
            taken(db.take_preview(user, 3, "b").await).as_deref(),
            Some("")
        );
        assert_eq!(
            db.begin_preview(UserId(910_000_003), "a", "").await,
            Err(DbError::NotFound)
        );
    }

    /// Checks that a `Db` backend keeps the mailing-store rules the engine relies on; panics on the
    /// first deviation. Run it on a fresh database; `tag` (letters and digits) keeps its profile
    /// ids apart from anything else stored. Covered: snapshot and rows of a new mailing, one
    /// active mailing per profile, claiming and fenced writes (`StaleFence`, `NotFound`), status
    /// changes with `finished_at` and pause reasons, resume, cancel requests, progress and the
    /// update-id set.
    pub async fn db_contract_suite(db: &dyn crate::ports::Db, tag: &str) {
        use crate::model::ledger::Content;
        preview_contract(db).await;
        let prof_a = profile(&format!("contract-a-{tag}"));
        let prof_b = profile(&format!("contract-b-{tag}"));
        let user = UserId(910_000_001);
        db.ensure_user(user, Lang::En, 0, T0)
            .await
            .expect("ensure_user");
        let new = |prof: &ProfileId, groups: Vec<GroupJid>| NewMailing {
            user_id: user,
            chat_id: ChatId::from(user),
            profile_id: prof.clone(),
            content: Content::text_only("*Sale* today"),
            groups,
            skipped: vec![],
            now: T0,
            announce_until: T0 + 10_000,
        };

        // A new mailing: running, fence 0, one pending row per distinct group, in list order.
        let id = db
            .create_mailing(&new(&prof_a, vec![jid(3), jid(1), jid(2), jid(1)]))
            .await
            .expect("create");
        let m = db.get_mailing(id).await.unwrap().expect("stored");
        assert_eq!(
            (m.status, m.fence, m.created_at, m.finished_at),
            (MailingStatus::Running, 0, T0, None)
        );
        assert_eq!(
            (
                m.cancel_requested,
                m.progress_message_id,
                m.pause_reason.as_deref()
            ),
            (false, None, None)
        );
        assert_eq!(m.content.text, "*Sale* today");
        let rows = db.deliveries(id).await.unwrap();
        let got: Vec<(GroupJid, u32, u32, DeliveryState)> = rows
            .iter()
            .map(|r| (r.group.clone(), r.part, r.position, r.state))
            .collect();
        let pending = DeliveryState::Pending;
        assert_eq!(
            got,
            vec![
                (jid(3), 0, 0, pending),
                (jid(1), 0, 1, pending),
                (jid(2), 0, 2, pending)
            ]
        );
        assert!(rows
            .iter()
            .all(|r| r.attempts == 0 && r.next_attempt_at == 0 && r.message_id.is_none()));
        assert_eq!(
            db.latest_mailing(user).await.unwrap().map(|m| m.id),
            Some(id)
        );
        assert!(db
            .running_mailings()
            .await
            .unwrap()
            .iter()
            .any(|m| m.id == id));
        assert_eq!(db.get_mailing(MailingId(i64::MAX)).await.unwrap(), None);

        // One active mailing per profile; another profile is free.
        assert_eq!(
            db.create_mailing(&new(&prof_a, vec![jid(9)])).await,
            Err(DbError::AlreadyActive)
        );
        let other = db
            .create_mailing(&new(&prof_b, vec![jid(9)]))
            .await
            .expect("another profile");
        assert_ne!(other, id);

        // Claims only go up; writes need the current fence.
        db.claim_mailing(id, 5).await.expect("claim");
        db.claim_mailing(id, 5)
            .await
            .expect("re-claim with the same fence");
        assert_eq!(db.claim_mailing(id, 4).await, Err(DbError::StaleFence));
        assert_eq!(
            db.claim_mailing(MailingId(i64::MAX), 1).await,
            Err(DbError::NotFound)
        );
        let mut row = rows[0].clone();
        row.state = DeliveryState::Sending;
        row.attempts = 1;
        row.updated_at = T0 + 1;
        db.update_delivery(&row, 5).await.expect("fenced write");
        let mut stale = row.clone();
        stale.state = DeliveryState::Sent;
        assert_eq!(
            db.update_delivery(&stale, 4).await,
            Err(DbError::StaleFence)
        );
        assert_eq!(
            db.deliveries(id).await.unwrap()[0],
            row,
            "a refused write changes nothing"
        );
        row.state = DeliveryState::Sent;
        row.message_id = Some("wamid.1".into());
        db.update_delivery(&row, 5).await.expect("fenced write");
        assert_eq!(db.deliveries(id).await.unwrap()[0], row);
        db.claim_mailing(id, 6).await.expect("a newer runner");
        assert_eq!(
            db.update_delivery(&row, 5).await,
            Err(DbError::StaleFence),
            "the old fence is stale now"
        );
        let mut missing = row.clone();
        missing.group = jid(99);
        assert_eq!(
            db.update_delivery(&missing, 6).await,
            Err(DbError::NotFound)
        );

        // Status changes: fenced; a paused mailing still holds its profile; resume once.
        let now = T0 + 10;
        assert_eq!(
            db.set_mailing_status(id, MailingStatus::Paused, Some("why"), 5, now)
                .await,
            Err(DbError::StaleFence)
        );
        db.set_mailing_status(id, MailingStatus::Paused, Some("why"), 6, now)
            .await
            .expect("pause");
        let m = db.get_mailing(id).await.unwrap().unwrap();
        assert_eq!(
            (m.status, m.pause_reason.as_deref(), m.finished_at),
            (MailingStatus::Paused, Some("why"), None)
        );
        assert!(!db
            .running_mailings()
            .await
            .unwrap()
            .iter()
            .any(|m| m.id == id));
        assert_eq!(
            db.create_mailing(&new(&prof_a, vec![jid(9)])).await,
            Err(DbError::AlreadyActive)
        );
        assert!(db.resume_mailing(id, T0 + 11).await.unwrap());
        assert!(
            !db.resume_mailing(id, T0 + 11).await.unwrap(),
            "only a paused mailing resumes"
        );
        let m = db.get_mailing(id).await.unwrap().unwrap();
        assert_eq!((m.status, m.pause_reason), (MailingStatus::Running, None));
        assert_eq!(m.resumed_at, T0 + 11, "a resume is dated");
        // The user's pause: only a running mailing, unfenced; resumed like any pause.
        assert!(db.pause_mailing(id, "by you").await.unwrap());
        assert!(!db.pause_mailing(id, "again").await.unwrap());
        let m = db.get_mailing(id).await.unwrap().unwrap();
        assert_eq!(
            (m.status, m.pause_reason.as_deref()),
            (MailingStatus::Paused, Some("by you"))
        );
        assert!(db.resume_mailing(id, T0 + 11).await.unwrap());

        // The profile's posts: one per group of a mailing, timed by its first attempt; other
        // profiles' and older posts are not counted.
        let mut second = row.clone();
        second.first_attempt_at = T0 + 7;
        db.update_delivery(&second, 6).await.unwrap();
        assert_eq!(db.recent_posts(&prof_a, T0).await.unwrap(), vec![T0 + 7]);
        assert!(db.recent_posts(&prof_a, T0 + 8).await.unwrap().is_empty());
        assert!(!db
            .recent_posts(&prof_b, 0)
            .await
            .unwrap()
            .contains(&(T0 + 7)));

        // Cancel request and progress.
        db.request_cancel(id).await.expect("cancel");
        assert!(db.get_mailing(id).await.unwrap().unwrap().cancel_requested);
        assert_eq!(
            db.request_cancel(MailingId(i64::MAX)).await,
            Err(DbError::NotFound)
        );
        let m = db.get_mailing(id).await.unwrap().unwrap();
        assert_eq!(
            m.announce_until,
            T0 + 10_000,
            "the start message is awaited"
        );
        db.set_progress(id, Some(77), T0 + 20).await.unwrap();
        let m = db.get_mailing(id).await.unwrap().unwrap();
        assert_eq!(m.announce_until, 0, "recorded: nothing is awaited");
        db.set_progress(id, None, T0 + 30).await.unwrap();
        let m = db.get_mailing(id).await.unwrap().unwrap();
        assert_eq!(
            (m.progress_message_id, m.progress_at),
            (Some(77), T0 + 30),
            "None keeps the message id"
        );

        // A final status frees the profile.
        db.set_mailing_status(id, MailingStatus::Done, None, 6, now)
            .await
            .expect("done");
        let m = db.get_mailing(id).await.unwrap().unwrap();
        assert_eq!((m.status, m.finished_at), (MailingStatus::Done, Some(now)));
        let next = db
            .create_mailing(&new(&prof_a, vec![jid(9)]))
            .await
            .expect("the profile is free again");
        assert_eq!(
            db.latest_mailing(user).await.unwrap().map(|m| m.id),
            Some(next)
        );

        update_log(db).await;

        // The account's pace and the user's time zone, as stored.
        db.set_pace(user, "{\"p\":1}").await.unwrap();
        db.set_tz(user, "Asia/Novosibirsk").await.unwrap();
        db.set_number_since(user, T0 - 86_400_000).await.unwrap();
        let u = db.get_user(user).await.unwrap().unwrap();
        assert_eq!(
            (u.pace.as_deref(), u.tz.as_deref(), u.number_since),
            (
                Some("{\"p\":1}"),
                Some("Asia/Novosibirsk"),
                Some(T0 - 86_400_000)
            )
        );

        image_contract(db, tag).await;
        schedule_contract(db, tag).await;
        group_sets_contract(db).await;
        audit_contract(db, tag).await;
        history_contract(db, tag).await;
    }

    /// `/history`: only the user's mailings, newest first, with the series of a run; the
    /// audit's per-mailing `delivery_status` once per group, in the mailing's order, a later
    /// one replacing an earlier, nothing for a group the mailing does not have.
    async fn history_contract(db: &dyn crate::ports::Db, tag: &str) {
        use crate::model::ledger::Content;
        use crate::model::schedule::{Rule, Schedule};
        use crate::ports::NewSeries;
        use chrono::{NaiveDate, NaiveTime};
        let user = UserId(910_000_007);
        let other = UserId(910_000_008);
        for u in [user, other] {
            db.ensure_user(u, Lang::Ru, 0, T0).await.unwrap();
        }
        let prof = profile(&format!("contract-history-{tag}"));
        let new = |u: UserId, content: Content, groups: Vec<GroupJid>| NewMailing {
            user_id: u,
            chat_id: ChatId::from(u),
            profile_id: prof.clone(),
            content,
            groups,
            skipped: vec![],
            now: T0,
            announce_until: 0,
        };
        // Two parts per group (a photo, then the text): a status is the group's, on both.
        let photo_post = Content::with_images("history", vec![1], false);
        let first = db
            .create_mailing(&new(user, photo_post, vec![jid(2), jid(1)]))
            .await
            .unwrap();
        db.set_mailing_status(first, MailingStatus::Done, None, 0, T0 + 1)
            .await
            .unwrap();
        let theirs = db
            .create_mailing(&new(other, Content::text_only("not yours"), vec![jid(1)]))
            .await
            .unwrap();
        db.set_mailing_status(theirs, MailingStatus::Done, None, 0, T0 + 2)
            .await
            .unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 12, 7).expect("a date");
        let series = db
            .create_series(&NewSeries {
                user_id: user,
                chat_id: ChatId::from(user),
                profile_id: prof.clone(),
                content: Content::text_only("run"),
                groups: vec![jid(3)],
                schedule: Schedule {
                    first: day,
                    time: NaiveTime::from_hms_opt(10, 0, 0).expect("a time"),
                    rule: Rule::Daily,
                    until: None,
                },
                next_due_at: Some(T0),
                now: T0,
            })
            .await
            .unwrap();
        let run = db
            .start_run(
                series,
                day,
                T0,
                &new(user, Content::text_only("run"), vec![jid(3)]),
            )
            .await
            .unwrap();

        let listed = db.mailing_history(user, 10).await.unwrap();
        let shape: Vec<(MailingId, Option<SeriesId>, &str)> = listed
            .iter()
            .map(|p| (p.mailing.id, p.series, p.mailing.content.text.as_str()))
            .collect();
        assert_eq!(
            shape,
            vec![(run, Some(series), "run"), (first, None, "history")],
            "the user's own, newest first"
        );
        assert_eq!(listed[1].mailing.status, MailingStatus::Done);
        let one = db.mailing_history(user, 1).await.unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].mailing.id, run);
        assert!(db
            .mailing_history(UserId(910_000_010), 10)
            .await
            .unwrap()
            .is_empty());

        assert!(db.post_statuses(first).await.unwrap().is_empty());
        db.record_post_status(first, &jid(1), "pending")
            .await
            .unwrap();
        db.record_post_status(first, &jid(2), "delivered")
            .await
            .unwrap();
        db.record_post_status(first, &jid(1), "read").await.unwrap();
        db.record_post_status(first, &jid(9), "delivered")
            .await
            .unwrap();
        assert_eq!(
            db.post_statuses(first).await.unwrap(),
            vec![
                (jid(2), "delivered".to_string()),
                (jid(1), "read".to_string())
            ]
        );
        assert!(db.post_statuses(theirs).await.unwrap().is_empty());
        assert!(db.post_statuses(run).await.unwrap().is_empty());
        // The ledger itself is untouched by it.
        assert!(db
            .deliveries(first)
            .await
            .unwrap()
            .iter()
            .all(|r| r.state == DeliveryState::Pending && r.error.is_none()));
    }

    /// The delivery audit: finished mailings in a time range are due once taken; a group's
    /// misses count up and start again at a delivery.
    async fn audit_contract(db: &dyn crate::ports::Db, tag: &str) {
        use crate::model::ledger::Content;
        let user = UserId(910_000_006);
        db.ensure_user(user, Lang::Ru, 0, T0).await.unwrap();
        let prof = profile(&format!("contract-audit-{tag}"));
        let new = NewMailing {
            user_id: user,
            chat_id: ChatId::from(user),
            profile_id: prof,
            content: Content::text_only("audit"),
            groups: vec![jid(1)],
            skipped: vec![],
            now: T0,
            announce_until: 0,
        };
        let id = db.create_mailing(&new).await.unwrap();
        let due = |since, until| db.mailings_to_audit(since, until, 1000);
        let ours = |list: Vec<MailingId>| list.contains(&id);
        assert!(!ours(due(T0, T0 + 100).await.unwrap()), "still running");
        db.set_mailing_status(id, MailingStatus::Done, None, 0, T0 + 50)
            .await
            .unwrap();
        assert!(ours(due(T0, T0 + 100).await.unwrap()));
        assert!(
            !ours(due(T0, T0 + 49).await.unwrap()),
            "finished after the range"
        );
        assert!(
            !ours(due(T0 + 51, T0 + 100).await.unwrap()),
            "finished before it"
        );
        assert!(db.claim_audit(id, T0 + 60).await.unwrap());
        assert!(!db.claim_audit(id, T0 + 61).await.unwrap(), "taken once");
        assert!(!ours(due(T0, T0 + 100).await.unwrap()));

        let never = jid(7);
        db.record_group_delivery(user, &jid(6), "delivered", true, T0)
            .await
            .unwrap();
        db.record_group_delivery(user, &never, "pending", false, T0)
            .await
            .unwrap();
        db.record_group_delivery(user, &never, "error", false, T0)
            .await
            .unwrap();
        assert_eq!(
            db.undelivering_groups(user).await.unwrap(),
            vec![never.clone()]
        );
        db.record_group_delivery(user, &never, "read", true, T0)
            .await
            .unwrap();
        assert!(db.undelivering_groups(user).await.unwrap().is_empty());
    }

    /// Named group sets: saved by name (a second save replaces), listed by name, deleted once.
    async fn group_sets_contract(db: &dyn crate::ports::Db) {
        use crate::ports::{GroupEntry, GroupSet};
        let user = UserId(910_000_004);
        db.ensure_user(user, Lang::Ru, 0, T0).await.unwrap();
        let entry = |n: u64, name: Option<&str>| GroupEntry {
            jid: jid(n),
            name: name.map(str::to_string),
        };
        let moscow = vec![entry(2, Some("Аренда Москва")), entry(1, None)];
        db.save_group_set(user, "Москва", &moscow, T0)
            .await
            .unwrap();
        db.save_group_set(user, "Новосибирск", &[entry(3, None)], T0)
            .await
            .unwrap();
        db.save_group_set(user, "Новосибирск", &[entry(4, Some("НСК"))], T0 + 1)
            .await
            .unwrap();
        assert_eq!(
            db.group_sets(user).await.unwrap(),
            vec![
                GroupSet {
                    name: "Москва".into(),
                    groups: moscow
                },
                GroupSet {
                    name: "Новосибирск".into(),
                    groups: vec![entry(4, Some("НСК"))]
                },
            ]
        );
        assert!(db.delete_group_set(user, "Москва").await.unwrap());
        assert!(
            !db.delete_group_set(user, "Москва").await.unwrap(),
            "deleted once"
        );
        assert_eq!(db.group_sets(user).await.unwrap().len(), 1);
        assert!(db.group_sets(UserId(910_000_005)).await.unwrap().is_empty());
    }

    /// The `ScheduleStore` part of [`db_contract_suite`]: series round-trip; due, paused,
    /// deleted and finished series are listed as documented; a run of (series, date) is
    /// decided once, and `start_run` writes its record and its mailing together or not at all.
    async fn schedule_contract(db: &dyn crate::ports::Db, tag: &str) {
        use crate::model::ledger::Content;
        use crate::model::schedule::{Rule, Schedule};
        use crate::ports::{NewSeries, RunOutcome};
        use chrono::{NaiveDate, NaiveTime, Weekday};
        let user = UserId(910_000_001);
        let stranger = UserId(910_000_009);
        let prof = profile(&format!("contract-s-{tag}"));
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 12, d).expect("a date");
        let schedule = |rule: Rule, until: Option<NaiveDate>| Schedule {
            first: day(7),
            time: NaiveTime::from_hms_opt(10, 0, 30).expect("a time"),
            rule,
            until,
        };
        let new = |schedule: Schedule, next: Option<i64>| NewSeries {
            user_id: user,
            chat_id: ChatId::from(user),
            profile_id: prof.clone(),
            content: Content::text_only("*Daily* offer"),
            groups: vec![jid(2), jid(1)],
            schedule,
            next_due_at: next,
            now: T0,
        };
        let mailing = |groups: Vec<GroupJid>| NewMailing {
            user_id: user,
            chat_id: ChatId::from(user),
            profile_id: prof.clone(),
            content: Content::text_only("*Daily* offer"),
            groups,
            skipped: vec![],
            now: T0,
            announce_until: 0,
        };
        let ours = |list: Vec<crate::ports::Series>, ids: &[SeriesId]| -> Vec<SeriesId> {
            list.into_iter()
                .map(|s| s.id)
                .filter(|id| ids.contains(id))
                .collect()
        };

        // Round trip, every rule.
        let daily = schedule(Rule::Daily, None);
        let a = db
            .create_series(&new(daily.clone(), Some(T0 + 1_000)))
            .await
            .expect("create");
        let s = db.get_series(a).await.unwrap().expect("stored");
        assert_eq!(
            (s.user_id, s.chat_id, &s.profile_id, &s.schedule),
            (user, ChatId::from(user), &prof, &daily)
        );
        assert_eq!(
            (s.content.text.as_str(), &s.groups),
            ("*Daily* offer", &vec![jid(2), jid(1)])
        );
        assert_eq!(
            (
                s.paused,
                s.not_before,
                s.last_date,
                s.waiting_date,
                s.next_due_at,
                s.created_at
            ),
            (false, T0, None, None, Some(T0 + 1_000), T0)
        );
        let days = schedule(Rule::Days(vec![Weekday::Mon, Weekday::Fri]), Some(day(31)));
        let b = db
            .create_series(&new(days.clone(), Some(T0 + 500)))
            .await
            .unwrap();
        assert_eq!(db.get_series(b).await.unwrap().unwrap().schedule, days);
        for rule in [Rule::Once, Rule::Weekdays, Rule::Weekly, Rule::EveryDays(3)] {
            let sch = schedule(rule, Some(day(20)));
            let id = db.create_series(&new(sch.clone(), None)).await.unwrap();
            assert_eq!(db.get_series(id).await.unwrap().unwrap().schedule, sch);
        }
        assert_eq!(db.get_series(SeriesId(i64::MAX)).await.unwrap(), None);

        // Listings: a user's series with a next run; due ones soonest first.
        let both = [a, b];
        assert_eq!(ours(db.user_series(user).await.unwrap(), &both), vec![a, b]);
        assert_eq!(
            ours(db.due_series(T0 + 600, 1000).await.unwrap(), &both),
            vec![b]
        );
        assert_eq!(
            ours(db.due_series(T0 + 2_000, 1000).await.unwrap(), &both),
            vec![b, a]
        );
        assert!(db
            .earliest_due()
            .await
            .unwrap()
            .is_some_and(|t| t <= T0 + 500));

        // Pause and resume: only the owner, only once each; a resume moves `not_before`.
        assert!(!db.set_series_paused(a, stranger, true, T0).await.unwrap());
        assert!(db.set_series_paused(a, user, true, T0 + 10).await.unwrap());
        assert!(
            !db.set_series_paused(a, user, true, T0 + 20).await.unwrap(),
            "already paused"
        );
        assert_eq!(
            ours(db.due_series(T0 + 2_000, 1000).await.unwrap(), &both),
            vec![b]
        );
        assert_eq!(ours(db.user_series(user).await.unwrap(), &both), vec![a, b]);
        let paused = db.get_series(a).await.unwrap().unwrap();
        assert_eq!((paused.paused, paused.not_before), (true, T0));
        assert!(db.set_series_paused(a, user, false, T0 + 50).await.unwrap());
        let resumed = db.get_series(a).await.unwrap().unwrap();
        assert_eq!((resumed.paused, resumed.not_before), (false, T0 + 50));

        // The waiting notice is once per date.
        assert!(db.set_series_waiting(a, day(7)).await.unwrap());
        assert!(!db.set_series_waiting(a, day(7)).await.unwrap());
        assert!(db.set_series_waiting(a, day(8)).await.unwrap());
        assert_eq!(
            db.get_series(a).await.unwrap().unwrap().waiting_date,
            Some(day(8))
        );

        // A run is decided once; the newest decided date is `last_date`.
        assert!(db
            .record_run(a, day(7), T0, RunOutcome::Skipped, T0)
            .await
            .unwrap());
        assert!(!db
            .record_run(a, day(7), T0, RunOutcome::Missed, T0)
            .await
            .unwrap());
        assert_eq!(
            db.run_of(a, day(7)).await.unwrap(),
            Some((RunOutcome::Skipped, None))
        );
        assert_eq!(
            db.get_series(a).await.unwrap().unwrap().last_date,
            Some(day(7))
        );
        let m = db
            .start_run(a, day(8), T0, &mailing(vec![jid(2), jid(1)]))
            .await
            .expect("the run starts");
        assert_eq!(
            db.run_of(a, day(8)).await.unwrap(),
            Some((RunOutcome::Started, Some(m)))
        );
        assert_eq!(
            db.get_series(a).await.unwrap().unwrap().last_date,
            Some(day(8))
        );
        let started = db.get_mailing(m).await.unwrap().expect("its mailing");
        assert_eq!(
            (started.status, started.profile_id.clone()),
            (MailingStatus::Running, prof.clone())
        );
        assert_eq!(db.deliveries(m).await.unwrap().len(), 2);

        // A decided run is never started again (whatever else is true); a run refused for the
        // account's active mailing leaves no record.
        assert_eq!(
            db.start_run(a, day(8), T0, &mailing(vec![jid(3)])).await,
            Err(DbError::RunTaken)
        );
        assert_eq!(
            db.start_run(a, day(7), T0, &mailing(vec![jid(3)])).await,
            Err(DbError::RunTaken)
        );
        assert!(!db
            .record_run(a, day(8), T0, RunOutcome::Missed, T0)
            .await
            .unwrap());
        assert_eq!(
            db.start_run(a, day(9), T0, &mailing(vec![jid(3)])).await,
            Err(DbError::AlreadyActive)
        );
        assert_eq!(db.run_of(a, day(9)).await.unwrap(), None);
        db.set_mailing_status(m, MailingStatus::Done, None, 0, T0 + 60)
            .await
            .expect("done");
        let m9 = db
            .start_run(a, day(9), T0, &mailing(vec![jid(3)]))
            .await
            .expect("free again");
        assert_ne!(m9, m);
        db.set_mailing_status(m9, MailingStatus::Done, None, 0, T0 + 70)
            .await
            .expect("done");

        // Finished and deleted series leave the listings; a deleted one reads as gone.
        db.set_series_next(a, None).await.unwrap();
        assert_eq!(ours(db.user_series(user).await.unwrap(), &both), vec![b]);
        assert_eq!(
            ours(db.due_series(i64::MAX, 1000).await.unwrap(), &both),
            vec![b]
        );
        assert_eq!(db.get_series(a).await.unwrap().unwrap().next_due_at, None);
        assert!(!db.delete_series(b, stranger).await.unwrap());
        assert!(db.delete_series(b, user).await.unwrap());
        assert!(!db.delete_series(b, user).await.unwrap(), "deleted once");
        assert_eq!(
            ours(db.user_series(user).await.unwrap(), &both),
            Vec::<SeriesId>::new()
        );
        assert_eq!(
            ours(db.due_series(i64::MAX, 1000).await.unwrap(), &both),
            Vec::<SeriesId>::new()
        );
        assert_eq!(db.get_series(b).await.unwrap(), None);
        assert!(!db.set_series_paused(b, user, true, T0).await.unwrap());
        assert!(
            db.record_run(SeriesId(i64::MAX), day(7), T0, RunOutcome::Skipped, T0)
                .await
                .is_err(),
            "a run belongs to a series"
        );
    }

    /// The `UpdateLog` part of [`db_contract_suite`]: update ids are a set (never a high-water
    /// mark); an update is a duplicate once finished, in hand while its claim is fresh, and
    /// taken again once the claim is stale.
    async fn update_log(db: &dyn crate::ports::Db) {
        use crate::ports::UpdateClaim::{Handled, InHand, Taken};
        let stale = T0 - 60_000;
        assert_eq!(db.claim_update(5, "{}", T0, stale).await.unwrap(), Taken);
        assert_eq!(db.claim_update(3, "{}", T0, stale).await.unwrap(), Taken);
        assert_eq!(db.claim_update(5, "{}", T0, stale).await.unwrap(), InHand);
        db.finish_update(5, T0 + 1).await.unwrap();
        assert_eq!(
            db.claim_update(5, "{}", T0 + 2, T0 + 2).await.unwrap(),
            Handled
        );
        // 3 was never finished: once its claim is older than the stale mark it is taken anew,
        // and that new claim is fresh again.
        assert_eq!(
            db.claim_update(3, "{}", T0 + 10, T0 + 5).await.unwrap(),
            Taken
        );
        assert_eq!(
            db.claim_update(3, "{}", T0 + 11, T0 + 5).await.unwrap(),
            InHand
        );
        db.finish_update(3, T0 + 12).await.unwrap();
        assert_eq!(
            db.claim_update(3, "{}", T0 + 99, T0 + 99).await.unwrap(),
            Handled
        );
    }

    /// The `ImageStore` part of [`db_contract_suite`]: immutable rows with their bytes, an
    /// ordered and capped photo set, the collage, deletion that spares what is still used, and a
    /// mailing with image parts (rows per part, content snapshot round trip).
    async fn image_contract(db: &dyn crate::ports::Db, tag: &str) {
        use crate::model::ledger::Content;
        let user = UserId(910_000_002);
        let other = UserId(910_000_003);
        for u in [user, other] {
            db.ensure_user(u, Lang::Ru, 0, T0)
                .await
                .expect("ensure_user");
        }
        let jpeg = |n: u8| -> Vec<u8> {
            (0..=255u8)
                .cycle()
                .take(3000 + n as usize)
                .map(|b| b ^ n)
                .collect()
        };
        let insert = |u: UserId, bytes: Vec<u8>, file: Option<&'static str>| async move {
            db.insert_image(&NewImage {
                user_id: u,
                jpeg: &bytes,
                width: 1600,
                height: 1200,
                tg_file_id: file,
                now: T0,
            })
            .await
            .expect("insert_image")
        };
        let a = insert(user, jpeg(1), Some("AgACa")).await;
        let b = insert(user, jpeg(2), None).await;
        assert!(b > a, "ids increase");
        let stored = db.get_image(a).await.unwrap().expect("stored");
        assert_eq!(
            (stored.user_id, stored.jpeg, stored.width, stored.height),
            (user, jpeg(1), 1600, 1200),
            "bytes come back exactly"
        );
        assert_eq!(stored.tg_file_id.as_deref(), Some("AgACa"));
        assert_eq!(db.get_image(i64::MAX).await.unwrap(), None);

        // The set keeps upload order and its cap.
        assert!(db.photo_set(user).await.unwrap().is_empty());
        assert_eq!(db.add_to_photo_set(user, b, 2).await.unwrap(), Some(1));
        assert_eq!(db.add_to_photo_set(user, a, 2).await.unwrap(), Some(2));
        let c = insert(user, jpeg(3), None).await;
        assert_eq!(db.add_to_photo_set(user, c, 2).await.unwrap(), None, "full");
        let set = db.photo_set(user).await.unwrap();
        let got: Vec<(ImageId, u64)> = set.iter().map(|i| (i.id, i.size)).collect();
        assert_eq!(
            got,
            vec![(b, jpeg(2).len() as u64), (a, jpeg(1).len() as u64)]
        );
        assert!(
            db.photo_set(other).await.unwrap().is_empty(),
            "sets are per user"
        );

        // The collage.
        assert_eq!(db.collage(user).await.unwrap(), None);
        let col = insert(user, jpeg(4), Some("AgACcollage")).await;
        db.set_collage(user, Some((col, false)), T0).await.unwrap();
        let choice = db.collage(user).await.unwrap().expect("collage");
        assert_eq!((choice.image.id, choice.confirmed), (col, false));
        assert_eq!(choice.image.tg_file_id.as_deref(), Some("AgACcollage"));
        db.set_collage(user, Some((col, true)), T0).await.unwrap();
        assert!(db.collage(user).await.unwrap().unwrap().confirmed);

        // A mailing of the photos: a row per (group, part); the snapshot comes back whole.
        let content = Content::with_images("Photos", vec![b, a], false);
        let id = db
            .create_mailing(&NewMailing {
                user_id: user,
                chat_id: ChatId::from(user),
                profile_id: profile(&format!("contract-img-{tag}")),
                content: content.clone(),
                groups: vec![jid(7), jid(5), jid(7)],
                skipped: vec![],
                now: T0,
                announce_until: 0,
            })
            .await
            .expect("create");
        assert_eq!(db.get_mailing(id).await.unwrap().unwrap().content, content);
        let mut rows: Vec<(GroupJid, u32, u32)> = db
            .deliveries(id)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.group.clone(), r.part, r.position))
            .collect();
        rows.sort_by_key(|(_, part, position)| (*position, *part));
        assert_eq!(
            rows,
            vec![
                (jid(7), 0, 0),
                (jid(7), 1, 0),
                (jid(7), 2, 0),
                (jid(5), 0, 1),
                (jid(5), 1, 1),
                (jid(5), 2, 1),
            ]
        );

        // Clearing forgets the set and the collage; deletion spares `keep`, the set and the
        // collage, and other users' images.
        let theirs = insert(other, jpeg(5), None).await;
        db.clear_photo_set(user).await.unwrap();
        assert!(db.photo_set(user).await.unwrap().is_empty());
        assert_eq!(db.collage(user).await.unwrap(), None);
        let d = insert(user, jpeg(6), None).await;
        db.add_to_photo_set(user, d, 10).await.unwrap();
        assert_eq!(
            db.delete_images_except(user, &[a]).await.unwrap(),
            3,
            "b, c, col"
        );
        for (img, kept) in [
            (a, true),
            (b, false),
            (c, false),
            (col, false),
            (d, true),
            (theirs, true),
        ] {
            assert_eq!(
                db.get_image(img).await.unwrap().is_some(),
                kept,
                "image {img}"
            );
        }
    }
}
