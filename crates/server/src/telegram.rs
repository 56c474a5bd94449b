//! `HttpTelegram`: the Bot API client of the self-hosted server (reqwest, JSON POST to
//! `{api_url}/bot{token}/{method}`).
//!
//! Every answer is classified into a [`TelegramError`] that carries the retry decision. The
//! token sits in the URL path, so it never reaches an error text or a log line: transport
//! errors are stripped of their URL and scrubbed of the token. Our own sends
//! (`sendMessage`, `editMessageText`, `editMessageReplyMarkup`, `sendPhoto`, `sendDocument`) are paced below Telegram's limits (about
//! 1 message per second per chat with short bursts, 30 per second overall) and a 429 is
//! honoured: the chat is held back for `retry_after` seconds and the request is repeated.

use groupcast_core::model::pacing::Gcra;
use groupcast_core::ports::{async_trait, PhotoInput, SentPhoto, TelegramApi, TgFile};
use groupcast_core::telegram::api;
use groupcast_core::telegram::{
    ApiResponse, InlineKeyboardMarkup, Message, MessageId, ReplyMarkup, TelegramError, Update, User,
};
use groupcast_core::{ChatId, Secret};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The public Bot API server.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much longer than its long-poll timeout a `getUpdates` request may take.
const POLL_GRACE: Duration = Duration::from_secs(15);
/// Files are at most 20 MB.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// How many times a send is repeated after a 429.
const MAX_RETRIES: u32 = 3;
/// A 429 asking for a longer wait than this is returned to the caller instead of waited out
/// inline (the chat stays held back all the same).
const MAX_INLINE_WAIT_SECS: u64 = 60;
/// The updates the bot handles.
const ALLOWED_UPDATES: [&str; 2] = ["message", "callback_query"];

/// The Telegram Bot API over HTTP. Cheap to clone: clones share the connection pool and the
/// send throttle.
#[derive(Clone)]
pub struct HttpTelegram {
    client: reqwest::Client,
    api_url: String,
    token: Secret,
    throttle: Arc<Throttle>,
}

impl fmt::Debug for HttpTelegram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTelegram")
            .field("api_url", &self.api_url)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The part of a `File` object we use.
#[derive(Debug, Deserialize)]
struct FileInfo {
    file_path: Option<String>,
    file_size: Option<u64>,
}

/// What `sendPhoto` returned: the message id and the `file_id` of the largest size.
fn sent_photo(msg: Message) -> Result<SentPhoto, TelegramError> {
    let file_id = msg
        .photo
        .iter()
        .max_by_key(|p| u64::from(p.width) * u64::from(p.height))
        .map(|p| p.file_id.clone())
        .ok_or_else(|| TelegramError::InvalidJson("sendPhoto: the answer has no photo".into()))?;
    Ok(SentPhoto {
        message_id: MessageId(msg.message_id),
        file_id,
    })
}

