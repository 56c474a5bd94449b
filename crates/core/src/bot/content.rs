//! The post being prepared: 📬 shows what a mailing would send (text, groups, photos), 📝
//! takes the text (Telegram formatting turned into WhatsApp markup), and the post a mailing
//! started now would send is put together from the text and the photo set or its confirmed
//! collage. The photos and the collage themselves are taken in `images`.

use crate::bot::ctx::{BotError, Ctx};
use crate::bot::dialogue::DialogueState;
use crate::model::ledger::Content;
use crate::telegram::markup::to_whatsapp;
use crate::telegram::MessageEntity;
use crate::texts;

/// Telegram's own limit on a message text, in UTF-16 units as Telegram counts.
pub const MAX_TEXT_UTF16: usize = 4096;

impl Ctx<'_> {
    /// 📬: the text, the number of groups and the photos a mailing would send now.
    pub(super) async fn show_mailing_data(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        self.set_state(&DialogueState::Idle).await?;
        let text = self.svc.db.get_text(self.user.id).await?;
        let groups = self.svc.db.get_groups(self.user.id).await?.len();
        let mut data = texts::mailing_data(l, text.as_deref(), groups);
        let content = self.current_content(text.unwrap_or_default()).await?;
        if let Some(images) = texts::post_images(l, &content) {
            data.push_str(&format!("\n\n{images}"));
        }
        self.say_with(&data, self.data_keyboard()).await?;
        Ok(())
    }

    /// 📝: wait for the text.
    pub(super) async fn ask_text(&mut self) -> Result<(), BotError> {
        self.set_state(&DialogueState::AwaitText).await?;
        self.say(&texts::ask_text(self.lang())).await?;
        Ok(())
    }

    /// A post's text as typed (Telegram's formatting in `entities`) in WhatsApp markup; `None`
    /// after telling the user why not (empty, or over Telegram's limit).
    pub(super) async fn post_text(
        &self,
        text: &str,
        entities: &[MessageEntity],
    ) -> Result<Option<String>, BotError> {
        let l = self.lang();
        let converted = to_whatsapp(text, entities);
        if converted.trim().is_empty() {
            self.say(&texts::text_empty(l)).await?;
            return Ok(None);
        }
        let len = text.encode_utf16().count();
        if len > MAX_TEXT_UTF16 {
            self.say(&texts::text_too_long(l, len, MAX_TEXT_UTF16))
                .await?;
            return Ok(None);
        }
        Ok(Some(converted))
    }

    /// The text arrived: stored in WhatsApp markup, unless empty or over Telegram's limit.
    pub(super) async fn take_text(
        &mut self,
        text: &str,
        entities: &[MessageEntity],
    ) -> Result<(), BotError> {
        let l = self.lang();
        let Some(converted) = self.post_text(text, entities).await? else {
            return Ok(());
        };
        self.svc
            .db
            .set_text(self.user.id, &converted, self.svc.now_ms())
            .await?;
        self.set_state(&DialogueState::Idle).await?;
        let saved = texts::text_saved(l, &converted);
        if saved.encode_utf16().count() <= MAX_TEXT_UTF16 {
            self.say_with(&saved, self.data_keyboard()).await?;
            return Ok(());
        }
        // Too long with the heading: the heading, then the exact text on its own.
        self.say(&texts::text_saved(l, "⬇️")).await?;
        let parts = texts::split_utf16(&converted, MAX_TEXT_UTF16);
        let (last, rest) = parts.split_last().expect("split gives a part");
        for part in rest {
            self.say(part).await?;
        }
        self.say_with(last, self.data_keyboard()).await?;
        Ok(())
    }

    /// What a mailing started now would send: the confirmed collage, else the photo set,
    /// then (or with) the text.
    pub(super) async fn current_content(&self, text: String) -> Result<Content, BotError> {
        let user = self.user.id;
        if let Some(c) = self.svc.db.collage(user).await? {
            if c.confirmed {
                return Ok(Content::with_images(text, vec![c.image.id], true));
            }
        }
        let set = self.svc.db.photo_set(user).await?;
        if set.is_empty() {
            return Ok(Content::text_only(text));
        }
        Ok(Content::with_images(
            text,
            set.iter().map(|i| i.id).collect(),
            false,
        ))
    }
}
