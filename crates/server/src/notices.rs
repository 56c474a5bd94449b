//! `DetachedTelegram`: the mailing engine's Telegram on the server. The engine's messages to
//! the user (progress edits, the pause notice, the report) are handed to a delivery task per
//! chat and the engine's step goes on at once, so Telegram's 429 waits (up to minutes inside
//! [`HttpTelegram`]) or a slow Bot API never delay or stop a post to WhatsApp.
//!
//! A chat's notices go out in the order they were given; an edit of a message that is still
//! waiting for its turn is replaced by the newer one (only the latest progress matters).
//! A `sendMessage` waits briefly for its answer, since the engine records the id of a
//! progress message it had to send itself (once per mailing at most: the start message is
//! the progress message); past that the message is still delivered, in the background, and the
//! caller is told it has no id yet. While a chat has notices waiting, [`TelegramApi::can_send_now`]
//! says no, and the engine sheds its progress update instead of queueing it.

use crate::telegram::HttpTelegram;
use groupcast_core::ports::{async_trait, PhotoInput, SentPhoto, TelegramApi, TgFile};
use groupcast_core::telegram::{InlineKeyboardMarkup, MessageId, ReplyMarkup, TelegramError};
use groupcast_core::ChatId;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// How long a `sendMessage` waits for its answer before it is left to the background.
const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// One message to the user, waiting for its turn.
enum Notice {
    Send {
        text: String,
        markup: Option<ReplyMarkup>,
        answer: oneshot::Sender<Result<MessageId, TelegramError>>,
    },
    Edit {
        message: MessageId,
        text: String,
        markup: Option<InlineKeyboardMarkup>,
    },
    EditMarkup {
        message: MessageId,
        markup: InlineKeyboardMarkup,
    },
}

#[derive(Default)]
struct Queues {
    /// Per chat, the notices not yet taken by its delivery task.
    waiting: HashMap<i64, VecDeque<Notice>>,
    /// Chats whose delivery task is running.
    busy: std::collections::HashSet<i64>,
}

/// The engine's [`TelegramApi`]: notices are delivered in the background (see the module).
pub struct DetachedTelegram {
    inner: Arc<HttpTelegram>,
    queues: Arc<Mutex<Queues>>,
    /// Woken whenever a chat's delivery task runs dry.
    idle: Arc<Notify>,
}

impl DetachedTelegram {
    pub fn new(inner: Arc<HttpTelegram>) -> Arc<DetachedTelegram> {
        Arc::new(DetachedTelegram {
            inner,
            queues: Arc::new(Mutex::new(Queues::default())),
            idle: Arc::new(Notify::new()),
        })
    }

