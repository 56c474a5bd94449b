//! The bot: carries out the dialogue's routes through the ports. One call handles one update;
//! the runtime guarantees updates of one user are handled one at a time, in order, except the
//! urgent ones ([`is_urgent`]), which it carries out the moment they arrive.
//!
//! This file reads the update, routes it (`dialogue`) and dispatches the route to the part
//! that carries it out, each one `impl Ctx` of its own: `registration` (Wappi credentials,
//! `/start`, language), `content` (the post's text and what a mailing would send), `images`
//! (photos and the collage), `import` (the group list), `mailing` (start, cancel, progress),
//! `schedule` (`/schedule`, `/schedules`), `followup` (✏️ / 🗑 under a report: fix or delete
//! a post everywhere), `history` (`/history` and its CSVs), `subscription` (plans, invoices, access) and `operator` (operator commands, `/broadcast`).
//! What they all share, the context and the error, is in `ctx`, below all of them.

use crate::bot::ctx::Ctx;
use crate::bot::dialogue::{route, DialogueState, Intent, Route};
use crate::model::ids::{ChatId, MailingId, SeriesId, UserId};
use crate::model::lang::Lang;
use crate::services::Services;
use crate::telegram::callback::Callback;
use crate::telegram::Update;
use crate::texts::{self};

mod content;
mod ctx;
pub mod dialogue;
mod followup;
#[cfg(test)]
mod followup_tests;
mod history;
#[cfg(test)]
mod history_tests;
mod images;
#[cfg(test)]
mod images_tests;
mod import;
#[cfg(test)]
mod long_work_tests;
mod mailing;
pub mod operator;
mod pace;
mod preflight;
mod registration;
mod schedule;
#[cfg(test)]
mod schedule_tests;
mod sets;
mod subscription;
#[cfg(test)]
mod tests;

pub use content::MAX_TEXT_UTF16;
pub use ctx::BotError;
pub use images::{collage_job_key, pick_size, run_collage_job, CollageOutcome, MAX_PHOTOS};
pub use import::import_view;

/// The user an update comes from (who is serialised on), if any.
pub fn sender(update: &Update) -> Option<UserId> {
    update
        .message
        .as_ref()
        .and_then(|m| m.from.as_ref().map(|u| u.id))
        .or_else(|| update.callback_query.as_ref().map(|q| q.from.id))
}

/// Whether an update must be carried out the moment it arrives, ahead of the same user's
/// earlier updates still being handled (an album being downloaded, an import paging through
/// Wappi): ⛔ on a progress message, the ⛔ menu button and `/cancel`, and ⏸ / `/pause`. These
/// read and write no dialogue state, so they may run beside those updates.
pub fn is_urgent(update: &Update) -> bool {
    let intent = match (&update.message, &update.callback_query) {
        (Some(msg), _) => Intent::from_message(msg),
        (None, Some(q)) => Intent::from_callback(q),
        (None, None) => return false,
    };
    matches!(
        intent,
        Intent::Cancel
            | Intent::Pause
            | Intent::Callback(Callback::CancelMailing(_) | Callback::PauseMailing(_))
    )
}

/// Handles one update end to end.
pub async fn handle_update(svc: &Services, update: &Update) -> Result<(), BotError> {
    let (from, chat, intent, callback_id, callback_message) = if let Some(msg) = &update.message {
        let Some(from) = &msg.from else { return Ok(()) };
        if msg.chat.kind != "private" && !msg.chat.kind.is_empty() {
            return Ok(()); // the bot works in private chats only
        }
        (from, msg.chat.id, Intent::from_message(msg), None, None)
    } else if let Some(q) = &update.callback_query {
        let chat = q
            .message
            .as_ref()
            .map(|m| m.chat.id)
            .unwrap_or(ChatId(q.from.id.0));
        (
            &q.from,
            chat,
            Intent::from_callback(q),
            Some(q.id.clone()),
            q.message.as_ref().map(|m| m.message_id),
        )
    } else {
        return Ok(());
    };
    let now = svc.now_ms();
    let trial_until = if svc.settings.trial_days > 0 {
        now / 1000 + svc.settings.trial_days as i64 * 86_400
    } else {
        0
    };
    let lang = Lang::parse(from.language_code.as_deref().unwrap_or("ru"));
    let user = svc.db.ensure_user(from.id, lang, trial_until, now).await?;
    let mut ctx = Ctx {
        svc,
        user,
        chat,
        callback_message,
    };
    let state = DialogueState::load(&ctx.user.dialogue);
    // `/broadcast` is an operator's command; for anyone else it is ordinary text.
    let intent = match (intent, &update.message) {
        (Intent::Broadcast(_), Some(msg)) if !ctx.is_admin() => Intent::Text {
            text: msg.text.clone().unwrap_or_default(),
            entities: msg.entities.clone(),
        },
        (intent, _) => intent,
    };
    // A stored token this deployment cannot decrypt (its ENCRYPTION_KEY was replaced) counts as
    // no registration: the user is asked for the token again instead of meeting a dead end.
    let registered = ctx.user.is_registered() && svc.creds_of(&ctx.user).is_some();
    let route = route(&state, registered, &intent);
    let result = ctx.run(route, state).await;
    if let Some(id) = callback_id {
        let _ = svc.telegram.answer_callback_query(&id, None).await;
    }
    if result.is_err() {
        let _ = svc
            .telegram
            .send_message(chat, &texts::internal_error(ctx.lang()), None)
            .await;
    }
    result
}

