//! What the bot says about scheduled and repeating mailings (CONTRACT.md "Schedule"): the
//! answer to `/schedule` starts with 🕒 and names the next run(s) as `DD.MM.YYYY HH:MM` in the
//! user's zone; a skipped run is told with ⏭.

use super::duration;
use crate::model::lang::Lang;
use crate::model::schedule::{Rule, Schedule, ScheduleError};
use chrono::{TimeZone, Weekday};
use chrono_tz::Tz;

/// A moment as `DD.MM.YYYY HH:MM` in `tz`.
pub fn moment(at_ms: i64, tz: Tz) -> String {
    match tz.timestamp_millis_opt(at_ms).single() {
        Some(t) => t.format("%d.%m.%Y %H:%M").to_string(),
        None => String::from("?"),
    }
}

fn day_name(l: Lang, d: Weekday) -> &'static str {
    let i = d.num_days_from_monday() as usize;
    l.pick(
        ["пн", "вт", "ср", "чт", "пт", "сб", "вс"][i],
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][i],
    )
}

/// How a series repeats, at its local time: `ежедневно в 10:00`, `по пн, ср в 10:00`, …
pub fn rule(l: Lang, s: &Schedule) -> String {
    let time = s.time.format("%H:%M");
    let how = match &s.rule {
        Rule::Once => l.pick("однократно", "once").to_string(),
        Rule::Daily => l.pick("ежедневно", "daily").to_string(),
        Rule::Weekdays => l.pick("по будням", "on weekdays").to_string(),
        Rule::Weekly => {
            let d = day_name(l, chrono::Datelike::weekday(&s.first));
            l.pick(format!("еженедельно ({d})"), format!("weekly ({d})"))
        }
        Rule::Days(days) => {
            let list: Vec<&str> = days.iter().map(|d| day_name(l, *d)).collect();
            l.pick(
                format!("по {}", list.join(", ")),
                format!("on {}", list.join(", ")),
            )
        }
        Rule::EveryDays(n) => l.pick(format!("каждые {n} дн."), format!("every {n} days")),
    };
    let until = match s.until {
        Some(d) => {
            let d = d.format("%d.%m.%Y");
            l.pick(format!(", до {d}"), format!(", until {d}"))
        }
        None => String::new(),
    };
    l.pick(
        format!("{how} в {time}{until}"),
        format!("{how} at {time}{until}"),
    )
}

/// The answer to a `/schedule` that was taken: 🕒, the series number, its rule, the groups and
/// the next runs.
pub fn scheduled(l: Lang, id: i64, rule_text: &str, groups: usize, runs: &[String]) -> String {
    let runs = runs.join("\n");
    l.pick(
        format!("🕒 Запланировано (#{id}): {rule_text}, {groups} групп.\nБлижайшие запуски:\n{runs}\n\nВсе расписания: /schedules"),
        format!("🕒 Scheduled (#{id}): {rule_text}, {groups} groups.\nNext runs:\n{runs}\n\nAll schedules: /schedules"),
    )
}

/// How to write a schedule (the 🕒 button's prompt and the answer to a bare `/schedule`).
pub fn usage(l: Lang) -> String {
    l.pick(
        "🕒 Когда отправить пост? Напишите время, при желании с повтором и датой окончания:\n\
         • 10:00 — сегодня (или завтра, если время прошло)\n\
         • завтра 09:30, 07.12 10:00, 07.12.2026 10:00, +30м, +2ч\n\
         • 10:00 повтор ежедневно | по будням | еженедельно | пн,ср,пт | каждые 2 дня\n\
         • 10:00 повтор ежедневно до 31.12.2026\n\
         Или командой: /schedule 10:00 repeat daily until 31.12.2026",
        "🕒 When should the post go out? Write the time, optionally with a repeat and an end date:\n\
         • 10:00 — today (or tomorrow if that has passed)\n\
         • tomorrow 09:30, 07.12 10:00, 2026-12-07 10:00, +30m, +2h\n\
         • 10:00 repeat daily | weekdays | weekly | mon,wed,fri | every 2 days\n\
         • 10:00 repeat daily until 2026-12-31\n\
         Or as a command: /schedule 10:00 repeat daily until 2026-12-31",
    )
    .into()
}

/// A `/schedule` the bot could not use; nothing was scheduled.
pub fn refused(l: Lang, e: &ScheduleError) -> String {
    let why = match e {
        ScheduleError::Empty => l.pick("не указано время", "no time given").to_string(),
        ScheduleError::BadWhen(s) => l.pick(
            format!("не понял время «{s}»"),
            format!("cannot read the time “{s}”"),
        ),
        ScheduleError::Past => l
            .pick("это время уже прошло", "that time has passed")
            .to_string(),
        ScheduleError::BadRule(s) => l.pick(
            format!("не понял повтор «{s}»"),
            format!("cannot read the repeat “{s}”"),
        ),
        ScheduleError::BadUntil(s) => l.pick(
            format!("не понял дату окончания «{s}»"),
            format!("cannot read the end date “{s}”"),
        ),
        ScheduleError::UntilBeforeFirst => l
            .pick(
                "дата окончания раньше первого запуска",
                "the end date is before the first run",
            )
            .to_string(),
        ScheduleError::TooFar => l
            .pick(
                "первый запуск дальше чем через год",
                "the first run is more than a year away",
            )
            .to_string(),
        ScheduleError::Trailing(s) => l.pick(
            format!("лишнее в конце: «{s}»"),
            format!("unexpected words at the end: “{s}”"),
        ),
    };
    l.pick(
        format!("Не запланировано: {why}.\n\n{}", usage(l)),
        format!("Not scheduled: {why}.\n\n{}", usage(l)),
    )
}

