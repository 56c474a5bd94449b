//! The plan of an account's posts, pure: when the next post of a mailing may go out, given
//! the pace, the account's recent posts (from the ledger, all its mailings together), how many
//! posts this mailing has made, and the seed kept with the mailing.
//!
//! Everything random is drawn from the seed and the post's number, so a restart or another
//! runner taking over continues the same plan: the same gaps, the same batch ends, the same
//! pauses. Caps and windows read only the durable post times, so they hold across mailings
//! and restarts too. The preview's ETA runs this same function forward ([`finish_at`]).

use super::pace::{PaceSettings, Span};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Timelike};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// What holds the next post back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Nothing: it may go now.
    None,
    /// The gap after the previous post.
    Gap,
    /// The longer pause after a batch.
    BatchPause,
    /// Outside the daily window.
    Window,
    /// The hourly cap.
    HourCap,
    /// The daily cap.
    DayCap,
}

impl Hold {
    /// Whether the user is shown the mailing as held (⏸): a pause, a window or a cap, not the
    /// ordinary gap between two posts.
    pub fn is_shown(self) -> bool {
        !matches!(self, Hold::None | Hold::Gap)
    }
}

/// The next post's time and what holds it back until then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    pub at: i64,
    pub hold: Hold,
}

/// Everything the plan of one mailing reads.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub pace: &'a PaceSettings,
    /// The operator's least time between two posts, ms.
    pub floor_ms: i64,
    /// The daily cap for a young number (warm-up), on top of the pace's own.
    pub warmup_day: Option<u32>,
    pub tz: Tz,
    pub seed: u64,
    /// Half pace: every wait doubled (the first posts after a resume, see the engine).
    pub slow: bool,
}

impl Plan<'_> {
    /// When the next post may go out at `now`: `done` posts of this mailing were made;
    /// `recent` are the account's post times (all mailings), sorted, at least the last 25 h.
    pub fn next(&self, done: u64, recent: &[i64], now: i64) -> Next {
        let last = recent.last().copied();
        let (mut at, mut hold) = match last {
            None => (now, Hold::None),
            Some(t) => {
                let (wait, hold) = self.wait_after(done);
                (t + wait, hold)
            }
        };
        if at <= now {
            at = now;
            hold = Hold::None;
        }
        // Each rule can only move the time later; a few rounds settle it (a window opening
        // can meet a day cap, a day cap's midnight a window).
        for _ in 0..8 {
            let before = at;
            if let Some(t) = self.window_opens(at) {
                (at, hold) = (t, Hold::Window);
            }
            if let Some(t) = self.hour_cap_lifts(recent, at) {
                (at, hold) = (t, Hold::HourCap);
            }
            if let Some(t) = self.day_cap_lifts(recent, at) {
                (at, hold) = (t, Hold::DayCap);
            }
            if at == before {
                break;
            }
        }
        Next { at, hold }
    }

    /// The wait after the previous post before post `done` (0-based) of this mailing: a batch
    /// pause when a batch just ended, else a gap; never below the operator's floor.
    fn wait_after(&self, done: u64) -> (i64, Hold) {
        let batch_ended = done > 0 && self.batch_ends_at(done);
        let (span, hold, kind) = if batch_ended {
            (self.pace.pause, Hold::BatchPause, 2)
        } else {
            (self.pace.gap, Hold::Gap, 1)
        };
        let wait = draw(self.seed, kind, done, span) as i64;
        let wait = wait.max(self.floor_ms);
        (if self.slow { wait * 2 } else { wait }, hold)
    }

    /// Whether a batch ends after `done` posts (batch sizes drawn per batch from the seed).
    fn batch_ends_at(&self, done: u64) -> bool {
        let Some(batch) = self.pace.batch else {
            return false;
        };
        let mut end = 0u64;
        let mut k = 0u64;
        while end < done {
            end += draw(self.seed, 3, k, batch).max(1);
            k += 1;
        }
        end == done
    }

    /// The next opening of the window after `at`, if `at` is outside it.
    fn window_opens(&self, at: i64) -> Option<i64> {
        let w = self.pace.window?;
        let local = self.local(at);
        let minute = local.hour() * 60 + local.minute();
        if w.contains(minute) {
            return None;
        }
        let date = local.date_naive();
        let today = self.local_start(date, w.start_min);
        Some(if today > at {
            today
        } else {
            self.local_start(date + Duration::days(1), w.start_min)
        })
    }

    /// When a post at `at` would keep the hourly cap, if it would not.
    fn hour_cap_lifts(&self, recent: &[i64], at: i64) -> Option<i64> {
        let cap = self.pace.hour? as usize;
        let live: Vec<i64> = recent
            .iter()
            .copied()
            .filter(|&t| t > at - HOUR_MS && t <= at)
            .collect();
        (live.len() >= cap).then(|| live[live.len() - cap] + HOUR_MS)
    }

    /// The start of the next local day, if the day of `at` has its cap of posts.
    fn day_cap_lifts(&self, recent: &[i64], at: i64) -> Option<i64> {
        let cap = match (self.pace.day, self.warmup_day) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        } as usize;
        let date = self.local(at).date_naive();
        let day_start = self.local_start(date, 0);
        let posts = recent
            .iter()
            .filter(|&&t| t >= day_start && t <= at)
            .count();
        (posts >= cap).then(|| self.local_start(date + Duration::days(1), 0))
    }

    fn local(&self, ms: i64) -> DateTime<Tz> {
        self.tz
            .timestamp_millis_opt(ms)
            .single()
            .unwrap_or_else(|| self.tz.timestamp_millis_opt(0).unwrap())
    }

    /// The unix ms of local minute `minute` of `date` (the first valid instant at or after it
    /// when a clock change skips it).
    fn local_start(&self, date: NaiveDate, minute: u32) -> i64 {
        let mut naive = date
            .and_hms_opt(minute / 60, minute % 60, 0)
            .expect("a valid time");
        for _ in 0..4 {
            if let Some(t) = self.tz.from_local_datetime(&naive).earliest() {
                return t.timestamp_millis();
            }
            naive += Duration::minutes(30);
        }
        naive.and_utc().timestamp_millis()
    }
}

