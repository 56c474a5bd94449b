//! `EmbeddedState`: the in-process implementation of the core's `State` port (leases, cancel
//! flags, pacing, backoff, heartbeats, intake queue), the zero-setup default when no Redis is
//! configured. Everything sits behind one mutex, so each call is atomic like a Redis script.
//!
//! Also [`contract_suite`], the behaviour every `State` backend must show, written against
//! `&dyn State` so that the Redis adapter runs the very same checks ([`contract_suite_with`]
//! with [`LeaseClock::Backend`]: Redis judges leases by its own clock).

use groupcast_core::ids::{GroupJid, MailingId, ProfileId};
use groupcast_core::pacing::{self, PaceState};
use groupcast_core::ports::{async_trait, Lease, Pace, PacingConfig, State, StateError};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// The in-process `State`. Nothing survives a restart except the ordering of fencing numbers,
/// which start from the wall clock (see [`EmbeddedState::new`]); the ledger in SQLite is what
/// a restarted process resumes from.
pub struct EmbeddedState {
    inner: Mutex<Inner>,
    /// Signalled on every enqueue, so a waiting runner wakes at once.
    work: Notify,
}

#[derive(Default)]
struct Inner {
    leases: HashMap<ProfileId, HeldLease>,
    /// The last fencing number handed out.
    last_fence: u64,
    cancelled: HashSet<MailingId>,
    pacing: HashMap<ProfileId, PaceState>,
    heartbeats: HashMap<String, i64>,
    queue: VecDeque<MailingId>,
}

struct HeldLease {
    token: String,
    fence: u64,
    /// Held while `now < expires_at`.
    expires_at: i64,
}

impl HeldLease {
    /// Whether `lease` is this very holding (same token, same fence).
    fn is(&self, lease: &Lease) -> bool {
        self.token == lease.token && self.fence == lease.fence
    }
}

impl Default for EmbeddedState {
    fn default() -> Self {
        Self::new()
    }
}

impl EmbeddedState {
    /// A fresh state whose fencing numbers start above the current unix time in ms, so they
    /// keep growing across restarts of the process (the ledger remembers the last fence it
    /// accepted and refuses older ones).
    pub fn new() -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2));
        Self::with_fence_start(now_ms)
    }

    /// A fresh state whose first fencing number will be above `last_fence` (tests).
    pub fn with_fence_start(last_fence: u64) -> Self {
        EmbeddedState {
            inner: Mutex::new(Inner {
                last_fence,
                ..Inner::default()
            }),
            work: Notify::new(),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StateError> {
        self.inner
            .lock()
            .map_err(|_| StateError::Backend("embedded state lock poisoned".into()))
    }

    /// Resolves after the next enqueue (or at once if an enqueue happened since the last
    /// wake-up nobody waited for). Create it before checking the queue to miss nothing.
    pub fn notified(&self) -> Notified<'_> {
        self.work.notified()
    }

    /// Returns as soon as the intake queue is not empty. It may return spuriously (the caller
    /// then finds the queue empty and waits again); `dequeue` stays non-blocking.
    pub async fn wait_for_work(&self) {
        let notified = self.notified();
        let empty = self
            .inner
            .lock()
            .map_or(true, |inner| inner.queue.is_empty());
        if empty {
            notified.await;
        }
    }

    /// How many mailings wait in the intake queue.
    pub fn queue_len(&self) -> usize {
        self.inner.lock().map_or(0, |inner| inner.queue.len())
    }
}

