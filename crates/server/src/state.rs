//! The embedded state: the core's [`MemoryState`] (every coordination capability in process,
//! behind one mutex) set up for a server process, the zero-setup default when no Redis is
//! configured; it keeps the core's contract (`groupcast_core::testing::contract`), as the
//! Redis adapter does. Also [`StateHealth`], what `/healthz` asks of whichever backend is in
//! use, and [`StateHandles`], the handles on the backend that no core bundle carries.
//!
//! Nothing survives a restart except the ordering of fencing numbers, which start from the
//! wall clock (see [`embedded`]); the ledger in SQLite is what a restarted process resumes
//! from. Its intake queue keeps no claims (the queue dies with the process that consumes it).

use groupcast_core::memory_state::MemoryState;
use groupcast_core::model::ids::ProfileId;
use groupcast_core::ports::{async_trait, Entropy, Heartbeats, IntakeConsumer, StateError};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The embedded state of a process: random lease tokens from `entropy`, and fencing numbers
/// above the current unix time in ms, so that they keep growing across restarts of the
/// process (the ledger remembers the last fence it accepted and refuses older ones).
pub fn embedded(entropy: Arc<dyn Entropy + Send + Sync>) -> MemoryState {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2));
    MemoryState::new(entropy, now_ms)
}

/// What `/healthz` reports of the state backend.
#[async_trait]
pub trait StateHealth: Send + Sync {
    /// `"embedded"` or `"redis"`.
    fn backend(&self) -> &'static str;
    /// Whether the backend answers.
    async fn ping(&self) -> Result<(), StateError>;
}

#[async_trait]
impl StateHealth for MemoryState {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> Result<(), StateError> {
        self.check()
    }
}

/// News of a lease released, by any process sharing the backend (see [`ReleaseFeed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// The profile's lease was released.
    Lease(ProfileId),
    /// Releases may have been missed (the feed was (re)connected): every waiter looks again.
    Unknown,
}

/// The releases of leases by the other processes sharing the backend, as they happen, so that
/// a driver waiting for a lease another process holds takes it at once when it is let go (a
/// deploy's handover) rather than when it could have expired. The releases of this process's
/// own drivers are announced by its runner itself.
pub trait ReleaseFeed: Send + Sync {
    /// Starts listening; `None` when no other process shares the backend.
    fn release_feed(&self) -> Option<mpsc::UnboundedReceiver<Released>>;
}

/// The embedded state belongs to one process: there is nobody else to hear from.
impl ReleaseFeed for MemoryState {
    fn release_feed(&self) -> Option<mpsc::UnboundedReceiver<Released>> {
        None
    }
}

/// The handles on the state backend (embedded or Redis) that no core bundle carries: what
/// the runner loop polls and what `/healthz` and the metrics read.
#[derive(Clone)]
pub struct StateHandles {
    /// The runners' end of the intake queue.
    pub queue: Arc<dyn IntakeConsumer>,
    pub heartbeats: Arc<dyn Heartbeats>,
    pub health: Arc<dyn StateHealth>,
    pub releases: Arc<dyn ReleaseFeed>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupcast_core::model::ids::ProfileId;
    use groupcast_core::ports::Leases;
    use groupcast_core::testing::{contract, FixedEntropy};
    use std::time::Duration;

    fn entropy() -> Arc<dyn Entropy + Send + Sync> {
        Arc::new(FixedEntropy::new(rand::random()))
    }

    #[tokio::test]
    async fn embedded_state_meets_the_contract() {
        contract::state_suite(&embedded(entropy())).await;
    }

    #[tokio::test]
    async fn contract_suite_runs_twice_on_one_backend() {
        let state = embedded(entropy());
        contract::state_suite(&state).await;
        contract::state_suite(&state).await;
    }

    #[tokio::test]
    async fn fences_grow_across_restarts() {
        let p = ProfileId::parse("restart-profile").unwrap();
        let first = embedded(entropy());
        let a = first.acquire_lease(&p, 1000, 0).await.unwrap().unwrap();
        // A new process, started later, with a clock that moved on by a few ms.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = embedded(entropy());
        let b = second.acquire_lease(&p, 1000, 0).await.unwrap().unwrap();
        assert!(b.fence > a.fence, "{} > {}", b.fence, a.fence);

        // Many acquires in one ms still give increasing numbers.
        let s = MemoryState::new(entropy(), 10);
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
    async fn tokens_are_random_hex() {
        let s = embedded(entropy());
        let p = |n: u32| ProfileId::parse(&format!("token-profile-{n}")).unwrap();
        let a = s.acquire_lease(&p(1), 1000, 0).await.unwrap().unwrap();
        let b = s.acquire_lease(&p(2), 1000, 0).await.unwrap().unwrap();
        assert_eq!(a.token.len(), 32);
        assert!(a.token.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.token, b.token);
    }
}
