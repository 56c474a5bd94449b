//! The recording Telegram: records sends and edits, hands out increasing message ids and
//! answers "message is not modified" as the Bot API does.

use super::*;

/// One recorded (successful) Telegram call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TgCall {
    Send {
        at: i64,
        chat: ChatId,
        id: MessageId,
        text: String,
        markup: Option<ReplyMarkup>,
    },
    Edit {
        at: i64,
        chat: ChatId,
        id: MessageId,
        text: String,
        markup: Option<InlineKeyboardMarkup>,
    },
    EditMarkup {
        at: i64,
        chat: ChatId,
        id: MessageId,
        markup: InlineKeyboardMarkup,
    },
    Answer {
        at: i64,
        id: String,
        text: Option<String>,
    },
    /// A `sendPhoto`: `photo` is the file id sent, or `upload:<n bytes>` for an upload.
    Photo {
        at: i64,
        chat: ChatId,
        id: MessageId,
        photo: String,
        caption: Option<String>,
    },
    GetFile {
        at: i64,
        file_id: String,
    },
    Download {
        at: i64,
        path: String,
    },
    /// A `sendDocument` upload.
    Document {
        at: i64,
        chat: ChatId,
        id: MessageId,
        file_name: String,
        bytes: Vec<u8>,
        caption: Option<String>,
    },
}

impl TgCall {
    pub fn at(&self) -> i64 {
        match self {
            TgCall::Send { at, .. }
            | TgCall::Edit { at, .. }
            | TgCall::EditMarkup { at, .. }
            | TgCall::Answer { at, .. }
            | TgCall::Photo { at, .. }
            | TgCall::GetFile { at, .. }
            | TgCall::Download { at, .. }
            | TgCall::Document { at, .. } => *at,
        }
    }

