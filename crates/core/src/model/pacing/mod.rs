//! Pacing maths, pure: no clock, no I/O. Times come in as unix milliseconds.
//!
//! - [`Gcra`]: the generic cell rate algorithm (one stored value per key, the theoretical
//!   arrival time, kept in microseconds so that 3/s does not drift to 3.003/s), with an exact
//!   "allowed at" answer when a request does not conform.
//! - [`SlidingWindow`]: an exact "at most `limit` in any window of `window_ms`", used per chat
//!   (12 per 2 s), where a GCRA with burst 12 would allow up to 24 inside one 2 s window.
//! - [`decide`]: the answer of the pacer for one send on one profile, combining the profile
//!   backoff, the profile rate and the per-chat burst; used by every `State` backend.
//!
//! - [`pace`]: the user's pace (presets, `/pace` values); [`plan`]: when an account's next
//!   post may go out under it (gaps, batch pauses, window, caps), the same on every runtime.
//!
//! Clock steps: a step backwards never lets more through (stored times then lie in the
//! future and simply have to be waited for). A step forwards looks exactly like idle time and
//! cannot be told apart here; backends should feed server time (Redis `TIME`, the Durable
//! Object) or a monotonic-derived clock.

use serde::{Deserialize, Serialize};

pub mod pace;
pub mod plan;
use std::collections::HashMap;

/// The largest emission interval, in µs (about 3 years): keeps all the sums far from overflow
/// even for a nonsensical rate such as 0.
const MAX_INTERVAL_US: i64 = 1 << 46;

/// A GCRA limiter: an emission interval `T` and a burst `N` (tolerance `T·(N-1)`).
///
/// Over any span of `W` ms it lets at most `W/T + N` requests through, and with burst 1
/// consecutive requests are at least `T` apart. The interval is kept in whole microseconds,
/// rounded up, so the enforced rate never exceeds the configured one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    interval_us: i64,
    tolerance_us: i64,
}

impl Gcra {
    /// `rate` requests per second, burst 1 (strict spacing).
    pub fn per_second(rate: f64) -> Gcra {
        Gcra::new(1000.0 / rate, 1)
    }

    /// One request every `emission_interval_ms`, up to `burst` at once (`0` counts as 1).
    /// A non-finite or non-positive interval is clamped to 1 µs and a huge one to ~3 years;
    /// validating the configuration is the caller's job.
    pub fn new(emission_interval_ms: f64, burst: u32) -> Gcra {
        let us = emission_interval_ms * 1000.0;
        // Rounded up, but without turning float noise (100000.00000001) into a whole µs.
        let interval_us = if us.is_nan() {
            MAX_INTERVAL_US
        } else {
            ((us - 1e-6).ceil().clamp(1.0, MAX_INTERVAL_US as f64)) as i64
        };
        let burst = i64::from(burst.max(1));
        Gcra {
            interval_us,
            tolerance_us: interval_us.saturating_mul(burst - 1),
        }
    }

    /// The emission interval actually enforced, in ms (µs precision).
    pub fn interval_ms(&self) -> f64 {
        self.interval_us as f64 / 1000.0
    }

    /// Whether a request at `now_ms` conforms, given the stored theoretical arrival time
    /// (`None` for a key never seen).
    ///
    /// `Ok(tat)`: it conforms; store `tat` (µs) as the key's new value. `Err(at)`: it does not;
    /// `at` is the earliest unix ms at which it would, rounded up so that a request at `at`
    /// conforms and one at `at - 1` does not. Nothing is to be stored on `Err`.
    pub fn check(&self, tat_us: Option<i64>, now_ms: i64) -> Result<i64, i64> {
        let now_us = now_ms.saturating_mul(1000);
        let tat = tat_us.map_or(now_us, |t| t.max(now_us));
        let allowed_at_us = tat - self.tolerance_us;
        if now_us < allowed_at_us {
            Err(ceil_div_1000(allowed_at_us))
        } else {
            Ok(tat.saturating_add(self.interval_us))
        }
    }
}

/// `ceil(us / 1000)` for any sign.
fn ceil_div_1000(us: i64) -> i64 {
    us.div_euclid(1000) + i64::from(us.rem_euclid(1000) != 0)
}

