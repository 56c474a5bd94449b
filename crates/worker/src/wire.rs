//! Pure helpers of the Worker's HTTP edges, tested natively: the shapes of the queue and
//! runner messages, and the scrubbing of the bot token from Telegram errors (bodies and
//! decoding are the core's `telegram::api`, the Wappi client is the core's `wappi::client`,
//! form decoding is the core's `payments::form_pairs`, the secret header check is `http.rs`).

use groupcast_core::telegram::TelegramError;
use serde::{Deserialize, Serialize};

/// The one message shape on `MAILING_QUEUE`: "a runner should drive this mailing".
/// Sent by the webhook when a mailing starts or is resumed, re-sent by the Cron recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailingTask {
    pub mailing_id: i64,
}

/// A message on `MAILING_QUEUE`: `{"mailing_id": 42}` (a runner should drive that mailing) or
/// `{"collage": {"user_id", "chat_id", "requested_at"}}` (🌅 pressed: build and preview the
/// user's collage, see `groupcast_core::ports::Deferrer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueueTask {
    Mailing(MailingTask),
    Collage {
        collage: groupcast_core::ports::CollageJob,
    },
}

/// The body of `POST /start` and `POST /cancel` to a `ProfileRunner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerCommand {
    pub mailing_id: i64,
}

/// Replaces every occurrence of `secret` in `text` by `***` (belt and braces for error texts).
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "***")
    }
}

/// Replaces the bot token in whatever text a Telegram error carries.
pub fn scrub_telegram(err: TelegramError, token: &str) -> TelegramError {
    match err {
        TelegramError::Api { code, description } => TelegramError::Api {
            code,
            description: scrub(&description, token),
        },
        TelegramError::Network(s) => TelegramError::Network(scrub(&s, token)),
        TelegramError::InvalidJson(s) => TelegramError::InvalidJson(scrub(&s, token)),
        e @ TelegramError::RetryAfter(_) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_shapes() {
        let t: MailingTask = serde_json::from_str(r#"{"mailing_id":42}"#).unwrap();
        assert_eq!(t.mailing_id, 42);
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"mailing_id":42}"#);
        assert!(serde_json::from_str::<MailingTask>("{}").is_err());
    }

    #[test]
    fn queue_task_shapes() {
        let m: QueueTask = serde_json::from_str(r#"{"mailing_id":7}"#).unwrap();
        assert_eq!(m, QueueTask::Mailing(MailingTask { mailing_id: 7 }));
        let c: QueueTask =
            serde_json::from_str(r#"{"collage":{"user_id":5,"chat_id":5,"requested_at":1000}}"#)
                .unwrap();
        let QueueTask::Collage { collage } = &c else {
            panic!("{c:?}")
        };
        assert_eq!((collage.user_id, collage.requested_at), (5, 1000));
        let again: QueueTask = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        assert!(serde_json::from_str::<QueueTask>(r#"{"collage":{}}"#).is_err());
    }

    #[test]
    fn scrubbing() {
        assert_eq!(scrub("bot123:abc failed", "123:abc"), "bot*** failed");
        assert_eq!(scrub("nothing", ""), "nothing");
    }

    #[test]
    fn telegram_errors_are_scrubbed() {
        let e = scrub_telegram(TelegramError::Network("bot1:x failed".into()), "1:x");
        assert_eq!(e, TelegramError::Network("bot*** failed".into()));
    }
}