/// 16 random bytes, hex.
fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn expiry(now: i64, ttl_ms: u64) -> i64 {
    now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX))
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl State for EmbeddedState {
    async fn acquire_lease(
        &self,
        profile: &ProfileId,
        ttl_ms: u64,
        now: i64,
    ) -> Result<Option<Lease>, StateError> {
        let mut inner = self.lock()?;
        if inner
            .leases
            .get(profile)
            .is_some_and(|held| now < held.expires_at)
        {
            return Ok(None);
        }
        // Above the last one, and above the clock too: numbers keep growing across restarts
        // even if one process handed out more fences than milliseconds went by.
        let fence = (inner.last_fence + 1).max(u64::try_from(now).unwrap_or(0));
        inner.last_fence = fence;
        let token = new_token();
        inner.leases.insert(
            profile.clone(),
            HeldLease {
                token: token.clone(),
                fence,
                expires_at: expiry(now, ttl_ms),
            },
        );
        Ok(Some(Lease {
            profile: profile.clone(),
            token,
            fence,
        }))
    }

    async fn renew_lease(&self, lease: &Lease, ttl_ms: u64, now: i64) -> Result<bool, StateError> {
        let mut inner = self.lock()?;
        match inner.leases.get_mut(&lease.profile) {
            Some(held) if held.is(lease) && now < held.expires_at => {
                held.expires_at = expiry(now, ttl_ms);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StateError> {
        let mut inner = self.lock()?;
        if inner
            .leases
            .get(&lease.profile)
            .is_some_and(|held| held.is(lease))
        {
            inner.leases.remove(&lease.profile);
        }
        Ok(())
    }

    async fn set_cancel(&self, mailing: MailingId) -> Result<(), StateError> {
        self.lock()?.cancelled.insert(mailing);
        Ok(())
    }

    async fn is_cancelled(&self, mailing: MailingId) -> Result<bool, StateError> {
        Ok(self.lock()?.cancelled.contains(&mailing))
    }

    async fn pace(
        &self,
        profile: &ProfileId,
        chat: &GroupJid,
        cfg: &PacingConfig,
        now: i64,
    ) -> Result<Pace, StateError> {
        let mut inner = self.lock()?;
        let state = inner.pacing.entry(profile.clone()).or_default();
        Ok(pacing::decide(state, chat.as_str(), cfg, now))
    }

    async fn pace_peek(
        &self,
        profile: &ProfileId,
        chat: &GroupJid,
        cfg: &PacingConfig,
        now: i64,
    ) -> Result<Pace, StateError> {
        let inner = self.lock()?;
        let mut state = inner.pacing.get(profile).cloned().unwrap_or_default();
        Ok(pacing::decide(&mut state, chat.as_str(), cfg, now))
    }

    async fn set_backoff(&self, profile: &ProfileId, until: i64) -> Result<(), StateError> {
        let mut inner = self.lock()?;
        let state = inner.pacing.entry(profile.clone()).or_default();
        state.backoff_until = state.backoff_until.max(until);
        Ok(())
    }

    async fn backoff_until(&self, profile: &ProfileId) -> Result<Option<i64>, StateError> {
        Ok(self.lock()?.pacing.get(profile).map(|s| s.backoff_until))
    }

    async fn heartbeat(&self, runner: &str, now: i64) -> Result<(), StateError> {
        self.lock()?.heartbeats.insert(runner.to_string(), now);
        Ok(())
    }

    async fn last_heartbeat(&self) -> Result<Option<i64>, StateError> {
        Ok(self.lock()?.heartbeats.values().copied().max())
    }

    async fn enqueue(&self, mailing: MailingId) -> Result<(), StateError> {
        self.lock()?.queue.push_back(mailing);
        // `notify_one` keeps a permit when nobody waits yet, so a wake-up is never lost.
        self.work.notify_one();
        Ok(())
    }

    async fn dequeue(&self) -> Result<Option<MailingId>, StateError> {
        Ok(self.lock()?.queue.pop_front())
    }

    async fn queue_depth(&self) -> Result<Option<u64>, StateError> {
        Ok(Some(self.lock()?.queue.len() as u64))
    }
}

// ---------------------------------------------------------------------------------------------
// The contract of the `State` port

/// Checks that a `State` backend behaves as the port requires; panics on the first deviation.
///
/// Run it on a backend nobody else uses meanwhile. It picks fresh random profile and mailing
/// ids and times near the real clock, so leftovers of an earlier run do not disturb it, and it
/// drains the intake queue first. Backends must decide with the `now` they are given (a Redis
/// adapter passes it to its scripts; key TTLs there may only serve as garbage collection, with
/// a margin beyond the logical expiry); for leases, see [`contract_suite_with`].
pub async fn contract_suite(state: &dyn State) {
    contract_suite_with(state, LeaseClock::Caller).await;
}

/// Whose clock decides when a lease expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseClock {
    /// The `now` each call is given (the embedded state: one process, one clock).
    Caller,
    /// The backend's own (Redis's `TIME`), for a backend shared by processes whose clocks may
    /// disagree: no caller's `now`, however far ahead or behind, makes a live lease look
    /// expired or an expired one live. Checked in real time (about two seconds).
    Backend,
}

/// [`contract_suite`], with lease expiry judged by `clock`.
pub async fn contract_suite_with(state: &dyn State, clock: LeaseClock) {
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1_700_000_000_000, |d| {
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
        });
    let run: u64 = rand::random();
    let profile =
        |name: &str| ProfileId::parse(&format!("contract-{run:016x}-{name}")).expect("profile id");
    let mailing = |n: i64| MailingId(i64::try_from(run >> 2).unwrap_or(0) + n);

    match clock {
        LeaseClock::Caller => {
            contract_leases(state, &profile("lease"), &profile("lease2"), t0).await
        }
        LeaseClock::Backend => {
            contract_leases_backend_clock(state, &profile("lease"), &profile("lease2")).await
        }
    }
    contract_cancel(state, mailing(1), mailing(2)).await;
    contract_pacing(state, &profile("pace"), &profile("pace2"), t0).await;
    contract_backoff(state, &profile("backoff"), t0).await;
    contract_queue(state, |n| mailing(100 + n)).await;
    contract_heartbeats(state, run, t0).await;
}

async fn contract_leases(state: &dyn State, p: &ProfileId, other: &ProfileId, t0: i64) {
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

/// The lease contract of a backend that keeps its own clock: the same rules as
/// [`contract_leases`], in real time, with callers' clocks an hour ahead or behind.
async fn contract_leases_backend_clock(state: &dyn State, p: &ProfileId, other: &ProfileId) {
    use std::time::{Duration, Instant};
    const TTL: u64 = 1_000;
    const SKEW: i64 = 3_600_000;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4))
    };
    let acquired = Instant::now();
    let a = state
        .acquire_lease(p, TTL, now())
        .await
        .unwrap()
        .expect("a free profile is acquired");
    assert_eq!(&a.profile, p);
    assert!(a.token.len() >= 16, "the token is a long random string");

    // Exclusive while unexpired, whatever the caller's clock says.
    for at in [now(), now() + TTL as i64 * 2, now() + SKEW, now() - SKEW] {
        assert_eq!(
            state.acquire_lease(p, TTL, at).await.unwrap(),
            None,
            "held, for a caller whose clock says {at}"
        );
    }
    // Another profile is independent; a lease taken by a caller far behind lasts as long.
    let o = state
        .acquire_lease(other, TTL, now() - SKEW)
        .await
        .unwrap()
        .expect("another profile is free");
    assert_ne!(o.token, a.token);
    assert!(o.fence != a.fence, "fences are never reused");
    assert_eq!(state.acquire_lease(other, TTL, now()).await.unwrap(), None);

    // Renewal (by a caller whose clock lags) extends the lease past its first expiry.
    tokio::time::sleep_until((acquired + Duration::from_millis(TTL / 2)).into()).await;
    let renewed = Instant::now();
    assert!(state.renew_lease(&a, TTL, now() - SKEW).await.unwrap());
    tokio::time::sleep_until((acquired + Duration::from_millis(TTL + TTL / 5)).into()).await;
    assert_eq!(
        state.acquire_lease(p, TTL, now() + SKEW).await.unwrap(),
        None,
        "renewed: held past the first expiry"
    );

    // Expired by the backend's clock: taken over (by a caller far behind), not before.
    let deadline = Instant::now() + Duration::from_secs(10);
    let b = loop {
        if let Some(b) = state.acquire_lease(p, TTL, now() - SKEW).await.unwrap() {
            break b;
        }
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        renewed.elapsed() >= Duration::from_millis(TTL - 20),
        "taken over {:?} after the renewal",
        renewed.elapsed()
    );
    assert_ne!(b.token, a.token);
    assert!(b.fence > a.fence, "fence {} after {}", b.fence, a.fence);

    // The old holder can neither renew nor release the new holder's lease.
    assert!(
        !state.renew_lease(&a, TTL, now()).await.unwrap(),
        "renew with a stale token"
    );
    state.release_lease(&a).await.unwrap();
    assert_eq!(
        state.acquire_lease(p, TTL, now() + SKEW).await.unwrap(),
        None,
        "a stale release deleted nothing"
    );
    assert!(state.renew_lease(&b, TTL, now()).await.unwrap());

    // A released lease is free at once, and the next fence is larger still.
    state.release_lease(&b).await.unwrap();
    assert!(
        !state.renew_lease(&b, TTL, now()).await.unwrap(),
        "released means lost"
    );
    const SHORT: u64 = 100;
    let c = state
        .acquire_lease(p, SHORT, now())
        .await
        .unwrap()
        .expect("free after release");
    assert!(c.fence > b.fence);

    // A lease that ran out cannot be renewed, even if nobody took it meanwhile, and even by a
    // caller whose clock says it is still early.
    tokio::time::sleep(Duration::from_millis(SHORT * 3)).await;
    assert!(
        !state.renew_lease(&c, TTL, now() - SKEW).await.unwrap(),
        "expired means lost"
    );
    state.release_lease(&c).await.unwrap();
    state.release_lease(&o).await.unwrap();
}

