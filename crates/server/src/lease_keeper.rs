//! The lease keeper: one task per process that renews every profile lease the process's
//! drivers hold, all together ([`Leases::renew_leases`]: a few round trips per round on
//! Redis, however many leases), instead of each driver renewing its own.
//!
//! A driver learns from its [`KeptLease`] when the lease was last renewed and whether it was
//! lost. A lease found lost (taken over, expired, or Redis restarted empty) wakes its driver at
//! once; so does one the keeper could not renew for half a lease (Redis unreachable), the
//! point where a driver renewing alone gave up. The driver still judges before each step: it
//! renews the lease itself when the keeper's renewal is older than [`KeptLease::fresh`]
//! allows, and right before a send as always (the keeper never vouches for a send).

use groupcast_core::ports::{Clock, Lease, Leases};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// Renews the leases registered with it, every quarter lease.
pub struct LeaseKeeper {
    leases: Arc<dyn Leases>,
    clock: Arc<dyn Clock>,
    ttl_ms: u64,
    kept: Mutex<Vec<Weak<Kept>>>,
}

/// A lease as the keeper keeps it.
struct Kept {
    lease: Lease,
    /// When the last renewal that succeeded was asked for (this process's clock, unix ms).
    renewed_at: AtomicI64,
    lost: AtomicBool,
    /// Wakes the driver when the lease is lost.
    lost_signal: Notify,
}

/// A driver's handle on its lease while the keeper renews it; dropping it stops the renewals
/// (before the lease is released).
pub struct KeptLease(Arc<Kept>);

impl LeaseKeeper {
    /// Renews leases of `ttl_ms` on `leases`.
    pub fn new(leases: Arc<dyn Leases>, clock: Arc<dyn Clock>, ttl_ms: u64) -> Arc<LeaseKeeper> {
        Arc::new(LeaseKeeper {
            leases,
            clock,
            ttl_ms,
            kept: Mutex::new(Vec::new()),
        })
    }

    /// Keeps `lease`, taken (or last renewed) at `renewed_at`, until the handle is dropped.
    pub fn keep(&self, lease: Lease, renewed_at: i64) -> KeptLease {
        let kept = Arc::new(Kept {
            lease,
            renewed_at: AtomicI64::new(renewed_at),
            lost: AtomicBool::new(false),
            lost_signal: Notify::new(),
        });
        self.kept
            .lock()
            .expect("kept leases lock")
            .push(Arc::downgrade(&kept));
        KeptLease(kept)
    }

    /// Renews the kept leases round after round, until the task is aborted (after the drivers
    /// have stopped: a driver finishing its last send still needs its lease).
    pub async fn run(self: Arc<Self>) {
        loop {
            let pause = self.round().await;
            tokio::time::sleep(pause).await;
        }
    }

    /// One round: renews every kept lease; returns how long to wait for the next one (sooner
    /// when a renewal failed, so that a short outage costs no lease).
    async fn round(&self) -> Duration {
        let kept = self.still_kept();
        let leases: Vec<Lease> = kept.iter().map(|k| k.lease.clone()).collect();
        let asked_at = self.clock.now_ms();
        match self
            .leases
            .renew_leases(&leases, self.ttl_ms, asked_at)
            .await
        {
            Ok(held) => {
                for (k, held) in kept.iter().zip(held) {
                    if held {
                        k.renewed(asked_at);
                    } else {
                        k.lose();
                    }
                }
                Duration::from_millis(self.ttl_ms / 4)
            }
            Err(e) => {
                tracing::warn!(error = %e, leases = kept.len(), "lease renewal failed");
                // Past half a lease without a renewal the lease may be gone: its driver stops.
                let now = self.clock.now_ms();
                for k in &kept {
                    if now - k.renewed_at.load(Ordering::Acquire) >= self.ttl_ms as i64 / 2 {
                        k.lose();
                    }
                }
                Duration::from_millis((self.ttl_ms / 20).clamp(50, 1000))
            }
        }
    }

    /// The leases whose drivers still keep them (the others are forgotten).
    fn still_kept(&self) -> Vec<Arc<Kept>> {
        let mut kept = self.kept.lock().expect("kept leases lock");
        let mut alive = Vec::with_capacity(kept.len());
        kept.retain(|w| match w.upgrade() {
            Some(k) => {
                alive.push(k);
                true
            }
            None => false,
        });
        alive
    }
}

impl Kept {
    fn renewed(&self, at: i64) {
        self.renewed_at.fetch_max(at, Ordering::AcqRel);
    }

    fn lose(&self) {
        if !self.lost.swap(true, Ordering::AcqRel) {
            self.lost_signal.notify_one();
        }
    }
}

impl KeptLease {
    pub fn lease(&self) -> &Lease {
        &self.0.lease
    }

