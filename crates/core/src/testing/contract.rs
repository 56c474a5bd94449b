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
use crate::ports::{
    Cancels, Heartbeats, Intake, IntakeConsumer, Leases, Pace, Pacer, PacingConfig, StateBackend,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

/// Checks every capability of a complete backend, in turn, with a fresh [`Run`].
pub async fn state_suite<S: StateBackend + ?Sized>(state: &S) {
    let run = Run::new();
    leases(state, &run).await;
    cancels(state, &run).await;
    pacing(state, &run).await;
    backoff(state, &run).await;
    intake(state, &run).await;
    intake_claims(state, &run).await;
    heartbeats(state, &run).await;
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
    assert!(
        state.renew_lease(&b, TTL, t0 + 15_003).await.unwrap(),
        "the new holder still holds it"
    );

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
