//! The user's pace (CONTRACT.md "Pace"): how far apart the posts of one Wappi account go,
//! with a longer pause after every batch, an hourly and a daily cap, and a daily window. The
//! presets, the `/pace key=value` syntax and the short description shown to the user.
//!
//! The operator's `PROFILE_RATE_PER_SEC` stays the floor under every pace: `fast` is that floor,
//! and a custom gap below it is refused.

use chrono::NaiveTime;
use serde::{Deserialize, Serialize};

/// An inclusive range `[lo, hi]` a value is drawn from (ms for times, a count for batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub lo: u64,
    pub hi: u64,
}

impl Span {
    pub const fn new(lo: u64, hi: u64) -> Span {
        Span { lo, hi }
    }
}

/// A daily window in local wall-clock minutes since midnight: posts go out in `[start, end)`.
/// `end < start` wraps past midnight (22:00-06:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start_min: u32,
    pub end_min: u32,
}

impl Window {
    /// Whether local minute-of-day `m` is inside.
    pub fn contains(&self, m: u32) -> bool {
        if self.start_min <= self.end_min {
            (self.start_min..self.end_min).contains(&m)
        } else {
            m >= self.start_min || m < self.end_min
        }
    }
}

/// The pace of one account. `gap` of `0-0` means "the operator's ceiling" (the `fast` preset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaceSettings {
    /// The time between two posts, ms.
    pub gap: Span,
    /// Posts per batch; `None`: no batch pauses.
    pub batch: Option<Span>,
    /// The pause after a batch, ms (used with `batch`).
    pub pause: Span,
    pub window: Option<Window>,
    /// At most this many posts in any 60 minutes.
    pub hour: Option<u32>,
    /// At most this many posts per local calendar day.
    pub day: Option<u32>,
}

/// The named presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Careful,
    Normal,
    Fast,
}

const SEC: u64 = 1000;
const MIN: u64 = 60 * SEC;

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Careful, Preset::Normal, Preset::Fast];

    /// `careful`, `normal`, `fast` (the word of `/pace <word>` and of `DEFAULT_PACE`).
    pub fn word(self) -> &'static str {
        match self {
            Preset::Careful => "careful",
            Preset::Normal => "normal",
            Preset::Fast => "fast",
        }
    }

    /// A preset by its English or Russian word.
    pub fn parse(word: &str) -> Option<Preset> {
        match word.trim().to_lowercase().as_str() {
            "careful" | "бережно" => Some(Preset::Careful),
            "normal" | "обычно" => Some(Preset::Normal),
            "fast" | "быстро" => Some(Preset::Fast),
            _ => None,
        }
    }

    pub fn settings(self) -> PaceSettings {
        let window = |a: u32, b: u32| {
            Some(Window {
                start_min: a * 60,
                end_min: b * 60,
            })
        };
        match self {
            Preset::Careful => PaceSettings {
                gap: Span::new(20 * SEC, 60 * SEC),
                batch: Some(Span::new(15, 25)),
                pause: Span::new(5 * MIN, 15 * MIN),
                window: window(9, 21),
                hour: None,
                day: Some(150),
            },
            Preset::Normal => PaceSettings {
                gap: Span::new(8 * SEC, 20 * SEC),
                batch: Some(Span::new(30, 50)),
                pause: Span::new(2 * MIN, 5 * MIN),
                window: window(8, 22),
                hour: None,
                day: Some(400),
            },
            Preset::Fast => PaceSettings {
                gap: Span::new(0, 0),
                batch: None,
                pause: Span::new(0, 0),
                window: None,
                hour: None,
                day: None,
            },
        }
    }
}

impl PaceSettings {
    /// The preset these settings are, if any.
    pub fn preset(&self) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.settings() == *self)
    }

    /// Applies `/pace` arguments: a preset word, or `key=value` pairs (any subset, the rest
    /// kept). `floor_ms` is the operator's least time between two posts. Nothing changes on an
    /// error, whose text names the value and what is wrong with it.
    pub fn apply(&self, args: &str, floor_ms: u64) -> Result<PaceSettings, PaceError> {
        let args = args.trim();
        if let Some(p) = Preset::parse(args) {
            return Ok(p.settings());
        }
        let mut next = *self;
        for pair in args.split_whitespace() {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| PaceError::Unreadable(pair.to_string()))?;
            let value = value.trim().to_lowercase();
            let off = value == "off" || value == "выкл";
            match key.trim().to_lowercase().as_str() {
                "gap" => next.gap = span_of_times(&value, "gap")?,
                "batch" if off => next.batch = None,
                "batch" => next.batch = Some(span_of_counts(&value, "batch")?),
                "pause" if off => next.batch = None,
                "pause" => next.pause = span_of_times(&value, "pause")?,
                "window" if off => next.window = None,
                "window" => next.window = Some(window_of(&value)?),
                "hour" if off => next.hour = None,
                "hour" => next.hour = Some(count_of(&value, "hour")?),
                "day" if off => next.day = None,
                "day" => next.day = Some(count_of(&value, "day")?),
                _ => return Err(PaceError::UnknownKey(key.to_string())),
            }
        }
        if next.gap != Span::new(0, 0) && next.gap.lo < floor_ms {
            return Err(PaceError::BelowFloor { floor_ms });
        }
        if next.batch.is_some() && next.pause.hi == 0 {
            return Err(PaceError::NoPause);
        }
        Ok(next)
    }
}