    /// When the last successful renewal was asked for (by the keeper or the driver).
    pub fn renewed_at(&self) -> i64 {
        self.0.renewed_at.load(Ordering::Acquire)
    }

    /// Whether the lease was renewed recently enough, at `now`, for the driver to go on
    /// without renewing it itself: within a third of the lease `ttl_ms` (the keeper renews
    /// every quarter).
    pub fn fresh(&self, now: i64, ttl_ms: u64) -> bool {
        now - self.renewed_at() < (ttl_ms / 3) as i64
    }

    /// The driver renewed the lease itself, asking at `at`.
    pub fn renewed(&self, at: i64) {
        self.0.renewed(at);
    }

    /// The lease is lost (a renewal answered so): the keeper stops renewing it.
    pub fn lose(&self) {
        self.0.lose();
    }

    pub fn is_lost(&self) -> bool {
        self.0.lost.load(Ordering::Acquire)
    }

    /// Resolves when the keeper finds the lease lost (at once if it already has).
    pub async fn lost(&self) {
        if self.is_lost() {
            return;
        }
        self.0.lost_signal.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupcast_core::memory_state::MemoryState;
    use groupcast_core::model::ids::ProfileId;
    use groupcast_core::ports::{async_trait, StateError};
    use groupcast_core::testing::FakeClock;

    const TTL: u64 = 1_000;

    fn profile(n: u32) -> ProfileId {
        ProfileId::parse(&format!("keeper-profile-{n}")).unwrap()
    }

    async fn take(state: &MemoryState, n: u32, now: i64) -> Lease {
        state
            .acquire_lease(&profile(n), TTL, now)
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn one_round_renews_every_kept_lease_and_wakes_the_driver_of_a_lost_one() {
        let clock = FakeClock::new(10_000);
        let state = Arc::new(MemoryState::reproducible());
        let keeper = LeaseKeeper::new(state.clone(), Arc::new(clock.clone()), TTL);
        let a = keeper.keep(take(&state, 1, clock.now()).await, clock.now());
        let b = keeper.keep(take(&state, 2, clock.now()).await, clock.now());

        clock.advance(600);
        assert_eq!(keeper.round().await, Duration::from_millis(TTL / 4));
        assert_eq!((a.renewed_at(), b.renewed_at()), (10_600, 10_600));
        assert!(a.fresh(10_600 + 332, TTL) && !a.fresh(10_600 + 333, TTL));

        // b's lease is taken over once it expired (the keeper was not running).
        clock.advance(TTL as i64);
        state
            .acquire_lease(&profile(2), TTL, clock.now())
            .await
            .unwrap()
            .unwrap();
        state
            .renew_lease(a.lease(), TTL, clock.now() - 1)
            .await
            .unwrap();
        keeper.round().await;
        assert!(b.is_lost() && !a.is_lost());
        tokio::time::timeout(Duration::from_secs(1), b.lost())
            .await
            .expect("the driver of the lost lease is woken");
    }

    #[tokio::test]
    async fn a_dropped_handle_is_no_longer_renewed() {
        let clock = FakeClock::new(10_000);
        let state = Arc::new(MemoryState::reproducible());
        let keeper = LeaseKeeper::new(state.clone(), Arc::new(clock.clone()), TTL);
        let kept = keeper.keep(take(&state, 1, clock.now()).await, clock.now());
        let lease = kept.lease().clone();
        drop(kept);
        clock.advance(600);
        keeper.round().await;
        assert!(keeper.still_kept().is_empty());
        clock.advance(500);
        assert!(!state.renew_lease(&lease, TTL, clock.now()).await.unwrap());
    }

    /// Leases whose renewal always fails, as with Redis unreachable.
    struct Unreachable;

    #[async_trait]
    impl Leases for Unreachable {
        async fn acquire_lease(
            &self,
            _: &ProfileId,
            _: u64,
            _: i64,
        ) -> Result<Option<Lease>, StateError> {
            Err(StateError::Backend("redis unreachable".into()))
        }
        async fn renew_lease(&self, _: &Lease, _: u64, _: i64) -> Result<bool, StateError> {
            Err(StateError::Backend("redis unreachable".into()))
        }
        async fn release_lease(&self, _: &Lease) -> Result<(), StateError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn failing_renewals_are_tried_again_soon_and_lose_the_lease_after_half_of_it() {
        let clock = FakeClock::new(10_000);
        let keeper = LeaseKeeper::new(Arc::new(Unreachable), Arc::new(clock.clone()), TTL);
        let lease = Lease {
            profile: profile(1),
            token: "t".repeat(16),
            fence: 1,
        };
        let kept = keeper.keep(lease, clock.now());
        clock.advance(499);
        assert_eq!(keeper.round().await, Duration::from_millis(50));
        assert!(!kept.is_lost(), "it may still be held");
        clock.advance(1);
        keeper.round().await;
        assert!(kept.is_lost(), "half a lease without a renewal");
    }
}
