//! Scheduled runs: a series' due run becomes an ordinary mailing, or is skipped with the
//! reason told. What a runtime's timer (the server's loop, the Worker's alarm and Cron) calls.
//!
//! A run's time is computed when it is due, from the series' rule and local time in the
//! user's zone *now* (`model::schedule`), so DST and a changed zone stay right. Each run is
//! decided once in the database, keyed by (series, local date): started in the same
//! transaction as its mailing, or recorded as skipped, missed or without subscription. So a
//! second process, a redelivered alarm or a restart around the due time decides nothing twice.
//!
//! The rules, in the order they are checked for the series' next run:
//! - not due yet: the series' `next_due_at` is brought up to date (a zone change moves it);
//! - the run after it is due too (the previous mailing ran past it), or it is more than
//!   [`GRACE_MS`] late without having been seen on time (the service was down): missed, ⏭;
//! - no active subscription: skipped, ⏭ with 💎;
//! - the account has an active mailing: the run waits (the user is told once) and starts at
//!   the first pass after that mailing ends;
//! - otherwise its mailing starts, with the start message the user knows from ✅.

use crate::model::ids::{ChatId, MailingId};
use crate::model::lang::Lang;
use crate::model::ledger::{NewMailing, ANNOUNCE_WAIT_MS};
use crate::model::schedule::Run;
use crate::ports::{DbError, RunOutcome, Series, UserRecord};
use crate::services::{Ports, Services};
use crate::telegram::callback::Callback;
use crate::telegram::{InlineKeyboardMarkup, ReplyMarkup};
use crate::texts;
use chrono_tz::Tz;

/// How late a run missed by downtime may still start.
pub const GRACE_MS: i64 = 2 * 3_600_000;

/// How long before a run the user is warned that the subscription ends first.
pub const WARN_AHEAD_MS: i64 = 24 * 3_600_000;

/// How many due series one pass takes on (the rest wait for the next pass).
const PASS_LIMIT: u32 = 500;

/// What a pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The mailings started, in order.
    pub started: Vec<MailingId>,
    /// Runs decided without a mailing (missed, no subscription).
    pub skipped: usize,
    /// Series whose due run waits for the account's active mailing.
    pub waiting: usize,
}

/// Decides every due run at the current time. A series that fails (storage) is logged and
/// left for the next pass; the others go on.
pub async fn fire_due(svc: &Services) -> Result<Fired, DbError> {
    let now = svc.now_ms();
    let mut fired = Fired::default();
    for series in svc.db.due_series(now, PASS_LIMIT).await? {
        let id = series.id;
        if let Err(e) = fire(svc, series, now, &mut fired).await {
            tracing::warn!(series = id.0, error = %e, "scheduled run not decided");
        }
    }
    Ok(fired)
}