/// The daily cap of a young number, by whole days since WhatsApp was linked to it: 20 posts on
/// the first day, then 30, 45, 70, 100, 150, 220; none from the eighth day on. The pace's own
/// daily cap applies too (the lower one counts).
pub const WARMUP_RAMP: [u32; 7] = [20, 30, 45, 70, 100, 150, 220];

/// The warm-up cap for a number linked `age_ms` ago (`None`: not young, or unknown).
pub fn warmup_cap(age_ms: Option<i64>) -> Option<u32> {
    let days = age_ms?.max(0) / 86_400_000;
    WARMUP_RAMP.get(usize::try_from(days).ok()?).copied()
}

/// How likely a mailing is to get the number banned, as the preview says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Risk {
    Low,
    Medium,
    High,
}

/// The risk of sending one identical post to `groups` groups at `pace` from a number whose
/// warm-up cap is `warmup` (young) or `None`, with `floor_ms` under the gaps. Points: many
/// groups (over 100, over 300), short gaps (a mean under 20 s, under 10 s), no batch pauses, a
/// young number (more groups than today's warm-up cap counts double), and one identical text
/// in over 50 groups. 0-2 low, 3-4 medium, 5 and up high.
pub fn risk(pace: &PaceSettings, groups: usize, warmup: Option<u32>, floor_ms: u64) -> Risk {
    let mean_gap = ((pace.gap.lo + pace.gap.hi) / 2).max(floor_ms);
    let mut points = 0;
    points += match groups {
        0..=100 => 0,
        101..=300 => 1,
        _ => 2,
    };
    points += match mean_gap {
        0..10_000 => 2,
        10_000..20_000 => 1,
        _ => 0,
    };
    points += u32::from(pace.batch.is_none());
    points += match warmup {
        Some(cap) if groups > cap as usize => 2,
        Some(_) => 1,
        None => 0,
    };
    points += u32::from(groups > 50);
    match points {
        0..=2 => Risk::Low,
        3..=4 => Risk::Medium,
        _ => Risk::High,
    }
}

/// Why `/pace` arguments were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaceError {
    #[error("unreadable: {0}")]
    Unreadable(String),
    #[error("unknown key: {0}")]
    UnknownKey(String),
    #[error("{key}: the first value is above the second")]
    Reversed { key: &'static str },
    #[error("gap below the operator's ceiling of {floor_ms} ms")]
    BelowFloor { floor_ms: u64 },
    #[error("a batch needs a pause")]
    NoPause,
}

/// `20-60s`, `5-15m`, `1h`, `0.3-0.8s` → ms.
fn span_of_times(v: &str, key: &'static str) -> Result<Span, PaceError> {
    let unreadable = || PaceError::Unreadable(format!("{key}={v}"));
    let (num, unit) = match v.char_indices().rev().find(|(_, c)| c.is_ascii_digit()) {
        Some((i, _)) => v.split_at(i + 1),
        None => return Err(unreadable()),
    };
    let scale = match unit {
        "s" | "с" | "сек" => SEC as f64,
        "m" | "м" | "мин" => MIN as f64,
        "h" | "ч" => (60 * MIN) as f64,
        _ => return Err(unreadable()),
    };
    let (a, b) = num.split_once('-').unwrap_or((num, num));
    let ms = |s: &str| -> Result<u64, PaceError> {
        let x: f64 = s
            .trim()
            .replace(',', ".")
            .parse()
            .map_err(|_| unreadable())?;
        if !(0.0..=1e7).contains(&x) {
            return Err(unreadable());
        }
        Ok((x * scale).round() as u64)
    };
    let span = Span::new(ms(a)?, ms(b)?);
    if span.lo > span.hi {
        return Err(PaceError::Reversed { key });
    }
    Ok(span)
}

/// `15-25` or `20` → a count span (at least 1).
fn span_of_counts(v: &str, key: &'static str) -> Result<Span, PaceError> {
    let (a, b) = v.split_once('-').unwrap_or((v, v));
    let span = Span::new(u64::from(count_of(a, key)?), u64::from(count_of(b, key)?));
    if span.lo > span.hi {
        return Err(PaceError::Reversed { key });
    }
    Ok(span)
}

/// A whole number of at least 1.
fn count_of(v: &str, key: &'static str) -> Result<u32, PaceError> {
    match v.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(PaceError::Unreadable(format!("{key}={v}"))),
    }
}

