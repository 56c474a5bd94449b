//! What every part of the bot shares: the error of an update and the context it is handled
//! in ([`Ctx`]: the services, the user, the chat) with the few steps every part takes
//! (answer, store the dialogue state, the reply keyboards, close a message's buttons, find
//! the user's active mailing). Nothing here knows a concern; the concerns sit on top of it.

use crate::bot::dialogue::DialogueState;
use crate::model::ids::{ChatId, MailingId};
use crate::model::lang::Lang;
use crate::model::ledger::Mailing;
use crate::ports::{DbError, UserRecord};
use crate::services::Services;
use crate::telegram::{
    InlineKeyboardMarkup, MessageId, ReplyKeyboardMarkup, ReplyMarkup, TelegramError,
};
use crate::texts::button;

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
    Defer(#[from] crate::ports::DeferError),
}

/// One update being handled: who sent it, where the answers go.
pub(super) struct Ctx<'a> {
    pub(super) svc: &'a Services,
    pub(super) user: UserRecord,
    pub(super) chat: ChatId,
    /// The message whose inline button was pressed.
    pub(super) callback_message: Option<i64>,
}

impl Ctx<'_> {
    pub(super) fn lang(&self) -> Lang {
        self.user.lang
    }

    /// Sends `text` (shortened with a marker should it not fit one Telegram message).
    pub(super) async fn say(&self, text: &str) -> Result<MessageId, BotError> {
        let text = crate::texts::fit(self.lang(), text);
        Ok(self
            .svc
            .telegram
            .send_message(self.chat, &text, None)
            .await?)
    }

    /// Like `say`, with a keyboard.
    pub(super) async fn say_with(
        &self,
        text: &str,
        markup: ReplyMarkup,
    ) -> Result<MessageId, BotError> {
        let text = crate::texts::fit(self.lang(), text);
        Ok(self
            .svc
            .telegram
            .send_message(self.chat, &text, Some(&markup))
            .await?)
    }

    pub(super) async fn set_state(&mut self, state: &DialogueState) -> Result<(), BotError> {
        let stored = state.store();
        if stored != self.user.dialogue {
            self.svc.db.set_dialogue(self.user.id, &stored).await?;
            self.user.dialogue = stored;
        }
        Ok(())
    }

    pub(super) fn main_keyboard(&self) -> ReplyMarkup {
        let l = self.lang();
        ReplyMarkup::Keyboard(ReplyKeyboardMarkup::rows(vec![
            vec![button::mailing_data(l), button::start(l)],
            vec![button::subscription(l), button::cancel(l)],
        ]))
    }

    pub(super) fn data_keyboard(&self) -> ReplyMarkup {
        let l = self.lang();
        ReplyMarkup::Keyboard(ReplyKeyboardMarkup::rows(vec![
            vec![button::text(l), button::groups(l)],
            vec![button::images(l), button::pace(l)],
            vec![button::back(l)],
        ]))
    }

    /// Removes the inline buttons of the message whose button was pressed.
    pub(super) async fn close_buttons(&self) {
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
    pub(super) async fn active_mailing(
        &self,
        id: Option<MailingId>,
    ) -> Result<Option<Mailing>, BotError> {
        let m = match id {
            Some(id) => self.svc.db.get_mailing(id).await?,
            None => self.svc.db.latest_mailing(self.user.id).await?,
        };
        Ok(m.filter(|m| m.user_id == self.user.id && m.status.is_active()))
    }
}