async fn contract_cancel(state: &dyn State, m: MailingId, other: MailingId) {
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

async fn contract_pacing(state: &dyn State, p: &ProfileId, other: &ProfileId, t0: i64) {
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
    let (r1, r2, r3, r4) = tokio::join!(
        state.pace(p, &chats[0], &per_second, t0 + 2000),
        state.pace(p, &chats[1], &per_second, t0 + 2000),
        state.pace(p, &chats[2], &per_second, t0 + 2000),
        state.pace(p, &chats[3], &per_second, t0 + 2000),
    );
    let answers = [r1.unwrap(), r2.unwrap(), r3.unwrap(), r4.unwrap()];
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

async fn contract_backoff(state: &dyn State, p: &ProfileId, t0: i64) {
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

async fn contract_queue(state: &dyn State, mailing: impl Fn(i64) -> MailingId) {
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

async fn contract_heartbeats(state: &dyn State, run: u64, t0: i64) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn embedded_state_meets_the_contract() {
        contract_suite(&EmbeddedState::new()).await;
    }

    #[tokio::test]
    async fn contract_suite_runs_twice_on_one_backend() {
        let state = EmbeddedState::new();
        contract_suite(&state).await;
        contract_suite(&state).await;
    }

    #[tokio::test]
    async fn fences_grow_across_restarts() {
        let p = ProfileId::parse("restart-profile").unwrap();
        let first = EmbeddedState::new();
        let a = first.acquire_lease(&p, 1000, 0).await.unwrap().unwrap();
        // A new process, started later, with a clock that moved on by a few ms.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = EmbeddedState::new();
        let b = second.acquire_lease(&p, 1000, 0).await.unwrap().unwrap();
        assert!(b.fence > a.fence, "{} > {}", b.fence, a.fence);

        // Many acquires in one ms still give increasing numbers.
        let s = EmbeddedState::with_fence_start(10);
        let mut last = 10;
        for i in 0..100 {
            let q = ProfileId::parse(&format!("profile-{i}")).unwrap();
            let l = s.acquire_lease(&q, 1000, 5).await.unwrap().unwrap();
            assert!(l.fence > last);
            last = l.fence;
        }
        // And never below the clock passed in.
        let l = s.acquire_lease(&p, 1000, 1_000_000).await.unwrap().unwrap();
        assert!(l.fence >= 1_000_000);
    }

    #[tokio::test]
    async fn enqueue_wakes_a_waiting_runner() {
        let state = Arc::new(EmbeddedState::new());
        let waiter = {
            let state = state.clone();
            tokio::spawn(async move {
                state.wait_for_work().await;
                state.dequeue().await.unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "waits while the queue is empty");
        state.enqueue(MailingId(7)).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(got, Some(MailingId(7)));

        // A wake-up signalled before anyone waits is kept, not lost.
        state.enqueue(MailingId(9)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), state.notified())
            .await
            .expect("the permit of an earlier enqueue");
        assert_eq!(state.dequeue().await.unwrap(), Some(MailingId(9)));

        // An enqueue before anyone waits is not lost either.
        state.enqueue(MailingId(8)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), state.wait_for_work())
            .await
            .expect("returns at once");
        assert_eq!(state.queue_len(), 1);
    }

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
