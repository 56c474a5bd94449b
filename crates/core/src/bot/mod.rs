//! The bot: carries out the dialogue's routes through the ports. One call handles one update;
//! the runtime guarantees updates of one user are handled one at a time, in order.

use crate::bot::dialogue::{
    route, Callback, DialogueState, ImportState, Intent, Route, IMPORT_PAGE_SIZE,
};
use crate::model::groups::parse_group_list;
use crate::model::ids::{ChatId, GroupJid, MailingId, ProfileId, UserId};
use crate::model::ledger::{MailingStatus, NewMailing, Tally};
use crate::model::secret::Secret;
use crate::ports::{DbError, GroupEntry, UserRecord};
use crate::services::Services;
use crate::telegram::markup::to_whatsapp;
use crate::telegram::{
    InlineKeyboardMarkup, MessageId, ReplyKeyboardMarkup, ReplyMarkup, TelegramError, Update,
};
use crate::texts::{self, button, Lang};
use crate::wappi::{WappiCreds, WappiError};

pub mod dialogue;
mod images;
#[cfg(test)]
mod images_tests;
pub mod operator;
#[cfg(test)]
mod tests;
pub use images::{collage_job_key, pick_size, run_collage_job, CollageOutcome, MAX_PHOTOS};

/// Telegram's own limit on a message text, in UTF-16 units as Telegram counts.
pub const MAX_TEXT_UTF16: usize = 4096;

