//! The operator's commands: `/stats`, `/grant <user_id> <days>` and `/broadcast`, one
//! message to every bot user.
//!
//! The dialogue part of `/broadcast` lives here and in `dialogue` (an operator sends
//! `/broadcast <text>`, or `/broadcast` and then the text; the bot shows the text and the
//! number of users with ✅ / ❌; ✅ hands the job to the runtime). Sending is the runtime's:
//! it implements [`Broadcaster`](crate::ports::Broadcaster) and delivers in the background, paced by Telegram's limits,
//! and tells the operator "sent N, failed M" at the end ([`crate::texts::broadcast::report`]).
//! Only operators (`ADMIN_TELEGRAM_IDS`) get here; for anyone else `/broadcast` is ordinary
//! text.

use crate::bot::ctx::{BotError, Ctx};
use crate::bot::dialogue::DialogueState;
use crate::model::ids::{ChatId, UserId};
use crate::ports::{BroadcastJob, DbError};
use crate::telegram::callback::Callback;
use crate::telegram::{InlineKeyboardMarkup, ReplyMarkup};
use crate::texts;

/// `/grant <user_id> <days>`: the user and the days (1 to 3660); extra words are ignored.
fn parse_grant(args: &str) -> Option<(i64, u32)> {
    let mut parts = args.split_whitespace();
    let user = parts.next()?.parse::<i64>().ok()?;
    let days = parts.next()?.parse::<u32>().ok()?;
    (1..=3660).contains(&days).then_some((user, days))
}