    /// The text of a send or an edit.
    pub fn text(&self) -> Option<&str> {
        match self {
            TgCall::Send { text, .. } | TgCall::Edit { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// A message as the chat shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TgMessage {
    pub text: String,
    pub keyboard: InlineKeyboardMarkup,
}

#[derive(Default)]
struct TgInner {
    calls: Vec<TgCall>,
    last_id: i64,
    messages: HashMap<(ChatId, MessageId), TgMessage>,
    failures: VecDeque<TelegramError>,
    busy: bool,
    /// Files `getFile` knows: file id → (file path, bytes).
    files: HashMap<String, (String, Vec<u8>)>,
    /// Downloads that fail (by file id).
    failing_downloads: HashSet<String>,
}

/// A Telegram that records what the bot says. Message ids count up from 1001. Edits follow
/// the Bot API: an unknown message is "message to edit not found", the same text and keyboard
/// again is "message is not modified", and `editMessageText` without a keyboard removes it.
pub struct RecordingTelegram {
    clock: FakeClock,
    inner: Mutex<TgInner>,
}

fn not_found() -> TelegramError {
    TelegramError::Api {
        code: 400,
        description: "Bad Request: message to edit not found".into(),
    }
}

fn not_modified() -> TelegramError {
    TelegramError::Api {
        code: 400,
        description: "Bad Request: message is not modified: specified new message content and reply markup are exactly the same".into(),
    }
}

impl RecordingTelegram {
    pub fn new(clock: FakeClock) -> Self {
        RecordingTelegram {
            clock,
            inner: Mutex::new(TgInner {
                last_id: 1000,
                ..TgInner::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TgInner> {
        lock(&self.inner)
    }

    /// Makes the next send or edit fail with `e` (not recorded).
    pub fn fail_next(&self, e: TelegramError) {
        self.lock().failures.push_back(e);
    }

    /// Registers a file that `get_file` and `download_file` serve.
    pub fn add_file(&self, file_id: &str, bytes: Vec<u8>) {
        let mut inner = self.lock();
        let path = format!("photos/file_{}.jpg", inner.files.len() + 1);
        inner.files.insert(file_id.to_string(), (path, bytes));
    }

    /// Makes downloads of this file fail (a network error).
    pub fn fail_download(&self, file_id: &str) {
        self.lock().failing_downloads.insert(file_id.to_string());
    }

    /// The `sendPhoto` calls to a chat: (photo, caption).
    pub fn photos_sent(&self, chat: ChatId) -> Vec<(String, Option<String>)> {
        self.lock()
            .calls
            .iter()
            .filter_map(|c| match c {
                TgCall::Photo {
                    chat: c,
                    photo,
                    caption,
                    ..
                } if *c == chat => Some((photo.clone(), caption.clone())),
                _ => None,
            })
            .collect()
    }

    /// The `sendDocument` calls to a chat: (file name, bytes, caption).
    pub fn documents_sent(&self, chat: ChatId) -> Vec<(String, Vec<u8>, Option<String>)> {
        self.lock()
            .calls
            .iter()
            .filter_map(|c| match c {
                TgCall::Document {
                    chat: c,
                    file_name,
                    bytes,
                    caption,
                    ..
                } if *c == chat => Some((file_name.clone(), bytes.clone(), caption.clone())),
                _ => None,
            })
            .collect()
    }

    /// What `can_send_now` answers for every chat (`true` by default).
    pub fn set_busy(&self, busy: bool) {
        self.lock().busy = busy;
    }

    /// A message the bot sent earlier (outside the test), e.g. one whose button gets pressed.
    pub fn seed_message(
        &self,
        chat: ChatId,
        text: &str,
        keyboard: InlineKeyboardMarkup,
    ) -> MessageId {
        let mut inner = self.lock();
        inner.last_id += 1;
        let id = MessageId(inner.last_id);
        inner.messages.insert(
            (chat, id),
            TgMessage {
                text: text.into(),
                keyboard,
            },
        );
        id
    }

    pub fn calls(&self) -> Vec<TgCall> {
        self.lock().calls.clone()
    }

    /// The texts sent to `chat` (new messages only), in order.
    pub fn sent_texts(&self, chat: ChatId) -> Vec<String> {
        self.lock()
            .calls
            .iter()
            .filter_map(|c| match c {
                TgCall::Send { chat: c, text, .. } if *c == chat => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// The last message sent to `chat` (text and markup).
    pub fn last_sent(&self, chat: ChatId) -> Option<(MessageId, String, Option<ReplyMarkup>)> {
        self.lock().calls.iter().rev().find_map(|c| match c {
            TgCall::Send {
                chat: c,
                id,
                text,
                markup,
                ..
            } if *c == chat => Some((*id, text.clone(), markup.clone())),
            _ => None,
        })
    }

    /// The text edits of one message: (time, text).
    pub fn edits_of(&self, chat: ChatId, id: MessageId) -> Vec<(i64, String)> {
        self.lock()
            .calls
            .iter()
            .filter_map(|c| match c {
                TgCall::Edit {
                    at,
                    chat: c,
                    id: i,
                    text,
                    ..
                } if *c == chat && *i == id => Some((*at, text.clone())),
                _ => None,
            })
            .collect()
    }

    /// A message as it shows now.
    pub fn message(&self, chat: ChatId, id: MessageId) -> Option<TgMessage> {
        self.lock().messages.get(&(chat, id)).cloned()
    }

    fn take_failure(&self) -> Result<(), TelegramError> {
        match self.lock().failures.pop_front() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl TelegramApi for RecordingTelegram {
    async fn send_message(
        &self,
        chat: ChatId,
        text: &str,
        markup: Option<&ReplyMarkup>,
    ) -> Result<MessageId, TelegramError> {
        self.take_failure()?;
        let at = self.clock.now();
        let mut inner = self.lock();
        inner.last_id += 1;
        let id = MessageId(inner.last_id);
        let keyboard = match markup {
            Some(ReplyMarkup::Inline(k)) => k.clone(),
            _ => InlineKeyboardMarkup::default(),
        };
        inner.messages.insert(
            (chat, id),
            TgMessage {
                text: text.into(),
                keyboard,
            },
        );
        inner.calls.push(TgCall::Send {
            at,
            chat,
            id,
            text: text.into(),
            markup: markup.cloned(),
        });
        Ok(id)
    }

    async fn edit_message_text(
        &self,
        chat: ChatId,
        message: MessageId,
        text: &str,
        markup: Option<&InlineKeyboardMarkup>,
    ) -> Result<(), TelegramError> {
        self.take_failure()?;
        let at = self.clock.now();
        let mut inner = self.lock();
        let keyboard = markup.cloned().unwrap_or_default();
        let shown = inner
            .messages
            .get_mut(&(chat, message))
            .ok_or_else(not_found)?;
        if shown.text == text && shown.keyboard == keyboard {
            return Err(not_modified());
        }
        *shown = TgMessage {
            text: text.into(),
            keyboard,
        };
        inner.calls.push(TgCall::Edit {
            at,
            chat,
            id: message,
            text: text.into(),
            markup: markup.cloned(),
        });
        Ok(())
    }

    async fn edit_message_reply_markup(
        &self,
        chat: ChatId,
        message: MessageId,
        markup: &InlineKeyboardMarkup,
    ) -> Result<(), TelegramError> {
        self.take_failure()?;
        let at = self.clock.now();
        let mut inner = self.lock();
        let shown = inner
            .messages
            .get_mut(&(chat, message))
            .ok_or_else(not_found)?;
        if &shown.keyboard == markup {
            return Err(not_modified());
        }
        shown.keyboard = markup.clone();
        inner.calls.push(TgCall::EditMarkup {
            at,
            chat,
            id: message,
            markup: markup.clone(),
        });
        Ok(())
    }

    async fn answer_callback_query(
        &self,
        id: &str,
        text: Option<&str>,
    ) -> Result<(), TelegramError> {
        let at = self.clock.now();
        self.lock().calls.push(TgCall::Answer {
            at,
            id: id.into(),
            text: text.map(str::to_string),
        });
        Ok(())
    }

    fn can_send_now(&self, _chat: ChatId) -> bool {
        !self.lock().busy
    }

    async fn get_file(&self, file_id: &str) -> Result<TgFile, TelegramError> {
        self.take_failure()?;
        let at = self.clock.now();
        let mut inner = self.lock();
        inner.calls.push(TgCall::GetFile {
            at,
            file_id: file_id.into(),
        });
        match inner.files.get(file_id) {
            Some((path, bytes)) => Ok(TgFile {
                file_path: Some(path.clone()),
                file_size: Some(bytes.len() as u64),
            }),
            None => Err(TelegramError::Api {
                code: 400,
                description: "Bad Request: invalid file_id".into(),
            }),
        }
    }

    async fn download_file(&self, file_path: &str) -> Result<Vec<u8>, TelegramError> {
        let at = self.clock.now();
        let mut inner = self.lock();
        inner.calls.push(TgCall::Download {
            at,
            path: file_path.into(),
        });
        let found = inner
            .files
            .iter()
            .find(|(_, (path, _))| path == file_path)
            .map(|(id, (_, bytes))| (id.clone(), bytes.clone()));
        match found {
            Some((id, _)) if inner.failing_downloads.contains(&id) => Err(TelegramError::Network(
                "file download: connection reset".into(),
            )),
            Some((_, bytes)) => Ok(bytes),
            None => Err(TelegramError::Api {
                code: 404,
                description: "Not Found".into(),
            }),
        }
    }

    async fn send_photo(
        &self,
        chat: ChatId,
        photo: PhotoInput<'_>,
        caption: Option<&str>,
        markup: Option<&ReplyMarkup>,
    ) -> Result<SentPhoto, TelegramError> {
        self.take_failure()?;
        let at = self.clock.now();
        let mut inner = self.lock();
        inner.last_id += 1;
        let id = MessageId(inner.last_id);
        let (shown, file_id) = match photo {
            PhotoInput::FileId(f) => (f.to_string(), f.to_string()),
            PhotoInput::Jpeg(bytes) => {
                let file_id = format!("uploaded-{}", id.0);
                let path = format!("photos/upload_{}.jpg", id.0);
                inner.files.insert(file_id.clone(), (path, bytes.to_vec()));
                (format!("upload:{}", bytes.len()), file_id)
            }
        };
        let keyboard = match markup {
            Some(ReplyMarkup::Inline(k)) => k.clone(),
            _ => InlineKeyboardMarkup::default(),
        };
        inner.messages.insert(
            (chat, id),
            TgMessage {
                text: caption.unwrap_or_default().into(),
                keyboard,
            },
        );
        inner.calls.push(TgCall::Photo {
            at,
            chat,
            id,
            photo: shown,
            caption: caption.map(str::to_string),
        });
        Ok(SentPhoto {
            message_id: id,
            file_id,
        })
    }

    async fn send_document(
        &self,
        chat: ChatId,
        file_name: &str,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> Result<MessageId, TelegramError> {
        self.take_failure()?;
        let at = self.clock.now();
        let mut inner = self.lock();
        inner.last_id += 1;
        let id = MessageId(inner.last_id);
        inner.messages.insert(
            (chat, id),
            TgMessage {
                text: caption.unwrap_or_default().into(),
                keyboard: InlineKeyboardMarkup::default(),
            },
        );
        inner.calls.push(TgCall::Document {
            at,
            chat,
            id,
            file_name: file_name.into(),
            bytes: bytes.to_vec(),
            caption: caption.map(str::to_string),
        });
        Ok(id)
    }
}
