//! `FakeTelegram`: a local fake of the Telegram Bot API for end-to-end tests, faithful to
//! what the real server answers (envelopes, error texts, status codes, long polling).
//!
//! It listens on `127.0.0.1:0`, accepts any token (recording which one was used), records
//! every call, keeps the messages the bot sent with their edits, and checks the bot's pace
//! against Telegram's limits (about 1 message per second per chat with bursts of 3, 30 per
//! second overall, `retry_after` honoured), counting violations instead of rejecting them
//! unless strict mode is on. Tests drive the bot with [`FakeTelegram::push_update`] (for
//! `getUpdates`) or [`FakeTelegram::deliver_webhook`], build updates with the builders, and
//! wait for answers with [`FakeTelegram::wait_for_message`] rather than with sleeps.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// One recorded Bot API request.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method as written in the URL (`sendMessage`).
    pub method: String,
    pub token: String,
    /// The parameters: the JSON body, or form / query / multipart fields as strings.
    pub body: Value,
    pub at: Instant,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// A message the bot sent, or one edit it made.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    pub message_id: i64,
    /// The text, or a photo's caption (`""` when it has none).
    pub text: String,
    /// The `reply_markup` as the bot sent it (inline or reply keyboard).
    pub reply_markup: Option<Value>,
    pub at_ms: i64,
    /// For `sendPhoto`: the file_id of the largest size.
    pub photo: Option<String>,
}

/// A file the bot uploaded with `sendDocument`.
#[derive(Debug, Clone, PartialEq)]
pub struct SentDocument {
    pub message_id: i64,
    pub chat_id: i64,
    /// The `filename` of the uploaded part.
    pub file_name: String,
    /// The `Content-Type` of the uploaded part, if it had one.
    pub mime_type: Option<String>,
    pub bytes: Vec<u8>,
    pub caption: Option<String>,
    pub at_ms: i64,
}

/// Which Telegram limit the bot overstepped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// More than about 1 message per second to one chat (bursts of 3 allowed; 20 a minute
    /// for groups).
    ChatRate,
    /// More than 30 messages in a second overall.
    GlobalRate,
    /// A send to a chat before the `retry_after` of an earlier 429 had passed.
    IgnoredRetryAfter,
}

/// A send that broke one of Telegram's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    pub method: String,
    pub chat_id: i64,
    pub at_ms: i64,
}

/// The webhook the bot registered with `setWebhook`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub secret_token: Option<String>,
}

/// The fake server. Clones share the same server; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct FakeTelegram {
    shared: Arc<Shared>,
    base_url: String,
    http: reqwest::Client,
    _server: Arc<ServerTask>,
}

struct ServerTask(tokio::task::JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Shared {
    inner: Mutex<Inner>,
    /// Woken on every change (a call, a pushed update), for long polls and waiters.
    changed: Notify,
    started: Instant,
}

// ---------------------------------------------------------------------------------------------
// Limits (as Telegram's Bot FAQ states them) and the fake's tolerance for network jitter.

const CHAT_INTERVAL_MS: f64 = 1000.0;
const GROUP_INTERVAL_MS: f64 = 3000.0;
const CHAT_BURST: f64 = 3.0;
const GLOBAL_PER_SEC: usize = 30;
const JITTER_MS: f64 = 100.0;
const GLOBAL_JITTER_MS: i64 = 50;
const TEXT_LIMIT: usize = 4096;
const CAPTION_LIMIT: usize = 1024;
const NOT_MODIFIED: &str = "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message";
const QUERY_INVALID: &str =
    "Bad Request: query is too old and response timeout expired or query ID is invalid";

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    /// Updates not yet confirmed, by `update_id`.
    queue: VecDeque<Value>,
    next_update_id: i64,
    allowed_updates: Option<Vec<String>>,
    /// Bumped by every `getUpdates`; an older long poll that sees a newer one answers 409.
    poll_generation: u64,
    webhook: Option<Webhook>,
    /// `last_error_date` (unix s) and `last_error_message` of `getWebhookInfo`.
    webhook_error: Option<(i64, String)>,
    chats: HashMap<i64, ChatState>,
    /// Callback query ids seen, with the answer once given.
    callbacks: HashMap<String, Option<Value>>,
    next_callback: u64,
    files: HashMap<String, StoredFile>,
    next_file: u64,
    /// Monotonic ms of recent sends, for the global limit.
    recent_sends: VecDeque<i64>,
    violations: Vec<Violation>,
    strict: bool,
    required_token: Option<String>,
    /// While set, file downloads wait (a slow download holding an update's handling).
    files_held: bool,
    /// File downloads begun, held ones included.
    file_downloads: usize,
}

#[derive(Default)]
struct ChatState {
    /// The chat exists for the bot (the user wrote to it, or a test added it).
    known: bool,
    /// The chat object as the user's updates carried it.
    object: Option<Value>,
    last_message_id: i64,
    user_messages: HashSet<i64>,
    /// The bot's messages as they stand now.
    messages: BTreeMap<i64, Value>,
    sent: Vec<SentMessage>,
    edits: Vec<SentMessage>,
    /// Documents uploaded to the chat, in order.
    documents: Vec<SentDocument>,
    /// How far `wait_for_message` has read `sent`.
    cursor: usize,
    fail_next: Option<(u64, u32)>,
    /// The next sends answered with this HTTP status (a 5xx), and how many.
    fail_status: Option<(u16, u32)>,
    /// Monotonic ms before which a send is answered 429 (after a 429).
    blocked_until: i64,
    /// GCRA theoretical arrival time, monotonic ms.
    tat: Option<f64>,
}

impl ChatState {
    fn next_message_id(&mut self) -> i64 {
        self.last_message_id += 1;
        self.last_message_id
    }
}