/// Exactly "at most `limit` sends in any window of `window_ms`" (a window being any
/// half-open span `[a, a + window_ms)`).
///
/// The state is the newest ≤ `limit` send times, oldest first. Times lying in the future (after
/// a clock step backwards) keep counting until they have passed, so a step back never opens
/// room for more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindow {
    /// At most this many (`0` counts as 1).
    pub limit: u32,
    pub window_ms: u64,
}

impl SlidingWindow {
    pub fn new(limit: u32, window_ms: u64) -> SlidingWindow {
        SlidingWindow { limit, window_ms }
    }

    fn limit(&self) -> usize {
        self.limit.max(1) as usize
    }

    fn window(&self) -> i64 {
        i64::try_from(self.window_ms)
            .unwrap_or(i64::MAX / 4)
            .min(i64::MAX / 4)
    }

    /// `Ok(())` if a send at `now_ms` keeps the limit, else `Err(at)`: the earliest unix ms
    /// at which it would (exact: a send at `at` is allowed, at `at - 1` it is not).
    pub fn check(&self, recent: &[i64], now_ms: i64) -> Result<(), i64> {
        let window = self.window();
        // Times still inside a window that ends at or after now. `recent` is sorted, so they
        // are a suffix; only the newest `limit` are kept anyway.
        let live = recent
            .iter()
            .filter(|&&t| t > now_ms.saturating_sub(window))
            .count();
        if live < self.limit() {
            return Ok(());
        }
        // The `limit` newest live times: the oldest of them must leave the window first.
        let oldest_counted = recent[recent.len() - self.limit()];
        Err(oldest_counted.saturating_add(window))
    }

    /// Records a send at `now_ms`: inserted in order, and only the newest `limit` are kept.
    pub fn record(&self, recent: &mut Vec<i64>, now_ms: i64) {
        let at = recent.partition_point(|&t| t <= now_ms);
        recent.insert(at, now_ms);
        let excess = recent.len().saturating_sub(self.limit());
        recent.drain(..excess);
    }

    /// Drops times that can no longer matter at `now_ms` (and later, if time does not go
    /// back).
    pub fn prune(&self, recent: &mut Vec<i64>, now_ms: i64) {
        let cutoff = now_ms.saturating_sub(self.window());
        recent.retain(|&t| t > cutoff);
    }
}

/// The pacing state of one Wappi profile, as one backend value (a Durable Object field, a
/// Redis string, a map entry in process).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaceState {
    /// The profile GCRA's theoretical arrival time, µs.
    pub profile_tat_us: Option<i64>,
    /// No send before this unix ms (429 / Retry-After); `0` = none.
    pub backoff_until: i64,
    /// Per chat (group JID), the recent send times (see [`SlidingWindow`]).
    pub chats: HashMap<String, Vec<i64>>,
}

/// Decides a send to `chat` at `now_ms`: `Go` when the backoff is over and both the profile
/// rate and the chat burst allow it, and then the slot is taken (state updated); otherwise
/// `WaitUntil` the latest of the times each limit names, and the state is left as it was.
pub fn decide(state: &mut PaceState, chat: &str, cfg: &PacingConfig, now_ms: i64) -> Pace {
    let gcra = Gcra::per_second(cfg.profile_rate_per_sec);
    let window = SlidingWindow::new(cfg.chat_burst, cfg.chat_window_ms);

    let mut wait: Option<i64> = None;
    if state.backoff_until > now_ms {
        wait = Some(state.backoff_until);
    }
    let tat = match gcra.check(state.profile_tat_us, now_ms) {
        Ok(tat) => Some(tat),
        Err(at) => {
            wait = Some(wait.map_or(at, |w| w.max(at)));
            None
        }
    };
    let recent = state.chats.get(chat).map_or(&[][..], Vec::as_slice);
    if let Err(at) = window.check(recent, now_ms) {
        wait = Some(wait.map_or(at, |w| w.max(at)));
    }

    match (wait, tat) {
        (None, Some(tat)) => {
            state.profile_tat_us = Some(tat);
            state.chats.retain(|_, times| {
                window.prune(times, now_ms);
                !times.is_empty()
            });
            window.record(state.chats.entry(chat.to_string()).or_default(), now_ms);
            Pace::Go
        }
        (Some(at), _) => Pace::WaitUntil(at),
        // `tat` is `None` only when the GCRA refused, which always sets `wait`.
        (None, None) => unreachable!("a GCRA refusal always names a time"),
    }
}