impl Ctx<'_> {
    /// Whether the user is an operator (`ADMIN_TELEGRAM_IDS`).
    pub(super) fn is_admin(&self) -> bool {
        self.svc.settings.admin_ids.contains(&self.user.id.0)
    }

    /// Operator: `/stats`.
    pub(super) async fn stats(&self) -> Result<(), BotError> {
        let l = self.lang();
        if !self.is_admin() {
            self.say(&texts::billing::not_admin(l)).await?;
            return Ok(());
        }
        let stats = self.svc.db.stats(self.svc.now_ms()).await?;
        self.say(&texts::billing::stats(l, &stats)).await?;
        Ok(())
    }

    /// Operator: `/grant <user_id> <days>`.
    pub(super) async fn grant(&mut self, args: &str) -> Result<(), BotError> {
        let l = self.lang();
        if !self.is_admin() {
            self.say(&texts::billing::not_admin(l)).await?;
            return Ok(());
        }
        let Some((user, days)) = parse_grant(args) else {
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
                self.say(&texts::billing::granted(l, user, days, until, self.zone()))
                    .await?;
                self.tell_granted(user, days, until).await?;
            }
            Err(DbError::NotFound) => {
                self.say(&texts::billing::unknown_user(l, user)).await?;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// The gift message to the user granted the days, in their language (best effort).
    async fn tell_granted(&self, user: i64, days: u32, until: i64) -> Result<(), BotError> {
        let them = self.svc.db.get_user(UserId(user)).await?;
        let their_lang = them.as_ref().map(|u| u.lang).unwrap_or_default();
        let their_zone = self.svc.user_zone(them.as_ref());
        let _ = self
            .svc
            .telegram
            .send_message(
                ChatId(user),
                &texts::billing::gift(their_lang, days, until, their_zone),
                None,
            )
            .await;
        Ok(())
    }

    /// `/broadcast [text]`: asks for the text, or shows the confirmation at once.
    pub(super) async fn broadcast(&mut self, args: &str) -> Result<(), BotError> {
        let next = if args.trim().is_empty() {
            self.say(&texts::broadcast::ask(self.lang())).await?;
            DialogueState::AwaitBroadcast
        } else {
            self.show_broadcast(args.trim()).await?
        };
        self.set_state(&next).await
    }

    /// The broadcast text arrived after `/broadcast`.
    pub(super) async fn take_broadcast(&mut self, text: &str) -> Result<(), BotError> {
        let next = self.show_broadcast(text).await?;
        self.set_state(&next).await
    }

    /// Shows the text with the number of recipients and ✅ / ❌.
    async fn show_broadcast(&self, text: &str) -> Result<DialogueState, BotError> {
        let l = self.lang();
        let users = self.svc.db.stats(self.svc.now_ms()).await?.users;
        let kb = InlineKeyboardMarkup::rows(vec![vec![
            (
                texts::broadcast::confirm_button(l, users),
                Callback::BroadcastGo.data(),
            ),
            (
                texts::broadcast::decline_button(l),
                Callback::BroadcastNo.data(),
            ),
        ]]);
        self.say_with(
            &texts::broadcast::confirm(l, users, text),
            ReplyMarkup::Inline(kb),
        )
        .await?;
        Ok(DialogueState::ConfirmBroadcast {
            text: text.to_string(),
        })
    }

    /// ✅ (`go`) or ❌ on the confirmation; the buttons are closed either way.
    pub(super) async fn answer_broadcast(
        &mut self,
        go: bool,
        state: &DialogueState,
    ) -> Result<(), BotError> {
        self.close_buttons().await;
        let next = if go {
            self.confirm_broadcast(state).await?
        } else {
            self.decline_broadcast(state).await?
        };
        self.set_state(&next).await
    }

    /// ✅: hands the job over (once: the state goes back to idle).
    async fn confirm_broadcast(&self, state: &DialogueState) -> Result<DialogueState, BotError> {
        let l = self.lang();
        let DialogueState::ConfirmBroadcast { text } = state else {
            return Ok(state.clone()); // a stale button: nothing awaits confirmation
        };
        let Some(broadcaster) = &self.svc.broadcaster else {
            self.say(&texts::broadcast::unavailable(l)).await?;
            return Ok(DialogueState::Idle);
        };
        broadcaster
            .start(BroadcastJob {
                operator_chat: self.chat,
                lang: l,
                text: text.clone(),
            })
            .await?;
        tracing::info!(
            operator = self.chat.0,
            chars = text.chars().count(),
            "broadcast started"
        );
        self.say(&texts::broadcast::started(l)).await?;
        Ok(DialogueState::Idle)
    }

    /// ❌: nothing is sent.
    async fn decline_broadcast(&self, state: &DialogueState) -> Result<DialogueState, BotError> {
        if !matches!(state, DialogueState::ConfirmBroadcast { .. }) {
            return Ok(state.clone());
        }
        self.say(&texts::broadcast::declined(self.lang())).await?;
        Ok(DialogueState::Idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::handle_update;
    use crate::config::CoreSettings;
    use crate::model::lang::Lang;
    use crate::ports::{async_trait, Broadcaster, DeferError};
    use crate::services::Services;
    use crate::telegram::{MessageId, Update};
    use crate::testing::{services, Fakes};
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    const OPERATOR: i64 = 900;
    const USER: i64 = 901;

    /// Records the jobs handed over.
    #[derive(Default)]
    struct Jobs(Mutex<Vec<BroadcastJob>>);

    #[async_trait]
    impl Broadcaster for Jobs {
        async fn start(&self, job: BroadcastJob) -> Result<(), DeferError> {
            self.0.lock().unwrap().push(job);
            Ok(())
        }
    }

    fn world() -> (Services, Fakes, Arc<Jobs>) {
        let settings = CoreSettings {
            admin_ids: vec![OPERATOR],
            ..CoreSettings::default()
        };
        let (mut svc, fakes) = services(settings);
        let jobs = Arc::new(Jobs::default());
        svc.broadcaster = Some(jobs.clone());
        (svc, fakes, jobs)
    }

    fn update(n: i64, user: i64, body: serde_json::Value) -> Update {
        let mut u = json!({ "update_id": n });
        let from = json!({"id": user, "is_bot": false, "first_name": "A", "language_code": "en"});
        match body {
            serde_json::Value::String(text) => {
                u["message"] = json!({"message_id": n, "from": from, "date": 0, "text": text,
                    "chat": {"id": user, "type": "private"}});
            }
            data => {
                u["callback_query"] = json!({"id": format!("cb{n}"), "from": from,
                    "data": data["data"], "message": {"message_id": data["message"], "date": 0,
                    "chat": {"id": user, "type": "private"}}});
            }
        }
        serde_json::from_value(u).unwrap()
    }

    async fn say(svc: &Services, n: i64, user: i64, text: &str) {
        handle_update(svc, &update(n, user, json!(text)))
            .await
            .unwrap();
    }

    async fn press(svc: &Services, n: i64, user: i64, message: MessageId, data: &str) {
        let u = update(n, user, json!({"data": data, "message": message.0}));
        handle_update(svc, &u).await.unwrap();
    }

    #[tokio::test]
    async fn operator_confirms_and_the_job_is_handed_over_once() {
        let (svc, f, jobs) = world();
        say(&svc, 1, USER, "/help").await; // a second user of the bot
        say(&svc, 2, OPERATOR, "/broadcast").await;
        let (_, asked, _) = f.telegram.last_sent(ChatId(OPERATOR)).unwrap();
        assert_eq!(asked, texts::broadcast::ask(Lang::En));
        say(&svc, 3, OPERATOR, "Maintenance at 23:00").await;
        let (confirm, text, _) = f.telegram.last_sent(ChatId(OPERATOR)).unwrap();
        assert_eq!(
            text,
            texts::broadcast::confirm(Lang::En, 2, "Maintenance at 23:00")
        );
        press(&svc, 4, OPERATOR, confirm, &Callback::BroadcastGo.data()).await;
        press(&svc, 5, OPERATOR, confirm, &Callback::BroadcastGo.data()).await;
        let handed = jobs.0.lock().unwrap().clone();
        assert_eq!(
            handed,
            vec![BroadcastJob {
                operator_chat: ChatId(OPERATOR),
                lang: Lang::En,
                text: "Maintenance at 23:00".into(),
            }]
        );
    }

    #[tokio::test]
    async fn inline_text_and_decline() {
        let (svc, f, jobs) = world();
        say(&svc, 1, OPERATOR, "/broadcast Hello all").await;
        let (confirm, text, _) = f.telegram.last_sent(ChatId(OPERATOR)).unwrap();
        assert!(text.contains("Hello all"), "{text}");
        press(&svc, 2, OPERATOR, confirm, &Callback::BroadcastNo.data()).await;
        let (_, text, _) = f.telegram.last_sent(ChatId(OPERATOR)).unwrap();
        assert_eq!(text, texts::broadcast::declined(Lang::En));
        assert!(jobs.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn for_others_it_is_ordinary_text() {
        let (svc, f, jobs) = world();
        say(&svc, 1, USER, "/broadcast Hello all").await;
        let (_, broadcast_answer, _) = f.telegram.last_sent(ChatId(USER)).unwrap();
        say(&svc, 2, USER, "/nosuch Hello all").await;
        let (_, unknown_answer, _) = f.telegram.last_sent(ChatId(USER)).unwrap();
        assert_eq!(broadcast_answer, unknown_answer);
        press(&svc, 3, USER, MessageId(1), &Callback::BroadcastGo.data()).await;
        assert!(jobs.0.lock().unwrap().is_empty());
    }
}
