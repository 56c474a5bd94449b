//! [`MemoryState`]: every coordination capability of [`crate::ports`] (leases, cancel flags,
//! pacing and backoff, heartbeats, the intake queue) in memory, behind one mutex, so that each
//! call is atomic like a Redis script. It is the server's embedded state (the zero-setup
//! default when no Redis is configured) and the state of the core's tests.
//!
//! Every decision uses the `now` it is given, never a clock of its own. Two set-ups differ
//! only in how leases are identified:
//!
//! - [`MemoryState::new`], for a process: random tokens, and fencing numbers above a floor
//!   and above every `now` a lease is taken at, so they keep growing across restarts when the
//!   floor is the wall clock (the ledger remembers the last fence it accepted and refuses
//!   older ones).
//! - [`MemoryState::reproducible`], for tests: fences 1, 2, 3… and tokens derived from them
//!   ([`lease_token`]).
//!
//! Nothing survives the process. The intake queue lives and dies with its one consumer, so it
//! hands mailings over outright and keeps no claims (see [`IntakeConsumer`]).

use crate::model::ids::{GroupJid, MailingId, ProfileId};
use crate::model::pacing::{self, PaceState};
use crate::model::pacing::{Pace, PacingConfig};
use crate::ports::{
    async_trait, Cancels, Entropy, Heartbeats, Intake, IntakeConsumer, Lease, LeaseTry, Leases,
    Pacer, StateError,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// All capabilities in memory (see the module documentation).
pub struct MemoryState {
    inner: Mutex<Inner>,
    fences: Fencing,
}

/// How leases are identified.
enum Fencing {
    /// Random tokens; fences above the last one and above the `now` of the acquire.
    AboveClock(Arc<dyn Entropy + Send + Sync>),
    /// Fences counting up from 1, tokens derived from the fence.
    Counting,
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
    /// Runs right after every `pace` decision, under the lock (tests only).
    #[cfg(any(test, feature = "testing"))]
    after_pace: Option<Box<dyn FnMut() + Send>>,
}

#[derive(Debug, Clone)]
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

impl MemoryState {
    /// The state of a process: lease tokens are 16 bytes of `entropy`, hex; fencing numbers
    /// are above `fence_floor` (pass the wall clock in ms) and above the `now` of every
    /// acquire. (`Send + Sync` on every target, so that the state is too.)
    pub fn new(entropy: Arc<dyn Entropy + Send + Sync>, fence_floor: u64) -> Self {
        Self::with(Fencing::AboveClock(entropy), fence_floor)
    }

    /// A reproducible state: fences 1, 2, 3…, each lease's token [`lease_token`] of its fence.
    pub fn reproducible() -> Self {
        Self::with(Fencing::Counting, 0)
    }

    fn with(fences: Fencing, last_fence: u64) -> Self {
        MemoryState {
            inner: Mutex::new(Inner {
                last_fence,
                ..Inner::default()
            }),
            fences,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StateError> {
        self.inner
            .lock()
            .map_err(|_| StateError::Backend("in-memory state lock poisoned".into()))
    }

    /// The lock for looking in, also after a panic elsewhere.
    fn look(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Ok` while the state can be used (its lock is not poisoned).
    pub fn check(&self) -> Result<(), StateError> {
        self.lock().map(drop)
    }

    /// How many mailings wait in the intake queue.
    pub fn queue_len(&self) -> usize {
        self.look().queue.len()
    }

    /// The intake queue, front first.
    pub fn queued(&self) -> Vec<MailingId> {
        self.look().queue.iter().copied().collect()
    }

    /// The (token, fence) of the lease held on the profile, if any (expired or not).
    pub fn lease_of(&self, profile: &ProfileId) -> Option<(String, u64)> {
        self.look()
            .leases
            .get(profile)
            .map(|l| (l.token.clone(), l.fence))
    }

    /// The profile's pacing state.
    pub fn pace_state(&self, profile: &ProfileId) -> PaceState {
        self.look().pacing.get(profile).cloned().unwrap_or_default()
    }
}

/// Hooks for tests, which change the state behind the ports' back.
#[cfg(any(test, feature = "testing"))]
impl MemoryState {
    /// Drops the profile's lease as if it had expired (a runner that stalled or died).
    pub fn expire_lease(&self, profile: &ProfileId) {
        self.look().leases.remove(profile);
    }

    /// Sets the cancel flag without an `await` (for hooks that run inside a fake call).
    pub fn cancel_now(&self, mailing: MailingId) {
        self.look().cancelled.insert(mailing);
    }

    /// Runs `hook` right after every `pace` decision, inside the call (a test lets time pass
    /// there, as during the round trip to a remote store).
    pub fn set_after_pace(&self, hook: impl FnMut() + Send + 'static) {
        self.look().after_pace = Some(Box::new(hook));
    }
}

/// The token [`MemoryState::reproducible`] hands out with fence `fence`: random-looking (as
/// long as a real one) but reproducible.
pub fn lease_token(fence: u64) -> String {
    format!("{:016x}{:016x}", splitmix64(fence), splitmix64(!fence))
}

/// One step of the splitmix64 generator: a well-mixed 64-bit hash of `z`.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 16 random bytes, hex.
fn random_token(entropy: &dyn Entropy) -> String {
    let mut bytes = [0u8; 16];
    entropy.fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn expiry(now: i64, ttl_ms: u64) -> i64 {
    now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX))
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Leases for MemoryState {
    async fn acquire_lease(
        &self,
        profile: &ProfileId,
        ttl_ms: u64,
        now: i64,
    ) -> Result<Option<Lease>, StateError> {
        Ok(self.try_lease(profile, ttl_ms, now).await?.taken())
    }

    async fn try_lease(
        &self,
        profile: &ProfileId,
        ttl_ms: u64,
        now: i64,
    ) -> Result<LeaseTry, StateError> {
        let mut inner = self.lock()?;
        if let Some(held) = inner.leases.get(profile).filter(|h| now < h.expires_at) {
            return Ok(LeaseTry::Held {
                free_in_ms: Some(u64::try_from(held.expires_at - now).unwrap_or(u64::MAX)),
            });
        }
        let (fence, token) = match &self.fences {
            // Above the last one, and above the clock too: numbers keep growing across
            // restarts even if one process handed out more fences than milliseconds went by.
            Fencing::AboveClock(entropy) => (
                (inner.last_fence + 1).max(u64::try_from(now).unwrap_or(0)),
                random_token(entropy.as_ref()),
            ),
            Fencing::Counting => (inner.last_fence + 1, lease_token(inner.last_fence + 1)),
        };
        inner.last_fence = fence;
        inner.leases.insert(
            profile.clone(),
            HeldLease {
                token: token.clone(),
                fence,
                expires_at: expiry(now, ttl_ms),
            },
        );
        Ok(LeaseTry::Taken(Lease {
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
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Cancels for MemoryState {
    async fn set_cancel(&self, mailing: MailingId) -> Result<(), StateError> {
        self.lock()?.cancelled.insert(mailing);
        Ok(())
    }

    async fn is_cancelled(&self, mailing: MailingId) -> Result<bool, StateError> {
        Ok(self.lock()?.cancelled.contains(&mailing))
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Pacer for MemoryState {
    async fn pace(
        &self,
        profile: &ProfileId,
        chat: &GroupJid,
        cfg: &PacingConfig,
        now: i64,
    ) -> Result<Pace, StateError> {
        let mut inner = self.lock()?;
        let state = inner.pacing.entry(profile.clone()).or_default();
        let pace = pacing::decide(state, chat.as_str(), cfg, now);
        #[cfg(any(test, feature = "testing"))]
        if let Some(hook) = &mut inner.after_pace {
            hook();
        }
        Ok(pace)
    }

    async fn pace_peek(
        &self,
        profile: &ProfileId,
        chat: &GroupJid,
        cfg: &PacingConfig,
        now: i64,
    ) -> Result<Pace, StateError> {
        let mut state = self
            .lock()?
            .pacing
            .get(profile)
            .cloned()
            .unwrap_or_default();
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
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Intake for MemoryState {
    async fn enqueue(&self, mailing: MailingId) -> Result<(), StateError> {
        self.lock()?.queue.push_back(mailing);
        Ok(())
    }
}

/// The queue dies with the process that consumes it: mailings are handed over outright, and
/// there are never claims to ack or give back.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl IntakeConsumer for MemoryState {
    async fn dequeue(&self) -> Result<Option<MailingId>, StateError> {
        Ok(self.lock()?.queue.pop_front())
    }

    async fn ack(&self, _mailing: MailingId) -> Result<bool, StateError> {
        self.check()?;
        Ok(false)
    }

    async fn give_back(&self) -> Result<u64, StateError> {
        self.check()?;
        Ok(0)
    }

    async fn requeue_stale(&self, _older_than_ms: u64) -> Result<u64, StateError> {
        self.check()?;
        Ok(0)
    }

    async fn queue_depth(&self) -> Result<Option<u64>, StateError> {
        Ok(Some(self.lock()?.queue.len() as u64))
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Heartbeats for MemoryState {
    async fn heartbeat(&self, runner: &str, now: i64) -> Result<(), StateError> {
        self.lock()?.heartbeats.insert(runner.to_string(), now);
        Ok(())
    }

    async fn last_heartbeat(&self) -> Result<Option<i64>, StateError> {
        Ok(self.lock()?.heartbeats.values().copied().max())
    }
}