/// `09:00-21:00`.
fn window_of(v: &str) -> Result<Window, PaceError> {
    let unreadable = || PaceError::Unreadable(format!("window={v}"));
    let (a, b) = v.split_once('-').ok_or_else(unreadable)?;
    let minute = |s: &str| -> Result<u32, PaceError> {
        let t = NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| unreadable())?;
        Ok(chrono::Timelike::hour(&t) * 60 + chrono::Timelike::minute(&t))
    };
    let w = Window {
        start_min: minute(a)?,
        end_min: minute(b)?,
    };
    if w.start_min == w.end_min {
        return Err(unreadable());
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_by_word_in_both_languages() {
        for (word, p) in [
            ("careful", Preset::Careful),
            ("бережно", Preset::Careful),
            ("Normal", Preset::Normal),
            ("обычно", Preset::Normal),
            ("fast", Preset::Fast),
            ("быстро", Preset::Fast),
        ] {
            assert_eq!(Preset::parse(word), Some(p), "{word}");
        }
        assert_eq!(Preset::parse("slow"), None);
        for p in Preset::ALL {
            assert_eq!(p.settings().preset(), Some(p));
        }
    }

    #[test]
    fn custom_values_change_only_what_they_name() {
        let careful = Preset::Careful.settings();
        let p = careful
            .apply("gap=0.3-0.8s batch=5 pause=3-4s", 100)
            .unwrap();
        assert_eq!(p.gap, Span::new(300, 800));
        assert_eq!(p.batch, Some(Span::new(5, 5)));
        assert_eq!(p.pause, Span::new(3000, 4000));
        assert_eq!(p.window, careful.window, "kept");
        assert_eq!(p.day, careful.day, "kept");
        let p = p.apply("window=22:00-06:00 hour=60 day=off", 100).unwrap();
        assert_eq!(
            p.window,
            Some(Window {
                start_min: 22 * 60,
                end_min: 6 * 60
            })
        );
        assert_eq!(p.hour, Some(60));
        assert_eq!(p.day, None);
        assert_eq!(p.preset(), None);
        let p = p.apply("batch=off window=off", 100).unwrap();
        assert_eq!((p.batch, p.window), (None, None));
    }

    #[test]
    fn bad_values_are_refused_and_say_why() {
        let careful = Preset::Careful.settings();
        for (args, want) in [
            ("gap=60-20s", PaceError::Reversed { key: "gap" }),
            ("gap=0.5s", PaceError::BelowFloor { floor_ms: 1000 }),
            ("gap=fast", PaceError::Unreadable("gap=fast".into())),
            ("gap=5x", PaceError::Unreadable("gap=5x".into())),
            (
                "window=25:00-26:00",
                PaceError::Unreadable("window=25:00-26:00".into()),
            ),
            ("hour=0", PaceError::Unreadable("hour=0".into())),
            ("speed=3", PaceError::UnknownKey("speed".into())),
            ("gap", PaceError::Unreadable("gap".into())),
            ("batch=9-3", PaceError::Reversed { key: "batch" }),
        ] {
            assert_eq!(careful.apply(args, 1000), Err(want), "{args}");
        }
    }

    #[test]
    fn the_warm_up_ramp_grows_day_by_day_and_ends_on_the_eighth() {
        let day = 86_400_000;
        assert_eq!(warmup_cap(None), None);
        assert_eq!(warmup_cap(Some(0)), Some(20));
        assert_eq!(warmup_cap(Some(day - 1)), Some(20));
        assert_eq!(warmup_cap(Some(day)), Some(30));
        assert_eq!(warmup_cap(Some(6 * day + 5)), Some(220));
        assert_eq!(warmup_cap(Some(7 * day)), None);
        assert_eq!(
            warmup_cap(Some(-5)),
            Some(20),
            "a clock ahead counts as day one"
        );
    }

    #[test]
    fn risk_grows_with_groups_speed_and_a_young_number() {
        let careful = Preset::Careful.settings();
        let fast = Preset::Fast.settings();
        assert_eq!(risk(&careful, 40, None, 1000), Risk::Low);
        assert_eq!(risk(&careful, 200, None, 1000), Risk::Low);
        assert_eq!(risk(&careful, 200, Some(30), 1000), Risk::Medium);
        assert_eq!(
            risk(&Preset::Normal.settings(), 400, None, 1000),
            Risk::Medium
        );
        assert_eq!(risk(&fast, 20, None, 1000), Risk::Medium);
        assert_eq!(risk(&fast, 200, None, 1000), Risk::High);
        assert_eq!(risk(&careful, 400, Some(20), 1000), Risk::High);
    }

    #[test]
    fn windows_may_wrap_midnight() {
        let day = Window {
            start_min: 540,
            end_min: 1260,
        };
        assert!(day.contains(540) && day.contains(1259));
        assert!(!day.contains(1260) && !day.contains(539));
        let night = Window {
            start_min: 1320,
            end_min: 360,
        };
        assert!(night.contains(1320) && night.contains(0) && night.contains(359));
        assert!(!night.contains(360) && !night.contains(720));
    }
}