/// The answer of the pacer at the moment of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Send now; the slot has been taken.
    Go,
    /// Not before this unix-ms time (pacing or a profile backoff).
    WaitUntil(i64),
}

/// Pacing limits, per CONTRACT.md (`PROFILE_RATE_PER_SEC`, `CHAT_BURST`, `CHAT_BURST_WINDOW_SECS`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacingConfig {
    pub profile_rate_per_sec: f64,
    pub chat_burst: u32,
    pub chat_window_ms: u64,
}

impl Default for PacingConfig {
    fn default() -> Self {
        PacingConfig {
            profile_rate_per_sec: 1.0,
            chat_burst: 12,
            chat_window_ms: 2000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(rate: f64, burst: u32, window_ms: u64) -> PacingConfig {
        PacingConfig {
            profile_rate_per_sec: rate,
            chat_burst: burst,
            chat_window_ms: window_ms,
        }
    }

    // --- table tests -------------------------------------------------------------------------

    #[test]
    fn gcra_interval_rounding() {
        let cases = [
            (1.0, 1000.0),
            (2.0, 500.0),
            (3.0, 333.334), // rounded up to the µs: never faster than 3/s
            (10.0, 100.0),
            (0.5, 2000.0),
        ];
        for (rate, want) in cases {
            assert_eq!(Gcra::per_second(rate).interval_ms(), want, "rate {rate}");
        }
        assert_eq!(Gcra::new(0.1 * 3.0, 1).interval_ms(), 0.3);
    }

    #[test]
    fn gcra_burst_one_table() {
        let g = Gcra::per_second(1.0);
        // (stored tat µs, now ms, expected)
        let cases: [(Option<i64>, i64, Result<i64, i64>); 6] = [
            (None, 10_000, Ok(11_000_000)),
            (Some(11_000_000), 10_500, Err(11_000)),
            (Some(11_000_000), 10_999, Err(11_000)),
            (Some(11_000_000), 11_000, Ok(12_000_000)),
            (Some(11_000_000), 50_000, Ok(51_000_000)),
            (Some(11_000_500), 10_000, Err(11_001)), // rounded up to the next whole ms
        ];
        for (tat, now, want) in cases {
            assert_eq!(g.check(tat, now), want, "tat {tat:?} now {now}");
        }
    }

    #[test]
    fn gcra_three_per_second_does_not_drift() {
        let g = Gcra::per_second(3.0);
        let (mut tat, mut now, mut sent) = (None, 0i64, 0);
        while now < 60_000 {
            match g.check(tat, now) {
                Ok(t) => {
                    tat = Some(t);
                    sent += 1;
                }
                Err(at) => {
                    assert!(at > now, "told to wait until {at} at {now}");
                    now = at;
                }
            }
        }
        assert_eq!(sent, 180, "3/s over 60 s");
    }

    #[test]
    fn gcra_burst_table() {
        let g = Gcra::new(1000.0, 3);
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(g.check(tat, 0).expect("burst of 3 at once"));
        }
        assert_eq!(g.check(tat, 0), Err(1000));
        assert_eq!(g.check(tat, 999), Err(1000));
        assert!(g.check(tat, 1000).is_ok());
    }

    #[test]
    fn sliding_window_table() {
        let w = SlidingWindow::new(3, 2000);
        let cases: [(&[i64], i64, Result<(), i64>); 6] = [
            (&[], 0, Ok(())),
            (&[0, 10], 20, Ok(())),
            (&[0, 10, 20], 30, Err(2000)),
            (&[0, 10, 20], 1999, Err(2000)),
            (&[0, 10, 20], 2000, Ok(())),
            (&[500, 1000, 9000], 100, Err(2500)), // clock went back: future times still count
        ];
        for (recent, now, want) in cases {
            assert_eq!(w.check(recent, now), want, "{recent:?} at {now}");
        }
        let mut recent = vec![0, 10, 20];
        w.record(&mut recent, 2000);
        assert_eq!(recent, vec![10, 20, 2000]);
        w.record(&mut recent, 15);
        assert_eq!(recent, vec![15, 20, 2000]);
    }

    #[test]
    fn decide_table() {
        let c = cfg(1.0, 2, 2000);
        let mut s = PaceState::default();
        assert_eq!(decide(&mut s, "a", &c, 0), Pace::Go);
        assert_eq!(decide(&mut s, "a", &c, 0), Pace::WaitUntil(1000));
        let before = s.clone();
        assert_eq!(decide(&mut s, "b", &c, 999), Pace::WaitUntil(1000));
        assert_eq!(s, before, "a refusal changes nothing");
        assert_eq!(decide(&mut s, "a", &c, 1000), Pace::Go);
        // Profile allows at 2000, but chat `a` had 2 sends in [0, 2000): allowed at 2000.
        assert_eq!(decide(&mut s, "a", &c, 1500), Pace::WaitUntil(2000));
        assert_eq!(decide(&mut s, "a", &c, 2000), Pace::Go);
        // Chat `a` now holds 1000 and 2000: the next is allowed at 3000 by both.
        assert_eq!(decide(&mut s, "a", &c, 3000), Pace::Go);
        // Backoff dominates when later.
        s.backoff_until = 10_000;
        assert_eq!(decide(&mut s, "b", &c, 4000), Pace::WaitUntil(10_000));
        assert_eq!(decide(&mut s, "b", &c, 10_000), Pace::Go);
        // Pruned: only chats with sends still inside the window remain.
        assert_eq!(s.chats.keys().collect::<Vec<_>>(), vec!["b"]);
    }

    #[test]
    fn decide_chat_burst_binds_before_profile_rate() {
        // A fast profile (100/s) and a tight chat limit (2 per 1 s).
        let c = cfg(100.0, 2, 1000);
        let mut s = PaceState::default();
        assert_eq!(decide(&mut s, "x", &c, 0), Pace::Go);
        assert_eq!(decide(&mut s, "x", &c, 10), Pace::Go);
        assert_eq!(decide(&mut s, "x", &c, 20), Pace::WaitUntil(1000));
        assert_eq!(
            decide(&mut s, "y", &c, 20),
            Pace::Go,
            "another chat is not held back"
        );
        assert_eq!(decide(&mut s, "x", &c, 1000), Pace::Go);
    }

    #[test]
    fn pace_state_round_trips_as_json() {
        let mut s = PaceState::default();
        decide(&mut s, "120363@g.us", &PacingConfig::default(), 5);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<PaceState>(&json).unwrap(), s);
    }

