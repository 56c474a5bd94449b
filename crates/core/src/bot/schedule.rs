//! Scheduled and repeating mailings from the bot's side: `/schedule <when> [repeat <rule>]
//! [until <date>]` (or 🕒 on the preview, then the same words) snapshots the prepared post and
//! its groups into a series; `/schedules` lists the series, each with ⏭ skip next, ⏸ / ▶️ and
//! 🗑. Running the due runs is `mailing::scheduled`'s.

use crate::bot::ctx::{BotError, Ctx};
use crate::bot::dialogue::DialogueState;
use crate::mailing::scheduled;
use crate::model::ids::SeriesId;
use crate::model::schedule::{self, Rule, Run};
use crate::ports::{NewSeries, RunOutcome, Series};
use crate::telegram::callback::Callback;
use crate::telegram::{InlineKeyboardMarkup, ReplyMarkup};
use crate::texts;

/// How many series `/schedules` shows (the newest are the ones cut).
const LISTED: usize = 20;

impl Ctx<'_> {
    /// 🕒 on the preview: asks when (the next message is read as `/schedule`'s words).
    pub(super) async fn ask_schedule(&mut self) -> Result<(), BotError> {
        self.close_buttons().await;
        self.set_state(&DialogueState::AwaitSchedule).await?;
        self.say(&texts::schedule::usage(self.lang())).await?;
        Ok(())
    }

    /// `/schedule <when> [repeat <rule>] [until <date>]`, or the answer to 🕒's question.
    /// A schedule the bot cannot read is refused with why (and, after 🕒, asked again).
    pub(super) async fn schedule(&mut self, args: &str) -> Result<(), BotError> {
        let l = self.lang();
        if args.trim().is_empty() {
            return self.ask_schedule().await;
        }
        if let Some(why) = self.post_blocker().await? {
            self.set_state(&DialogueState::Idle).await?;
            self.say(&why).await?;
            return Ok(());
        }
        let tz = self.zone();
        let now = self.svc.now_ms();
        let parsed = match schedule::parse(args, now, tz) {
            Ok(s) => s,
            Err(e) => {
                self.say(&texts::schedule::refused(l, &e)).await?;
                return Ok(());
            }
        };
        self.set_state(&DialogueState::Idle).await?;
        let shown = if parsed.rule == Rule::Once { 1 } else { 3 };
        let runs = parsed.next_runs(tz, None, now, shown);
        let Some(first) = runs.first() else {
            let e = schedule::ScheduleError::UntilBeforeFirst;
            self.say(&texts::schedule::refused(l, &e)).await?;
            return Ok(());
        };
        let Some(profile_id) = self.user.profile_id.clone() else {
            self.say(&texts::finish_registration_first(l)).await?;
            return Ok(());
        };
        let (content, groups) = self.prepared().await?;
        let new = NewSeries {
            user_id: self.user.id,
            chat_id: self.chat,
            profile_id,
            content,
            groups,
            schedule: parsed.clone(),
            next_due_at: Some(first.at_ms),
            now,
        };
        let id = self.svc.db.create_series(&new).await?;
        tracing::info!(
            user = self.user.id.0,
            series = id.0,
            rule = %parsed.rule.code(),
            "series scheduled"
        );
        self.wake_timer(first.at_ms).await;
        let text = texts::schedule::scheduled(
            l,
            id.0,
            &texts::schedule::rule(l, &parsed),
            new.groups.len(),
            &self.moments(&runs),
        );
        self.say(&text).await?;
        Ok(())
    }

    /// `/schedules`: one message per series (the oldest first), each with its buttons.
    pub(super) async fn list_schedules(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        let all = self.svc.db.user_series(self.user.id).await?;
        if all.is_empty() {
            self.say(&texts::schedule::none(l)).await?;
            return Ok(());
        }
        for s in all.iter().take(LISTED) {
            let runs = self.upcoming(s, 3);
            let text = texts::schedule::card(
                l,
                s.id.0,
                &texts::schedule::rule(l, &s.schedule),
                s.groups.len(),
                &self.moments(&runs),
                s.paused,
            );
            self.say_with(&text, ReplyMarkup::Inline(series_keyboard(l, s)))
                .await?;
        }
        Ok(())
    }

    /// ⏭ under a series: its next run is recorded as skipped (unless it already started).
    pub(super) async fn skip_next(&mut self, id: SeriesId) -> Result<(), BotError> {
        let l = self.lang();
        let Some(s) = self.own_series(id).await? else {
            self.say(&texts::schedule::gone(l)).await?;
            return Ok(());
        };
        let now = self.svc.now_ms();
        let runs = self.upcoming(&s, 2);
        let skipped = match runs.first() {
            Some(run) => {
                self.svc
                    .db
                    .record_run(s.id, run.date, run.at_ms, RunOutcome::Skipped, now)
                    .await?
            }
            None => false,
        };
        if !skipped {
            self.say(&texts::schedule::nothing_to_skip(l, id.0)).await?;
            return Ok(());
        }
        let next = runs.get(1).copied();
        self.svc
            .db
            .set_series_next(s.id, next.map(|r| r.at_ms))
            .await?;
        tracing::info!(series = id.0, date = %runs[0].date, "run skipped by the user");
        let moments = self.moments(&runs);
        let text =
            texts::schedule::skipped_next(l, id.0, &moments[0], moments.get(1).map(String::as_str));
        self.say(&text).await?;
        Ok(())
    }

    /// ⏸ / ▶️ under a series.
    pub(super) async fn pause_series(&mut self, id: SeriesId, pause: bool) -> Result<(), BotError> {
        let l = self.lang();
        let now = self.svc.now_ms();
        if !self
            .svc
            .db
            .set_series_paused(id, self.user.id, pause, now)
            .await?
        {
            self.say(&texts::schedule::gone(l)).await?;
            return Ok(());
        }
        self.close_buttons().await;
        tracing::info!(series = id.0, paused = pause, "series paused or resumed");
        if pause {
            self.say(&texts::schedule::paused(l, id.0)).await?;
            return Ok(());
        }
        // Runs that came due during the pause are not run: the next is after now.
        let Some(s) = self.own_series(id).await? else {
            return Ok(());
        };
        let next = self.upcoming(&s, 1).first().copied();
        self.svc
            .db
            .set_series_next(id, next.map(|r| r.at_ms))
            .await?;
        if let Some(run) = next {
            self.wake_timer(run.at_ms).await;
        }
        let moment = next.map(|r| texts::schedule::moment(r.at_ms, self.zone()));
        self.say(&texts::schedule::resumed(l, id.0, moment.as_deref()))
            .await?;
        Ok(())
    }

    /// 🗑 under a series.
    pub(super) async fn delete_series(&mut self, id: SeriesId) -> Result<(), BotError> {
        let l = self.lang();
        if !self.svc.db.delete_series(id, self.user.id).await? {
            self.say(&texts::schedule::gone(l)).await?;
            return Ok(());
        }
        self.close_buttons().await;
        tracing::info!(series = id.0, "series deleted");
        self.say(&texts::schedule::deleted(l, id.0)).await?;
        Ok(())
    }

    /// After the user's zone changed: every series' next run moves to the new zone's clock.
    pub(super) async fn reschedule_for_zone(&self) -> Result<(), BotError> {
        scheduled::refresh_user(self.svc, &self.user).await?;
        if let Some(at) = self.svc.db.earliest_due().await? {
            self.wake_timer(at).await;
        }
        Ok(())
    }

    /// The user's series `id`, if it is theirs and not deleted.
    async fn own_series(&self, id: SeriesId) -> Result<Option<Series>, BotError> {
        Ok(self
            .svc
            .db
            .get_series(id)
            .await?
            .filter(|s| s.user_id == self.user.id))
    }

    /// The series' next `n` runs not yet decided, in the user's zone (the first may be due
    /// already and waiting for the account's active mailing).
    fn upcoming(&self, s: &Series, n: usize) -> Vec<Run> {
        s.schedule
            .next_runs(self.zone(), s.last_date, s.not_before, n)
    }

    fn moments(&self, runs: &[Run]) -> Vec<String> {
        let tz = self.zone();
        runs.iter()
            .map(|r| texts::schedule::moment(r.at_ms, tz))
            .collect()
    }

    /// Tells the runtime's timer a run is due at `at` (best effort: its regular look finds
    /// the run anyway).
    async fn wake_timer(&self, at: i64) {
        if let Some(timer) = &self.svc.run_timer {
            if let Err(e) = timer.wake_at(at).await {
                tracing::warn!(error = %e, "scheduler timer not armed");
            }
        }
    }
}

/// ⏭ ⏸/▶️ 🗑 under a series.
fn series_keyboard(l: crate::model::lang::Lang, s: &Series) -> InlineKeyboardMarkup {
    let id = s.id.0;
    let toggle = match s.paused {
        true => (
            texts::schedule::resume_button(l),
            Callback::ResumeSeries(id).data(),
        ),
        false => (
            texts::schedule::pause_button(l),
            Callback::PauseSeries(id).data(),
        ),
    };
    InlineKeyboardMarkup::rows(vec![
        vec![(
            texts::schedule::skip_button(l),
            Callback::SkipRun(id).data(),
        )],
        vec![
            toggle,
            (
                texts::schedule::delete_button(l),
                Callback::DeleteSeries(id).data(),
            ),
        ],
    ])
}