impl Ctx<'_> {
    /// Carries out a route, each by the part it belongs to.
    async fn run(&mut self, route: Route, state: DialogueState) -> Result<(), BotError> {
        let l = self.lang();
        match route {
            Route::AskToken => self.ask_token().await?,
            Route::TakeToken(token) => self.take_token(token).await?,
            Route::TakeProfile { token_enc, profile } => {
                self.take_profile(&token_enc, &profile).await?
            }
            Route::FinishRegistrationFirst => self.finish_registration_first(&state).await?,
            Route::ShowMenu => {
                self.set_state(&DialogueState::Idle).await?;
                self.say_with(&texts::main_menu(l), self.main_keyboard())
                    .await?;
            }
            Route::ShowMailingData => self.show_mailing_data().await?,
            Route::AskText => self.ask_text().await?,
            Route::TakeText { text, entities } => self.take_text(&text, &entities).await?,
            Route::TakeFix { of, text, entities } => {
                self.take_fix(MailingId(of), &text, &entities).await?
            }
            Route::TextExpected => {
                self.say(&texts::text_not_text(l)).await?;
            }
            Route::AskGroups => self.ask_groups().await?,
            Route::TakeGroups(text) => self.take_groups(&text).await?,
            Route::Preview => self.preview(None).await?,
            Route::Cancel => self.cancel(None).await?,
            Route::Pause => self.pause(None).await?,
            Route::Resume => self.resume_latest().await?,
            Route::Pace(args) => self.pace(&args).await?,
            Route::Tz(args) => self.tz(&args).await?,
            Route::Schedule(args) => self.schedule(&args).await?,
            Route::Schedules => self.list_schedules().await?,
            Route::Sets => self.list_sets().await?,
            Route::SaveSet(name) => self.save_set(&name).await?,
            Route::History => self.history().await?,
            Route::Status => self.status().await?,
            Route::Subscribe => self.subscribe().await?,
            Route::Stats => self.stats().await?,
            Route::Grant(args) => self.grant(&args).await?,
            Route::Broadcast(args) => self.broadcast(&args).await?,
            Route::TakeBroadcast(text) => self.take_broadcast(&text).await?,
            Route::ImportSearch(words) => self.import_search(&words, state).await?,
            Route::ChooseLang => self.choose_lang().await?,
            Route::Help => {
                self.say(&texts::help(l)).await?;
            }
            Route::Images => self.show_images().await?,
            Route::TakePhoto {
                photo,
                media_group_id,
                album,
            } => self.take_photo(&photo, media_group_id, album).await?,
            Route::NotAPhoto => {
                self.say(&texts::not_a_photo(l)).await?;
            }
            Route::Callback(cb) => self.callback(cb, state).await?,
            Route::Unknown => {
                if self.user.is_registered() {
                    self.say_with(&texts::unknown_input(l), self.main_keyboard())
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// An inline button, carried out by the part whose message it sits under.
    async fn callback(&mut self, cb: Callback, state: DialogueState) -> Result<(), BotError> {
        match cb {
            Callback::ConfirmStart(seq) => self.start_mailing(seq).await?,
            Callback::FreshPreview => self.preview(None).await?,
            Callback::PreviewWith { all, canary } => self.preview(Some((all, canary))).await?,
            Callback::DeclineStart => self.decline_start().await?,
            Callback::CancelMailing(id) => self.cancel(Some(MailingId(id))).await?,
            Callback::ResumeMailing(id) => self.resume(MailingId(id)).await?,
            Callback::PauseMailing(id) => self.pause(Some(MailingId(id))).await?,
            Callback::SetPace(p) => self.set_preset(p).await?,
            Callback::SetTz(i) => self.set_tz(i).await?,
            Callback::SchedulePrompt => self.ask_schedule().await?,
            Callback::SkipRun(id) => self.skip_next(SeriesId(id)).await?,
            Callback::PauseSeries(id) => self.pause_series(SeriesId(id), true).await?,
            Callback::ResumeSeries(id) => self.pause_series(SeriesId(id), false).await?,
            Callback::DeleteSeries(id) => self.delete_series(SeriesId(id)).await?,
            Callback::Subscribe => self.subscribe().await?,
            Callback::FixPost(id) => self.ask_fix(MailingId(id)).await?,
            Callback::DeletePost(id) => self.ask_delete(MailingId(id)).await?,
            Callback::ConfirmFollowUp(seq) => self.start_follow_up(seq).await?,
            Callback::Repost(id) => self.repost(MailingId(id)).await?,
            Callback::UseSet(key) => self.use_set(&key).await?,
            Callback::DeleteSet(key) => self.delete_set(&key).await?,
            Callback::HistoryCsv(id) => self.history_csv(MailingId(id)).await?,
            Callback::SetLang(lang) => self.set_lang(lang).await?,
            Callback::Pay(days) => self.pay(days).await?,
            Callback::MakeCollage => self.make_collage().await?,
            Callback::ClearImages => self.clear_images().await?,
            Callback::UseCollage(id) => self.answer_collage(id, true).await?,
            Callback::DiscardCollage(id) => self.answer_collage(id, false).await?,
            Callback::ImportStart => self.import_start().await?,
            Callback::ImportToggle(_)
            | Callback::ImportPage(_)
            | Callback::ImportAll
            | Callback::ImportNone
            | Callback::ImportSave
            | Callback::ImportClose => self.import_callback(cb, state).await?,
            Callback::BroadcastGo | Callback::BroadcastNo => {
                self.answer_broadcast(cb == Callback::BroadcastGo, &state)
                    .await?
            }
            Callback::Unknown => {}
        }
        Ok(())
    }
}