struct StoredFile {
    unique_id: String,
    path: String,
    bytes: Option<Vec<u8>>,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn unix_s() -> i64 {
    unix_ms() / 1000
}

fn user_object(user_id: i64) -> Value {
    json!({
        "id": user_id,
        "is_bot": false,
        "first_name": format!("User {user_id}"),
        "username": format!("user{user_id}"),
        "language_code": "ru",
    })
}

fn private_chat_object(user_id: i64) -> Value {
    json!({
        "id": user_id,
        "first_name": format!("User {user_id}"),
        "username": format!("user{user_id}"),
        "type": "private",
    })
}

/// The bot's own `User`; its id is the number before the colon of the token, as on Telegram.
fn bot_object(token: &str) -> Value {
    let id = token
        .split(':')
        .next()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(7_000_000_001);
    json!({
        "id": id,
        "is_bot": true,
        "first_name": "Groupcast Test",
        "username": "groupcast_test_bot",
        "can_join_groups": true,
        "can_read_all_group_messages": false,
        "supports_inline_queries": false,
        "can_connect_to_business": false,
        "has_main_web_app": false,
    })
}

/// The type of an update: its one key besides `update_id`.
fn update_kind(update: &Value) -> Option<&str> {
    update
        .as_object()?
        .keys()
        .map(String::as_str)
        .find(|k| *k != "update_id")
}

impl FakeTelegram {
    /// Starts the fake on a random local port, on the current tokio runtime.
    pub async fn start() -> FakeTelegram {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                next_update_id: 100_000_001,
                ..Inner::default()
            }),
            changed: Notify::new(),
            started: Instant::now(),
        });
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTelegram {
            shared,
            base_url: format!("http://{addr}"),
            http: reqwest::Client::new(),
            _server: Arc::new(ServerTask(task)),
        }
    }

    /// The base URL to give the bot as `TELEGRAM_API_URL`.
    pub fn url(&self) -> String {
        self.base_url.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    // -- driving the bot ----------------------------------------------------------------------

    /// Queues an update for `getUpdates`; assigns `update_id` when missing. Returns the id.
    pub fn push_update(&self, mut update: Value) -> i64 {
        let id = {
            let mut inner = self.lock();
            let id = inner.observe(&mut update);
            let pos = inner
                .queue
                .iter()
                .position(|u| u["update_id"].as_i64().unwrap_or(0) > id)
                .unwrap_or(inner.queue.len());
            inner.queue.insert(pos, update);
            id
        };
        self.shared.changed.notify_waiters();
        id
    }

    /// POSTs an update to the bot's webhook as Telegram does (with the secret header when
    /// given). Returns the status (0 when the connection failed) and the body.
    pub async fn deliver_webhook(
        &self,
        url: &str,
        secret: Option<&str>,
        mut update: Value,
    ) -> (u16, String) {
        self.lock().observe(&mut update);
        self.shared.changed.notify_waiters();
        let mut req = self
            .http
            .post(url)
            .json(&update)
            .timeout(Duration::from_secs(60));
        if let Some(secret) = secret {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                (status, resp.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        }
    }

    /// Makes `getWebhookInfo` report a failed delivery (`last_error_date`, `last_error_message`),
    /// as Telegram does when it could not reach the webhook.
    pub fn set_webhook_error(&self, message: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.lock().webhook_error = Some((now, message.to_string()));
    }

    /// Makes a chat known without an update from it (sends to unknown chats fail, as on
    /// Telegram when the user never wrote to the bot).
    pub fn add_chat(&self, chat_id: i64) {
        self.lock().chat(chat_id).known = true;
    }

    /// Holds every file download (begun ones and new ones) until [`FakeTelegram::release_files`]:
    /// an update whose handling downloads a photo then takes as long as the test wants.
    pub fn hold_files(&self) {
        self.lock().files_held = true;
    }

    /// Lets held and later file downloads go through.
    pub fn release_files(&self) {
        self.lock().files_held = false;
        self.shared.changed.notify_waiters();
    }

    /// How many file downloads have begun (held ones included).
    pub fn file_downloads(&self) -> usize {
        self.lock().file_downloads
    }

    /// Registers a file that `getFile` and `/file/bot<token>/<path>` serve.
    pub fn add_file(&self, file_id: &str, bytes: Vec<u8>) {
        let mut inner = self.lock();
        inner.file_entry(file_id).bytes = Some(bytes);
    }

    /// The next `count` sends to `chat_id` are refused with a 429 asking to wait
    /// `retry_after_secs`.
    pub fn fail_next_with_429(&self, chat_id: i64, retry_after_secs: u64, count: u32) {
        self.lock().chat(chat_id).fail_next = Some((retry_after_secs, count));
    }

    /// The next `count` sends to `chat_id` are answered with HTTP `status` (e.g. 502), as
    /// Telegram's front end does when the Bot API backend is down.
    pub fn fail_next_with_status(&self, chat_id: i64, status: u16, count: u32) {
        self.lock().chat(chat_id).fail_status = Some((status, count));
    }

    /// In strict mode a send that breaks a limit is refused with a 429, as Telegram may do.
    pub fn set_strict(&self, strict: bool) {
        self.lock().strict = strict;
    }

    /// Answers 401 Unauthorized to every token but this one (`None`: accept any).
    pub fn require_token(&self, token: Option<&str>) {
        self.lock().required_token = token.map(str::to_string);
    }

    // -- builders (shapes as Telegram sends them) ----------------------------------------------

    /// A text message from a user in the private chat with the bot. A leading `/command`
    /// gets its `bot_command` entity, as Telegram adds it.
    pub fn text_message(&self, user_id: i64, text: &str) -> Value {
        let command_len = if text.starts_with('/') {
            text.split_whitespace()
                .next()
                .map(|c| c.encode_utf16().count())
                .unwrap_or(0)
        } else {
            0
        };
        let entities = if command_len > 0 {
            json!([{ "offset": 0, "length": command_len, "type": "bot_command" }])
        } else {
            json!([])
        };
        self.text_message_with_entities(user_id, text, entities)
    }

    /// A text message with formatting entities (offsets in UTF-16 code units).
    pub fn text_message_with_entities(&self, user_id: i64, text: &str, entities: Value) -> Value {
        let mut message = self.user_message(user_id);
        message["text"] = json!(text);
        if entities.as_array().is_some_and(|a| !a.is_empty()) {
            message["entities"] = entities;
        }
        json!({ "message": message })
    }

    /// A press on an inline button of the bot's message `message_id` in the user's chat.
    pub fn callback(&self, user_id: i64, message_id: i64, data: &str) -> Value {
        let mut inner = self.lock();
        inner.next_callback += 1;
        let id = format!("{}", 4_738_201_000_000_000_000u64 + inner.next_callback);
        let message = inner
            .chats
            .get(&user_id)
            .and_then(|c| c.messages.get(&message_id).cloned())
            .unwrap_or_else(|| {
                // An inaccessible message: date 0, as Telegram sends it.
                json!({ "message_id": message_id, "chat": private_chat_object(user_id), "date": 0 })
            });
        json!({
            "callback_query": {
                "id": id,
                "from": user_object(user_id),
                "message": message,
                "chat_instance": format!("-{}", 8_000_000_000_000_000_000u64 + user_id.unsigned_abs()),
                "data": data,
            }
        })
    }

    /// A photo from a user: three sizes, the largest with `file_id` (register its bytes with
    /// [`FakeTelegram::add_file`]), and an optional caption.
    pub fn photo_message(&self, user_id: i64, file_id: &str, caption: Option<&str>) -> Value {
        let sizes = {
            let mut inner = self.lock();
            inner.photo_sizes(file_id)
        };
        let mut message = self.user_message(user_id);
        message["photo"] = sizes;
        if let Some(caption) = caption {
            message["caption"] = json!(caption);
        }
        json!({ "message": message })
    }

    fn user_message(&self, user_id: i64) -> Value {
        let message_id = self.lock().chat(user_id).next_message_id();
        json!({
            "message_id": message_id,
            "from": user_object(user_id),
            "chat": private_chat_object(user_id),
            "date": unix_s(),
        })
    }

    // -- what the bot did ---------------------------------------------------------------------

    /// Every call, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls of one method (`"sendMessage"`), in order.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .cloned()
            .collect()
    }

    /// The distinct tokens used, in order of first use.
    pub fn tokens(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for call in &self.lock().calls {
            if !seen.contains(&call.token) {
                seen.push(call.token.clone());
            }
        }
        seen
    }

    /// The messages and photos the bot sent to a chat, in order (as sent, before edits).
    pub fn sent_to(&self, chat_id: i64) -> Vec<SentMessage> {
        self.lock()
            .chats
            .get(&chat_id)
            .map(|c| c.sent.clone())
            .unwrap_or_default()
    }

    /// The documents the bot uploaded to a chat (`sendDocument`), in order.
    pub fn documents_to(&self, chat_id: i64) -> Vec<SentDocument> {
        self.lock()
            .chats
            .get(&chat_id)
            .map(|c| c.documents.clone())
            .unwrap_or_default()
    }

    /// The successful edits in a chat (`editMessageText`, and `editMessageReplyMarkup` with the
    /// message's current text), in order.
    pub fn edits_of(&self, chat_id: i64) -> Vec<SentMessage> {
        self.lock()
            .chats
            .get(&chat_id)
            .map(|c| c.edits.clone())
            .unwrap_or_default()
    }

    /// A bot message's text (or caption) after all edits.
    pub fn current_text(&self, chat_id: i64, message_id: i64) -> Option<String> {
        let inner = self.lock();
        let msg = inner.chats.get(&chat_id)?.messages.get(&message_id)?;
        msg.get("text")
            .or_else(|| msg.get("caption"))
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// A bot message's inline keyboard after all edits.
    pub fn current_markup(&self, chat_id: i64, message_id: i64) -> Option<Value> {
        let inner = self.lock();
        inner
            .chats
            .get(&chat_id)?
            .messages
            .get(&message_id)?
            .get("reply_markup")
            .cloned()
    }

    /// Every limit the bot broke, in order.
    pub fn violations(&self) -> Vec<Violation> {
        self.lock().violations.clone()
    }

    /// The webhook currently set.
    pub fn webhook(&self) -> Option<Webhook> {
        self.lock().webhook.clone()
    }

    /// Updates queued and not yet confirmed.
    pub fn pending_updates(&self) -> usize {
        self.lock().queue.len()
    }

    /// The `answerCallbackQuery` parameters for a callback id, once answered.
    pub fn callback_answer(&self, callback_id: &str) -> Option<Value> {
        self.lock().callbacks.get(callback_id).cloned().flatten()
    }

    // -- waiting ------------------------------------------------------------------------------

    /// The next message to `chat_id` whose text matches, after the last one an earlier call
    /// returned for that chat (a per-chat cursor: messages skipped over are passed).
    pub async fn wait_for_message(
        &self,
        chat_id: i64,
        predicate: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<SentMessage, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut inner = self.lock();
                let chat = inner.chat(chat_id);
                if let Some(i) = chat.sent[chat.cursor..]
                    .iter()
                    .position(|m| predicate(&m.text))
                {
                    let index = chat.cursor + i;
                    chat.cursor = index + 1;
                    return Ok(chat.sent[index].clone());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let inner = self.lock();
                let texts: Vec<&str> = inner
                    .chats
                    .get(&chat_id)
                    .map(|c| c.sent[c.cursor..].iter().map(|m| m.text.as_str()).collect())
                    .unwrap_or_default();
                return Err(format!(
                    "no matching message to chat {chat_id} within {timeout:?}; unread messages: {texts:?}"
                ));
            }
        }
    }

    /// Waits until `predicate` holds (checked on every change and every 20 ms).
    pub async fn wait_until(
        &self,
        predicate: impl Fn(&FakeTelegram) -> bool,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if predicate(self) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("condition not met within {timeout:?}"));
            }
            let tick = (tokio::time::Instant::now() + Duration::from_millis(20)).min(deadline);
            let _ = tokio::time::timeout_at(tick, notified).await;
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mono_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }
}