/// A run's mailing starts (its start message, later its progress message).
pub fn started(l: Lang, id: i64, groups: usize, eta_secs: u64) -> String {
    let eta = duration(l, eta_secs);
    l.pick(
        format!("🚀 Рассылка #{id} по расписанию запущена: {groups} групп, примерно {eta}."),
        format!("🚀 Scheduled mailing #{id} started: {groups} groups, about {eta}."),
    )
}

/// A due run waits for the account's active mailing.
pub fn waits(l: Lang, at: &str) -> String {
    l.pick(
        format!("🕒 Запуск по расписанию {at} ждёт окончания текущей рассылки и начнётся сразу после неё."),
        format!("🕒 The scheduled run of {at} waits for the current mailing and starts right after it."),
    )
}

/// A run skipped because its time passed: the service was down for longer than the grace, or
/// (`overtaken`) the previous mailing still ran when the next run came due.
pub fn missed(l: Lang, at: &str, overtaken: bool) -> String {
    if overtaken {
        l.pick(
            format!("⏭ Запуск по расписанию {at} пропущен: предыдущая рассылка шла до следующего запуска."),
            format!("⏭ The scheduled run of {at} was skipped: the previous mailing ran until the next run was due."),
        )
    } else {
        l.pick(
            format!("⏭ Запуск по расписанию {at} пропущен: сервис был недоступен, а с этого времени прошло больше 2 часов."),
            format!("⏭ The scheduled run of {at} was skipped: the service was down and more than 2 hours have passed since then."),
        )
    }
}

/// A run skipped for want of a subscription (with the 💎 button).
pub fn no_subscription(l: Lang, at: &str) -> String {
    l.pick(
        format!("⏭ Запуск по расписанию {at} пропущен: подписка не активна. Продлите её 💎, и следующие запуски пройдут."),
        format!("⏭ The scheduled run of {at} was skipped: the subscription is not active. Renew it 💎 and the next runs go out."),
    )
}

/// The subscription ends before a run in the next day.
pub fn ends_before_run(l: Lang, until: &str, run: &str) -> String {
    l.pick(
        format!("⚠️ Подписка заканчивается {until}, раньше запуска по расписанию {run}. Продлите её 💎, иначе запуск будет пропущен."),
        format!("⚠️ Your subscription ends on {until}, before the scheduled run of {run}. Renew it 💎 or the run will be skipped."),
    )
}

/// One series in `/schedules`.
pub fn card(
    l: Lang,
    id: i64,
    rule_text: &str,
    groups: usize,
    runs: &[String],
    paused: bool,
) -> String {
    let state = match paused {
        true => l.pick(" ⏸ на паузе", " ⏸ paused"),
        false => "",
    };
    let runs = runs.join(", ");
    l.pick(
        format!("🕒 #{id}{state}: {rule_text}, {groups} групп.\nБлижайшие запуски: {runs}"),
        format!("🕒 #{id}{state}: {rule_text}, {groups} groups.\nNext runs: {runs}"),
    )
}

pub fn none(l: Lang) -> String {
    l.pick(
        "Запланированных рассылок нет. Подготовьте пост и нажмите 🕒 в предпросмотре или напишите /schedule 10:00 repeat daily.",
        "No scheduled mailings. Prepare a post and press 🕒 on the preview, or write /schedule 10:00 repeat daily.",
    )
    .into()
}

pub fn skip_button(l: Lang) -> &'static str {
    l.pick("⏭ Пропустить следующий", "⏭ Skip next")
}

pub fn pause_button(l: Lang) -> &'static str {
    l.pick("⏸ Пауза", "⏸ Pause")
}

pub fn resume_button(l: Lang) -> &'static str {
    l.pick("▶️ Возобновить", "▶️ Resume")
}

pub fn delete_button(l: Lang) -> &'static str {
    l.pick("🗑 Удалить", "🗑 Delete")
}

pub fn schedule_button(l: Lang) -> &'static str {
    l.pick("🕒 Запланировать", "🕒 Schedule")
}

pub fn skipped_next(l: Lang, id: i64, at: &str, next: Option<&str>) -> String {
    let next = match next {
        Some(n) => l.pick(format!(" Следующий: {n}."), format!(" Next: {n}.")),
        None => l
            .pick(" Больше запусков нет.", " No more runs.")
            .to_string(),
    };
    l.pick(
        format!("⏭ #{id}: запуск {at} будет пропущен.{next}"),
        format!("⏭ #{id}: the run of {at} will be skipped.{next}"),
    )
}

pub fn nothing_to_skip(l: Lang, id: i64) -> String {
    l.pick(
        format!("#{id}: пропускать нечего — следующий запуск уже начался или запусков больше нет."),
        format!("#{id}: nothing to skip — the next run already started or there are no more runs."),
    )
}

pub fn paused(l: Lang, id: i64) -> String {
    l.pick(
        format!("⏸ #{id} на паузе: запуски не пройдут, пока вы не нажмёте ▶️."),
        format!("⏸ #{id} is paused: no runs until you press ▶️."),
    )
}

pub fn resumed(l: Lang, id: i64, next: Option<&str>) -> String {
    let next = next.unwrap_or("—");
    l.pick(
        format!("▶️ #{id} снова по расписанию. Следующий запуск: {next}."),
        format!("▶️ #{id} is back on schedule. Next run: {next}."),
    )
}

pub fn deleted(l: Lang, id: i64) -> String {
    l.pick(
        format!("🗑 Расписание #{id} удалено."),
        format!("🗑 Schedule #{id} deleted."),
    )
}

pub fn gone(l: Lang) -> String {
    l.pick(
        "Этого расписания уже нет. Список: /schedules",
        "This schedule no longer exists. The list: /schedules",
    )
    .into()
}
