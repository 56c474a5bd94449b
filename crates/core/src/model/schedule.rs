//! Scheduled and repeating mailings: the `/schedule` command's parser and the due times of
//! its runs.
//!
//! Pure: no I/O, no clock (the time comes in as unix ms), no async. A schedule is kept as
//! local dates and a local wall-clock time; the instant a run is due is computed from them
//! in the user's zone each time it is asked ([`instant`]), never stored here, so a DST change
//! or a user who changes zone keeps the runs at the time of day they asked for.
//!
//! `/schedule <when> [repeat <rule>] [until <date>]`, Russian and English words alike:
//! `10:00 повтор по будням до 31.12.2026`, `+30 мин`, `tomorrow 08:30 repeat mon,wed`.

use chrono::{
    Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone,
    Timelike, Weekday,
};
use chrono_tz::Tz;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
/// The furthest a first run may be, and the longest `+N`.
const MAX_AHEAD_DAYS: i64 = 366;
/// The longest `every N days`.
const MAX_EVERY_DAYS: u32 = 366;
/// The most words a rule may take (`пн и ср и пт и …`).
const MAX_RULE_WORDS: usize = 16;

/// How a series repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// One run only (no `repeat`).
    Once,
    /// Every day.
    Daily,
    /// Monday to Friday.
    Weekdays,
    /// Every week on the first run's weekday.
    Weekly,
    /// On these weekdays (sorted Monday first, no repeats, at least one).
    Days(Vec<Weekday>),
    /// Every N days from the first run's date (N >= 2: `every 1 days` is read as [`Rule::Daily`]).
    EveryDays(u32),
}

impl Rule {
    /// A stable text form for the database: `once`, `daily`, `weekdays`, `weekly`,
    /// `days:mon,wed,fri`, `every:3`.
    pub fn code(&self) -> String {
        match self {
            Rule::Once => "once".into(),
            Rule::Daily => "daily".into(),
            Rule::Weekdays => "weekdays".into(),
            Rule::Weekly => "weekly".into(),
            Rule::Days(days) => {
                let codes: Vec<&str> = days.iter().map(|d| day_code(*d)).collect();
                format!("days:{}", codes.join(","))
            }
            Rule::EveryDays(n) => format!("every:{n}"),
        }
    }

    /// The inverse of [`Rule::code`]: only the exact texts `code` writes (a day list sorted
    /// Monday first without repeats, `every:N` with N >= 2); None for anything else.
    pub fn from_code(s: &str) -> Option<Rule> {
        let rule = match s {
            "once" => Rule::Once,
            "daily" => Rule::Daily,
            "weekdays" => Rule::Weekdays,
            "weekly" => Rule::Weekly,
            _ => {
                if let Some(list) = s.strip_prefix("days:") {
                    let days = list.split(',').map(day_from_code);
                    Rule::Days(days.collect::<Option<Vec<_>>>()?)
                } else {
                    Rule::EveryDays(s.strip_prefix("every:")?.parse().ok()?)
                }
            }
        };
        let canonical = match &rule {
            Rule::Days(days) => !days.is_empty() && *days == sorted_days(days.clone()),
            Rule::EveryDays(n) => *n >= 2,
            _ => true,
        };
        (canonical && rule.code() == s).then_some(rule)
    }
}

/// What `/schedule` asked for: runs on the rule's dates from `first` (its local date) at local
/// wall-clock `time` in the user's zone, up to and including `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The first run's local date (a date the rule allows).
    pub first: NaiveDate,
    /// The local time of every run; seconds only for the `+N` forms (nanoseconds dropped).
    pub time: NaiveTime,
    pub rule: Rule,
    /// The last local date a run may happen on.
    pub until: Option<NaiveDate>,
}

/// One run: its local date (the run's identity: at most one run per series per local date)
/// and the instant it is due (unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub date: NaiveDate,
    pub at_ms: i64,
}

/// Why a `/schedule` could not be read. Data only: the bot's texts render it in ru/en.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Nothing after `/schedule`.
    #[error("nothing to schedule: the time is missing")]
    Empty,
    /// The `<when>` part as typed (empty when only a rule or an end date was given).
    #[error("unreadable time: {0}")]
    BadWhen(String),
    /// An explicit date and time that has already passed.
    #[error("that time has already passed")]
    Past,
    /// The rule as typed (empty after a bare `repeat`).
    #[error("unreadable repeat rule: {0}")]
    BadRule(String),
    /// The end date as typed (empty after a bare `until`).
    #[error("unreadable end date: {0}")]
    BadUntil(String),
    /// The end date is before the first run's date.
    #[error("the end date is before the first run")]
    UntilBeforeFirst,
    /// The first run is more than 366 days away.
    #[error("the first run is more than {MAX_AHEAD_DAYS} days away")]
    TooFar,
    /// Words the parser did not understand, as typed.
    #[error("not understood: {0}")]
    Trailing(String),
}

/// Parses the text after `/schedule` at `now_ms` for a user in `tz`.
///
/// The first run is always in the future: a bare `HH:MM` that has passed today means
/// tomorrow, a `DD.MM` that has passed this year means next year, and with a rule the first
/// run is the first date on or after the `<when>` date that the rule allows.
pub fn parse(args: &str, now_ms: i64, tz: Tz) -> Result<Schedule, ScheduleError> {
    let text = Text::new(args);
    if text.words.is_empty() {
        return Err(ScheduleError::Empty);
    }
    let parts = text.parts()?;
    let (when, rest) = text.read_when(parts.when)?;
    let rule = text.read_rule(parts.rule, rest)?;
    let until = match parts.until {
        Some(words) => Some(text.read_until(words)?),
        None => None,
    };
    let Some(now) = tz.timestamp_millis_opt(now_ms).earliest() else {
        return Err(ScheduleError::BadWhen(text.typed(parts.when))); // `now_ms` off the calendar
    };
    let (date, time) = resolve(when, now.date_naive(), now_ms, tz)?;
    first_run(
        Schedule {
            first: date,
            time,
            rule,
            until,
        },
        now_ms,
        tz,
    )
}

/// Moves `first` to the rule's first date whose run is in the future, and checks the limits.
fn first_run(mut schedule: Schedule, now_ms: i64, tz: Tz) -> Result<Schedule, ScheduleError> {
    let until = schedule.until.take();
    let run = schedule
        .next_run(tz, None, now_ms.saturating_add(1))
        .ok_or(ScheduleError::Past)?;
    schedule.first = run.date;
    if run.at_ms - now_ms > MAX_AHEAD_DAYS * DAY_MS {
        return Err(ScheduleError::TooFar);
    }
    if until.is_some_and(|u| u < run.date) {
        return Err(ScheduleError::UntilBeforeFirst);
    }
    schedule.until = until;
    Ok(schedule)
}