impl Inner {
    fn chat(&mut self, chat_id: i64) -> &mut ChatState {
        self.chats.entry(chat_id).or_default()
    }

    /// Learns from an update what Telegram would know (chats, message ids, callback ids) and
    /// gives it an `update_id` when it has none.
    fn observe(&mut self, update: &mut Value) -> i64 {
        let id = match update["update_id"].as_i64() {
            Some(id) => id,
            None => {
                let id = self.next_update_id;
                update["update_id"] = json!(id);
                id
            }
        };
        self.next_update_id = self.next_update_id.max(id + 1);
        let message = update
            .get("message")
            .or_else(|| update.get("edited_message"));
        if let Some(message) = message {
            if let Some(chat_id) = message["chat"]["id"].as_i64() {
                let object = message["chat"].clone();
                let chat = self.chat(chat_id);
                chat.known = true;
                chat.object = Some(object);
                if let Some(mid) = message["message_id"].as_i64() {
                    chat.last_message_id = chat.last_message_id.max(mid);
                    chat.user_messages.insert(mid);
                }
            }
        }
        if let Some(query) = update.get("callback_query") {
            if let Some(user) = query["from"]["id"].as_i64() {
                self.chat(user).known = true;
            }
            if let Some(qid) = query["id"].as_str() {
                self.callbacks.entry(qid.to_string()).or_insert(None);
            }
        }
        id
    }

    fn file_entry(&mut self, file_id: &str) -> &mut StoredFile {
        if !self.files.contains_key(file_id) {
            self.next_file += 1;
            let n = self.next_file;
            self.files.insert(
                file_id.to_string(),
                StoredFile {
                    unique_id: format!("AQADuniq{n}"),
                    path: format!("photos/file_{n}.jpg"),
                    bytes: None,
                },
            );
        }
        self.files.get_mut(file_id).expect("just inserted")
    }

    /// Three `PhotoSize`s whose largest has `file_id`; all of them become known file ids.
    fn photo_sizes(&mut self, file_id: &str) -> Value {
        let size = self
            .file_entry(file_id)
            .bytes
            .as_ref()
            .map(|b| b.len())
            .unwrap_or(54_321);
        let dims = [
            (90, 67, format!("{file_id}-s")),
            (320, 240, format!("{file_id}-m")),
            (1280, 960, file_id.to_string()),
        ];
        let sizes: Vec<Value> = dims
            .into_iter()
            .enumerate()
            .map(|(i, (w, h, id))| {
                let unique = self.file_entry(&id).unique_id.clone();
                let file_size = if i == 2 { size } else { size / (4 - i) };
                json!({ "file_id": id, "file_unique_id": unique, "file_size": file_size, "width": w, "height": h })
            })
            .collect();
        Value::Array(sizes)
    }

    fn chat_object(&self, chat_id: i64) -> Value {
        match self.chats.get(&chat_id).and_then(|c| c.object.clone()) {
            Some(object) => object,
            None if chat_id > 0 => private_chat_object(chat_id),
            None => {
                json!({ "id": chat_id, "title": format!("Group {chat_id}"), "type": "supergroup" })
            }
        }
    }

    /// Applies the limits to a send to `chat_id` at monotonic `now`: injected 429s, an
    /// earlier `retry_after` still running, the per-chat and the global rate.
    fn pace(&mut self, method: &str, chat_id: i64, now: i64, at_ms: i64) -> Result<(), ApiError> {
        let strict = self.strict;
        let mut violations = Vec::new();
        let chat = self.chat(chat_id);
        if let Some((status, count)) = chat.fail_status {
            chat.fail_status = (count > 1).then_some((status, count - 1));
            return Err(ApiError {
                code: status,
                description: "Bad Gateway".into(),
                retry_after: None,
            });
        }
        if let Some((secs, count)) = chat.fail_next {
            chat.fail_next = (count > 1).then_some((secs, count - 1));
            chat.blocked_until = chat.blocked_until.max(now + secs as i64 * 1000);
            return Err(too_many(secs));
        }
        if now < chat.blocked_until {
            let left = ((chat.blocked_until - now) as u64).div_ceil(1000);
            self.violations.push(Violation {
                kind: ViolationKind::IgnoredRetryAfter,
                method: method.to_string(),
                chat_id,
                at_ms,
            });
            return Err(too_many(left.max(1)));
        }
        let interval = if chat_id < 0 {
            GROUP_INTERVAL_MS
        } else {
            CHAT_INTERVAL_MS
        };
        let tat = chat.tat.unwrap_or(now as f64).max(now as f64);
        let ahead = tat - now as f64 - (CHAT_BURST - 1.0) * interval;
        if ahead > JITTER_MS {
            violations.push(ViolationKind::ChatRate);
            if strict {
                let secs = ((ahead / 1000.0).ceil() as u64).max(1);
                chat.blocked_until = now + secs as i64 * 1000;
                self.record(&violations, method, chat_id, at_ms);
                return Err(too_many(secs));
            }
        }
        chat.tat = Some(tat + interval);

        while self
            .recent_sends
            .front()
            .is_some_and(|&t| t <= now - 1000 + GLOBAL_JITTER_MS)
        {
            self.recent_sends.pop_front();
        }
        if self.recent_sends.len() >= GLOBAL_PER_SEC {
            violations.push(ViolationKind::GlobalRate);
            if strict {
                self.record(&violations, method, chat_id, at_ms);
                return Err(too_many(1));
            }
        }
        self.recent_sends.push_back(now);
        self.record(&violations, method, chat_id, at_ms);
        Ok(())
    }

    fn record(&mut self, kinds: &[ViolationKind], method: &str, chat_id: i64, at_ms: i64) {
        for &kind in kinds {
            self.violations.push(Violation {
                kind,
                method: method.to_string(),
                chat_id,
                at_ms,
            });
        }
    }

    /// The checks every send shares: a numeric, known chat.
    fn target_chat(&self, params: &Map<String, Value>) -> Result<i64, ApiError> {
        let chat_id = match params.get("chat_id") {
            None => return Err(bad_request("Bad Request: chat_id is empty")),
            Some(v) => int(Some(v)).ok_or_else(|| bad_request("Bad Request: chat not found"))?,
        };
        if !self.chats.get(&chat_id).is_some_and(|c| c.known) {
            return Err(bad_request("Bad Request: chat not found"));
        }
        Ok(chat_id)
    }

    fn send_message(
        &mut self,
        params: &Map<String, Value>,
        now: i64,
        at_ms: i64,
        token: &str,
    ) -> Reply {
        let text = string(params.get("text")).unwrap_or_default();
        if text.trim().is_empty() {
            return Err(bad_request("Bad Request: message text is empty"));
        }
        if text.chars().count() > TEXT_LIMIT {
            return Err(bad_request("Bad Request: message is too long"));
        }
        let markup = markup_param(params)?;
        let chat_id = self.target_chat(params)?;
        self.pace("sendMessage", chat_id, now, at_ms)?;
        let mut message = json!({
            "message_id": 0,
            "from": bot_object(token),
            "chat": self.chat_object(chat_id),
            "date": at_ms / 1000,
            "text": text,
        });
        if let Some(inline) = markup.as_ref().filter(|m| is_inline(m)) {
            message["reply_markup"] = inline.clone();
        }
        let chat = self.chat(chat_id);
        let message_id = chat.next_message_id();
        message["message_id"] = json!(message_id);
        chat.messages.insert(message_id, message.clone());
        chat.sent.push(SentMessage {
            message_id,
            text,
            reply_markup: markup,
            at_ms,
            photo: None,
        });
        ok(message)
    }