/// Decides the due runs of one series, oldest first, until one waits or none is due.
async fn fire(svc: &Services, series: Series, now: i64, fired: &mut Fired) -> Result<(), DbError> {
    let Some(user) = svc.db.get_user(series.user_id).await? else {
        return svc.db.set_series_next(series.id, None).await;
    };
    let tz = svc.user_zone(Some(&user));
    let mut last = series.last_date;
    loop {
        let Some(run) = series.schedule.next_run(tz, last, series.not_before) else {
            return svc.db.set_series_next(series.id, None).await;
        };
        if run.at_ms > now {
            return svc.db.set_series_next(series.id, Some(run.at_ms)).await;
        }
        let following = series
            .schedule
            .next_run(tz, Some(run.date), series.not_before);
        let overtaken = following.is_some_and(|f| f.at_ms <= now);
        let seen_on_time = series.waiting_date == Some(run.date);
        if overtaken || (!seen_on_time && now - run.at_ms > GRACE_MS) {
            skip(
                svc,
                &series,
                &user,
                tz,
                run,
                Skip::Missed { overtaken },
                now,
            )
            .await?;
            fired.skipped += 1;
        } else if user.subscription_until * 1000 <= now {
            skip(svc, &series, &user, tz, run, Skip::NoSubscription, now).await?;
            fired.skipped += 1;
        } else {
            match start(svc, &series, &user, run).await {
                Ok(id) => fired.started.push(id),
                Err(DbError::RunTaken) => {}
                Err(DbError::AlreadyActive) => {
                    if svc.db.set_series_waiting(series.id, run.date).await? {
                        let text = texts::schedule::waits(
                            user.lang,
                            &texts::schedule::moment(run.at_ms, tz),
                        );
                        tell(svc, series.chat_id, &text, None).await;
                    }
                    fired.waiting += 1;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        last = Some(run.date);
    }
}

/// Why a run is skipped.
#[derive(Debug, Clone, Copy)]
enum Skip {
    /// Too late: the service was down past the grace, or (`overtaken`) the next run came due
    /// while this one still waited.
    Missed {
        overtaken: bool,
    },
    NoSubscription,
}

/// Records a skipped run and, the first time, tells the user with ⏭.
async fn skip(
    svc: &Services,
    series: &Series,
    user: &UserRecord,
    tz: Tz,
    run: Run,
    why: Skip,
    now: i64,
) -> Result<(), DbError> {
    let l = user.lang;
    let at = texts::schedule::moment(run.at_ms, tz);
    let (outcome, text, markup) = match why {
        Skip::Missed { overtaken } => (
            RunOutcome::Missed,
            texts::schedule::missed(l, &at, overtaken),
            None,
        ),
        Skip::NoSubscription => (
            RunOutcome::NoSubscription,
            texts::schedule::no_subscription(l, &at),
            Some(subscribe_keyboard(l)),
        ),
    };
    if svc
        .db
        .record_run(series.id, run.date, run.at_ms, outcome, now)
        .await?
    {
        tracing::info!(series = series.id.0, date = %run.date, outcome = outcome.code(), "scheduled run skipped");
        tell(svc, series.chat_id, &text, markup).await;
    }
    Ok(())
}

/// Starts the run's mailing (one transaction with its record), then announces it and hands
/// it to the runners. The account's current profile sends (the user may have re-registered).
async fn start(
    svc: &Services,
    series: &Series,
    user: &UserRecord,
    run: Run,
) -> Result<MailingId, DbError> {
    let now = svc.now_ms();
    let new = NewMailing {
        user_id: series.user_id,
        chat_id: series.chat_id,
        profile_id: user
            .profile_id
            .clone()
            .unwrap_or_else(|| series.profile_id.clone()),
        content: series.content.clone(),
        groups: series.groups.clone(),
        skipped: vec![],
        now,
        announce_until: now + ANNOUNCE_WAIT_MS,
    };
    let id = svc
        .db
        .start_run(series.id, run.date, run.at_ms, &new)
        .await?;
    tracing::info!(
        event = "mailing_started",
        mailing = id.0,
        series = series.id.0,
        date = %run.date,
        groups = series.groups.len(),
        "scheduled run started"
    );
    let account = super::AccountPace {
        pace: user.pace(svc.settings.default_pace),
        tz: svc.user_zone(Some(user)),
        number_since: user.number_since,
    };
    let parts = series.content.parts().len();
    let groups = series.groups.len();
    let (eta, _) = super::estimate(
        svc,
        &new.profile_id,
        &account,
        groups as u64,
        groups * parts,
        new.now,
    )
    .await?;
    let text = texts::schedule::started(user.lang, id.0, groups, eta);
    hand_over(svc, id, series.chat_id, user.lang, &text).await?;
    Ok(id)
}

/// Hands a new mailing to the runners, then sends its start message `text` with ⏸ / ⛔ and
/// records it as the progress message the runner keeps editing. In this order the first post
/// never waits for Telegram (a slow Bot API, a 429, the one-message-a-second pace of a chat);
/// the engine keeps its own messages to the chat back until the start message is recorded or
/// has failed ([`crate::model::ledger::Mailing::announcing`]), so none overtakes it. A mailing
/// that could not be queued is logged: the runners' rescan of running mailings picks it up. A
/// Telegram failure is logged: the runner sends its own progress message then.
pub async fn hand_over(
    svc: &Services,
    id: MailingId,
    chat: ChatId,
    lang: Lang,
    text: &str,
) -> Result<(), DbError> {
    if let Err(e) = svc.intake.enqueue(id).await {
        tracing::warn!(mailing = id.0, error = %e, "mailing not queued; the rescan finds it");
    }
    let keyboard = super::progress_keyboard(lang, id);
    let sent = svc
        .telegram
        .send_message(chat, text, Some(&ReplyMarkup::Inline(keyboard)))
        .await;
    if let Err(e) = &sent {
        tracing::warn!(mailing = id.0, error = %e, "start message failed");
    }
    // Either way the engine need not wait any longer.
    let mid = sent.ok().map(|m| m.0);
    svc.db.set_progress(id, mid, svc.now_ms()).await
}

/// Warns, once per subscription end, every user whose subscription ends before a scheduled
/// run in the next [`WARN_AHEAD_MS`]. Returns how many were warned.
pub async fn warn_before_runs(svc: &Services) -> Result<usize, DbError> {
    let now = svc.now_ms();
    let mut warned = 0;
    for series in svc.db.due_series(now + WARN_AHEAD_MS, PASS_LIMIT).await? {
        let Some(due) = series.next_due_at.filter(|t| *t > now) else {
            continue;
        };
        let Some(user) = svc.db.get_user(series.user_id).await? else {
            continue;
        };
        let until = user.subscription_until;
        if until * 1000 >= due || !svc.db.record_reminder(user.id, "run", until, now).await? {
            continue;
        }
        let tz = svc.user_zone(Some(&user));
        let text = texts::schedule::ends_before_run(
            user.lang,
            &texts::date(until, tz),
            &texts::schedule::moment(due, tz),
        );
        tell(
            svc,
            series.chat_id,
            &text,
            Some(subscribe_keyboard(user.lang)),
        )
        .await;
        warned += 1;
    }
    Ok(warned)
}

/// Recomputes when each of the user's series is next due (after the user's zone changed).
pub async fn refresh_user(svc: &Ports, user: &UserRecord) -> Result<(), DbError> {
    let tz = svc.user_zone(Some(user));
    for s in svc.db.user_series(user.id).await? {
        let next = s.schedule.next_run(tz, s.last_date, s.not_before);
        svc.db.set_series_next(s.id, next.map(|r| r.at_ms)).await?;
    }
    Ok(())
}

fn subscribe_keyboard(l: Lang) -> ReplyMarkup {
    ReplyMarkup::Inline(InlineKeyboardMarkup::rows(vec![vec![(
        texts::button::subscription(l),
        Callback::Subscribe.data(),
    )]]))
}

/// A notice about a series; a Telegram failure is logged (the decision is already stored).
async fn tell(svc: &Ports, chat: ChatId, text: &str, markup: Option<ReplyMarkup>) {
    if let Err(e) = svc.telegram.send_message(chat, text, markup.as_ref()).await {
        tracing::warn!(chat = chat.0, error = %e, "schedule notice not delivered");
    }
}