impl Schedule {
    /// The rule's dates on or after `from` (and from `first`), up to `until`; lazily (an
    /// iterator; a Once schedule yields at most `first`). Without `until` a repeating
    /// schedule's dates only end with the calendar.
    pub fn dates_from(&self, from: NaiveDate) -> impl Iterator<Item = NaiveDate> + '_ {
        std::iter::successors(self.date_on_or_after(from), move |d| {
            self.date_on_or_after(d.succ_opt()?)
        })
        .take_while(move |d| self.until.is_none_or(|until| *d <= until))
    }

    /// The first run whose date is after `after` (None = from the start) and whose instant is
    /// at or after `not_before_ms`, computed in `tz` now (so a DST change or a changed zone is
    /// taken into account every time it is asked). None when the series has no more runs.
    pub fn next_run(&self, tz: Tz, after: Option<NaiveDate>, not_before_ms: i64) -> Option<Run> {
        let mut from = match after {
            Some(date) => date.succ_opt()?,
            None => self.first,
        };
        // Dates two days before `not_before` in local time are surely too early: skip them
        // rather than walk a long-running series day by day.
        match tz.timestamp_millis_opt(not_before_ms).earliest() {
            Some(local) => {
                if let Some(skip) = local.date_naive().checked_sub_days(Days::new(2)) {
                    from = from.max(skip);
                }
            }
            None if not_before_ms > 0 => return None, // beyond the calendar
            None => {}
        }
        self.dates_from(from)
            .map(|date| Run {
                date,
                at_ms: instant(date, self.time, tz),
            })
            .find(|run| run.at_ms >= not_before_ms)
    }

    /// The next `n` runs by the same rule as [`Schedule::next_run`] (used to show "the next
    /// three"); fewer when the series ends. Their dates and instants strictly increase.
    pub fn next_runs(
        &self,
        tz: Tz,
        after: Option<NaiveDate>,
        not_before_ms: i64,
        n: usize,
    ) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::with_capacity(n.min(16));
        let (mut after, mut not_before) = (after, not_before_ms);
        while runs.len() < n {
            let Some(run) = self.next_run(tz, after, not_before) else {
                break;
            };
            runs.push(run);
            after = Some(run.date);
            not_before = not_before.max(run.at_ms.saturating_add(1));
        }
        runs
    }

    /// The first date on or after `date` (and `first`) that the rule allows, ignoring `until`.
    fn date_on_or_after(&self, date: NaiveDate) -> Option<NaiveDate> {
        let date = date.max(self.first);
        match &self.rule {
            Rule::Once => (date == self.first).then_some(date),
            Rule::Daily => Some(date),
            Rule::Weekdays => first_weekday(date, |d| d.num_days_from_monday() < 5),
            Rule::Days(days) => first_weekday(date, |d| days.contains(&d)),
            Rule::Weekly => self.stepped(date, 7),
            Rule::EveryDays(n) => self.stepped(date, u64::from((*n).max(1))),
        }
    }

    /// The first date on or after `date` that is a whole number of `step` days after `first`.
    fn stepped(&self, date: NaiveDate, step: u64) -> Option<NaiveDate> {
        let since_first = u64::try_from((date - self.first).num_days()).ok()?;
        let steps = since_first.div_ceil(step);
        self.first
            .checked_add_days(Days::new(steps.checked_mul(step)?))
    }
}

/// The first of the seven days from `date` whose weekday `allowed` accepts.
fn first_weekday(date: NaiveDate, allowed: impl Fn(Weekday) -> bool) -> Option<NaiveDate> {
    date.iter_days().take(7).find(|d| allowed(d.weekday()))
}

/// The instant of local `date` at `time` in `tz`: an ambiguous time (autumn fall-back) is its
/// earlier instant; a time skipped by a spring-forward gap moves forward by the gap's length
/// (02:30 on a day the clocks jump 02:00→03:00 is 03:30).
pub fn instant(date: NaiveDate, time: NaiveTime, tz: Tz) -> i64 {
    let local = date.and_time(time);
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) => return at.timestamp_millis(),
        LocalResult::Ambiguous(a, b) => return a.timestamp_millis().min(b.timestamp_millis()),
        LocalResult::None => {}
    }
    // In a gap: read the wall-clock time with the offset in force just before the gap.
    let before_gap = (1..=200)
        .filter_map(|quarters| local.checked_sub_signed(TimeDelta::minutes(15 * quarters)))
        .find_map(|earlier| tz.from_local_datetime(&earlier).latest());
    let offset_s = before_gap.map_or(0, |at| at.offset().fix().local_minus_utc());
    local.and_utc().timestamp_millis() - i64::from(offset_s) * 1000
}

// ---------------------------------------------------------------------------------------
// Reading the words.

/// A word of the arguments, by its byte range, so a piece can be quoted back as typed.
#[derive(Debug, Clone, Copy)]
struct Word {
    start: usize,
    end: usize,
}

/// The arguments split into words.
struct Text<'a> {
    args: &'a str,
    words: Vec<Word>,
}

/// The arguments cut at the keywords: `<when> [repeat <rule>] [until <date>]` (any order
/// after the `<when>`).
struct Parts<'w> {
    when: &'w [Word],
    rule: Option<&'w [Word]>,
    until: Option<&'w [Word]>,
}

/// What `<when>` said, before it is placed on the calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// `HH:MM`: today, or tomorrow when that has passed.
    Clock(NaiveTime),
    /// `сегодня HH:MM` / `today HH:MM`.
    Today(NaiveTime),
    /// `завтра HH:MM` / `tomorrow HH:MM`.
    Tomorrow(NaiveTime),
    /// `DD.MM HH:MM`: this year, or next year when that has passed.
    DayMonth {
        day: u32,
        month: u32,
        time: NaiveTime,
    },
    /// `DD.MM.YYYY HH:MM` or `YYYY-MM-DD HH:MM`.
    On(NaiveDate, NaiveTime),
    /// `+N m` / `+N ч`: in this many minutes.
    In(u64),
}

