//! Issue 12, item 13: on Redis, a profile's lease expires by Redis's clock, not by the clock
//! of whoever asks. Processes sharing a Redis may run on hosts whose clocks disagree; one whose
//! clock is far ahead must not take over a lease that is still live (its holder may be sending
//! right now), and one whose clock lags must neither make its own lease end early for the
//! others nor keep a dead holder's lease alive. Two `RedisState`s on their own connections play
//! two processes; the skew is in the `now` each passes. Needs a Redis at `REDIS_TEST_URL`
//! (default `redis://127.0.0.1:6379`) and skips when none answers.

use groupcast_core::model::ids::ProfileId;
use groupcast_core::ports::Leases;
use groupcast_e2e::harness::{redis_url, unix_ms, RedisNamespace};
use groupcast_server::redis_state::RedisState;
use std::time::{Duration, Instant};

const HOUR_MS: i64 = 3_600_000;

/// Two processes on the test Redis under a fresh prefix, or `None` (the test skips) when no
/// Redis answers.
async fn two_processes() -> Option<(RedisNamespace, RedisState, RedisState)> {
    let ns = RedisNamespace::new(&redis_url());
    let a = match RedisState::connect(&ns.url, &ns.prefix).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipped: no Redis answers at {} ({e})", ns.url);
            return None;
        }
    };
    let b = RedisState::connect(&ns.url, &ns.prefix).await.ok()?;
    Some((ns, a, b))
}

#[tokio::test]
async fn a_caller_whose_clock_is_far_ahead_cannot_take_a_live_lease() {
    let Some((_ns, a, b)) = two_processes().await else {
        return;
    };
    let p = ProfileId::parse("clock-ahead").unwrap();
    const TTL: u64 = 10_000;
    let held = a
        .acquire_lease(&p, TTL, unix_ms())
        .await
        .unwrap()
        .expect("free");
    for ahead in [TTL as i64 + 1, HOUR_MS, 24 * HOUR_MS] {
        assert_eq!(
            b.acquire_lease(&p, TTL, unix_ms() + ahead).await.unwrap(),
            None,
            "a process whose clock is {ahead} ms ahead took a live lease"
        );
    }
    assert!(
        a.renew_lease(&held, TTL, unix_ms()).await.unwrap(),
        "the holder still holds it"
    );
}

#[tokio::test]
async fn a_lease_taken_by_a_caller_whose_clock_lags_lasts_its_full_time() {
    let Some((_ns, a, b)) = two_processes().await else {
        return;
    };
    let p = ProfileId::parse("clock-behind").unwrap();
    const TTL: u64 = 10_000;
    // The holder's clock is an hour behind: by the others' clocks its lease "ended" long ago.
    let held = a
        .acquire_lease(&p, TTL, unix_ms() - HOUR_MS)
        .await
        .unwrap()
        .expect("free");
    assert_eq!(
        b.acquire_lease(&p, TTL, unix_ms()).await.unwrap(),
        None,
        "a lease taken by a lagging clock was taken over while live"
    );
    assert!(a
        .renew_lease(&held, TTL, unix_ms() - HOUR_MS)
        .await
        .unwrap());
    assert_eq!(b.acquire_lease(&p, TTL, unix_ms()).await.unwrap(), None);
}

#[tokio::test]
async fn a_dead_holders_lease_ends_on_time_whatever_the_callers_clock() {
    let Some((_ns, a, b)) = two_processes().await else {
        return;
    };
    let p = ProfileId::parse("clock-dead-holder").unwrap();
    const TTL: u64 = 300;
    let started = Instant::now();
    let dead = a
        .acquire_lease(&p, TTL, unix_ms())
        .await
        .unwrap()
        .expect("free");
    // The holder is gone; a process whose clock lags an hour takes over once Redis says the
    // lease ran out: not before, and not an hour (or a garbage-collection margin) later.
    let deadline = Instant::now() + Duration::from_secs(5);
    let next = loop {
        if let Some(l) = b.acquire_lease(&p, TTL, unix_ms() - HOUR_MS).await.unwrap() {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "the dead holder's lease never ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(TTL - 20) && after < Duration::from_millis(TTL * 2),
        "taken over after {after:?} (lease {TTL} ms)"
    );
    assert!(next.fence > dead.fence);
    assert!(!a.renew_lease(&dead, TTL, unix_ms()).await.unwrap());
}
