//! `FetchTelegram`: the core's `TelegramApi` over `fetch` (JSON POST to
//! `{api_url}/bot{token}/{method}`), with the same wire format and error classification as
//! the server's client (both build bodies and decode answers with
//! `groupcast_core::telegram::api`). The token is in the URL path, so every
//! error text is scrubbed of it. A 429 with a short `retry_after` is waited out and repeated
//! (a few times); a longer one goes back to the caller.
//!
//! Unlike the server there is no process-wide send throttle: an isolate lives for a few
//! requests only. Telegram's own 429 answers are what hold us back.

use crate::counts::Dest;
use crate::fetch::{self, Body, Failure};
use crate::wire::scrub_telegram;
use groupcast_core::ports::{async_trait, PhotoInput, SentPhoto, TelegramApi, TgFile};
use groupcast_core::telegram::api;
use groupcast_core::telegram::{
    InlineKeyboardMarkup, Message, MessageId, ReplyMarkup, TelegramError,
};
use groupcast_core::{ChatId, Secret};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use worker::{Delay, Method};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times a call is repeated after a 429.
const MAX_RETRIES: u32 = 3;
/// A 429 asking for a longer wait than this goes back to the caller.
const MAX_INLINE_WAIT_SECS: u64 = 10;

pub struct FetchTelegram {
    api_url: String,
    token: Secret,
    /// How many times a short 429 is waited out and repeated here ([`MAX_RETRIES`]).
    retries_429: u32,
}

#[derive(Deserialize)]
struct FileInfo {
    file_path: Option<String>,
    file_size: Option<u64>,
}

impl FetchTelegram {
    pub fn new(api_url: &str, token: Secret) -> Self {
        FetchTelegram {
            api_url: api_url.trim_end_matches('/').to_string(),
            token,
            retries_429: MAX_RETRIES,
        }
    }

    /// A client that hands every 429 back to the caller at once (the broadcast runner holds
    /// that chat back itself and carries on with the others).
    pub fn without_429_waits(mut self) -> Self {
        self.retries_429 = 0;
        self
    }

    fn url(&self, method: &str) -> String {
        api::method_url(&self.api_url, self.token.expose(), method)
    }

    fn failure(&self, method: &str, f: Failure) -> TelegramError {
        let text = match f {
            Failure::Timeout => format!("{method}: timed out"),
            Failure::Build(s) => format!("{method}: {s}"),
            Failure::Transport(s) => format!("{method}: request failed: {s}"),
        };
        scrub_telegram(TelegramError::Network(text), self.token.expose())
    }

    /// One call with a body; repeats after a short 429.
    async fn post<T: DeserializeOwned>(
        &self,
        method: &str,
        body: impl Fn() -> Body,
    ) -> Result<T, TelegramError> {
        let mut retries = 0;
        loop {
            let reply = fetch::call(
                Dest::Telegram,
                Method::Post,
                &self.url(method),
                &[],
                Some(body()),
                REQUEST_TIMEOUT,
            )
            .await
            .map_err(|f| self.failure(method, f))?;
            match api::decode::<T>(method, reply.status, &reply.body) {
                Err(TelegramError::RetryAfter(secs))
                    if retries < self.retries_429 && secs <= MAX_INLINE_WAIT_SECS =>
                {
                    retries += 1;
                    Delay::from(Duration::from_secs(secs)).await;
                }
                other => return other.map_err(|e| scrub_telegram(e, self.token.expose())),
            }
        }
    }

    async fn post_json<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &Value,
    ) -> Result<T, TelegramError> {
        let text = body.to_string();
        self.post(method, || Body::Json(text.clone())).await
    }

    /// Points Telegram at the webhook (used by the operator's tooling, not by requests).
    pub async fn get_me(&self) -> Result<Value, TelegramError> {
        self.post_json("getMe", &json!({})).await
    }
}

fn random_u128() -> u128 {
    let mut b = [0u8; 16];
    let _ = getrandom::getrandom(&mut b);
    u128::from_le_bytes(b)
}

#[async_trait(?Send)]
impl TelegramApi for FetchTelegram {
    async fn send_message(
        &self,
        chat: ChatId,
        text: &str,
        markup: Option<&ReplyMarkup>,
    ) -> Result<MessageId, TelegramError> {
        let body = api::send_message(chat, text, markup);
        let msg: Message = self.post_json("sendMessage", &body).await?;
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
        self.post_json::<Value>("editMessageText", &body)
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
        self.post_json::<Value>("editMessageReplyMarkup", &body)
            .await
            .map(drop)
    }

    async fn answer_callback_query(
        &self,
        id: &str,
        text: Option<&str>,
    ) -> Result<(), TelegramError> {
        let body = api::answer_callback_query(id, text);
        self.post_json::<Value>("answerCallbackQuery", &body)
            .await
            .map(drop)
    }

    async fn get_file(&self, file_id: &str) -> Result<TgFile, TelegramError> {
        let info: FileInfo = self.post_json("getFile", &api::get_file(file_id)).await?;
        Ok(TgFile {
            file_path: info.file_path,
            file_size: info.file_size,
        })
    }

    async fn download_file(&self, file_path: &str) -> Result<Vec<u8>, TelegramError> {
        let what = "file download";
        let url = api::file_url(&self.api_url, self.token.expose(), file_path);
        let reply = fetch::call(
            Dest::Telegram,
            Method::Get,
            &url,
            &[],
            None,
            DOWNLOAD_TIMEOUT,
        )
        .await
        .map_err(|f| self.failure(what, f))?;
        if (200..300).contains(&reply.status) {
            return Ok(reply.body);
        }
        let status = reply.status;
        let err = if status >= 500 {
            TelegramError::Network(format!("{what}: http {status}"))
        } else {
            TelegramError::Api {
                code: i64::from(status),
                description: format!("{what}: http {status}"),
            }
        };
        Err(scrub_telegram(err, self.token.expose()))
    }

    async fn send_photo(
        &self,
        chat: ChatId,
        photo: PhotoInput<'_>,
        caption: Option<&str>,
        markup: Option<&ReplyMarkup>,
    ) -> Result<SentPhoto, TelegramError> {
        let msg: Message = match photo {
            PhotoInput::FileId(id) => {
                let body = api::send_photo_by_id(chat, id, caption, markup);
                self.post_json("sendPhoto", &body).await?
            }
            PhotoInput::Jpeg(bytes) => {
                let (content_type, body) = api::send_photo_upload(
                    chat,
                    bytes,
                    "photo.jpg",
                    caption,
                    markup,
                    random_u128(),
                );
                self.post("sendPhoto", || Body::Bytes {
                    content_type: content_type.clone(),
                    bytes: body.clone(),
                })
                .await?
            }
        };
        let file_id = msg
            .photo
            .iter()
            .max_by_key(|p| u64::from(p.width) * u64::from(p.height))
            .map(|p| p.file_id.clone())
            .unwrap_or_default();
        Ok(SentPhoto {
            message_id: MessageId(msg.message_id),
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
        let (content_type, body) =
            api::send_document_upload(chat, file_name, bytes, caption, random_u128());
        let msg: Message = self
            .post("sendDocument", || Body::Bytes {
                content_type: content_type.clone(),
                bytes: body.clone(),
            })
            .await?;
        Ok(MessageId(msg.message_id))
    }
}