    /// Waits (at most `grace`) until every notice handed over was delivered or given up on;
    /// `false` when some were still waiting.
    pub async fn flush(&self, grace: Duration) -> bool {
        let drained = async {
            loop {
                let idle = self.idle.notified();
                if self.lock().busy.is_empty() {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(grace, drained).await.is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a notice for `chat` (an edit replaces a waiting edit of the same message) and
    /// starts the chat's delivery task if none runs.
    fn hand_over(&self, chat: i64, notice: Notice) {
        let mut q = self.lock();
        let waiting = q.waiting.entry(chat).or_default();
        let replaced = match &notice {
            Notice::Edit { message, .. } => waiting
                .iter_mut()
                .find(|n| matches!(n, Notice::Edit { message: m, .. } if m == message)),
            _ => None,
        };
        match replaced {
            Some(older) => *older = notice,
            None => waiting.push_back(notice),
        }
        if q.busy.insert(chat) {
            let inner = Arc::clone(&self.inner);
            let queues = Arc::clone(&self.queues);
            let idle = Arc::clone(&self.idle);
            tokio::spawn(deliver(inner, queues, idle, chat));
        }
    }
}

/// The delivery task of one chat: takes its notices in order until none is left.
async fn deliver(
    inner: Arc<HttpTelegram>,
    queues: Arc<Mutex<Queues>>,
    idle: Arc<Notify>,
    chat: i64,
) {
    loop {
        let next = {
            let mut q = queues.lock().unwrap_or_else(|p| p.into_inner());
            match q.waiting.get_mut(&chat).and_then(VecDeque::pop_front) {
                Some(n) => n,
                None => {
                    q.waiting.remove(&chat);
                    q.busy.remove(&chat);
                    idle.notify_waiters();
                    return;
                }
            }
        };
        let chat_id = ChatId(chat);
        match next {
            Notice::Send {
                text,
                markup,
                answer,
            } => {
                let sent = inner.send_message(chat_id, &text, markup.as_ref()).await;
                if let Err(e) = &sent {
                    tracing::warn!(chat, error = %e, "mailing notice not delivered");
                }
                let _ = answer.send(sent);
            }
            Notice::Edit {
                message,
                text,
                markup,
            } => {
                let edited = inner
                    .edit_message_text(chat_id, message, &text, markup.as_ref())
                    .await;
                if let Err(e) = edited.filter_not_modified() {
                    tracing::warn!(chat, error = %e, "progress edit not delivered");
                }
            }
            Notice::EditMarkup { message, markup } => {
                if let Err(e) = inner
                    .edit_message_reply_markup(chat_id, message, &markup)
                    .await
                    .filter_not_modified()
                {
                    tracing::warn!(chat, error = %e, "keyboard edit not delivered");
                }
            }
        }
    }
}

/// An edit that changed nothing is no failure.
trait NotModified {
    fn filter_not_modified(self) -> Result<(), TelegramError>;
}

impl NotModified for Result<(), TelegramError> {
    fn filter_not_modified(self) -> Result<(), TelegramError> {
        match self {
            Err(e) if e.is_not_modified() => Ok(()),
            other => other,
        }
    }
}

#[async_trait]
impl TelegramApi for DetachedTelegram {
    async fn send_message(
        &self,
        chat: ChatId,
        text: &str,
        markup: Option<&ReplyMarkup>,
    ) -> Result<MessageId, TelegramError> {
        let (answer, answered) = oneshot::channel();
        self.hand_over(
            chat.0,
            Notice::Send {
                text: text.to_string(),
                markup: markup.cloned(),
                answer,
            },
        );
        match tokio::time::timeout(ANSWER_WAIT, answered).await {
            Ok(Ok(sent)) => sent,
            Ok(Err(_)) => Err(TelegramError::Network(
                "sendMessage: the delivery task stopped".into(),
            )),
            Err(_) => Err(TelegramError::Network(
                "sendMessage: not answered yet, delivered in the background".into(),
            )),
        }
    }

    async fn edit_message_text(
        &self,
        chat: ChatId,
        message: MessageId,
        text: &str,
        markup: Option<&InlineKeyboardMarkup>,
    ) -> Result<(), TelegramError> {
        self.hand_over(
            chat.0,
            Notice::Edit {
                message,
                text: text.to_string(),
                markup: markup.cloned(),
            },
        );
        Ok(())
    }

    async fn edit_message_reply_markup(
        &self,
        chat: ChatId,
        message: MessageId,
        markup: &InlineKeyboardMarkup,
    ) -> Result<(), TelegramError> {
        self.hand_over(
            chat.0,
            Notice::EditMarkup {
                message,
                markup: markup.clone(),
            },
        );
        Ok(())
    }

    async fn answer_callback_query(
        &self,
        id: &str,
        text: Option<&str>,
    ) -> Result<(), TelegramError> {
        self.inner.answer_callback_query(id, text).await
    }

    async fn get_file(&self, file_id: &str) -> Result<TgFile, TelegramError> {
        self.inner.get_file(file_id).await
    }

    async fn download_file(&self, file_path: &str) -> Result<Vec<u8>, TelegramError> {
        self.inner.download_file(file_path).await
    }

    async fn send_photo(
        &self,
        chat: ChatId,
        photo: PhotoInput<'_>,
        caption: Option<&str>,
        markup: Option<&ReplyMarkup>,
    ) -> Result<SentPhoto, TelegramError> {
        self.inner.send_photo(chat, photo, caption, markup).await
    }

    async fn send_document(
        &self,
        chat: ChatId,
        file_name: &str,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> Result<MessageId, TelegramError> {
        self.inner
            .send_document(chat, file_name, bytes, caption)
            .await
    }

    /// Whether a notice to `chat` would go out at once: nothing of the chat's is waiting or on
    /// its way, and Telegram's limits let it through. The engine sheds a progress update
    /// otherwise (the next one says the same, later), so notices never pile up behind a slow
    /// or rate-limited chat, and a `sendMessage` never waits behind others.
    fn can_send_now(&self, chat: ChatId) -> bool {
        !self.lock().busy.contains(&chat.0) && self.inner.can_send_now(chat)
    }
}
