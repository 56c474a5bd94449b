//! The fake clock and the deterministic entropy.

use super::*;

/// Unix-ms time that only moves when a test moves it. Clones share the same time.
#[derive(Debug, Clone)]
pub struct FakeClock(Arc<AtomicI64>);

impl Default for FakeClock {
    fn default() -> Self {
        FakeClock::new(T0)
    }
}

impl FakeClock {
    pub fn new(now_ms: i64) -> Self {
        FakeClock(Arc::new(AtomicI64::new(now_ms)))
    }

    pub fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Sets the time; stepping backwards is allowed (tests of clock steps).
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the time forward (or back, for a negative `ms`).
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Moves the time to `t` unless it is already later.
    pub fn advance_to(&self, t: i64) {
        self.0.fetch_max(t, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.now()
    }
}

/// Deterministic "randomness": every `fill` gives the next bytes of a splitmix64 stream
/// from a fixed seed, so two fills differ (fresh nonces) but every run is the same.
#[derive(Debug)]
pub struct FixedEntropy {
    seed: u64,
    counter: AtomicU64,
}

impl Default for FixedEntropy {
    fn default() -> Self {
        FixedEntropy::new(0x6772_6f75_7063_6173) // "groupcas"
    }
}

impl FixedEntropy {
    pub fn new(seed: u64) -> Self {
        FixedEntropy {
            seed,
            counter: AtomicU64::new(0),
        }
    }

    /// How many times `fill` was called.
    pub fn fills(&self) -> u64 {
        self.counter.load(Ordering::SeqCst)
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Entropy for FixedEntropy {
    fn fill(&self, buf: &mut [u8]) {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let mut state = self.seed ^ splitmix64(n);
        for chunk in buf.chunks_mut(8) {
            state = splitmix64(state);
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
    }
}