    // --- properties, with a fake clock -------------------------------------------------------

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500)
    }

    /// Arrival times: non-decreasing, random gaps (many zero), from a random origin.
    fn arrivals(max_gap: i64, len: usize) -> impl Strategy<Value = Vec<i64>> {
        (
            0i64..2_000_000_000_000,
            prop::collection::vec(0..max_gap, 1..len),
        )
            .prop_map(move |(start, gaps)| {
                gaps.iter()
                    // A third of the gaps are zero: bursts of simultaneous arrivals.
                    .map(|&g| if g % 3 == 0 { 0 } else { g })
                    .scan(start, |t, g| {
                        *t += g;
                        Some(*t)
                    })
                    .collect()
            })
    }

    /// Same, but with occasional steps backwards (up to 10 s) and forwards.
    fn arrivals_with_steps(len: usize) -> impl Strategy<Value = Vec<i64>> {
        // 1 in 20 steps goes back up to 10 s, 1 in 20 forward up to 1 h, the rest 0..400 ms.
        let step = (0u32..20, 0i64..3_600_000).prop_map(|(kind, x)| match kind {
            0 => -(x % 10_000) - 1,
            1 => x,
            _ => x % 400,
        });
        (0i64..2_000_000_000_000, prop::collection::vec(step, 1..len)).prop_map(|(start, steps)| {
            steps
                .iter()
                .scan(start, |t, s| {
                    *t += s;
                    Some(*t)
                })
                .collect()
        })
    }

    /// Runs a GCRA over the arrivals, retrying nothing; returns the times let through.
    fn run_gcra(g: &Gcra, times: &[i64]) -> Vec<i64> {
        let mut tat = None;
        let mut allowed = Vec::new();
        for &now in times {
            if let Ok(t) = g.check(tat, now) {
                tat = Some(t);
                allowed.push(now);
            }
        }
        allowed
    }

    /// The most times in any half-open window `[a, a + w)`, over any order of times.
    fn max_in_window(times: &[i64], w: i64) -> usize {
        let mut sorted = times.to_vec();
        sorted.sort_unstable();
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..sorted.len() {
            while sorted[hi] - sorted[lo] >= w {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    fn interval_strategy() -> impl Strategy<Value = f64> {
        prop_oneof![
            (1u32..3000).prop_map(f64::from),              // whole ms
            (0.2f64..20.0).prop_map(|rate| 1000.0 / rate)  // any rate
        ]
    }

    proptest! {
        // 500 sequences per property by default (a few seconds in all); `PROPTEST_CASES=10000`
        // for the full run of reliability scenario 16.
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        /// (a) Burst 1: consecutive sends at least one interval apart; mean rate never above.
        #[test]
        fn gcra_burst_one_spacing(interval in interval_strategy(), times in arrivals(3000, 200)) {
            let g = Gcra::new(interval, 1);
            let allowed = run_gcra(&g, &times);
            for pair in allowed.windows(2) {
                prop_assert!((pair[1] - pair[0]) as f64 >= interval,
                    "gap {} < interval {interval}", pair[1] - pair[0]);
            }
            if allowed.len() > 1 {
                let span = (allowed[allowed.len() - 1] - allowed[0]) as f64;
                prop_assert!(span >= (allowed.len() - 1) as f64 * interval);
            }
        }

        /// (a) Any window W holds at most W/T + burst sends.
        #[test]
        fn gcra_window_bound(
            interval in interval_strategy(),
            burst in 1u32..20,
            times in arrivals(2000, 300),
            w in 1i64..20_000,
        ) {
            let g = Gcra::new(interval, burst);
            let allowed = run_gcra(&g, &times);
            let bound = w as f64 / g.interval_ms() + f64::from(burst);
            prop_assert!(max_in_window(&allowed, w) as f64 <= bound);
        }

        /// (b) A conforming request is never denied, and `Err(at)` is exact.
        #[test]
        fn gcra_allowed_at_is_exact(
            interval in interval_strategy(),
            burst in 1u32..10,
            times in arrivals(2000, 200),
        ) {
            let g = Gcra::new(interval, burst);
            let mut tat = None;
            let mut next_allowed = i64::MIN; // from the last refusal, if still current
            for &now in &times {
                match g.check(tat, now) {
                    Ok(t) => {
                        prop_assert!(now >= next_allowed || next_allowed == i64::MIN);
                        tat = Some(t);
                        next_allowed = i64::MIN;
                    }
                    Err(at) => {
                        prop_assert!(now < next_allowed || next_allowed == i64::MIN,
                            "denied at {now} though told {next_allowed}");
                        prop_assert!(at > now);
                        prop_assert!(g.check(tat, at).is_ok(), "retry at {at} must pass");
                        prop_assert!(g.check(tat, at - 1).is_err(), "{} must fail", at - 1);
                        next_allowed = at;
                    }
                }
            }
        }

        /// (c) A sliding window never holds more than `limit`; refusals are exact.
        #[test]
        fn sliding_window_limit(limit in 1u32..15, window in 1u64..5000, times in arrivals(600, 300)) {
            let sw = SlidingWindow::new(limit, window);
            let mut recent = Vec::new();
            let mut allowed = Vec::new();
            for &now in &times {
                match sw.check(&recent, now) {
                    Ok(()) => {
                        sw.record(&mut recent, now);
                        allowed.push(now);
                    }
                    Err(at) => {
                        prop_assert!(at > now);
                        prop_assert!(sw.check(&recent, at).is_ok());
                        prop_assert!(sw.check(&recent, at - 1).is_err());
                    }
                }
                prop_assert!(recent.len() <= limit as usize);
            }
            prop_assert!(max_in_window(&allowed, window as i64) <= limit as usize);
        }

        /// (d) decide(): per profile the GCRA spacing holds, per chat the window holds, and a
        /// `WaitUntil(at)` is exact (a retry at `at` goes when nothing else changed).
        #[test]
        fn decide_both_limits(
            rate in 0.5f64..50.0,
            burst in 1u32..6,
            window in 100u64..3000,
            backoff in prop::option::of(0i64..5000),
            arrivals in prop::collection::vec((0i64..50, 0usize..3), 1..300),
        ) {
            let c = cfg(rate, burst, window);
            let interval = Gcra::per_second(rate).interval_ms();
            let chats = ["a", "b", "c"];
            let mut s = PaceState::default();
            let start = 1_700_000_000_000i64;
            if let Some(b) = backoff {
                s.backoff_until = start + b;
            }
            let mut now = start;
            let mut sent: Vec<(i64, usize)> = Vec::new();
            for (gap, chat) in arrivals {
                now += gap;
                match decide(&mut s, chats[chat], &c, now) {
                    Pace::Go => sent.push((now, chat)),
                    Pace::WaitUntil(at) => {
                        prop_assert!(at > now);
                        let mut probe = s.clone();
                        prop_assert!(matches!(decide(&mut probe.clone(), chats[chat], &c, at - 1),
                            Pace::WaitUntil(_)));
                        prop_assert_eq!(decide(&mut probe, chats[chat], &c, at), Pace::Go);
                    }
                }
            }
            for pair in sent.windows(2) {
                prop_assert!((pair[1].0 - pair[0].0) as f64 >= interval);
            }
            if let Some(b) = backoff {
                prop_assert!(sent.iter().all(|&(t, _)| t >= start + b));
            }
            for chat in 0..chats.len() {
                let times: Vec<i64> = sent.iter().filter(|s| s.1 == chat).map(|s| s.0).collect();
                prop_assert!(max_in_window(&times, window as i64) <= burst as usize);
            }
        }

        /// (e) Clock steps (back up to 10 s, forward up to 1 h): counted in the clock's own
        /// times, no window ever sees more than the limits allow.
        #[test]
        fn clock_steps_do_not_open_bursts(
            interval in interval_strategy(),
            burst in 1u32..6,
            times in arrivals_with_steps(400),
            w in 1i64..20_000,
        ) {
            let g = Gcra::new(interval, burst);
            let allowed = run_gcra(&g, &times);
            let bound = w as f64 / g.interval_ms() + f64::from(burst);
            prop_assert!(max_in_window(&allowed, w) as f64 <= bound);

            let sw = SlidingWindow::new(burst, w as u64);
            let mut recent = Vec::new();
            let mut through = Vec::new();
            for &now in &times {
                if sw.check(&recent, now).is_ok() {
                    sw.record(&mut recent, now);
                    through.push(now);
                }
            }
            prop_assert!(max_in_window(&through, w) <= burst as usize);
        }

        /// (e) Right after a step back, nothing goes until the clock is past the old schedule.
        #[test]
        fn step_back_then_wait(back in 1i64..10_000, interval in 10u32..2000) {
            let g = Gcra::new(f64::from(interval), 1);
            let t0 = 1_700_000_000_000i64;
            let tat = g.check(None, t0).unwrap();
            let stepped = t0 - back;
            prop_assert_eq!(g.check(Some(tat), stepped), Err(t0 + i64::from(interval)));
        }
    }

    #[test]
    fn zero_or_silly_configs_do_not_panic() {
        let g = Gcra::per_second(0.0);
        let tat = g.check(None, 0).unwrap();
        assert!(g.check(Some(tat), 0).is_err());
        let sw = SlidingWindow::new(0, 1000);
        let mut recent = Vec::new();
        assert!(sw.check(&recent, 0).is_ok());
        sw.record(&mut recent, 0);
        assert_eq!(sw.check(&recent, 1), Err(1000));
        let mut s = PaceState::default();
        assert_eq!(decide(&mut s, "a", &cfg(f64::NAN, 0, 0), 0), Pace::Go);
    }
}