/// A failure while handling an update. The user has been told something went wrong; the
/// runtime logs it (texts never contain secrets).
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    State(#[from] crate::ports::StateError),
    #[error(transparent)]
    Telegram(#[from] TelegramError),
    #[error(transparent)]
    Defer(#[from] crate::long_work::DeferError),
}

/// The user an update comes from (who is serialised on), if any.
pub fn sender(update: &Update) -> Option<UserId> {
    update
        .message
        .as_ref()
        .and_then(|m| m.from.as_ref().map(|u| u.id))
        .or_else(|| update.callback_query.as_ref().map(|q| q.from.id))
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

struct Ctx<'a> {
    svc: &'a Services,
    user: UserRecord,
    chat: ChatId,
    /// The message whose inline button was pressed.
    callback_message: Option<i64>,
}

impl Ctx<'_> {
    fn lang(&self) -> Lang {
        self.user.lang
    }

    async fn say(&self, text: &str) -> Result<MessageId, BotError> {
        Ok(self
            .svc
            .telegram
            .send_message(self.chat, text, None)
            .await?)
    }

    async fn say_with(&self, text: &str, markup: ReplyMarkup) -> Result<MessageId, BotError> {
        Ok(self
            .svc
            .telegram
            .send_message(self.chat, text, Some(&markup))
            .await?)
    }

    async fn set_state(&mut self, state: &DialogueState) -> Result<(), BotError> {
        let stored = state.store();
        if stored != self.user.dialogue {
            self.svc.db.set_dialogue(self.user.id, &stored).await?;
            self.user.dialogue = stored;
        }
        Ok(())
    }

    fn main_keyboard(&self) -> ReplyMarkup {
        let l = self.lang();
        ReplyMarkup::Keyboard(ReplyKeyboardMarkup::rows(vec![
            vec![button::mailing_data(l), button::start(l)],
            vec![button::subscription(l), button::cancel(l)],
        ]))
    }

    fn data_keyboard(&self) -> ReplyMarkup {
        let l = self.lang();
        ReplyMarkup::Keyboard(ReplyKeyboardMarkup::rows(vec![
            vec![button::text(l), button::groups(l)],
            vec![button::images(l), button::back(l)],
        ]))
    }

    async fn run(&mut self, route: Route, state: DialogueState) -> Result<(), BotError> {
        let l = self.lang();
        match route {
            Route::AskToken => {
                self.set_state(&DialogueState::AwaitToken).await?;
                self.say(&texts::ask_token(l)).await?;
            }
            Route::TakeToken(token) => self.take_token(token).await?,
            Route::TakeProfile { token_enc, profile } => {
                self.take_profile(&token_enc, &profile).await?
            }
            Route::FinishRegistrationFirst => {
                let text = match state {
                    DialogueState::AwaitToken => texts::ask_token(l),
                    DialogueState::AwaitProfile { .. } => texts::bad_profile_format(l),
                    _ => texts::finish_registration_first(l),
                };
                self.say(&text).await?;
            }
            Route::ShowMenu => {
                self.set_state(&DialogueState::Idle).await?;
                self.say_with(&texts::main_menu(l), self.main_keyboard())
                    .await?;
            }
            Route::ShowMailingData => {
                self.set_state(&DialogueState::Idle).await?;
                let text = self.svc.db.get_text(self.user.id).await?;
                let groups = self.svc.db.get_groups(self.user.id).await?.len();
                let mut data = texts::mailing_data(l, text.as_deref(), groups);
                let content = self.current_content(text.unwrap_or_default()).await?;
                if let Some(images) = texts::post_images(l, &content) {
                    data.push_str(&format!("\n\n{images}"));
                }
                self.say_with(&data, self.data_keyboard()).await?;
            }
            Route::AskText => {
                self.set_state(&DialogueState::AwaitText).await?;
                self.say(&texts::ask_text(l)).await?;
            }
            Route::TakeText { text, entities } => self.take_text(&text, &entities).await?,
            Route::TextExpected => {
                self.say(&texts::text_not_text(l)).await?;
            }
            Route::AskGroups => {
                self.set_state(&DialogueState::AwaitGroups).await?;
                let kb = InlineKeyboardMarkup::rows(vec![vec![(
                    texts::import_button(l),
                    Callback::ImportStart.data(),
                )]]);
                self.say_with(
                    &texts::ask_groups(l, self.svc.settings.max_groups),
                    ReplyMarkup::Inline(kb),
                )
                .await?;
            }
            Route::TakeGroups(text) => self.take_groups(&text).await?,
            Route::Preview => self.preview().await?,
            Route::Cancel => self.cancel(None).await?,
            Route::Status => self.status().await?,
            Route::Subscribe => self.subscribe().await?,
            Route::Stats => {
                if !self.is_admin() {
                    self.say(&texts::billing::not_admin(l)).await?;
                    return Ok(());
                }
                let stats = self.svc.db.stats(self.svc.now_ms()).await?;
                self.say(&texts::billing::stats(l, &stats)).await?;
            }
            Route::Grant(args) => self.grant(&args).await?,
            Route::Broadcast(args) => {
                let next = crate::bot::operator::command(self.svc, self.chat, l, &args).await?;
                self.set_state(&next).await?;
            }
            Route::TakeBroadcast(text) => {
                let next = crate::bot::operator::take_text(self.svc, self.chat, l, &text).await?;
                self.set_state(&next).await?;
            }
            Route::ChooseLang => {
                let kb = InlineKeyboardMarkup::rows(vec![vec![
                    ("🇷🇺 Русский", Callback::SetLang(Lang::Ru).data()),
                    ("🇬🇧 English", Callback::SetLang(Lang::En).data()),
                ]]);
                self.say_with(&texts::choose_lang(), ReplyMarkup::Inline(kb))
                    .await?;
            }
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
                let kb = if self.user.is_registered() {
                    self.main_keyboard()
                } else {
                    return Ok(());
                };
                self.say_with(&texts::unknown_input(l), kb).await?;
            }
        }
        Ok(())
    }

    fn is_admin(&self) -> bool {
        self.svc.settings.admin_ids.contains(&self.user.id.0)
    }

    /// 💎: the subscription state and one button per plan (when payments are configured).
    async fn subscribe(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        let now = self.svc.now_ms() / 1000;
        let mut text = texts::subscription(l, self.user.subscription_until, now);
        let plans = &self.svc.settings.plans;
        if self.svc.settings.payments.is_none() || plans.is_empty() {
            text.push_str("\n\n");
            text.push_str(&texts::payments_unavailable(l));
            self.say(&text).await?;
            return Ok(());
        }
        text.push_str("\n\n");
        text.push_str(&texts::billing::plans_header(l));
        let rows = plans
            .iter()
            .map(|p| {
                vec![(
                    texts::billing::plan_button(l, p),
                    Callback::Pay(p.days).data(),
                )]
            })
            .collect();
        self.say_with(&text, ReplyMarkup::Inline(InlineKeyboardMarkup::rows(rows)))
            .await?;
        Ok(())
    }

    /// A plan's button: an invoice at the server's price, then its signed payment link.
    async fn pay(&mut self, days: u32) -> Result<(), BotError> {
        let l = self.lang();
        let (Some(payments), Some(plan)) = (
            self.svc.settings.payments.as_ref(),
            crate::payments::plan(self.svc, days),
        ) else {
            self.say(&texts::payments_unavailable(l)).await?;
            return Ok(());
        };
        let invoice = self
            .svc
            .db
            .create_invoice(
                self.user.id,
                plan.days,
                plan.price_kopecks,
                self.svc.now_ms(),
            )
            .await?;
        let url = crate::payments::payment_link(payments, &invoice, l);
        tracing::info!(
            user = self.user.id.0,
            invoice = invoice.id,
            days,
            "invoice created"
        );
        let kb = InlineKeyboardMarkup {
            inline_keyboard: vec![vec![crate::telegram::InlineKeyboardButton::link(
                texts::billing::pay_button(l),
                url,
            )]],
        };
        self.say_with(
            &texts::billing::pay_link(l, &plan, invoice.id),
            ReplyMarkup::Inline(kb),
        )
        .await?;
        Ok(())
    }

    /// Operator: `/grant <user_id> <days>`.
    async fn grant(&mut self, args: &str) -> Result<(), BotError> {
        let l = self.lang();
        if !self.is_admin() {
            self.say(&texts::billing::not_admin(l)).await?;
            return Ok(());
        }
        let mut parts = args.split_whitespace();
        let parsed = (|| {
            Some((
                parts.next()?.parse::<i64>().ok()?,
                parts.next()?.parse::<u32>().ok()?,
            ))
        })();
        let Some((user, days)) = parsed.filter(|(_, d)| (1..=3660).contains(d)) else {
            self.say(&texts::billing::grant_usage(l)).await?;
            return Ok(());
        };
        match self
            .svc
            .db
            .grant_days(UserId(user), days, self.svc.now_ms())
            .await
        {
            Ok(until) => {
                tracing::info!(
                    operator = self.user.id.0,
                    user,
                    days,
                    "subscription granted"
                );
                self.say(&texts::billing::granted(l, user, days, until))
                    .await?;
                let their_lang = self
                    .svc
                    .db
                    .get_user(UserId(user))
                    .await?
                    .map(|u| u.lang)
                    .unwrap_or_default();
                let _ = self
                    .svc
                    .telegram
                    .send_message(
                        ChatId(user),
                        &texts::billing::gift(their_lang, days, until),
                        None,
                    )
                    .await;
            }
            Err(DbError::NotFound) => {
                self.say(&texts::billing::unknown_user(l, user)).await?;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    async fn take_token(&mut self, token: String) -> Result<(), BotError> {
        let l = self.lang();
        let looks_right = (8..=256).contains(&token.len())
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !looks_right {
            self.say(&texts::bad_token_format(l)).await?;
            return Ok(());
        }
        let secret = Secret::new(token);
        let token_enc = self.svc.encrypt_token(self.user.id, &secret);
        self.set_state(&DialogueState::AwaitProfile { token_enc })
            .await?;
        self.say(&texts::ask_profile(l, &secret.masked())).await?;
        Ok(())
    }

    async fn take_profile(&mut self, token_enc: &str, profile: &str) -> Result<(), BotError> {
        let l = self.lang();
        let Some(profile_id) = ProfileId::parse(profile) else {
            self.say(&texts::bad_profile_format(l)).await?;
            return Ok(());
        };
        let Ok(token) = self.svc.decrypt_token(self.user.id, token_enc) else {
            // The key changed since step 1: start over.
            self.set_state(&DialogueState::AwaitToken).await?;
            self.say(&texts::ask_token(l)).await?;
            return Ok(());
        };
        let creds = WappiCreds {
            token,
            profile_id: profile_id.clone(),
        };
        match self.svc.wappi.get_status(&creds).await {
            Ok(status) if status.is_ready() => {
                self.svc
                    .db
                    .save_credentials(self.user.id, token_enc, &profile_id)
                    .await?;
                self.user.wappi_token_enc = Some(token_enc.to_string());
                self.user.profile_id = Some(profile_id);
                self.set_state(&DialogueState::Idle).await?;
                self.say_with(
                    &texts::registered(l, status.phone.as_deref()),
                    self.main_keyboard(),
                )
                .await?;
            }
            Ok(_) | Err(WappiError::NotAuthorized) => {
                self.say(&texts::profile_not_authorized(l)).await?;
            }
            Err(WappiError::BadToken) => {
                self.set_state(&DialogueState::AwaitToken).await?;
                self.say(&texts::token_refused(l)).await?;
            }
            Err(WappiError::ProfileNotFound) => {
                self.say(&texts::profile_not_found(l)).await?;
            }
            Err(WappiError::NotPaid) => {
                self.say(&texts::profile_not_paid(l)).await?;
            }
            Err(e) => {
                tracing::warn!(user = self.user.id.0, error = %e, "wappi status check failed");
                self.say(&texts::wappi_unreachable(l)).await?;
            }
        }
        Ok(())
    }

    async fn take_text(
        &mut self,
        text: &str,
        entities: &[crate::telegram::MessageEntity],
    ) -> Result<(), BotError> {
        let l = self.lang();
        let converted = to_whatsapp(text, entities);
        if converted.trim().is_empty() {
            self.say(&texts::text_empty(l)).await?;
            return Ok(());
        }
        let len = text.encode_utf16().count();
        if len > MAX_TEXT_UTF16 {
            self.say(&texts::text_too_long(l, len, MAX_TEXT_UTF16))
                .await?;
            return Ok(());
        }
        self.svc
            .db
            .set_text(self.user.id, &converted, self.svc.now_ms())
            .await?;
        self.set_state(&DialogueState::Idle).await?;
        self.say_with(&texts::text_saved(l, &converted), self.data_keyboard())
            .await?;
        Ok(())
    }

    async fn take_groups(&mut self, text: &str) -> Result<(), BotError> {
        let l = self.lang();
        let parsed = parse_group_list(text);
        if parsed.groups.is_empty() {
            self.say(&texts::groups_none_valid(l, &parsed.invalid))
                .await?;
            return Ok(());
        }
        let max = self.svc.settings.max_groups;
        if parsed.groups.len() > max {
            self.say(&texts::groups_too_many(l, parsed.groups.len(), max))
                .await?;
            return Ok(());
        }
        let entries: Vec<GroupEntry> = parsed
            .groups
            .iter()
            .map(|jid| GroupEntry {
                jid: jid.clone(),
                name: None,
            })
            .collect();
        self.svc.db.set_groups(self.user.id, &entries).await?;
        self.set_state(&DialogueState::Idle).await?;
        let text = texts::groups_saved(l, entries.len(), parsed.duplicates.len(), &parsed.invalid);
        self.say_with(&text, self.data_keyboard()).await?;
        Ok(())
    }

    /// Why a mailing cannot start now, as a message; `None` when it can.
    async fn start_blocker(&self) -> Result<Option<String>, BotError> {
        let l = self.lang();
        let text = self.svc.db.get_text(self.user.id).await?;
        if text.as_deref().is_none_or(|t| t.trim().is_empty()) {
            return Ok(Some(texts::need_text(l)));
        }
        if self.svc.db.get_groups(self.user.id).await?.is_empty() {
            return Ok(Some(texts::need_groups(l)));
        }
        if self.user.subscription_until <= self.svc.now_ms() / 1000 {
            return Ok(Some(texts::need_subscription(l)));
        }
        if let Some(m) = self.svc.db.latest_mailing(self.user.id).await? {
            if m.status.is_active() {
                return Ok(Some(texts::already_running(l)));
            }
        }
        Ok(None)
    }

    async fn preview(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        self.set_state(&DialogueState::Idle).await?;
        if let Some(why) = self.start_blocker().await? {
            self.say(&why).await?;
            return Ok(());
        }
        let text = self
            .svc
            .db
            .get_text(self.user.id)
            .await?
            .unwrap_or_default();
        let groups = self.svc.db.get_groups(self.user.id).await?.len();
        let kb = InlineKeyboardMarkup::rows(vec![vec![
            (texts::confirm_yes(l), Callback::ConfirmStart.data()),
            (texts::confirm_no(l), Callback::DeclineStart.data()),
        ]]);
        let content = self.current_content(text).await?;
        self.preview_images(&content).await?;
        // Every part is a send: the ETA counts them all.
        let sends = groups * content.parts().len();
        let preview = texts::preview_post(l, &content, groups, self.svc.eta_secs(sends));
        self.say_with(&preview, ReplyMarkup::Inline(kb)).await?;
        Ok(())
    }

    /// ✅ on the preview: snapshot the content and hand the mailing to the runner.
    async fn start_mailing(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        self.close_buttons().await;
        if let Some(why) = self.start_blocker().await? {
            self.say(&why).await?;
            return Ok(());
        }
        let (Some(profile_id), Some(text)) = (
            self.user.profile_id.clone(),
            self.svc.db.get_text(self.user.id).await?,
        ) else {
            self.say(&texts::finish_registration_first(l)).await?;
            return Ok(());
        };
        let groups: Vec<GroupJid> = self
            .svc
            .db
            .get_groups(self.user.id)
            .await?
            .into_iter()
            .map(|g| g.jid)
            .collect();
        // The snapshot: image rows never change, so later edits of the set do not reach it.
        let content = self.current_content(text).await?;
        let sends = groups.len() * content.parts().len();
        let new = NewMailing {
            user_id: self.user.id,
            chat_id: self.chat,
            profile_id,
            content,
            groups: groups.clone(),
            now: self.svc.now_ms(),
        };
        let id = match self.svc.db.create_mailing(&new).await {
            Ok(id) => id,
            Err(DbError::AlreadyActive) => {
                self.say(&texts::already_running(l)).await?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(
            event = "mailing_started",
            mailing = id.0,
            user = self.user.id.0,
            groups = groups.len(),
            "mailing started"
        );
        // The start confirmation is also the progress message the runner keeps editing, so it
        // is recorded before the runner is told about the mailing.
        let text = texts::started(l, id.0, groups.len(), self.svc.eta_secs(sends));
        let keyboard = crate::mailing::engine::cancel_keyboard(l, id);
        match self
            .svc
            .telegram
            .send_message(self.chat, &text, Some(&ReplyMarkup::Inline(keyboard)))
            .await
        {
            Ok(mid) => {
                self.svc
                    .db
                    .set_progress(id, Some(mid.0), self.svc.now_ms())
                    .await?
            }
            Err(e) => tracing::warn!(mailing = id.0, error = %e, "start message failed"),
        }
        self.svc.intake.enqueue(id).await?;
        Ok(())
    }

    /// Removes the inline buttons of the message whose button was pressed.
    async fn close_buttons(&self) {
        if let Some(mid) = self.callback_message {
            let _ = self
                .svc
                .telegram
                .edit_message_reply_markup(
                    self.chat,
                    MessageId(mid),
                    &InlineKeyboardMarkup::default(),
                )
                .await;
        }
    }

    /// The user's active mailing, if the id (when given) is theirs.
    async fn active_mailing(
        &self,
        id: Option<MailingId>,
    ) -> Result<Option<crate::model::ledger::Mailing>, BotError> {
        let m = match id {
            Some(id) => self.svc.db.get_mailing(id).await?,
            None => self.svc.db.latest_mailing(self.user.id).await?,
        };
        Ok(m.filter(|m| m.user_id == self.user.id && m.status.is_active()))
    }

    async fn cancel(&mut self, id: Option<MailingId>) -> Result<(), BotError> {
        let l = self.lang();
        let Some(m) = self.active_mailing(id).await? else {
            self.say(&texts::nothing_to_cancel(l)).await?;
            return Ok(());
        };
        self.svc.db.request_cancel(m.id).await?;
        self.svc.cancels.set_cancel(m.id).await?;
        if m.status == MailingStatus::Paused {
            // Nobody drives a paused mailing: hand it back to a runner, which ends it at once
            // (the cancel flag is checked before anything else) and sends the report.
            self.svc.db.resume_mailing(m.id).await?;
            self.svc.intake.enqueue(m.id).await?;
        }
        tracing::info!(mailing = m.id.0, "cancel requested");
        self.say(&texts::cancelling(l, m.id.0)).await?;
        Ok(())
    }

    async fn status(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        let Some(m) = self.svc.db.latest_mailing(self.user.id).await? else {
            self.say(&texts::no_mailings(l)).await?;
            return Ok(());
        };
        let rows = self.svc.db.deliveries(m.id).await?;
        let tally = Tally::of(&rows);
        let text = match m.status {
            MailingStatus::Running => {
                let eta = self.svc.eta_secs(crate::model::ledger::sends_left(&rows));
                texts::progress(l, m.id.0, &tally, eta, None)
            }
            MailingStatus::Paused => {
                texts::paused(l, m.id.0, m.pause_reason.as_deref().unwrap_or(""))
            }
            MailingStatus::Done | MailingStatus::Cancelled => {
                crate::mailing::engine::report_text(
                    self.svc,
                    &m,
                    &rows,
                    l,
                    m.status == MailingStatus::Cancelled,
                )
                .await
            }
        };
        if m.status == MailingStatus::Running {
            let kb = crate::mailing::engine::cancel_keyboard(l, m.id);
            self.say_with(&text, ReplyMarkup::Inline(kb)).await?;
        } else {
            self.say(&text).await?;
        }
        Ok(())
    }

    async fn callback(&mut self, cb: Callback, state: DialogueState) -> Result<(), BotError> {
        let l = self.lang();
        match cb {
            Callback::ConfirmStart => self.start_mailing().await?,
            Callback::DeclineStart => {
                self.close_buttons().await;
                self.say_with(&texts::start_declined(l), self.main_keyboard())
                    .await?;
            }
            Callback::CancelMailing(id) => self.cancel(Some(MailingId(id))).await?,
            Callback::ResumeMailing(id) => {
                if let Some(m) = self.active_mailing(Some(MailingId(id))).await? {
                    if m.status == MailingStatus::Paused && self.svc.db.resume_mailing(m.id).await?
                    {
                        self.close_buttons().await;
                        self.svc.intake.enqueue(m.id).await?;
                        self.say(&texts::resumed(l, m.id.0)).await?;
                    }
                }
            }
            Callback::SetLang(lang) => {
                self.svc.db.set_lang(self.user.id, lang).await?;
                self.user.lang = lang;
                let text = texts::lang_set(lang);
                if self.user.is_registered() {
                    self.say_with(&text, self.main_keyboard()).await?;
                } else {
                    self.say(&text).await?;
                }
            }
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
            | Callback::ImportClose => {
                let DialogueState::Import(imp) = state else {
                    self.close_buttons().await;
                    return Ok(());
                };
                self.import_action(cb, imp).await?;
            }
            Callback::BroadcastGo | Callback::BroadcastNo => {
                self.close_buttons().await;
                let next = if cb == Callback::BroadcastGo {
                    crate::bot::operator::confirm(self.svc, self.chat, l, &state).await?
                } else {
                    crate::bot::operator::decline(self.svc, self.chat, l, &state).await?
                };
                self.set_state(&next).await?;
            }
            Callback::Unknown => {}
        }
        Ok(())
    }

    async fn import_start(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        let Some(creds) = self.svc.creds_of(&self.user) else {
            self.say(&texts::finish_registration_first(l)).await?;
            return Ok(());
        };
        let mut groups: Vec<(String, String)> = Vec::new();
        const PAGE: u32 = 100;
        for page in 0..50u32 {
            let dialogs = match self.svc.wappi.list_chats(&creds, PAGE, page * PAGE).await {
                Ok(d) => d,
                Err(e) => {
                    let reason = match &e {
                        WappiError::NotAuthorized
                        | WappiError::BadToken
                        | WappiError::ProfileNotFound
                        | WappiError::NotPaid => texts::account_problem(l, &e),
                        _ => e.to_string(),
                    };
                    self.say(&texts::import_loading_failed(l, &reason)).await?;
                    return Ok(());
                }
            };
            let n = dialogs.len();
            for d in dialogs {
                if let Some(jid) = d.group() {
                    if !groups.iter().any(|(j, _)| j == jid.as_str()) {
                        groups.push((jid.as_str().to_string(), d.display_name()));
                    }
                }
            }
            if n < PAGE as usize {
                break;
            }
        }
        if groups.is_empty() {
            self.say(&texts::import_no_groups(l)).await?;
            return Ok(());
        }
        let current = self.svc.db.get_groups(self.user.id).await?;
        let selected = groups
            .iter()
            .map(|(jid, _)| current.iter().any(|g| g.jid.as_str() == jid))
            .collect();
        let mut imp = ImportState {
            groups,
            selected,
            page: 0,
            message_id: 0,
        };
        let (text, kb) = import_view(l, &imp);
        let mid = self.say_with(&text, ReplyMarkup::Inline(kb)).await?;
        imp.message_id = mid.0;
        self.set_state(&DialogueState::Import(imp)).await?;
        Ok(())
    }

    async fn import_action(&mut self, cb: Callback, mut imp: ImportState) -> Result<(), BotError> {
        let l = self.lang();
        match cb {
            Callback::ImportToggle(i) if i < imp.selected.len() => {
                imp.selected[i] = !imp.selected[i]
            }
            Callback::ImportPage(p) => imp.page = p.min(imp.pages() - 1),
            Callback::ImportAll => imp.selected.iter_mut().for_each(|s| *s = true),
            Callback::ImportNone => imp.selected.iter_mut().for_each(|s| *s = false),
            Callback::ImportClose => {
                self.set_state(&DialogueState::Idle).await?;
                let _ = self
                    .svc
                    .telegram
                    .edit_message_text(
                        self.chat,
                        MessageId(imp.message_id),
                        &texts::import_closed(l),
                        None,
                    )
                    .await;
                return Ok(());
            }
            Callback::ImportSave => {
                let entries: Vec<GroupEntry> = imp
                    .groups
                    .iter()
                    .zip(&imp.selected)
                    .filter(|(_, s)| **s)
                    .filter_map(|((jid, name), _)| {
                        Some(GroupEntry {
                            jid: GroupJid::parse(jid)?,
                            name: Some(name.clone()),
                        })
                    })
                    .collect();
                let max = self.svc.settings.max_groups;
                if entries.len() > max {
                    self.say(&texts::groups_too_many(l, entries.len(), max))
                        .await?;
                    return Ok(());
                }
                if entries.is_empty() {
                    self.say(&texts::need_groups(l)).await?;
                    return Ok(());
                }
                self.svc.db.set_groups(self.user.id, &entries).await?;
                self.set_state(&DialogueState::Idle).await?;
                let _ = self
                    .svc
                    .telegram
                    .edit_message_reply_markup(
                        self.chat,
                        MessageId(imp.message_id),
                        &InlineKeyboardMarkup::default(),
                    )
                    .await;
                self.say_with(
                    &texts::groups_saved(l, entries.len(), 0, &[]),
                    self.data_keyboard(),
                )
                .await?;
                return Ok(());
            }
            _ => {}
        }
        let (text, kb) = import_view(l, &imp);
        match self
            .svc
            .telegram
            .edit_message_text(self.chat, MessageId(imp.message_id), &text, Some(&kb))
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_not_modified() => {}
            Err(e) => return Err(e.into()),
        }
        self.set_state(&DialogueState::Import(imp)).await?;
        Ok(())
    }
}

/// The import picker: header text and the keyboard of the current page.
pub fn import_view(l: Lang, imp: &ImportState) -> (String, InlineKeyboardMarkup) {
    let pages = imp.pages();
    let page = imp.page.min(pages - 1);
    let start = page * IMPORT_PAGE_SIZE;
    let mut rows: Vec<Vec<(String, String)>> = imp
        .groups
        .iter()
        .enumerate()
        .skip(start)
        .take(IMPORT_PAGE_SIZE)
        .map(|(i, (_, name))| {
            let mark = if imp.selected[i] { "✅" } else { "▫️" };
            let name: String = name.chars().take(40).collect();
            vec![(format!("{mark} {name}"), Callback::ImportToggle(i).data())]
        })
        .collect();
    let mut nav = Vec::new();
    if page > 0 {
        nav.push(("◀️".to_string(), Callback::ImportPage(page - 1).data()));
    }
    nav.push((
        format!("{}/{}", page + 1, pages),
        Callback::ImportPage(page).data(),
    ));
    if page + 1 < pages {
        nav.push(("▶️".to_string(), Callback::ImportPage(page + 1).data()));
    }
    rows.push(nav);
    rows.push(vec![
        (texts::import_all(l).to_string(), Callback::ImportAll.data()),
        (
            texts::import_none(l).to_string(),
            Callback::ImportNone.data(),
        ),
    ]);
    rows.push(vec![
        (
            texts::import_save(l, imp.selected_count()),
            Callback::ImportSave.data(),
        ),
        ("✖️".to_string(), Callback::ImportClose.data()),
    ]);
    let text = texts::import_header(l, imp.groups.len(), imp.selected_count(), page + 1, pages);
    (text, InlineKeyboardMarkup::rows(rows))
}
