//! `EmbeddedState`: the in-process implementation of the core's `State` port (leases, cancel
//! flags, pacing, backoff, heartbeats, intake queue), the zero-setup default when no Redis is
//! configured. Everything sits behind one mutex, so each call is atomic like a Redis script.
//! It keeps the core's contract of the port (`groupcast_core::testing::contract`), as the
//! Redis adapter does.

use groupcast_core::ids::{GroupJid, MailingId, ProfileId};
use groupcast_core::pacing::{self, PaceState};
use groupcast_core::ports::{async_trait, Lease, Pace, PacingConfig, State, StateError};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// The in-process `State`. Nothing survives a restart except the ordering of fencing numbers,
/// which start from the wall clock (see [`EmbeddedState::new`]); the ledger in SQLite is what
/// a restarted process resumes from.
pub struct EmbeddedState {
    inner: Mutex<Inner>,
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
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StateError> {
        self.inner
            .lock()
            .map_err(|_| StateError::Backend("embedded state lock poisoned".into()))
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
        Ok(())
    }

    async fn dequeue(&self) -> Result<Option<MailingId>, StateError> {
        Ok(self.lock()?.queue.pop_front())
    }

    async fn queue_depth(&self) -> Result<Option<u64>, StateError> {
        Ok(Some(self.lock()?.queue.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupcast_core::testing::contract;
    use std::time::Duration;

    #[tokio::test]
    async fn embedded_state_meets_the_contract() {
        contract::state_suite(&EmbeddedState::new()).await;
    }

    #[tokio::test]
    async fn contract_suite_runs_twice_on_one_backend() {
        let state = EmbeddedState::new();
        contract::state_suite(&state).await;
        contract::state_suite(&state).await;
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

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