/// When the last of `posts` more posts would go out, planned from `now` the way the engine
/// will send them (the same [`Plan::next`] step after step). `recent` as for `next`.
pub fn finish_at(plan: &Plan<'_>, done: u64, recent: &[i64], posts: u64, now: i64) -> i64 {
    let mut history: Vec<i64> = recent.to_vec();
    let mut at = now;
    for i in 0..posts {
        at = plan.next(done + i, &history, at).at;
        history.push(at);
        // Only the last day can matter to the caps.
        if history.len() > 4096 {
            let keep_from = at - DAY_MS - HOUR_MS;
            history.retain(|&t| t >= keep_from);
        }
    }
    at
}

/// A value in `span` drawn from `seed`, the kind of draw and its index: the same arguments
/// always give the same value.
fn draw(seed: u64, kind: u8, index: u64, span: Span) -> u64 {
    if span.hi <= span.lo {
        return span.lo;
    }
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update([kind]);
    h.update(index.to_le_bytes());
    let bytes: [u8; 8] = h.finalize()[..8].try_into().expect("8 bytes");
    let width = span.hi - span.lo + 1;
    span.lo + u64::from_le_bytes(bytes) % width
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::pacing::pace::{Preset, Window};
    use proptest::prelude::*;

    const MOSCOW: Tz = chrono_tz::Europe::Moscow;
    /// 2026-12-05 10:00 in Moscow (07:00 UTC).
    const T0: i64 = 1_764_918_000_000 + 365 * DAY_MS;

    fn plan(pace: &PaceSettings) -> Plan<'_> {
        Plan {
            pace,
            floor_ms: 100,
            warmup_day: None,
            tz: MOSCOW,
            seed: 42,
            slow: false,
        }
    }

    /// The posts a mailing of `n` groups makes from `now`, step by step as the engine does.
    fn run(plan: &Plan<'_>, n: u64, now: i64) -> Vec<i64> {
        let mut posts = Vec::new();
        let mut t = now;
        for i in 0..n {
            t = plan.next(i, &posts, t).at;
            posts.push(t);
        }
        posts
    }

    #[test]
    fn t0_is_ten_in_the_morning_in_moscow() {
        let local = MOSCOW.timestamp_millis_opt(T0).unwrap();
        assert_eq!(
            local.format("%Y-%m-%d %H:%M").to_string(),
            "2026-12-05 10:00"
        );
    }

    #[test]
    fn a_window_that_excludes_now_holds_the_first_post_until_it_opens() {
        let pace = Preset::Careful.settings(); // 09:00-21:00
        let p = plan(&pace);
        let evening = T0 + 12 * HOUR_MS; // 22:00
        let next = p.next(0, &[], evening);
        assert_eq!(next.hold, Hold::Window);
        assert_eq!(next.at, T0 + 23 * HOUR_MS, "09:00 the next morning");
    }

    #[test]
    fn the_hour_cap_waits_for_the_oldest_post_to_leave_the_hour() {
        let pace = PaceSettings {
            hour: Some(3),
            ..Preset::Fast.settings()
        };
        let p = plan(&pace);
        let recent = [T0, T0 + 1000, T0 + 2000];
        let next = p.next(3, &recent, T0 + 3000);
        assert_eq!(
            next,
            Next {
                at: T0 + HOUR_MS,
                hold: Hold::HourCap
            }
        );
    }

    #[test]
    fn the_day_cap_counts_the_local_day_and_the_warm_up_cap_too() {
        let pace = PaceSettings {
            day: Some(5),
            ..Preset::Fast.settings()
        };
        let mut p = plan(&pace);
        p.warmup_day = Some(2);
        let recent = [T0, T0 + 1000];
        let next = p.next(2, &recent, T0 + 2000);
        assert_eq!(next.hold, Hold::DayCap);
        assert_eq!(next.at, T0 + 14 * HOUR_MS, "midnight in Moscow");
    }

    #[test]
    fn the_eta_runs_the_same_plan() {
        let pace = Preset::Careful.settings();
        let p = plan(&pace);
        let posts = run(&p, 40, T0);
        assert_eq!(finish_at(&p, 0, &[], 40, T0), *posts.last().unwrap());
    }

    fn arb_pace() -> impl Strategy<Value = PaceSettings> {
        (
            (100u64..3000, 0u64..3000),
            proptest::option::of((1u64..8, 0u64..8)),
            (1000u64..20_000, 0u64..20_000),
            proptest::option::of((0u32..1440, 1u32..1439)),
            proptest::option::of(1u32..30),
            proptest::option::of(1u32..60),
        )
            .prop_map(|(gap, batch, pause, window, hour, day)| PaceSettings {
                gap: Span::new(gap.0, gap.0 + gap.1),
                batch: batch.map(|b| Span::new(b.0, b.0 + b.1)),
                pause: Span::new(pause.0, pause.0 + pause.1),
                window: window.map(|(s, len)| Window {
                    start_min: s,
                    end_min: (s + len) % 1440,
                }),
                hour,
                day,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Gaps inside their range (or a pause after a batch, or a hold) and never below the
        /// floor; nothing outside the window; no hour over `hour`, no local day over `day`.
        #[test]
        fn every_rule_of_the_pace_holds(pace in arb_pace(), seed in any::<u64>(), start in 0i64..DAY_MS) {
            let mut p = plan(&pace);
            p.seed = seed;
            let posts = run(&p, 60, T0 + start);
            for (i, pair) in posts.windows(2).enumerate() {
                let gap = (pair[1] - pair[0]) as u64;
                prop_assert!(gap >= p.floor_ms as u64);
                prop_assert!(gap >= pace.gap.lo.min(pace.pause.lo));
                let done = i as u64 + 1;
                let (wait, hold) = p.wait_after(done);
                prop_assert!(gap >= wait as u64, "post {} came {} ms after the last, plan {}", done, gap, wait);
                if hold == Hold::Gap {
                    prop_assert!(wait as u64 <= pace.gap.hi.max(p.floor_ms as u64));
                }
            }
            for &t in &posts {
                if let Some(w) = pace.window {
                    let l = p.local(t);
                    prop_assert!(w.contains(l.hour() * 60 + l.minute()), "post at {} outside", l);
                }
                if let Some(cap) = pace.hour {
                    let n = posts.iter().filter(|&&u| u > t - HOUR_MS && u <= t).count();
                    prop_assert!(n <= cap as usize);
                }
                if let Some(cap) = pace.day {
                    let d = p.local(t).date_naive();
                    let n = posts.iter().filter(|&&u| p.local(u).date_naive() == d).count();
                    prop_assert!(n <= cap as usize);
                }
            }
        }

        /// A restart in the middle (a fresh plan from the seed, the posts so far from the
        /// ledger) continues with exactly the same times.
        #[test]
        fn a_restart_continues_the_same_plan(pace in arb_pace(), seed in any::<u64>(), cut in 1usize..40) {
            let mut p = plan(&pace);
            p.seed = seed;
            let whole = run(&p, 40, T0);
            let mut resumed: Vec<i64> = whole[..cut].to_vec();
            let mut t = *resumed.last().unwrap();
            for i in cut as u64..40 {
                t = p.next(i, &resumed, t).at;
                resumed.push(t);
            }
            prop_assert_eq!(whole, resumed);
        }
    }

    #[test]
    fn half_pace_doubles_every_wait() {
        let pace = Preset::Careful.settings();
        let mut p = plan(&pace);
        let full = run(&p, 30, T0);
        p.slow = true;
        let half = run(&p, 30, T0);
        for (a, b) in full.windows(2).zip(half.windows(2)) {
            let (gap, slow_gap) = (a[1] - a[0], b[1] - b[0]);
            // Windows and caps aside (none within these 30 posts of 10:00), exactly twice.
            assert_eq!(slow_gap, 2 * gap);
        }
    }

    #[test]
    fn gaps_vary_and_a_pause_follows_each_batch() {
        let pace = PaceSettings {
            gap: Span::new(300, 800),
            batch: Some(Span::new(5, 5)),
            pause: Span::new(3000, 4000),
            window: None,
            hour: None,
            day: None,
        };
        let posts = run(&plan(&pace), 16, T0);
        let gaps: Vec<i64> = posts.windows(2).map(|w| w[1] - w[0]).collect();
        for (i, g) in gaps.iter().enumerate() {
            if (i + 1) % 5 == 0 {
                assert!((3000..=4000).contains(g), "pause after post {}: {g}", i + 1);
            } else {
                assert!((300..=800).contains(g), "gap after post {}: {g}", i + 1);
            }
        }
        let distinct: std::collections::HashSet<_> = gaps.iter().collect();
        assert!(distinct.len() > 5, "gaps vary: {gaps:?}");
    }
}