impl<'a> Text<'a> {
    fn new(args: &'a str) -> Text<'a> {
        let mut words = Vec::new();
        let mut start = None;
        for (i, c) in args.char_indices() {
            match (c.is_whitespace(), start) {
                (true, Some(s)) => {
                    words.push(Word { start: s, end: i });
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        if let Some(s) = start {
            words.push(Word {
                start: s,
                end: args.len(),
            });
        }
        Text { args, words }
    }

    /// The words as typed (empty for no words).
    fn typed(&self, words: &[Word]) -> String {
        match (words.first(), words.last()) {
            (Some(a), Some(b)) => self.args[a.start..b.end].to_string(),
            _ => String::new(),
        }
    }

    /// The words in lower case, one space between them.
    fn lower(&self, words: &[Word]) -> String {
        let lower: Vec<String> = words
            .iter()
            .map(|w| self.args[w.start..w.end].to_lowercase())
            .collect();
        lower.join(" ")
    }

    /// Cuts the words at `repeat`/`повтор` and `until`/`до`; a keyword given twice is trailing.
    fn parts(&self) -> Result<Parts<'_>, ScheduleError> {
        let keywords: Vec<(usize, bool)> = (0..self.words.len())
            .filter_map(|i| {
                let word = self.lower(&self.words[i..=i]);
                let is_repeat = matches!(word.as_str(), "repeat" | "повтор" | "повторять");
                let is_until = matches!(word.as_str(), "until" | "till" | "до");
                (is_repeat || is_until).then_some((i, is_repeat))
            })
            .collect();
        let when_end = keywords.first().map_or(self.words.len(), |k| k.0);
        let mut parts = Parts {
            when: &self.words[..when_end],
            rule: None,
            until: None,
        };
        for (n, &(i, is_repeat)) in keywords.iter().enumerate() {
            let end = keywords.get(n + 1).map_or(self.words.len(), |next| next.0);
            let slot = if is_repeat {
                &mut parts.rule
            } else {
                &mut parts.until
            };
            if slot.is_some() {
                return Err(ScheduleError::Trailing(self.typed(&self.words[i..])));
            }
            *slot = Some(&self.words[i + 1..end]);
        }
        Ok(parts)
    }

    /// The longest readable `<when>` at the start (up to three words) and the words after it.
    fn read_when<'w>(&self, words: &'w [Word]) -> Result<(When, &'w [Word]), ScheduleError> {
        (1..=words.len().min(3))
            .rev()
            .find_map(|len| when_of(&self.lower(&words[..len])).map(|w| (w, &words[len..])))
            .ok_or_else(|| ScheduleError::BadWhen(self.typed(words)))
    }

    /// The rule after `repeat` (`keyed`), or one written straight after `<when>` without the
    /// keyword (`after_when`: `10:00 ежедневно`); `Once` when there is none.
    fn read_rule(
        &self,
        keyed: Option<&[Word]>,
        after_when: &[Word],
    ) -> Result<Rule, ScheduleError> {
        let trailing = |words: &[Word]| ScheduleError::Trailing(self.typed(words));
        let words = match keyed {
            Some(_) if !after_when.is_empty() => return Err(trailing(after_when)),
            Some(words) => words,
            None if after_when.is_empty() => return Ok(Rule::Once),
            None => after_when,
        };
        let longest = (1..=words.len().min(MAX_RULE_WORDS))
            .rev()
            .find_map(|len| rule_of(&self.lower(&words[..len])).map(|r| (r, &words[len..])));
        match longest {
            Some((rule, [])) => Ok(rule),
            Some((_, rest)) => Err(trailing(rest)),
            None if keyed.is_some() || self.starts_a_rule(words) => {
                Err(ScheduleError::BadRule(self.typed(words)))
            }
            None => Err(trailing(words)),
        }
    }

    /// Whether the words begin like a rule (`every …`, `каждые …`), to call them a bad rule
    /// rather than junk when the `repeat` keyword was left out.
    fn starts_a_rule(&self, words: &[Word]) -> bool {
        let first = self.lower(&words[..words.len().min(1)]);
        matches!(
            first.as_str(),
            "every" | "each" | "каждые" | "каждый" | "каждую" | "каждое"
        )
    }

    /// The date after `until` and nothing else.
    fn read_until(&self, words: &[Word]) -> Result<NaiveDate, ScheduleError> {
        let Some((first, rest)) = words.split_first() else {
            return Err(ScheduleError::BadUntil(String::new()));
        };
        let date = full_date(&self.lower(std::slice::from_ref(first)))
            .ok_or_else(|| ScheduleError::BadUntil(self.typed(words)))?;
        if !rest.is_empty() {
            return Err(ScheduleError::Trailing(self.typed(rest)));
        }
        Ok(date)
    }
}

/// Reads a lower-case `<when>` (words joined by single spaces).
fn when_of(s: &str) -> Option<When> {
    if let Some(minutes) = relative_minutes(s) {
        return Some(When::In(minutes));
    }
    match s.split(' ').collect::<Vec<_>>()[..] {
        [time] => Some(When::Clock(clock(time)?)),
        [day, time] => {
            let time = clock(time)?;
            match day {
                "завтра" | "tomorrow" => Some(When::Tomorrow(time)),
                "сегодня" | "today" => Some(When::Today(time)),
                _ => match full_date(day) {
                    Some(date) => Some(When::On(date, time)),
                    None => {
                        let (day, month) = day_month(day)?;
                        Some(When::DayMonth { day, month, time })
                    }
                },
            }
        }
        _ => None,
    }
}

/// `+30 мин`, `+2ч`, `+90m`, `+1 h`, `через 30 минут`, `in 2 hours` → minutes (at least 1;
/// a number too long for u64 reads as u64::MAX, which is then too far).
fn relative_minutes(s: &str) -> Option<u64> {
    let rest = s
        .strip_prefix('+')
        .or_else(|| s.strip_prefix("через "))
        .or_else(|| s.strip_prefix("in "))?;
    let compact: String = rest.chars().filter(|c| !c.is_whitespace()).collect();
    let digits_end = compact.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = compact.split_at(digits_end);
    if digits.is_empty() {
        return None;
    }
    let per_unit = match unit.trim_end_matches('.') {
        "m" | "min" | "mins" | "minute" | "minutes" => 1,
        "м" | "мин" | "минута" | "минуту" | "минуты" | "минут" => 1,
        "h" | "hr" | "hrs" | "hour" | "hours" => 60,
        "ч" | "час" | "часа" | "часов" => 60,
        _ => return None,
    };
    let n: u64 = digits.parse().unwrap_or(u64::MAX);
    (n >= 1).then(|| n.saturating_mul(per_unit))
}

/// `HH:MM` or `H:MM`.
fn clock(s: &str) -> Option<NaiveTime> {
    let (hour, minute) = s.split_once(':')?;
    NaiveTime::from_hms_opt(number(hour, 1, 2)?, number(minute, 2, 2)?, 0)
}

/// `DD.MM.YYYY` or `YYYY-MM-DD` (the day and month may have one digit); None for a date
/// the calendar does not have.
fn full_date(s: &str) -> Option<NaiveDate> {
    let dotted: Vec<&str> = s.split('.').collect();
    let dashed: Vec<&str> = s.split('-').collect();
    let (year, month, day) = match (dotted.as_slice(), dashed.as_slice()) {
        ([d, m, y], _) => (*y, *m, *d),
        (_, [y, m, d]) => (*y, *m, *d),
        _ => return None,
    };
    let year = i32::try_from(number(year, 4, 4)?).ok()?;
    NaiveDate::from_ymd_opt(year, number(month, 1, 2)?, number(day, 1, 2)?)
}

/// `DD.MM` → (day, month), if some year has that date.
fn day_month(s: &str) -> Option<(u32, u32)> {
    let (day, month) = s.split_once('.')?;
    let (day, month) = (number(day, 1, 2)?, number(month, 1, 2)?);
    NaiveDate::from_ymd_opt(2000, month, day).map(|_| (day, month)) // 2000 is a leap year
}

/// A number of `min..=max` ASCII digits.
fn number(s: &str, min: usize, max: usize) -> Option<u32> {
    let digits = (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| s.parse().ok()).flatten()
}

/// Places a `<when>` on the calendar at `now_ms` (local date `today`) in `tz`: the local date
/// and time of the (first) run, which is in the future.
fn resolve(
    when: When,
    today: NaiveDate,
    now_ms: i64,
    tz: Tz,
) -> Result<(NaiveDate, NaiveTime), ScheduleError> {
    let future = |date: NaiveDate, time: NaiveTime| instant(date, time, tz) > now_ms;
    let tomorrow = today.succ_opt().ok_or(ScheduleError::TooFar)?;
    match when {
        When::Clock(time) if future(today, time) => Ok((today, time)),
        When::Clock(time) | When::Tomorrow(time) => Ok((tomorrow, time)),
        When::Today(time) => future(today, time)
            .then_some((today, time))
            .ok_or(ScheduleError::Past),
        When::On(date, time) => future(date, time)
            .then_some((date, time))
            .ok_or(ScheduleError::Past),
        When::DayMonth { day, month, time } => (today.year()..=today.year() + 4)
            .filter_map(|year| NaiveDate::from_ymd_opt(year, month, day))
            .find(|date| future(*date, time))
            .map(|date| (date, time))
            .ok_or(ScheduleError::TooFar),
        When::In(minutes) if minutes > (MAX_AHEAD_DAYS * DAY_MS / MINUTE_MS) as u64 => {
            Err(ScheduleError::TooFar)
        }
        When::In(minutes) => {
            let target_ms = now_ms.saturating_add(minutes as i64 * MINUTE_MS);
            let local = local_at_or_after(target_ms, tz).ok_or(ScheduleError::TooFar)?;
            Ok((local.date(), local.time()))
        }
    }
}

/// The local date and time (whole seconds) whose run is due at `target_ms`, or the first
/// minute after it that is: a time in the repeated hour of a fall-back means its earlier
/// instant, so one there that would come too early moves on past the repeated hour.
fn local_at_or_after(target_ms: i64, tz: Tz) -> Option<NaiveDateTime> {
    let local = tz.timestamp_millis_opt(target_ms).earliest()?.naive_local();
    let mut local = local.with_nanosecond(0)?;
    let whole_second = target_ms - target_ms.rem_euclid(1000);
    for _ in 0..(25 * 60) {
        if instant(local.date(), local.time(), tz) >= whole_second {
            break;
        }
        local = local.checked_add_signed(TimeDelta::minutes(1))?;
    }
    Some(local)
}

// ---------------------------------------------------------------------------------------
// Rules and weekdays.

/// Reads a lower-case rule (words joined by single spaces).
fn rule_of(s: &str) -> Option<Rule> {
    match s {
        "daily" | "every day" | "everyday" | "each day" => Some(Rule::Daily),
        "ежедневно" | "каждый день" => Some(Rule::Daily),
        "weekdays" | "on weekdays" | "every weekday" => Some(Rule::Weekdays),
        "по будням" | "в будни" | "будни" => Some(Rule::Weekdays),
        "weekly" | "every week" | "each week" => Some(Rule::Weekly),
        "еженедельно" | "каждую неделю" => Some(Rule::Weekly),
        _ => every_n(s).or_else(|| day_list(s)),
    }
}

/// `every 3 days`, `каждые 2 дня`, `каждые 5 дней`, `every 2 weeks`; N days from 1 to 366
/// (`every 1 day` is daily, `every 1 week` weekly).
fn every_n(s: &str) -> Option<Rule> {
    let [every, n, unit] = s.split(' ').collect::<Vec<_>>()[..] else {
        return None;
    };
    if !matches!(
        every,
        "every" | "each" | "каждые" | "каждый" | "каждую" | "каждое"
    ) {
        return None;
    }
    let n = number(n, 1, 3)?;
    let days = match unit {
        "day" | "days" | "день" | "дня" | "дней" => n,
        "week" | "weeks" | "неделю" | "недели" | "недель" if n == 1 => {
            return Some(Rule::Weekly)
        }
        "week" | "weeks" | "неделю" | "недели" | "недель" => n * 7,
        _ => return None,
    };
    match days {
        1 => Some(Rule::Daily),
        2..=MAX_EVERY_DAYS => Some(Rule::EveryDays(days)),
        _ => None,
    }
}

/// `mon,wed,fri`, `пн, ср, пт`, `Monday Wednesday`, `пн и ср`, `пн-пт`, `every monday`,
/// `по понедельникам`: the days sorted Monday first.
fn day_list(s: &str) -> Option<Rule> {
    let items = s.split([',', ';', ' ']).filter(|item| !item.is_empty());
    let items = items.filter(|item| !matches!(*item, "и" | "and" | "&"));
    let mut items = items.peekable();
    if items.next_if(|first| LEADING.contains(first)).is_some() && items.peek().is_none() {
        return None;
    }
    let mut days = Vec::new();
    for item in items {
        match item.split_once(['-', '–', '—']) {
            Some((from, to)) => days.extend(day_range(weekday(from)?, weekday(to)?)),
            None => days.push(weekday(item)?),
        }
    }
    (!days.is_empty()).then(|| Rule::Days(sorted_days(days)))
}

/// Words that may stand before a day list (`every monday`, `по пн, ср`).
const LEADING: [&str; 8] = [
    "every",
    "each",
    "on",
    "по",
    "каждый",
    "каждую",
    "каждое",
    "в",
];

/// `from` to `to` going forward through the week (`пт-пн` is Friday to Monday).
fn day_range(from: Weekday, to: Weekday) -> Vec<Weekday> {
    let mut days = vec![from];
    let mut day = from;
    while day != to {
        day = day.succ();
        days.push(day);
    }
    days
}

/// The days sorted Monday first, without repeats.
fn sorted_days(mut days: Vec<Weekday>) -> Vec<Weekday> {
    days.sort_by_key(|d| d.num_days_from_monday());
    days.dedup();
    days
}

/// A weekday's names, English and Russian, in lower case.
const DAY_NAMES: [(Weekday, &[&str]); 7] = [
    (
        Weekday::Mon,
        &[
            "mon",
            "monday",
            "mondays",
            "пн",
            "пон",
            "понедельник",
            "понедельникам",
        ],
    ),
    (
        Weekday::Tue,
        &[
            "tue",
            "tues",
            "tuesday",
            "tuesdays",
            "вт",
            "вторник",
            "вторникам",
        ],
    ),
    (
        Weekday::Wed,
        &[
            "wed",
            "wednesday",
            "wednesdays",
            "ср",
            "среда",
            "среду",
            "средам",
        ],
    ),
    (
        Weekday::Thu,
        &[
            "thu",
            "thur",
            "thurs",
            "thursday",
            "thursdays",
            "чт",
            "четверг",
            "четвергам",
        ],
    ),
    (
        Weekday::Fri,
        &[
            "fri",
            "friday",
            "fridays",
            "пт",
            "пятница",
            "пятницу",
            "пятницам",
        ],
    ),
    (
        Weekday::Sat,
        &[
            "sat",
            "saturday",
            "saturdays",
            "сб",
            "суббота",
            "субботу",
            "субботам",
        ],
    ),
    (
        Weekday::Sun,
        &[
            "sun",
            "sunday",
            "sundays",
            "вс",
            "воскресенье",
            "воскресеньям",
        ],
    ),
];

/// A weekday from one of its names (lower case).
fn weekday(name: &str) -> Option<Weekday> {
    DAY_NAMES
        .iter()
        .find(|(_, names)| names.contains(&name))
        .map(|(day, _)| *day)
}

/// A weekday's code in [`Rule::code`]: `mon` … `sun`.
fn day_code(day: Weekday) -> &'static str {
    DAY_NAMES[day.num_days_from_monday() as usize].1[0]
}

/// The inverse of [`day_code`].
fn day_from_code(code: &str) -> Option<Weekday> {
    DAY_NAMES
        .iter()
        .find(|(_, names)| names[0] == code)
        .map(|(day, _)| *day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday::{Fri, Mon, Sat, Sun, Thu, Tue, Wed};
    use proptest::prelude::*;

    const MOSCOW: Tz = chrono_tz::Europe::Moscow;
    const BERLIN: Tz = chrono_tz::Europe::Berlin;
    const NOVOSIBIRSK: Tz = chrono_tz::Asia::Novosibirsk;
    /// Zones for the fuzzing, Samoa with its skipped day (2011-12-30) among them.
    const ZONES: [Tz; 5] = [
        MOSCOW,
        BERLIN,
        NOVOSIBIRSK,
        Tz::UTC,
        chrono_tz::Pacific::Apia,
    ];

    /// `"2026-12-05 06:45"` read as UTC → unix ms.
    fn utc(s: &str) -> i64 {
        let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("test time");
        t.and_utc().timestamp_millis()
    }

    /// Saturday 2026-12-05 06:45 UTC = 09:45 in Moscow.
    fn now() -> i64 {
        utc("2026-12-05 06:45")
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    fn hm(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").expect("test time")
    }

    /// An instant shown in `tz` as `"Mon 2026-12-07 10:00"`.
    fn local(at_ms: i64, tz: Tz) -> String {
        let at = tz.timestamp_millis_opt(at_ms).single().expect("in range");
        at.format("%a %Y-%m-%d %H:%M").to_string()
    }

    /// An instant shown as UTC, `"2026-03-29 08:00Z"`.
    fn as_utc(at_ms: i64) -> String {
        local(at_ms, Tz::UTC)[4..].to_string() + "Z"
    }

    /// `/schedule args` read in Moscow at [`now`].
    fn read(args: &str) -> Result<Schedule, ScheduleError> {
        parse(args, now(), MOSCOW)
    }

    fn schedule(first: &str, time: &str, rule: Rule, until: Option<&str>) -> Schedule {
        Schedule {
            first: date(first),
            time: hm(time),
            rule,
            until: until.map(date),
        }
    }

    /// The next `n` runs from the start, not before [`now`], shown in `tz`.
    fn shown(s: &Schedule, tz: Tz, after: Option<&str>, n: usize) -> Vec<String> {
        let runs = s.next_runs(tz, after.map(date), now(), n);
        for run in &runs {
            assert!(
                s.dates_from(run.date).next() == Some(run.date),
                "{run:?} not a rule date"
            );
        }
        runs.iter().map(|r| local(r.at_ms, tz)).collect()
    }

    #[test]
    fn now_is_a_quarter_to_ten_on_saturday_in_moscow() {
        assert_eq!(local(now(), MOSCOW), "Sat 2026-12-05 09:45");
    }

    #[test]
    fn every_when_form_in_both_languages() {
        let table = [
            ("10:00", "Sat 2026-12-05 10:00"),
            ("9:50", "Sat 2026-12-05 09:50"),
            ("09:00", "Sun 2026-12-06 09:00"),
            ("09:45", "Sun 2026-12-06 09:45"), // exactly now: not in the future
            ("завтра 08:30", "Sun 2026-12-06 08:30"),
            ("Завтра   08:30", "Sun 2026-12-06 08:30"),
            ("tomorrow 08:30", "Sun 2026-12-06 08:30"),
            ("TOMORROW 8:30", "Sun 2026-12-06 08:30"),
            ("сегодня 23:59", "Sat 2026-12-05 23:59"),
            ("today 10:00", "Sat 2026-12-05 10:00"),
            ("07.12 10:00", "Mon 2026-12-07 10:00"),
            ("7.12 10:00", "Mon 2026-12-07 10:00"),
            ("05.12 10:00", "Sat 2026-12-05 10:00"),
            ("05.12 09:00", "Sun 2027-12-05 09:00"), // passed this year
            ("01.01 10:00", "Fri 2027-01-01 10:00"),
            ("07.12.2026 10:00", "Mon 2026-12-07 10:00"),
            ("2026-12-07 10:00", "Mon 2026-12-07 10:00"),
            ("2027-12-05 09:00", "Sun 2027-12-05 09:00"),
            ("+1m", "Sat 2026-12-05 09:46"),
            ("+1 min", "Sat 2026-12-05 09:46"),
            ("+5м", "Sat 2026-12-05 09:50"),
            ("+30 мин", "Sat 2026-12-05 10:15"),
            ("+ 15 мин.", "Sat 2026-12-05 10:00"),
            ("+90m", "Sat 2026-12-05 11:15"),
            ("+2ч", "Sat 2026-12-05 11:45"),
            ("+2 h", "Sat 2026-12-05 11:45"),
            ("+1h", "Sat 2026-12-05 10:45"),
            ("+1 час", "Sat 2026-12-05 10:45"),
            ("+15H", "Sun 2026-12-06 00:45"),
            ("+8784h", "Mon 2027-12-06 09:45"), // 366 days
            ("через 30 минут", "Sat 2026-12-05 10:15"),
            ("in 2 hours", "Sat 2026-12-05 11:45"),
        ];
        for (args, expected) in table {
            let s = read(args).unwrap_or_else(|e| panic!("{args:?}: {e:?}"));
            assert_eq!(s.rule, Rule::Once, "{args:?}");
            assert_eq!(s.until, None, "{args:?}");
            let run = s.next_run(MOSCOW, None, now()).expect("a run");
            assert_eq!(run.date, s.first, "{args:?}");
            assert_eq!(local(run.at_ms, MOSCOW), expected, "{args:?}");
        }
    }

    #[test]
    fn the_plus_forms_keep_the_seconds_of_now_and_drop_the_rest() {
        let now = now() + 17_250; // 09:45:17.250
        let s = parse("+1m", now, MOSCOW).unwrap();
        assert_eq!(s.time, NaiveTime::from_hms_opt(9, 46, 17).unwrap());
        let at = s.next_run(MOSCOW, None, now).unwrap().at_ms;
        assert_eq!(at, now + 60_000 - 250);
    }

    #[test]
    fn a_plus_form_landing_in_the_repeated_hour_moves_past_it() {
        // 2026-10-25 02:50 CEST in Berlin; +30 min is 02:20 CET, whose wall-clock time first
        // came an hour ago: the run goes at 03:00, the first time that is not in the past.
        let now = utc("2026-10-25 00:50");
        let s = parse("+30m", now, BERLIN).unwrap();
        assert_eq!((s.first, s.time), (date("2026-10-25"), hm("03:00")));
        let at = s.next_run(BERLIN, None, now).unwrap().at_ms;
        assert_eq!(as_utc(at), "2026-10-25 02:00Z");
    }

    #[test]
    fn every_rule_form_in_both_languages() {
        let days = |d: &[Weekday]| Rule::Days(d.to_vec());
        let table = [
            ("10:00 repeat daily", Rule::Daily, "2026-12-05"),
            ("10:00 REPEAT Daily", Rule::Daily, "2026-12-05"),
            ("10:00 repeat every day", Rule::Daily, "2026-12-05"),
            ("10:00 repeat every 1 day", Rule::Daily, "2026-12-05"),
            ("10:00 повтор ежедневно", Rule::Daily, "2026-12-05"),
            ("10:00 повторять каждый день", Rule::Daily, "2026-12-05"),
            ("10:00 daily", Rule::Daily, "2026-12-05"),
            ("10:00 ежедневно", Rule::Daily, "2026-12-05"),
            ("10:00 repeat weekdays", Rule::Weekdays, "2026-12-07"),
            ("10:00 повтор по будням", Rule::Weekdays, "2026-12-07"),
            ("10:00 по будням", Rule::Weekdays, "2026-12-07"),
            ("10:00 repeat weekly", Rule::Weekly, "2026-12-05"),
            ("10:00 повтор еженедельно", Rule::Weekly, "2026-12-05"),
            ("07.12 10:00 repeat every week", Rule::Weekly, "2026-12-07"),
            (
                "10:00 repeat mon,wed,fri",
                days(&[Mon, Wed, Fri]),
                "2026-12-07",
            ),
            ("10:00 repeat Mon,Wed", days(&[Mon, Wed]), "2026-12-07"),
            (
                "10:00 повтор пн,ср,пт",
                days(&[Mon, Wed, Fri]),
                "2026-12-07",
            ),
            (
                "10:00 повтор пн, ср, пт",
                days(&[Mon, Wed, Fri]),
                "2026-12-07",
            ),
            ("10:00 повтор ПН , СР", days(&[Mon, Wed]), "2026-12-07"),
            (
                "10:00 repeat fri, mon, fri",
                days(&[Mon, Fri]),
                "2026-12-07",
            ),
            (
                "10:00 repeat monday wednesday",
                days(&[Mon, Wed]),
                "2026-12-07",
            ),
            (
                "10:00 повтор понедельник, среда",
                days(&[Mon, Wed]),
                "2026-12-07",
            ),
            (
                "10:00 повтор по понедельникам и средам",
                days(&[Mon, Wed]),
                "2026-12-07",
            ),
            ("10:00 repeat every sunday", days(&[Sun]), "2026-12-06"),
            (
                "10:00 пн-пт",
                days(&[Mon, Tue, Wed, Thu, Fri]),
                "2026-12-07",
            ),
            (
                "10:00 repeat fri-mon",
                days(&[Mon, Fri, Sat, Sun]),
                "2026-12-05",
            ),
            ("10:00 repeat sat", days(&[Sat]), "2026-12-05"), // today still ahead
            ("09:00 repeat sat", days(&[Sat]), "2026-12-12"), // today passed
            (
                "10:00 repeat every 3 days",
                Rule::EveryDays(3),
                "2026-12-05",
            ),
            (
                "10:00 повтор каждые 3 дня",
                Rule::EveryDays(3),
                "2026-12-05",
            ),
            (
                "10:00 повтор каждые 5 дней",
                Rule::EveryDays(5),
                "2026-12-05",
            ),
            ("10:00 каждые 2 дня", Rule::EveryDays(2), "2026-12-05"),
            (
                "10:00 repeat every 2 weeks",
                Rule::EveryDays(14),
                "2026-12-05",
            ),
            (
                "09:00 repeat every 3 days",
                Rule::EveryDays(3),
                "2026-12-06",
            ), // from tomorrow
        ];
        for (args, rule, first) in table {
            let s = read(args).unwrap_or_else(|e| panic!("{args:?}: {e:?}"));
            assert_eq!((&s.rule, s.first), (&rule, date(first)), "{args:?}");
            assert_eq!(s.until, None, "{args:?}");
        }
    }

    #[test]
    fn until_in_both_forms_and_languages() {
        let table = [
            (
                "10:00 repeat daily until 31.12.2026",
                Rule::Daily,
                "2026-12-31",
            ),
            (
                "10:00 repeat daily until 2026-12-31",
                Rule::Daily,
                "2026-12-31",
            ),
            (
                "10:00 повтор ежедневно до 31.12.2026",
                Rule::Daily,
                "2026-12-31",
            ),
            ("10:00 ежедневно до 1.1.2027", Rule::Daily, "2027-01-01"),
            (
                "10:00 до 2026-12-31 повторять по будням",
                Rule::Weekdays,
                "2026-12-31",
            ),
            (
                "10:00 repeat weekdays until 07.12.2026",
                Rule::Weekdays,
                "2026-12-07",
            ),
            ("10:00 until 05.12.2026", Rule::Once, "2026-12-05"), // allowed, says nothing
        ];
        for (args, rule, until) in table {
            let s = read(args).unwrap_or_else(|e| panic!("{args:?}: {e:?}"));
            assert_eq!((s.rule, s.until), (rule, Some(date(until))), "{args:?}");
        }
    }

    #[test]
    fn every_error() {
        use ScheduleError::*;
        let s = |x: &str| x.to_string();
        let table = [
            ("", Empty),
            ("   ", Empty),
            ("25:00", BadWhen(s("25:00"))),
            ("10:60", BadWhen(s("10:60"))),
            ("10.00", BadWhen(s("10.00"))),
            ("31.02 10:00", BadWhen(s("31.02 10:00"))),
            (
                "31.02.2027  10:00 repeat daily",
                BadWhen(s("31.02.2027  10:00")),
            ),
            ("+0m", BadWhen(s("+0m"))),
            ("+5", BadWhen(s("+5"))),
            ("soon", BadWhen(s("soon"))),
            ("repeat daily", BadWhen(s(""))),
            ("05.12.2025 10:00", Past),
            ("2026-12-05 09:00", Past),
            ("сегодня 09:00", Past),
            ("10:00 repeat sometimes", BadRule(s("sometimes"))),
            ("10:00 repeat every 0 days", BadRule(s("every 0 days"))),
            ("10:00 every 0 days", BadRule(s("every 0 days"))),
            (
                "10:00 повтор каждые 400 дней",
                BadRule(s("каждые 400 дней")),
            ),
            ("10:00 repeat", BadRule(s(""))),
            ("10:00 repeat daily until 2025-01-01", UntilBeforeFirst),
            ("10:00 repeat weekdays until 2026-12-06", UntilBeforeFirst),
            (
                "10:00 repeat daily until 32.13.2027",
                BadUntil(s("32.13.2027")),
            ),
            ("10:00 до 31 декабря", BadUntil(s("31 декабря"))),
            ("10:00 until", BadUntil(s(""))),
            ("10:00 please", Trailing(s("please"))),
            ("10:00 please repeat daily", Trailing(s("please"))),
            ("10:00 repeat daily now", Trailing(s("now"))),
            (
                "10:00 repeat daily until 31.12.2026 ok?",
                Trailing(s("ok?")),
            ),
            ("10:00 daily weekly", Trailing(s("weekly"))),
            (
                "10:00 repeat daily repeat weekly",
                Trailing(s("repeat weekly")),
            ),
            ("01.01.2028 10:00", TooFar),
            ("+8785h", TooFar),
            ("+99999999999999999999999m", TooFar),
            ("29.02 10:00", TooFar), // the next 29 February is in 2028
        ];
        for (args, error) in table {
            assert_eq!(read(args), Err(error), "{args:?}");
        }
    }

    #[test]
    fn weekdays_skip_the_weekend() {
        let s = schedule("2026-12-04", "10:00", Rule::Weekdays, None);
        let runs = s.next_runs(MOSCOW, None, utc("2026-12-01 00:00"), 4);
        let runs: Vec<String> = runs.iter().map(|r| local(r.at_ms, MOSCOW)).collect();
        assert_eq!(
            runs,
            [
                "Fri 2026-12-04 10:00",
                "Mon 2026-12-07 10:00",
                "Tue 2026-12-08 10:00",
                "Wed 2026-12-09 10:00"
            ]
        );
    }

    #[test]
    fn a_day_list_runs_on_its_days() {
        let s = schedule("2026-12-07", "10:00", Rule::Days(vec![Mon, Wed, Fri]), None);
        assert_eq!(
            shown(&s, MOSCOW, None, 4),
            [
                "Mon 2026-12-07 10:00",
                "Wed 2026-12-09 10:00",
                "Fri 2026-12-11 10:00",
                "Mon 2026-12-14 10:00"
            ]
        );
        assert_eq!(
            shown(&s, MOSCOW, Some("2026-12-09"), 1),
            ["Fri 2026-12-11 10:00"]
        );
    }

    #[test]
    fn weekly_keeps_the_first_weekday() {
        let s = schedule("2026-12-05", "10:00", Rule::Weekly, None);
        assert_eq!(
            shown(&s, MOSCOW, None, 3),
            [
                "Sat 2026-12-05 10:00",
                "Sat 2026-12-12 10:00",
                "Sat 2026-12-19 10:00"
            ]
        );
        assert_eq!(
            shown(&s, MOSCOW, Some("2026-12-06"), 1),
            ["Sat 2026-12-12 10:00"]
        );
    }

    #[test]
    fn every_three_days_counts_from_the_first() {
        let s = schedule("2026-12-05", "10:00", Rule::EveryDays(3), None);
        assert_eq!(
            shown(&s, MOSCOW, None, 3),
            [
                "Sat 2026-12-05 10:00",
                "Tue 2026-12-08 10:00",
                "Fri 2026-12-11 10:00"
            ]
        );
        assert_eq!(
            shown(&s, MOSCOW, Some("2026-12-06"), 1),
            ["Tue 2026-12-08 10:00"]
        );
        assert_eq!(
            shown(&s, MOSCOW, Some("2026-12-08"), 1),
            ["Fri 2026-12-11 10:00"]
        );
        // Far ahead it jumps rather than walks: 2027-12-05 is 365 days on, so the next run
        // is the 122nd step, 366 days on.
        let far = s.next_run(MOSCOW, None, utc("2027-12-05 00:00")).unwrap();
        assert_eq!(local(far.at_ms, MOSCOW), "Mon 2027-12-06 10:00");
    }

    #[test]
    fn until_cuts_the_series() {
        let s = schedule("2026-12-05", "10:00", Rule::Daily, Some("2026-12-06"));
        assert_eq!(
            shown(&s, MOSCOW, None, 3),
            ["Sat 2026-12-05 10:00", "Sun 2026-12-06 10:00"]
        );
        assert_eq!(s.next_run(MOSCOW, Some(date("2026-12-06")), now()), None);
        assert_eq!(s.next_run(MOSCOW, None, utc("2030-01-01 00:00")), None);
        let dates: Vec<NaiveDate> = s.dates_from(date("2026-01-01")).collect();
        assert_eq!(dates, [date("2026-12-05"), date("2026-12-06")]);
    }

    #[test]
    fn a_run_already_due_is_skipped_by_not_before() {
        let s = schedule("2026-12-05", "10:00", Rule::Daily, None);
        let run = s.next_run(MOSCOW, None, utc("2026-12-10 09:00")).unwrap();
        assert_eq!(local(run.at_ms, MOSCOW), "Fri 2026-12-11 10:00");
        assert_eq!(run.date, date("2026-12-11"));
    }

    #[test]
    fn once_yields_one_run_and_then_none() {
        let s = schedule("2026-12-05", "10:00", Rule::Once, None);
        let run = s.next_run(MOSCOW, None, now()).unwrap();
        assert_eq!(local(run.at_ms, MOSCOW), "Sat 2026-12-05 10:00");
        assert_eq!(s.next_run(MOSCOW, Some(run.date), now()), None);
        assert_eq!(s.next_run(MOSCOW, None, run.at_ms + 1), None);
        assert_eq!(s.next_runs(MOSCOW, None, now(), 3), [run]);
        assert_eq!(s.dates_from(date("2026-12-06")).count(), 0);
    }

    #[test]
    fn a_daily_series_keeps_ten_oclock_across_both_dst_changes() {
        let spring = schedule("2026-03-27", "10:00", Rule::Daily, None);
        let runs = spring.next_runs(BERLIN, None, 0, 4);
        let runs: Vec<String> = runs.iter().map(|r| as_utc(r.at_ms)).collect();
        assert_eq!(
            runs,
            [
                "2026-03-27 09:00Z",
                "2026-03-28 09:00Z",
                "2026-03-29 08:00Z",
                "2026-03-30 08:00Z"
            ]
        );
        let autumn = schedule("2026-10-23", "10:00", Rule::Daily, None);
        let runs = autumn.next_runs(BERLIN, None, 0, 4);
        let runs: Vec<String> = runs.iter().map(|r| as_utc(r.at_ms)).collect();
        assert_eq!(
            runs,
            [
                "2026-10-23 08:00Z",
                "2026-10-24 08:00Z",
                "2026-10-25 09:00Z",
                "2026-10-26 09:00Z"
            ]
        );
    }

    #[test]
    fn a_time_in_the_spring_gap_moves_forward_by_the_gap() {
        let at = instant(date("2026-03-29"), hm("02:30"), BERLIN);
        assert_eq!(as_utc(at), "2026-03-29 01:30Z");
        assert_eq!(local(at, BERLIN), "Sun 2026-03-29 03:30");
        // A 02:30 series: the day before, the gap day and the day after, still one a day.
        let s = schedule("2026-03-28", "02:30", Rule::Daily, None);
        let runs: Vec<String> = s
            .next_runs(BERLIN, None, 0, 3)
            .iter()
            .map(|r| local(r.at_ms, BERLIN))
            .collect();
        assert_eq!(
            runs,
            [
                "Sat 2026-03-28 02:30",
                "Sun 2026-03-29 03:30",
                "Mon 2026-03-30 02:30"
            ]
        );
    }

    #[test]
    fn an_ambiguous_time_in_autumn_is_its_earlier_instant() {
        let at = instant(date("2026-10-25"), hm("02:30"), BERLIN);
        assert_eq!(as_utc(at), "2026-10-25 00:30Z");
    }

    #[test]
    fn a_changed_zone_keeps_the_local_time() {
        let s = schedule("2026-12-07", "10:00", Rule::Daily, None);
        let in_moscow = s.next_run(MOSCOW, None, now()).unwrap();
        let in_novosibirsk = s.next_run(NOVOSIBIRSK, None, now()).unwrap();
        assert_eq!(local(in_moscow.at_ms, MOSCOW), "Mon 2026-12-07 10:00");
        assert_eq!(
            local(in_novosibirsk.at_ms, NOVOSIBIRSK),
            "Mon 2026-12-07 10:00"
        );
        assert_eq!(in_moscow.at_ms - in_novosibirsk.at_ms, 4 * 3_600_000);
    }

    #[test]
    fn rule_codes_round_trip() {
        let rules = [
            (Rule::Once, "once"),
            (Rule::Daily, "daily"),
            (Rule::Weekdays, "weekdays"),
            (Rule::Weekly, "weekly"),
            (Rule::Days(vec![Mon, Wed, Fri]), "days:mon,wed,fri"),
            (Rule::Days(vec![Sun]), "days:sun"),
            (
                Rule::Days(vec![Mon, Tue, Wed, Thu, Fri, Sat, Sun]),
                "days:mon,tue,wed,thu,fri,sat,sun",
            ),
            (Rule::EveryDays(3), "every:3"),
            (Rule::EveryDays(366), "every:366"),
        ];
        for (rule, code) in rules {
            assert_eq!(rule.code(), code);
            assert_eq!(Rule::from_code(code), Some(rule), "{code}");
        }
    }

    #[test]
    fn from_code_refuses_junk() {
        let junk = [
            "",
            "Daily",
            " daily",
            "once ",
            "monthly",
            "days:",
            "days:wed,mon",
            "days:mon,mon",
            "days:mon,,wed",
            "days:пн",
            "days:monday",
            "every:",
            "every:0",
            "every:1",
            "every:x",
            "every:+3",
            "every:03",
            "every:-2",
        ];
        for code in junk {
            assert_eq!(Rule::from_code(code), None, "{code:?}");
        }
    }

    /// A rule of any kind.
    fn arb_rule() -> impl Strategy<Value = Rule> {
        let all = vec![Mon, Tue, Wed, Thu, Fri, Sat, Sun];
        prop_oneof![
            Just(Rule::Once),
            Just(Rule::Daily),
            Just(Rule::Weekdays),
            Just(Rule::Weekly),
            proptest::sample::subsequence(all, 1..=7).prop_map(Rule::Days),
            (2u32..40).prop_map(Rule::EveryDays),
        ]
    }

    /// Arguments made of pieces the parser knows, in any order, and some it does not.
    fn arb_args() -> impl Strategy<Value = String> {
        let pieces = vec![
            "10:00",
            "9:05",
            "25:00",
            "завтра",
            "tomorrow",
            "07.12",
            "29.02",
            "31.12.2026",
            "2026-12-07",
            "+30",
            "мин",
            "+2ч",
            "+0m",
            "repeat",
            "повтор",
            "until",
            "до",
            "daily",
            "по",
            "будням",
            "пн,",
            "ср",
            "mon-fri",
            "every",
            "каждые",
            "0",
            "3",
            "дня",
            "weeks",
            "и",
            ",",
            "+",
            "-",
            "",
        ];
        proptest::collection::vec(proptest::sample::select(pieces), 0..8)
            .prop_map(|words| words.join(" "))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// `parse` never panics, on junk or on near-misses, whenever and wherever it is asked.
        #[test]
        fn parse_never_panics(
            args in prop_oneof![any::<String>(), arb_args()],
            now in prop_oneof![-4_000_000_000_000i64..4_000_000_000_000, any::<i64>()],
            zone in proptest::sample::select(ZONES.to_vec()),
        ) {
            if let Ok(s) = parse(&args, now, zone) {
                let first = s.next_run(zone, None, now.saturating_add(1));
                prop_assert_eq!(first.map(|r| r.date), Some(s.first));
            }
        }

        /// The runs of any series in Berlin strictly increase in date and instant, fall on
        /// the rule's dates, never before `not_before` and never after `until`.
        #[test]
        fn next_runs_strictly_increase(
            rule in arb_rule(),
            (hour, minute) in (0u32..24, 0u32..60),
            first_day in 0u64..800,
            until_days in proptest::option::of(0u64..60),
            after_days in proptest::option::of(0u64..30),
            not_before_h in -48i64..24 * 900,
        ) {
            let first = date("2025-01-01") + Days::new(first_day);
            let s = Schedule {
                first,
                time: NaiveTime::from_hms_opt(hour, minute, 0).unwrap(),
                rule,
                until: until_days.map(|d| first + Days::new(d)),
            };
            let after = after_days.map(|d| first + Days::new(d));
            let not_before = utc("2025-01-01 00:00") + not_before_h * 3_600_000;
            let runs = s.next_runs(BERLIN, after, not_before, 12);
            for pair in runs.windows(2) {
                prop_assert!(pair[0].date < pair[1].date, "{:?}", pair);
                prop_assert!(pair[0].at_ms < pair[1].at_ms, "{:?}", pair);
            }
            for run in &runs {
                prop_assert!(run.at_ms >= not_before);
                prop_assert!(after.is_none_or(|a| run.date > a));
                prop_assert!(s.until.is_none_or(|u| run.date <= u));
                prop_assert_eq!(s.dates_from(run.date).next(), Some(run.date));
            }
            if s.rule == Rule::Once {
                prop_assert!(runs.len() <= 1);
            }
        }
    }
}