    fn send_photo(
        &mut self,
        params: &Map<String, Value>,
        uploads: &HashMap<String, Vec<u8>>,
        now: i64,
        at_ms: i64,
        token: &str,
    ) -> Reply {
        let caption = caption_param(params)?;
        let markup = markup_param(params)?;
        let chat_id = self.target_chat(params)?;
        let file_id = if let Some(bytes) = uploads.get("photo") {
            if bytes.is_empty() {
                return Err(bad_request("Bad Request: file must be non-empty"));
            }
            let id = format!("AgACAgIAAxkDAAupload{}", self.next_file + 1);
            self.file_entry(&id).bytes = Some(bytes.clone());
            id
        } else {
            match string(params.get("photo")) {
                Some(id) if self.files.contains_key(&id) => id,
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    self.file_entry(&url);
                    url
                }
                Some(_) => {
                    return Err(bad_request(
                        "Bad Request: wrong file identifier/HTTP URL specified",
                    ))
                }
                None => return Err(bad_request("Bad Request: there is no photo in the request")),
            }
        };
        self.pace("sendPhoto", chat_id, now, at_ms)?;
        let sizes = self.photo_sizes(&file_id);
        let media = Media {
            field: "photo",
            value: sizes,
            caption,
            markup,
            photo: Some(file_id),
        };
        let (_, message) = self.post_media(chat_id, token, at_ms, media);
        ok(message)
    }

    /// Posts a photo or a document message (`media.field`) to the chat: its caption shown as
    /// the message's text, inline buttons kept. Its id, and the message as answered.
    fn post_media(&mut self, chat_id: i64, token: &str, at_ms: i64, media: Media) -> (i64, Value) {
        let mut message = json!({
            "message_id": 0,
            "from": bot_object(token),
            "chat": self.chat_object(chat_id),
            "date": at_ms / 1000,
        });
        message[media.field] = media.value;
        if let Some(caption) = &media.caption {
            message["caption"] = json!(caption);
        }
        if let Some(inline) = media.markup.as_ref().filter(|m| is_inline(m)) {
            message["reply_markup"] = inline.clone();
        }
        let chat = self.chat(chat_id);
        let message_id = chat.next_message_id();
        message["message_id"] = json!(message_id);
        chat.messages.insert(message_id, message.clone());
        chat.sent.push(SentMessage {
            message_id,
            text: media.caption.unwrap_or_default(),
            reply_markup: media.markup,
            at_ms,
            photo: media.photo,
        });
        (message_id, message)
    }

    /// `sendDocument` with an uploaded file (multipart/form-data): kept with its name, type,
    /// bytes and caption; the chat shows the caption as the message's text.
    fn send_document(
        &mut self,
        params: &Map<String, Value>,
        uploads: &HashMap<String, Vec<u8>>,
        now: i64,
        at_ms: i64,
        token: &str,
    ) -> Reply {
        let caption = caption_param(params)?;
        let markup = markup_param(params)?;
        let chat_id = self.target_chat(params)?;
        let Some(bytes) = uploads.get("document") else {
            return Err(bad_request(
                "Bad Request: there is no document in the request",
            ));
        };
        if bytes.is_empty() {
            return Err(bad_request("Bad Request: file must be non-empty"));
        }
        let (file_name, mime_type) = upload_meta(params, "document");
        let file_name = file_name.unwrap_or_else(|| "document".into());
        self.pace("sendDocument", chat_id, now, at_ms)?;
        self.next_file += 1;
        let file_id = format!("BQACAgIAAxkDAAupload{}", self.next_file);
        let mut document = json!({
            "file_id": file_id,
            "file_unique_id": format!("AgADdoc{}", self.next_file),
            "file_name": file_name,
            "file_size": bytes.len(),
        });
        if let Some(mime) = &mime_type {
            document["mime_type"] = json!(mime);
        }
        let media = Media {
            field: "document",
            value: document,
            caption: caption.clone(),
            markup,
            photo: None,
        };
        let (message_id, message) = self.post_media(chat_id, token, at_ms, media);
        self.chat(chat_id).documents.push(SentDocument {
            message_id,
            chat_id,
            file_name,
            mime_type,
            bytes: bytes.clone(),
            caption,
            at_ms,
        });
        ok(message)
    }

    fn edit_message_text(&mut self, params: &Map<String, Value>, now: i64, at_ms: i64) -> Reply {
        if params.contains_key("inline_message_id") {
            return Err(bad_request("Bad Request: MESSAGE_ID_INVALID"));
        }
        let text = string(params.get("text")).unwrap_or_default();
        if text.trim().is_empty() {
            return Err(bad_request("Bad Request: text must be non-empty"));
        }
        if text.chars().count() > TEXT_LIMIT {
            return Err(bad_request("Bad Request: MESSAGE_TOO_LONG"));
        }
        let markup = markup_param(params)?;
        if markup.as_ref().is_some_and(|m| !is_inline(m)) {
            return Err(bad_request("Bad Request: inline keyboard expected"));
        }
        // An empty inline keyboard is no keyboard.
        let markup = markup.filter(|m| {
            m["inline_keyboard"]
                .as_array()
                .is_some_and(|rows| !rows.is_empty())
        });
        let chat_id = self.target_chat(params)?;
        let Some(message_id) = int(params.get("message_id")) else {
            return Err(bad_request(
                "Bad Request: message identifier is not specified",
            ));
        };
        let chat = self.chat(chat_id);
        let Some(current) = chat.messages.get(&message_id) else {
            return Err(if chat.user_messages.contains(&message_id) {
                bad_request("Bad Request: message can't be edited")
            } else {
                bad_request("Bad Request: message to edit not found")
            });
        };
        let Some(current_text) = current.get("text").and_then(Value::as_str) else {
            return Err(bad_request(
                "Bad Request: there is no text in the message to edit",
            ));
        };
        if current_text == text && current.get("reply_markup") == markup.as_ref() {
            return Err(bad_request(NOT_MODIFIED));
        }
        self.pace("editMessageText", chat_id, now, at_ms)?;
        let chat = self.chat(chat_id);
        let message = chat.messages.get_mut(&message_id).expect("checked above");
        message["text"] = json!(text);
        message["edit_date"] = json!(at_ms / 1000);
        match &markup {
            Some(m) => message["reply_markup"] = m.clone(),
            None => {
                if let Some(obj) = message.as_object_mut() {
                    obj.remove("reply_markup");
                }
            }
        }
        let result = message.clone();
        chat.edits.push(SentMessage {
            message_id,
            text,
            reply_markup: markup,
            at_ms,
            photo: None,
        });
        ok(result)
    }

    fn edit_message_reply_markup(
        &mut self,
        params: &Map<String, Value>,
        now: i64,
        at_ms: i64,
    ) -> Reply {
        if params.contains_key("inline_message_id") {
            return Err(bad_request("Bad Request: MESSAGE_ID_INVALID"));
        }
        let markup = markup_param(params)?;
        if markup.as_ref().is_some_and(|m| !is_inline(m)) {
            return Err(bad_request("Bad Request: inline keyboard expected"));
        }
        let markup = markup.filter(|m| {
            m["inline_keyboard"]
                .as_array()
                .is_some_and(|rows| !rows.is_empty())
        });
        let chat_id = self.target_chat(params)?;
        let Some(message_id) = int(params.get("message_id")) else {
            return Err(bad_request(
                "Bad Request: message identifier is not specified",
            ));
        };
        let chat = self.chat(chat_id);
        let Some(current) = chat.messages.get(&message_id) else {
            return Err(if chat.user_messages.contains(&message_id) {
                bad_request("Bad Request: message can't be edited")
            } else {
                bad_request("Bad Request: message to edit not found")
            });
        };
        if current.get("reply_markup") == markup.as_ref() {
            return Err(bad_request(NOT_MODIFIED));
        }
        self.pace("editMessageReplyMarkup", chat_id, now, at_ms)?;
        let chat = self.chat(chat_id);
        let message = chat.messages.get_mut(&message_id).expect("checked above");
        message["edit_date"] = json!(at_ms / 1000);
        match &markup {
            Some(m) => message["reply_markup"] = m.clone(),
            None => {
                if let Some(obj) = message.as_object_mut() {
                    obj.remove("reply_markup");
                }
            }
        }
        let result = message.clone();
        let text = result
            .get("text")
            .or_else(|| result.get("caption"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        chat.edits.push(SentMessage {
            message_id,
            text,
            reply_markup: markup,
            at_ms,
            photo: None,
        });
        ok(result)
    }

    fn answer_callback_query(&mut self, params: &Map<String, Value>) -> Reply {
        let id = string(params.get("callback_query_id")).unwrap_or_default();
        if string(params.get("text")).is_some_and(|t| t.chars().count() > 200) {
            return Err(bad_request("Bad Request: MESSAGE_TOO_LONG"));
        }
        match self.callbacks.get_mut(&id) {
            Some(answer @ None) => {
                *answer = Some(Value::Object(params.clone()));
                ok(json!(true))
            }
            _ => Err(bad_request(QUERY_INVALID)),
        }
    }

    fn set_webhook(&mut self, params: &Map<String, Value>) -> Reply {
        let url = string(params.get("url")).unwrap_or_default();
        let secret = string(params.get("secret_token")).filter(|s| !s.is_empty());
        if let Some(s) = &secret {
            let allowed = s.len() <= 256
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !allowed {
                return Err(bad_request(
                    "Bad Request: secret token contains unallowed characters",
                ));
            }
        }
        if let Some(list) = allowed_updates(params) {
            self.allowed_updates = Some(list);
        }
        if bool_param(params.get("drop_pending_updates")) {
            self.queue.clear();
        }
        if url.is_empty() {
            let was = self.webhook.take();
            return ok_described(
                json!(true),
                if was.is_some() {
                    "Webhook was deleted"
                } else {
                    "Webhook is already deleted"
                },
            );
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(bad_request(
                "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443",
            ));
        }
        let new = Webhook {
            url,
            secret_token: secret,
        };
        let same = self.webhook.as_ref() == Some(&new);
        self.webhook = Some(new);
        ok_described(
            json!(true),
            if same {
                "Webhook is already set"
            } else {
                "Webhook was set"
            },
        )
    }

    fn delete_webhook(&mut self, params: &Map<String, Value>) -> Reply {
        if bool_param(params.get("drop_pending_updates")) {
            self.queue.clear();
        }
        let was = self.webhook.take();
        ok_described(
            json!(true),
            if was.is_some() {
                "Webhook was deleted"
            } else {
                "Webhook is already deleted"
            },
        )
    }

    fn webhook_info(&self) -> Reply {
        let mut info = json!({
            "url": self.webhook.as_ref().map(|w| w.url.clone()).unwrap_or_default(),
            "has_custom_certificate": false,
            "pending_update_count": self.queue.len(),
        });
        if let Some((date, message)) = &self.webhook_error {
            info["last_error_date"] = json!(date);
            info["last_error_message"] = json!(message);
        }
        if self.webhook.is_some() {
            info["max_connections"] = json!(40);
            info["ip_address"] = json!("127.0.0.1");
            if let Some(list) = &self.allowed_updates {
                info["allowed_updates"] = json!(list);
            }
        }
        ok(info)
    }

    fn get_file(&mut self, params: &Map<String, Value>) -> Reply {
        let id = string(params.get("file_id")).unwrap_or_default();
        match self.files.get(&id) {
            Some(file) => {
                let mut result = json!({ "file_id": id, "file_unique_id": file.unique_id, "file_path": file.path });
                if let Some(bytes) = &file.bytes {
                    result["file_size"] = json!(bytes.len());
                }
                ok(result)
            }
            None => Err(bad_request("Bad Request: invalid file_id")),
        }
    }

    /// The updates a poll may return now: drops those below `offset` (confirmed) and those
    /// of types not allowed.
    fn take_updates(&mut self, offset: i64, limit: usize) -> Vec<Value> {
        if offset < 0 {
            let keep = offset.unsigned_abs() as usize;
            while self.queue.len() > keep {
                self.queue.pop_front();
            }
        } else if offset > 0 {
            self.queue
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
        }
        let allowed = self.allowed_updates.clone();
        let is_allowed = |u: &Value| {
            let kind = update_kind(u).unwrap_or("");
            match &allowed {
                Some(list) if !list.is_empty() => list.iter().any(|a| a == kind),
                _ => !matches!(
                    kind,
                    "chat_member" | "message_reaction" | "message_reaction_count"
                ),
            }
        };
        self.queue.retain(is_allowed);
        self.queue.iter().take(limit).cloned().collect()
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

async fn handle(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&shared, &uri, &headers, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn answer(shared: &Shared, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Reply {
    let path = uri.path().trim_start_matches('/');
    if let Some(rest) = path.strip_prefix("file/") {
        shared.lock().file_downloads += 1;
        shared.changed.notify_waiters();
        loop {
            let released = shared.changed.notified();
            if !shared.lock().files_held {
                break;
            }
            released.await;
        }
        return serve_file(shared, rest);
    }
    let Some((bot, method)) = path.split_once('/') else {
        return Err(not_found());
    };
    let Some(token) = bot.strip_prefix("bot") else {
        return Err(not_found());
    };
    let (params, uploads) = parse_params(uri.query(), headers, body)?;
    let now = shared.mono_ms();
    let at_ms = unix_ms();
    let response = {
        let mut inner = shared.lock();
        inner.calls.push(Call {
            method: method.to_string(),
            token: token.to_string(),
            body: Value::Object(params.clone()),
            at: Instant::now(),
            at_ms,
        });
        if inner.required_token.as_ref().is_some_and(|t| t != token) {
            Some(Err(fail(401, "Unauthorized")))
        } else {
            match method.to_ascii_lowercase().as_str() {
                "getupdates" => None,
                "getme" => Some(ok(bot_object(token))),
                "sendmessage" => Some(inner.send_message(&params, now, at_ms, token)),
                "sendphoto" => Some(inner.send_photo(&params, &uploads, now, at_ms, token)),
                "senddocument" => Some(inner.send_document(&params, &uploads, now, at_ms, token)),
                "editmessagetext" => Some(inner.edit_message_text(&params, now, at_ms)),
                "editmessagereplymarkup" => {
                    Some(inner.edit_message_reply_markup(&params, now, at_ms))
                }
                "answercallbackquery" => Some(inner.answer_callback_query(&params)),
                "setwebhook" => Some(inner.set_webhook(&params)),
                "deletewebhook" => Some(inner.delete_webhook(&params)),
                "getwebhookinfo" => Some(inner.webhook_info()),
                "getfile" => Some(inner.get_file(&params)),
                _ => Some(Err(not_found())),
            }
        }
    };
    shared.changed.notify_waiters();
    match response {
        Some(r) => r,
        None => get_updates(shared, &params).await,
    }
}

/// Long polling: answers at once when updates are queued, else waits for one up to
/// `timeout` seconds. A newer `getUpdates` ends an older one with 409, as on Telegram.
async fn get_updates(shared: &Shared, params: &Map<String, Value>) -> Reply {
    let offset = int(params.get("offset")).unwrap_or(0);
    let timeout = int(params.get("timeout")).unwrap_or(0).clamp(0, 3600) as u64;
    let limit = int(params.get("limit")).unwrap_or(100).clamp(1, 100) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let generation = {
        let mut inner = shared.lock();
        if inner.webhook.is_some() {
            return Err(fail(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"));
        }
        if let Some(list) = allowed_updates(params) {
            inner.allowed_updates = Some(list);
        }
        inner.poll_generation += 1;
        inner.poll_generation
    };
    // Wake an older poll so it sees it was replaced.
    shared.changed.notify_waiters();
    loop {
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut inner = shared.lock();
            if inner.poll_generation != generation {
                return Err(fail(409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"));
            }
            let updates = inner.take_updates(offset, limit);
            if !updates.is_empty() || tokio::time::Instant::now() >= deadline {
                return ok(Value::Array(updates));
            }
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

fn serve_file(shared: &Shared, rest: &str) -> Reply {
    let Some((bot, path)) = rest.split_once('/') else {
        return Err(not_found());
    };
    let Some(token) = bot.strip_prefix("bot") else {
        return Err(not_found());
    };
    let inner = shared.lock();
    if inner.required_token.as_ref().is_some_and(|t| t != token) {
        return Err(fail(401, "Unauthorized"));
    }
    match inner
        .files
        .values()
        .find(|f| f.path == path)
        .and_then(|f| f.bytes.clone())
    {
        Some(bytes) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
        }
        None => Err(not_found()),
    }
}

type Params = (Map<String, Value>, HashMap<String, Vec<u8>>);

/// The file name and type of an uploaded part, as `parse_params` records them.
fn upload_meta(params: &Map<String, Value>, field: &str) -> (Option<String>, Option<String>) {
    let meta = params.get(field);
    let text = |key: &str| {
        meta.and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    (text("file_name"), text("content_type"))
}

/// The parameters of a call from the query string and the body (JSON, form or multipart).
fn parse_params(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Params, ApiError> {
    let mut params = Map::new();
    let mut uploads = HashMap::new();
    if let Some(q) = query {
        for (k, v) in parse_form(q) {
            params.insert(k, Value::String(v));
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if body.is_empty() {
        return Ok((params, uploads));
    }
    match mime.as_str() {
        "application/json" => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => params.extend(map),
            _ => return Err(bad_request("Bad Request: can't parse JSON object")),
        },
        "application/x-www-form-urlencoded" => {
            for (k, v) in parse_form(&String::from_utf8_lossy(body)) {
                params.insert(k, Value::String(v));
            }
        }
        "multipart/form-data" => {
            let boundary = content_type
                .split(';')
                .filter_map(|p| p.trim().strip_prefix("boundary="))
                .next()
                .map(|b| b.trim_matches('"').to_string())
                .ok_or_else(|| bad_request("Bad Request: multipart boundary missing"))?;
            for part in parse_multipart(body, &boundary) {
                if part.filename.is_some() {
                    params.insert(
                        part.name.clone(),
                        json!({
                            "file_name": part.filename,
                            "content_type": part.content_type,
                            "size": part.data.len(),
                        }),
                    );
                    uploads.insert(part.name, part.data);
                } else {
                    params.insert(
                        part.name,
                        Value::String(String::from_utf8_lossy(&part.data).into_owned()),
                    );
                }
            }
        }
        _ => {}
    }
    Ok((params, uploads))
}

fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn parse_multipart(body: &[u8], boundary: &str) -> Vec<Part> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut parts = Vec::new();
    let Some(mut pos) = find(body, delimiter, 0) else {
        return parts;
    };
    loop {
        let start = pos + delimiter.len();
        if body.get(start..start + 2) == Some(b"--") {
            break;
        }
        let Some(next) = find(body, delimiter, start) else {
            break;
        };
        let section = &body[start..next];
        let section = section.strip_prefix(b"\r\n").unwrap_or(section);
        let section = section.strip_suffix(b"\r\n").unwrap_or(section);
        if let Some(split) = find(section, b"\r\n\r\n", 0) {
            let head = String::from_utf8_lossy(&section[..split]).into_owned();
            let data = section[split + 4..].to_vec();
            let disposition = head
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
                .unwrap_or("");
            let attr = |key: &str| {
                disposition.split(';').map(str::trim).find_map(|p| {
                    p.strip_prefix(key)
                        .and_then(|v| v.strip_prefix('='))
                        .map(|v| v.trim_matches('"').to_string())
                })
            };
            let content_type = head.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case("content-type")
                    .then(|| value.trim().to_string())
            });
            if let Some(name) = attr("name") {
                parts.push(Part {
                    name,
                    filename: attr("filename"),
                    content_type,
                    data,
                });
            }
        }
        pos = next;
    }
    parts
}

fn string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn bool_param(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        _ => false,
    }
}

fn allowed_updates(params: &Map<String, Value>) -> Option<Vec<String>> {
    let value = match params.get("allowed_updates")? {
        Value::String(s) => serde_json::from_str(s).ok()?,
        v => v.clone(),
    };
    value.as_array().map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    })
}

fn is_inline(markup: &Value) -> bool {
    markup.get("inline_keyboard").is_some()
}

/// `reply_markup` as JSON (a string in form requests), checked as Telegram checks it.
/// A photo or document message to post (see `post_media`).
struct Media {
    /// `photo` or `document`, and its value in the message.
    field: &'static str,
    value: Value,
    caption: Option<String>,
    markup: Option<Value>,
    /// The photo's file id (`SentMessage::photo`).
    photo: Option<String>,
}

/// The `caption` of a photo or a document, refused over Telegram's caption limit.
fn caption_param(params: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    let caption = string(params.get("caption"));
    if caption
        .as_ref()
        .is_some_and(|c| c.chars().count() > CAPTION_LIMIT)
    {
        return Err(bad_request("Bad Request: message caption is too long"));
    }
    Ok(caption)
}

fn markup_param(params: &Map<String, Value>) -> Result<Option<Value>, ApiError> {
    let markup = match params.get("reply_markup") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).map_err(|_| {
            bad_request("Bad Request: can't parse reply keyboard markup JSON object")
        })?,
        Some(v) => v.clone(),
    };
    if let Some(rows) = markup.get("inline_keyboard") {
        let rows = rows.as_array().ok_or_else(|| {
            bad_request("Bad Request: field \"inline_keyboard\" must be an Array")
        })?;
        for button in rows.iter().flat_map(|r| r.as_array().into_iter().flatten()) {
            if button["text"].as_str().is_none_or(str::is_empty) {
                return Err(bad_request(
                    "Bad Request: text buttons are unallowed in the inline keyboard",
                ));
            }
            if let Some(data) = button.get("callback_data") {
                let len = data.as_str().map(str::len).unwrap_or(0);
                if !(1..=64).contains(&len) {
                    return Err(bad_request("Bad Request: BUTTON_DATA_INVALID"));
                }
            }
        }
    } else if let Some(rows) = markup.get("keyboard") {
        if !rows.is_array() {
            return Err(bad_request(
                "Bad Request: field \"keyboard\" must be an Array",
            ));
        }
    } else if markup.get("remove_keyboard").is_none() && markup.get("force_reply").is_none() {
        return Err(bad_request(
            "Bad Request: can't parse reply keyboard markup JSON object",
        ));
    }
    Ok(Some(markup))
}

/// What a method answers: Telegram's `ok: true` envelope, or a refusal.
type Reply = Result<Response, ApiError>;

/// A refusal, sent as Telegram's `ok: false` envelope with the same HTTP status.
#[derive(Debug)]
struct ApiError {
    code: u16,
    description: String,
    retry_after: Option<u64>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::BAD_REQUEST);
        let mut body =
            json!({ "ok": false, "error_code": self.code, "description": self.description });
        if let Some(secs) = self.retry_after {
            body["parameters"] = json!({ "retry_after": secs });
        }
        (status, Json(body)).into_response()
    }
}

fn ok(result: Value) -> Reply {
    Ok(Json(json!({ "ok": true, "result": result })).into_response())
}

fn ok_described(result: Value, description: &str) -> Reply {
    Ok(Json(json!({ "ok": true, "result": result, "description": description })).into_response())
}

fn fail(code: u16, description: &str) -> ApiError {
    ApiError {
        code,
        description: description.to_string(),
        retry_after: None,
    }
}

fn bad_request(description: &str) -> ApiError {
    fail(400, description)
}

fn not_found() -> ApiError {
    fail(404, "Not Found")
}

fn too_many(retry_after: u64) -> ApiError {
    ApiError {
        code: 429,
        description: format!("Too Many Requests: retry after {retry_after}"),
        retry_after: Some(retry_after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456:TEST-token";

    async fn call(tg: &FakeTelegram, method: &str, body: Value) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}/bot{TOKEN}/{method}", tg.url()))
            .json(&body)
            .send()
            .await
            .expect("fake answers");
        (
            resp.status().as_u16(),
            resp.json().await.expect("json answer"),
        )
    }

    async fn send(tg: &FakeTelegram, chat: i64, text: &str) -> (u16, Value) {
        call(tg, "sendMessage", json!({ "chat_id": chat, "text": text })).await
    }

    #[tokio::test]
    async fn long_poll_returns_a_pushed_update_at_once() {
        let tg = FakeTelegram::start().await;
        let poller = tg.clone();
        let poll = tokio::spawn(async move {
            call(&poller, "getUpdates", json!({ "offset": 0, "timeout": 10 })).await
        });
        tg.wait_until(
            |t| t.calls_of("getUpdates").len() == 1,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let started = Instant::now();
        let id = tg.push_update(tg.text_message(42, "/start ref"));
        let (status, body) = poll.await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "long poll did not return at once"
        );
        assert_eq!(status, 200);
        let update = &body["result"][0];
        assert_eq!(update["update_id"], id);
        assert_eq!(update["message"]["chat"]["id"], 42);
        assert_eq!(update["message"]["from"]["id"], 42);
        assert_eq!(update["message"]["from"]["language_code"], "ru");
        assert_eq!(
            update["message"]["entities"],
            json!([{ "offset": 0, "length": 6, "type": "bot_command" }])
        );

        // Not confirmed yet: it comes again; confirmed by a higher offset: gone.
        let (_, again) = call(&tg, "getUpdates", json!({ "offset": 0 })).await;
        assert_eq!(again["result"].as_array().unwrap().len(), 1);
        let (_, after) = call(&tg, "getUpdates", json!({ "offset": id + 1 })).await;
        assert_eq!(after["result"], json!([]));
        assert_eq!(tg.pending_updates(), 0);
        assert_eq!(tg.tokens(), vec![TOKEN.to_string()]);
    }

    #[tokio::test]
    async fn long_poll_waits_out_its_timeout_and_a_newer_poll_wins() {
        let tg = FakeTelegram::start().await;
        let started = Instant::now();
        let (status, body) = call(&tg, "getUpdates", json!({ "timeout": 1 })).await;
        assert_eq!((status, body["result"].clone()), (200, json!([])));
        assert!(started.elapsed() >= Duration::from_millis(950));

        let first = tg.clone();
        let old =
            tokio::spawn(async move { call(&first, "getUpdates", json!({ "timeout": 10 })).await });
        tg.wait_until(
            |t| t.calls_of("getUpdates").len() == 2,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let second = tg.clone();
        let new =
            tokio::spawn(
                async move { call(&second, "getUpdates", json!({ "timeout": 10 })).await },
            );
        let (status, body) = old.await.unwrap();
        assert_eq!(status, 409, "{body}");
        tg.push_update(tg.text_message(1, "hi"));
        assert_eq!(new.await.unwrap().0, 200);
    }

    #[tokio::test]
    async fn injected_429_and_early_retry() {
        let tg = FakeTelegram::start().await;
        tg.add_chat(7);
        tg.fail_next_with_429(7, 1, 1);
        let (status, body) = send(&tg, 7, "one").await;
        assert_eq!(status, 429);
        assert_eq!(
            body,
            json!({ "ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": { "retry_after": 1 } })
        );
        // Retrying at once is refused again and counted.
        assert_eq!(send(&tg, 7, "one").await.0, 429);
        assert_eq!(tg.violations().len(), 1);
        assert_eq!(tg.violations()[0].kind, ViolationKind::IgnoredRetryAfter);
        tokio::time::sleep(Duration::from_millis(1050)).await;
        let (status, body) = send(&tg, 7, "one").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(tg.sent_to(7).len(), 1);
    }

    #[tokio::test]
    async fn messages_edits_and_errors_as_telegram_answers_them() {
        let tg = FakeTelegram::start().await;
        assert_eq!(
            send(&tg, 5, "hello").await,
            (
                400,
                json!({ "ok": false, "error_code": 400, "description": "Bad Request: chat not found" })
            )
        );
        tg.push_update(tg.text_message(5, "hi"));
        let keyboard = json!({ "inline_keyboard": [[{ "text": "Go", "callback_data": "go" }]] });
        let (status, body) = call(
            &tg,
            "sendMessage",
            json!({ "chat_id": 5, "text": "menu", "reply_markup": keyboard }),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let msg = &body["result"];
        let id = msg["message_id"].as_i64().unwrap();
        assert_eq!(id, 2, "the user's message took id 1");
        assert_eq!(msg["chat"]["type"], "private");
        assert_eq!(msg["from"]["id"], 123456);
        assert_eq!(msg["reply_markup"], keyboard);
        assert_eq!(
            send(&tg, 5, "").await.1["description"],
            "Bad Request: message text is empty"
        );

        let edit = |text: &str, markup: Option<Value>| {
            let mut body = json!({ "chat_id": 5, "message_id": id, "text": text });
            if let Some(m) = markup {
                body["reply_markup"] = m;
            }
            body
        };
        let (status, body) =
            call(&tg, "editMessageText", edit("menu", Some(keyboard.clone()))).await;
        assert_eq!(status, 400);
        assert!(body["description"]
            .as_str()
            .unwrap()
            .starts_with("Bad Request: message is not modified"));
        let (status, body) = call(
            &tg,
            "editMessageText",
            edit("menu 2", Some(keyboard.clone())),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["result"]["edit_date"].is_i64());
        // Without reply_markup the keyboard goes: that is a change too.
        assert_eq!(
            call(&tg, "editMessageText", edit("menu 2", None)).await.0,
            200
        );
        assert_eq!(tg.current_markup(5, id), None);
        assert_eq!(tg.current_text(5, id).as_deref(), Some("menu 2"));
        assert_eq!(tg.edits_of(5).len(), 2);
        let (_, body) = call(
            &tg,
            "editMessageText",
            json!({ "chat_id": 5, "message_id": 99, "text": "x" }),
        )
        .await;
        assert_eq!(
            body["description"],
            "Bad Request: message to edit not found"
        );
        let (_, body) = call(
            &tg,
            "editMessageText",
            json!({ "chat_id": 5, "message_id": 1, "text": "x" }),
        )
        .await;
        assert_eq!(body["description"], "Bad Request: message can't be edited");

        let bad =
            json!({ "inline_keyboard": [[{ "text": "x", "callback_data": "a".repeat(65) }]] });
        let (_, body) = call(
            &tg,
            "sendMessage",
            json!({ "chat_id": 5, "text": "x", "reply_markup": bad }),
        )
        .await;
        assert_eq!(body["description"], "Bad Request: BUTTON_DATA_INVALID");
        assert_eq!(call(&tg, "nope", json!({})).await.0, 404);
    }

    #[tokio::test]
    async fn callback_queries_are_answered_once() {
        let tg = FakeTelegram::start().await;
        tg.push_update(tg.text_message(9, "hi"));
        let (_, body) = send(&tg, 9, "menu").await;
        let id = body["result"]["message_id"].as_i64().unwrap();
        let update = tg.callback(9, id, "go");
        assert_eq!(update["callback_query"]["message"]["text"], "menu");
        let query = update["callback_query"]["id"].as_str().unwrap().to_string();
        tg.push_update(update);
        let answer = json!({ "callback_query_id": query, "text": "ok" });
        assert_eq!(
            call(&tg, "answerCallbackQuery", answer.clone()).await,
            (200, json!({ "ok": true, "result": true }))
        );
        assert_eq!(call(&tg, "answerCallbackQuery", answer).await.0, 400);
        assert_eq!(tg.callback_answer(&query).unwrap()["text"], "ok");
    }

    #[tokio::test]
    async fn counts_rate_violations_and_rejects_them_in_strict_mode() {
        let tg = FakeTelegram::start().await;
        tg.add_chat(1);
        for i in 0..5 {
            assert_eq!(send(&tg, 1, &format!("m{i}")).await.0, 200);
        }
        let kinds: Vec<_> = tg.violations().iter().map(|v| v.kind).collect();
        assert_eq!(
            kinds,
            vec![ViolationKind::ChatRate, ViolationKind::ChatRate],
            "a burst of 3 is allowed"
        );

        let tg = FakeTelegram::start().await;
        for chat in 0..35 {
            tg.add_chat(100 + chat);
        }
        for chat in 0..35 {
            send(&tg, 100 + chat, "x").await;
        }
        let global = tg
            .violations()
            .iter()
            .filter(|v| v.kind == ViolationKind::GlobalRate)
            .count();
        assert_eq!(global, 5);

        tg.set_strict(true);
        let (status, body) = send(&tg, 200, "x").await;
        assert_eq!(
            (status, body["description"].as_str()),
            (400, Some("Bad Request: chat not found"))
        );
        tg.add_chat(200);
        assert_eq!(send(&tg, 200, "x").await.0, 429);
    }

    #[tokio::test]
    async fn paced_sends_break_no_limit() {
        let tg = FakeTelegram::start().await;
        tg.add_chat(3);
        for i in 0..6 {
            if i >= 3 {
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
            send(&tg, 3, "x").await;
        }
        assert_eq!(tg.violations(), vec![]);
    }

    #[tokio::test]
    async fn wait_for_message_reads_each_chat_in_order() {
        let tg = FakeTelegram::start().await;
        tg.add_chat(4);
        let sender = tg.clone();
        tokio::spawn(async move {
            for text in ["welcome", "menu", "help", "menu again"] {
                send(&sender, 4, text).await;
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        });
        let t = Duration::from_secs(5);
        let menu = tg
            .wait_for_message(4, |s| s.contains("menu"), t)
            .await
            .unwrap();
        assert_eq!(menu.text, "menu");
        let next = tg
            .wait_for_message(4, |s| s.contains("menu"), t)
            .await
            .unwrap();
        assert_eq!(next.text, "menu again");
        assert!(next.message_id > menu.message_id);
        let err = tg
            .wait_for_message(4, |_| true, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(err.contains("chat 4"), "{err}");
    }

    #[tokio::test]
    async fn files_and_photos() {
        let tg = FakeTelegram::start().await;
        tg.add_file("AgACphoto1", b"jpeg bytes".to_vec());
        let update = tg.photo_message(8, "AgACphoto1", Some("caption"));
        let sizes = update["message"]["photo"].as_array().unwrap().clone();
        assert_eq!(sizes.len(), 3);
        assert_eq!(sizes[2]["file_id"], "AgACphoto1");
        tg.push_update(update);

        let (status, body) = call(&tg, "getFile", json!({ "file_id": "AgACphoto1" })).await;
        assert_eq!(status, 200, "{body}");
        let path = body["result"]["file_path"].as_str().unwrap();
        let bytes = reqwest::get(format!("{}/file/bot{TOKEN}/{path}", tg.url()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"jpeg bytes");
        assert_eq!(
            call(&tg, "getFile", json!({ "file_id": "nope" })).await.0,
            400
        );

        let (status, body) = call(
            &tg,
            "sendPhoto",
            json!({ "chat_id": 8, "photo": "AgACphoto1", "caption": "back" }),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["caption"], "back");
        let sent = tg.sent_to(8);
        assert_eq!(
            (sent[0].text.as_str(), sent[0].photo.as_deref()),
            ("back", Some("AgACphoto1"))
        );

        // A multipart upload, as a client uploading bytes sends it.
        let boundary = "XyZ";
        let mut body = Vec::new();
        body.extend_from_slice(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n8\r\n",
        );
        body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"c.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8bytes\r\n--XyZ--\r\n");
        let resp = reqwest::Client::new()
            .post(format!("{}/bot{TOKEN}/sendPhoto", tg.url()))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let photo = tg.sent_to(8)[1].photo.clone().unwrap();
        let (_, file) = call(&tg, "getFile", json!({ "file_id": photo })).await;
        let path = file["result"]["file_path"].as_str().unwrap();
        let bytes = reqwest::get(format!("{}/file/bot{TOKEN}/{path}", tg.url()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"\xff\xd8bytes");
    }

    #[tokio::test]
    async fn webhook_blocks_polling_and_deliveries_carry_the_secret() {
        use axum::routing::post;
        let tg = FakeTelegram::start().await;
        let (status, body) = call(
            &tg,
            "setWebhook",
            json!({ "url": "https://example.org/hook", "secret_token": "s3cr-et_" }),
        )
        .await;
        assert_eq!(
            (status, body["description"].as_str()),
            (200, Some("Webhook was set"))
        );
        assert_eq!(
            tg.webhook().unwrap().secret_token.as_deref(),
            Some("s3cr-et_")
        );
        assert_eq!(call(&tg, "getUpdates", json!({})).await.0, 409);
        assert_eq!(
            call(&tg, "getWebhookInfo", json!({})).await.1["result"]["url"],
            "https://example.org/hook"
        );
        assert_eq!(
            call(
                &tg,
                "setWebhook",
                json!({ "url": "https://e.org", "secret_token": "bad token!" })
            )
            .await
            .0,
            400
        );
        assert_eq!(
            call(&tg, "deleteWebhook", json!({})).await.1["description"],
            "Webhook was deleted"
        );

        async fn hook(headers: HeaderMap, Json(update): Json<Value>) -> (StatusCode, String) {
            let secret = headers
                .get("x-telegram-bot-api-secret-token")
                .and_then(|v| v.to_str().ok());
            if secret != Some("s3cr-et_") {
                return (StatusCode::UNAUTHORIZED, String::new());
            }
            (StatusCode::OK, update["update_id"].to_string())
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, Router::new().route("/hook", post(hook))).await
        });
        let (status, body) = tg
            .deliver_webhook(&url, Some("s3cr-et_"), tg.text_message(11, "hi"))
            .await;
        assert_eq!(status, 200);
        assert!(body.parse::<i64>().unwrap() > 0);
        assert_eq!(
            tg.deliver_webhook(&url, None, tg.text_message(11, "hi"))
                .await
                .0,
            401
        );
    }

    /// `sendDocument` as the server's real client uploads it: the fake keeps the file's name,
    /// type, bytes and caption, and refuses a call without a file.
    #[tokio::test]
    async fn a_document_upload_is_kept_with_its_name_type_bytes_and_caption() {
        use groupcast_core::ports::TelegramApi;
        use groupcast_core::{ChatId, Secret};
        use groupcast_server::telegram::HttpTelegram;

        let tg = FakeTelegram::start().await;
        tg.add_chat(31);
        let client = HttpTelegram::new(&tg.url(), Secret::new(TOKEN));
        let csv = "a,b\r\n\"x\r\n--y\",2\r\n".as_bytes();
        let id = client
            .send_document(ChatId(31), "mailing-7.csv", csv, Some("📄 #7"))
            .await
            .unwrap();
        let docs = tg.documents_to(31);
        assert_eq!(docs.len(), 1);
        let d = &docs[0];
        assert_eq!(
            (
                d.message_id,
                d.file_name.as_str(),
                d.mime_type.as_deref(),
                d.bytes.as_slice(),
                d.caption.as_deref()
            ),
            (id.0, "mailing-7.csv", Some("text/csv"), csv, Some("📄 #7"))
        );
        assert_eq!(tg.sent_to(31)[0].text, "📄 #7");
        let (status, answer) = call(&tg, "sendDocument", json!({ "chat_id": 31 })).await;
        assert_eq!(status, 400);
        assert_eq!(
            answer["description"],
            "Bad Request: there is no document in the request"
        );
    }

    /// The server's real client against the fake: pacing, 429 retries, files, polling.
    #[tokio::test]
    async fn http_telegram_keeps_the_limits() {
        use groupcast_core::ports::TelegramApi;
        use groupcast_core::telegram::InlineKeyboardMarkup;
        use groupcast_core::{ChatId, Secret};
        use groupcast_server::telegram::HttpTelegram;

        let tg = FakeTelegram::start().await;
        let client = HttpTelegram::new(&tg.url(), Secret::new(TOKEN));
        assert_eq!(client.get_me().await.unwrap().first_name, "Groupcast Test");

        let id = tg.push_update(tg.text_message(21, "/start"));
        let updates = client.get_updates(0, 5).await.unwrap();
        assert_eq!(updates[0].update_id, id);
        assert!(client.get_updates(id + 1, 0).await.unwrap().is_empty());

        // Five messages to one chat, and a 429 in the middle that must be waited out.
        let started = Instant::now();
        for i in 0..3 {
            client
                .send_message(ChatId(21), &format!("m{i}"), None)
                .await
                .unwrap();
        }
        tg.fail_next_with_429(21, 1, 1);
        for i in 3..5 {
            client
                .send_message(ChatId(21), &format!("m{i}"), None)
                .await
                .unwrap();
        }
        assert!(
            started.elapsed() >= Duration::from_millis(1900),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(tg.violations(), vec![]);
        let texts: Vec<String> = tg.sent_to(21).into_iter().map(|m| m.text).collect();
        assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4"]);
        assert_eq!(tg.calls_of("sendMessage").len(), 6);

        // A fresh chat, so that its burst is not spent.
        tg.push_update(tg.text_message(22, "hi"));
        let keyboard = InlineKeyboardMarkup::rows(vec![vec![("Go", "go")]]);
        let last = client.send_message(ChatId(22), "m4", None).await.unwrap();
        client
            .edit_message_text(ChatId(22), last, "m4 edited", Some(&keyboard))
            .await
            .unwrap();
        let err = client
            .edit_message_text(ChatId(22), last, "m4 edited", Some(&keyboard))
            .await
            .unwrap_err();
        assert!(err.is_not_modified(), "{err:?}");
        client
            .edit_message_reply_markup(ChatId(22), last, &InlineKeyboardMarkup::default())
            .await
            .unwrap();
        assert_eq!(tg.current_markup(22, last.0), None);
        assert_eq!(tg.current_text(22, last.0).as_deref(), Some("m4 edited"));

        tg.add_file("AgACdoc", b"\x89PNG photo".to_vec());
        let file = client.get_file("AgACdoc").await.unwrap();
        assert_eq!(file.file_size, Some(10));
        let path = file.file_path.unwrap();
        assert_eq!(client.download_file(&path).await.unwrap(), b"\x89PNG photo");
        let sent = client
            .send_photo_bytes(
                ChatId(22),
                b"\x89PNG new".to_vec(),
                "c.png",
                Some("cap"),
                None,
            )
            .await
            .unwrap();
        let photo = tg.sent_to(22).last().cloned().unwrap();
        assert_eq!(
            (photo.message_id, photo.text.as_str()),
            (sent.message_id.0, "cap")
        );
        assert_eq!(photo.photo.as_deref(), Some(sent.file_id.as_str()));
        let path = client
            .get_file(&sent.file_id)
            .await
            .unwrap()
            .file_path
            .unwrap();
        assert_eq!(client.download_file(&path).await.unwrap(), b"\x89PNG new");
        assert_eq!(tg.violations(), vec![]);
    }

    #[test]
    fn parses_forms_and_multipart() {
        assert_eq!(
            parse_form("chat_id=5&text=hi+there%21%20%D0%BF"),
            vec![
                ("chat_id".into(), "5".into()),
                ("text".into(), "hi there! п".into())
            ]
        );
        let parts = parse_multipart(
            b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--\r\n",
            "b",
        );
        assert_eq!(
            (parts[0].name.as_str(), parts[0].data.as_slice()),
            ("a", &b"1"[..])
        );
    }
}