impl HttpTelegram {
    /// A client for `api_url` (`https://api.telegram.org`, or a local fake) and a bot token.
    pub fn new(api_url: &str, token: Secret) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("the reqwest client builds with static settings");
        HttpTelegram {
            client,
            api_url: api_url.trim_end_matches('/').to_string(),
            token,
            throttle: Arc::new(Throttle::new()),
        }
    }

    /// Long-polls for updates with `update_id >= offset` (which also confirms every earlier
    /// one), waiting up to `timeout_secs` when none is queued.
    pub async fn get_updates(
        &self,
        offset: i64,
        timeout_secs: u64,
    ) -> Result<Vec<Update>, TelegramError> {
        let body = json!({
            "offset": offset,
            "timeout": timeout_secs,
            "allowed_updates": ALLOWED_UPDATES,
        });
        let timeout = Duration::from_secs(timeout_secs) + POLL_GRACE;
        self.call("getUpdates", &body, timeout).await
    }

    /// Points Telegram at our webhook; `secret` comes back in `X-Telegram-Bot-Api-Secret-Token`.
    pub async fn set_webhook(&self, url: &str, secret: &Secret) -> Result<(), TelegramError> {
        let body = json!({
            "url": url,
            "secret_token": secret.expose(),
            "allowed_updates": ALLOWED_UPDATES,
        });
        self.call::<Value>("setWebhook", &body, REQUEST_TIMEOUT)
            .await
            .map(drop)
    }

    /// Removes the webhook (needed before `getUpdates` works). Pending updates are kept.
    pub async fn delete_webhook(&self) -> Result<(), TelegramError> {
        let body = json!({ "drop_pending_updates": false });
        self.call::<Value>("deleteWebhook", &body, REQUEST_TIMEOUT)
            .await
            .map(drop)
    }

    /// The bot itself; a cheap check that the token is valid.
    pub async fn get_me(&self) -> Result<User, TelegramError> {
        self.call("getMe", &json!({}), REQUEST_TIMEOUT).await
    }

    /// The raw `WebhookInfo` (url, pending_update_count, last_error_message…).
    pub async fn get_webhook_info(&self) -> Result<Value, TelegramError> {
        self.call("getWebhookInfo", &json!({}), REQUEST_TIMEOUT)
            .await
    }

    /// `getFile` (the port's [`TelegramApi::get_file`]).
    async fn file_info(&self, file_id: &str) -> Result<TgFile, TelegramError> {
        let info: FileInfo = self
            .call("getFile", &api::get_file(file_id), REQUEST_TIMEOUT)
            .await?;
        Ok(TgFile {
            file_path: info.file_path,
            file_size: info.file_size,
        })
    }

    /// Downloads a file by the `file_path` that `getFile` returned.
    async fn download(&self, file_path: &str) -> Result<Vec<u8>, TelegramError> {
        let url = api::file_url(&self.api_url, self.token.expose(), file_path);
        let what = "file download";
        let resp = self
            .client
            .get(url)
            .timeout(DOWNLOAD_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.transport_error(what, e))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(what, e))?;
        if (200..300).contains(&status) {
            return Ok(bytes.to_vec());
        }
        let description = serde_json::from_slice::<ApiResponse<Value>>(&bytes)
            .ok()
            .and_then(|r| r.description)
            .unwrap_or_else(|| format!("http {status}"));
        Err(self.scrub_error(if status >= 500 {
            TelegramError::Network(format!("{what}: http {status}: {description}"))
        } else {
            TelegramError::Api {
                code: i64::from(status),
                description,
            }
        }))
    }

    /// Sends a photo already on Telegram's servers (by `file_id`). Paced like messages.
    pub async fn send_photo_by_id(
        &self,
        chat: ChatId,
        file_id: &str,
        caption: Option<&str>,
        markup: Option<&ReplyMarkup>,
    ) -> Result<SentPhoto, TelegramError> {
        let body = api::send_photo_by_id(chat, file_id, caption, markup);
        let msg: Message = self
            .paced(chat.0, "sendPhoto", || self.post("sendPhoto").json(&body))
            .await?;
        sent_photo(msg)
    }

    /// Uploads a photo (JPEG or PNG bytes) as multipart/form-data. Paced like messages.
    pub async fn send_photo_bytes(
        &self,
        chat: ChatId,
        bytes: Vec<u8>,
        file_name: &str,
        caption: Option<&str>,
        markup: Option<&ReplyMarkup>,
    ) -> Result<SentPhoto, TelegramError> {
        let (content_type, body) = api::send_photo_upload(
            chat,
            &bytes,
            file_name,
            caption,
            markup,
            rand::random::<u128>(),
        );
        let msg: Message = self
            .paced(chat.0, "sendPhoto", || {
                self.post("sendPhoto")
                    .header(reqwest::header::CONTENT_TYPE, content_type.clone())
                    .body(body.clone())
            })
            .await?;
        sent_photo(msg)
    }

    /// Uploads a file as a document (multipart/form-data). Paced like messages.
    pub async fn send_document_bytes(
        &self,
        chat: ChatId,
        file_name: &str,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> Result<MessageId, TelegramError> {
        let (content_type, body) =
            api::send_document_upload(chat, file_name, bytes, caption, rand::random::<u128>());
        let msg: Message = self
            .paced(chat.0, "sendDocument", || {
                self.post("sendDocument")
                    .header(reqwest::header::CONTENT_TYPE, content_type.clone())
                    .body(body.clone())
            })
            .await?;
        Ok(MessageId(msg.message_id))
    }

    fn post(&self, method: &str) -> reqwest::RequestBuilder {
        self.client
            .post(api::method_url(&self.api_url, self.token.expose(), method))
    }

    /// One unpaced JSON call.
    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<T, TelegramError> {
        tracing::debug!(method, "telegram call");
        self.execute(method, self.post(method).json(body).timeout(timeout))
            .await
    }

    /// A send to `chat`: waits for the throttle, and on a 429 holds the chat back for
    /// `retry_after` seconds and repeats the request (up to [`MAX_RETRIES`] times).
    async fn paced<T, F>(&self, chat: i64, method: &str, build: F) -> Result<T, TelegramError>
    where
        T: DeserializeOwned,
        F: Fn() -> reqwest::RequestBuilder + Send + Sync,
    {
        let mut retries = 0;
        loop {
            self.throttle.acquire(chat).await;
            tracing::debug!(method, chat, "telegram send");
            match self.execute(method, build()).await {
                Err(TelegramError::RetryAfter(secs)) => {
                    self.throttle.hold(chat, secs);
                    if retries >= MAX_RETRIES || secs > MAX_INLINE_WAIT_SECS {
                        tracing::warn!(method, chat, retry_after = secs, "telegram 429, giving up");
                        return Err(TelegramError::RetryAfter(secs));
                    }
                    retries += 1;
                    tracing::warn!(
                        method,
                        chat,
                        retry_after = secs,
                        retries,
                        "telegram 429, waiting"
                    );
                }
                other => return other,
            }
        }
    }

    async fn execute<T: DeserializeOwned>(
        &self,
        method: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, TelegramError> {
        let started = Instant::now();
        let (status, result) = self.exchange(method, req).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        // One line per call outcome (the token is not in `method` nor in the scrubbed error).
        match &result {
            Ok(_) => tracing::info!(method, status, latency_ms, "telegram call ok"),
            Err(e) => {
                tracing::info!(method, status, latency_ms, error = %e, "telegram call failed")
            }
        }
        result
    }

    /// The call itself; the HTTP status (0 when no answer came) goes along for logging.
    async fn exchange<T: DeserializeOwned>(
        &self,
        method: &str,
        req: reqwest::RequestBuilder,
    ) -> (u16, Result<T, TelegramError>) {
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return (0, Err(self.transport_error(method, e))),
        };
        let status = resp.status().as_u16();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return (status, Err(self.transport_error(method, e))),
        };
        (
            status,
            api::decode(method, status, &bytes).map_err(|e| self.scrub_error(e)),
        )
    }

    /// A transport failure as text without the URL (which holds the token).
    fn transport_error(&self, method: &str, err: reqwest::Error) -> TelegramError {
        let kind = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "connection failed"
        } else if err.is_body() || err.is_decode() {
            "reading the answer failed"
        } else {
            "request failed"
        };
        let err = err.without_url();
        let mut text = format!("{method}: {kind}: {err}");
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.scrub_error(TelegramError::Network(text))
    }

    /// Belt and braces: whatever text an error carries, the token is replaced by `***`.
    fn scrub_error(&self, err: TelegramError) -> TelegramError {
        let token = self.token.expose();
        if token.is_empty() {
            return err;
        }
        let scrub = |s: String| s.replace(token, "***");
        match err {
            TelegramError::Api { code, description } => TelegramError::Api {
                code,
                description: scrub(description),
            },
            TelegramError::Network(s) => TelegramError::Network(scrub(s)),
            TelegramError::InvalidJson(s) => TelegramError::InvalidJson(scrub(s)),
            e @ TelegramError::RetryAfter(_) => e,
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl TelegramApi for HttpTelegram {
    fn can_send_now(&self, chat: ChatId) -> bool {
        self.throttle.would_pass(chat.0)
    }

    async fn get_file(&self, file_id: &str) -> Result<TgFile, TelegramError> {
        self.file_info(file_id).await
    }

    async fn download_file(&self, file_path: &str) -> Result<Vec<u8>, TelegramError> {
        self.download(file_path).await
    }

    async fn send_photo(
        &self,
        chat: ChatId,
        photo: PhotoInput<'_>,
        caption: Option<&str>,
        markup: Option<&ReplyMarkup>,
    ) -> Result<SentPhoto, TelegramError> {
        match photo {
            PhotoInput::FileId(id) => self.send_photo_by_id(chat, id, caption, markup).await,
            PhotoInput::Jpeg(bytes) => {
                self.send_photo_bytes(chat, bytes.to_vec(), "photo.jpg", caption, markup)
                    .await
            }
        }
    }

    async fn send_document(
        &self,
        chat: ChatId,
        file_name: &str,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> Result<MessageId, TelegramError> {
        self.send_document_bytes(chat, file_name, bytes, caption)
            .await
    }

    async fn send_message(
        &self,
        chat: ChatId,
        text: &str,
        markup: Option<&ReplyMarkup>,
    ) -> Result<MessageId, TelegramError> {
        let body = api::send_message(chat, text, markup);
        let msg: Message = self
            .paced(chat.0, "sendMessage", || {
                self.post("sendMessage").json(&body)
            })
            .await?;
        Ok(MessageId(msg.message_id))
    }

    async fn edit_message_text(
        &self,
        chat: ChatId,
        message: MessageId,
        text: &str,
        markup: Option<&InlineKeyboardMarkup>,
    ) -> Result<(), TelegramError> {
        let body = api::edit_message_text(chat, message, text, markup);
        // The result is the edited Message (or `true` for inline messages): not needed.
        self.paced::<Value, _>(chat.0, "editMessageText", || {
            self.post("editMessageText").json(&body)
        })
        .await
        .map(drop)
    }

    async fn edit_message_reply_markup(
        &self,
        chat: ChatId,
        message: MessageId,
        markup: &InlineKeyboardMarkup,
    ) -> Result<(), TelegramError> {
        let body = api::edit_message_reply_markup(chat, message, markup);
        self.paced::<Value, _>(chat.0, "editMessageReplyMarkup", || {
            self.post("editMessageReplyMarkup").json(&body)
        })
        .await
        .map(drop)
    }

    async fn answer_callback_query(
        &self,
        id: &str,
        text: Option<&str>,
    ) -> Result<(), TelegramError> {
        let body = api::answer_callback_query(id, text);
        self.call::<Value>("answerCallbackQuery", &body, REQUEST_TIMEOUT)
            .await
            .map(drop)
    }
}

// ---------------------------------------------------------------------------------------------
// Pacing of our own sends

/// One message per second per private chat after a burst of 3 (a reply plus a menu is not
/// slowed down).
const PRIVATE_CHAT_INTERVAL_MS: f64 = 1000.0;
/// Groups take at most 20 messages a minute.
const GROUP_CHAT_INTERVAL_MS: f64 = 3000.0;
const CHAT_BURST: u32 = 3;
/// Overall, strictly spaced.
const GLOBAL_PER_SEC: f64 = 30.0;

#[derive(Debug, Default)]
struct ChatGate {
    tat_us: Option<i64>,
    /// After a 429: nothing goes to the chat before this (ms on the throttle clock).
    hold_until_ms: i64,
    /// The chat's turn: held while a send waits for the gate, so sends to one chat take it in
    /// the order they asked (tokio's mutex is fair). Without it every waiter wakes at the same
    /// instant and any may win: the bot's ⛔ acknowledgement could follow the report it asked
    /// for.
    turn: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    global_tat_us: Option<i64>,
    chats: HashMap<i64, ChatGate>,
}

/// The per-chat and global gates. Time is monotonic milliseconds since creation (tokio's
/// clock, so tests can pause it).
#[derive(Debug)]
struct Throttle {
    epoch: Instant,
    private_chat: Gcra,
    group_chat: Gcra,
    global: Gcra,
    state: Mutex<ThrottleState>,
}

/// Gates of idle chats are dropped once there are this many.
const MAX_TRACKED_CHATS: usize = 10_000;

impl Throttle {
    fn new() -> Self {
        Throttle {
            epoch: Instant::now(),
            private_chat: Gcra::new(PRIVATE_CHAT_INTERVAL_MS, CHAT_BURST),
            group_chat: Gcra::new(GROUP_CHAT_INTERVAL_MS, CHAT_BURST),
            global: Gcra::per_second(GLOBAL_PER_SEC),
            state: Mutex::new(ThrottleState::default()),
        }
    }

    fn now_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ThrottleState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until both the chat's gate and the global gate let a send through, and takes
    /// the slot in both.
    async fn acquire(&self, chat: i64) {
        let turn = Arc::clone(&self.lock().chats.entry(chat).or_default().turn);
        let _turn = turn.lock().await;
        loop {
            let now = self.now_ms();
            match self.try_acquire(chat, now) {
                Ok(()) => return,
                Err(at) => {
                    let wait = Duration::from_millis(at.saturating_sub(now).max(1) as u64);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Takes a slot for `chat` at `now` if both gates allow it; else says when to try again.
    fn try_acquire(&self, chat: i64, now: i64) -> Result<(), i64> {
        let mut guard = self.lock();
        let ThrottleState {
            global_tat_us,
            chats,
        } = &mut *guard;
        if chats.len() > MAX_TRACKED_CHATS {
            chats.retain(|_, g| g.hold_until_ms > now || g.tat_us.is_some_and(|t| t > now * 1000));
        }
        let gate = chats.entry(chat).or_default();
        if gate.hold_until_ms > now {
            return Err(gate.hold_until_ms);
        }
        let chat_gate = if chat < 0 {
            &self.group_chat
        } else {
            &self.private_chat
        };
        let chat_tat = chat_gate.check(gate.tat_us, now)?;
        let global_tat = self.global.check(*global_tat_us, now)?;
        gate.tat_us = Some(chat_tat);
        *global_tat_us = Some(global_tat);
        Ok(())
    }

    /// Whether a send to `chat` would pass both gates now, taking nothing.
    fn would_pass(&self, chat: i64) -> bool {
        let now = self.now_ms();
        let guard = self.lock();
        let gate = guard.chats.get(&chat);
        if gate.is_some_and(|g| g.hold_until_ms > now) {
            return false;
        }
        let chat_gate = if chat < 0 {
            &self.group_chat
        } else {
            &self.private_chat
        };
        chat_gate.check(gate.and_then(|g| g.tat_us), now).is_ok()
            && self.global.check(guard.global_tat_us, now).is_ok()
    }

    /// Holds every send to `chat` back for `secs` seconds (a 429's `retry_after`).
    fn hold(&self, chat: i64, secs: u64) {
        self.hold_at(chat, secs, self.now_ms());
    }

    fn hold_at(&self, chat: i64, secs: u64, now: i64) {
        let until = now + (secs.min(86_400) as i64) * 1000;
        let mut state = self.lock();
        let gate = state.chats.entry(chat).or_default();
        gate.hold_until_ms = gate.hold_until_ms.max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{extract::State, routing::post, Json, Router};
    use std::sync::atomic::{AtomicU32, Ordering};

    const TOKEN: &str = "123456789:AAHsecretSECRETsecretSECRETsecret12";

    #[tokio::test]
    async fn connection_error_never_shows_the_token() {
        // Port 9 (discard) on localhost: nothing listens there.
        let tg = HttpTelegram::new("http://127.0.0.1:9", Secret::new(TOKEN));
        let err = tg.get_me().await.unwrap_err();
        assert!(matches!(err, TelegramError::Network(_)), "{err:?}");
        for text in [err.to_string(), format!("{err:?}"), format!("{tg:?}")] {
            assert!(!text.contains(TOKEN), "token leaked: {text}");
            assert!(!text.contains("AAHsecret"), "token leaked: {text}");
        }
        let err = tg.download_file("photos/file_1.jpg").await.unwrap_err();
        assert!(!format!("{err} {err:?}").contains("AAHsecret"));
    }

    #[test]
    fn chat_gate_allows_a_burst_of_three_then_one_per_second() {
        let t = Throttle::new();
        // 40 ms apart, so that the global gate (one per 33 ms) stays out of the way.
        let steps: Vec<(i64, Result<(), i64>)> = vec![
            (0, Ok(())),
            (40, Ok(())),
            (80, Ok(())),
            (120, Err(1000)),
            (999, Err(1000)),
            (1000, Ok(())),
            (1500, Err(2000)),
            (2000, Ok(())),
            // After a quiet spell the burst is back.
            (10_000, Ok(())),
            (10_040, Ok(())),
            (10_080, Ok(())),
            (10_120, Err(11_000)),
        ];
        for (i, (now, want)) in steps.into_iter().enumerate() {
            assert_eq!(t.try_acquire(42, now), want, "step {i} at {now}");
        }
    }

    #[test]
    fn group_chats_get_twenty_a_minute() {
        let t = Throttle::new();
        for now in [0, 40, 80] {
            assert_eq!(t.try_acquire(-100, now), Ok(()));
        }
        assert_eq!(t.try_acquire(-100, 120), Err(3000));
    }

    #[test]
    fn global_gate_keeps_thirty_per_second() {
        let t = Throttle::new();
        assert_eq!(t.try_acquire(1, 0), Ok(()));
        assert_eq!(t.try_acquire(2, 0), Err(34));
        let mut now = 0;
        let mut sent = 1;
        for chat in 2..100 {
            loop {
                match t.try_acquire(chat, now) {
                    Ok(()) => break,
                    Err(at) => now = at,
                }
            }
            if now < 1000 {
                sent += 1;
            }
        }
        assert_eq!(sent, 30, "sends in the first second");
    }

    #[test]
    fn hold_delays_only_that_chat() {
        let t = Throttle::new();
        t.hold_at(1, 5, 0);
        assert_eq!(t.try_acquire(2, 0), Ok(()));
        assert_eq!(t.try_acquire(1, 100), Err(5000));
        assert_eq!(t.try_acquire(1, 5000), Ok(()));
    }

    #[tokio::test]
    async fn retries_after_429_and_returns_the_message() {
        #[derive(Clone)]
        struct Fake(Arc<AtomicU32>);
        async fn send(
            State(fake): State<Fake>,
            Json(body): Json<Value>,
        ) -> (axum::http::StatusCode, Json<Value>) {
            if fake.0.fetch_add(1, Ordering::SeqCst) == 0 {
                return (
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    Json(
                        json!({"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}),
                    ),
                );
            }
            let msg = json!({"message_id": 77, "chat": {"id": body["chat_id"], "type": "private"}, "date": 0, "text": body["text"]});
            (
                axum::http::StatusCode::OK,
                Json(json!({"ok": true, "result": msg})),
            )
        }
        let calls = Arc::new(AtomicU32::new(0));
        let app = Router::new()
            .route(&format!("/bot{TOKEN}/sendMessage"), post(send))
            .with_state(Fake(calls.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let tg = HttpTelegram::new(&url, Secret::new(TOKEN));
        let started = std::time::Instant::now();
        let id = tg.send_message(ChatId(5), "hi", None).await.unwrap();
        assert_eq!(id, MessageId(77));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(
            started.elapsed() >= Duration::from_millis(990),
            "retried too early"
        );

        let err = tg.get_me().await.unwrap_err();
        assert!(
            matches!(err, TelegramError::Api { code: 404, .. })
                || matches!(err, TelegramError::InvalidJson(_)),
            "{err:?}"
        );
        assert!(!format!("{err:?}").contains("AAHsecret"));
    }
}
