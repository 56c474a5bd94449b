//! Registration and language: `/start` asks for the Wappi token, then the profile id; the
//! pair is checked against Wappi before it is stored (the token encrypted). `/lang` and the
//! language buttons.

use crate::bot::ctx::{BotError, Ctx};
use crate::bot::dialogue::DialogueState;
use crate::model::ids::ProfileId;
use crate::model::lang::Lang;
use crate::model::secret::Secret;
use crate::telegram::callback::Callback;
use crate::telegram::{InlineKeyboardMarkup, ReplyMarkup};
use crate::texts::{self};
use crate::wappi::{WappiCreds, WappiError};

impl Ctx<'_> {
    /// `/start` before registration: wait for the token.
    pub(super) async fn ask_token(&mut self) -> Result<(), BotError> {
        self.set_state(&DialogueState::AwaitToken).await?;
        self.say(&texts::ask_token(self.lang())).await?;
        Ok(())
    }

    /// Anything else during registration: repeat what the current step waits for.
    pub(super) async fn finish_registration_first(
        &self,
        state: &DialogueState,
    ) -> Result<(), BotError> {
        let l = self.lang();
        let text = match state {
            DialogueState::AwaitToken => texts::ask_token(l),
            DialogueState::AwaitProfile { .. } => texts::bad_profile_format(l),
            _ => texts::finish_registration_first(l),
        };
        self.say(&text).await?;
        Ok(())
    }

    /// Registration step 1: the token, kept encrypted until the profile id arrives.
    pub(super) async fn take_token(&mut self, token: String) -> Result<(), BotError> {
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

    /// Registration step 2: the profile id, checked with Wappi together with the token.
    pub(super) async fn take_profile(
        &mut self,
        token_enc: &str,
        profile: &str,
    ) -> Result<(), BotError> {
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
                if let Some(at) = status.authorized_at_ms() {
                    // How young the number is: the warm-up cap of the pace reads it.
                    self.svc.db.set_number_since(self.user.id, at).await?;
                    self.user.number_since = Some(at);
                }
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

    /// `/lang`: one button per language.
    pub(super) async fn choose_lang(&self) -> Result<(), BotError> {
        let kb = InlineKeyboardMarkup::rows(vec![vec![
            ("🇷🇺 Русский", Callback::SetLang(Lang::Ru).data()),
            ("🇬🇧 English", Callback::SetLang(Lang::En).data()),
        ]]);
        self.say_with(&texts::choose_lang(), ReplyMarkup::Inline(kb))
            .await?;
        Ok(())
    }

    /// A language button: stored, and answered in the new language.
    pub(super) async fn set_lang(&mut self, lang: Lang) -> Result<(), BotError> {
        self.svc.db.set_lang(self.user.id, lang).await?;
        self.user.lang = lang;
        let text = texts::lang_set(lang);
        if self.user.is_registered() {
            self.say_with(&text, self.main_keyboard()).await?;
        } else {
            self.say(&text).await?;
        }
        Ok(())
    }
}
