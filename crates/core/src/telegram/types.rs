//! The subset of the Bot API wire format that groupcast reads and writes.
//! Unknown fields are ignored, so newer Bot API versions parse.

use crate::model::ids::{ChatId, UserId};
use serde::{Deserialize, Serialize};

/// The envelope of every Bot API answer.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiResponse<T> {
    pub ok: bool,
    pub result: Option<T>,
    pub description: Option<String>,
    pub error_code: Option<i64>,
    pub parameters: Option<ResponseParameters>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ResponseParameters {
    pub retry_after: Option<u64>,
    pub migrate_to_chat_id: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Update {
    pub update_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_query: Option<CallbackQuery>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct User {
    pub id: UserId,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub first_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_code: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Chat {
    pub id: ChatId,
    #[serde(rename = "type", default)]
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Message {
    pub message_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<User>,
    pub chat: Chat,
    #[serde(default)]
    pub date: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<MessageEntity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caption_entities: Vec<MessageEntity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub photo: Vec<PhotoSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<Document>,
}

/// A formatting span. `offset` and `length` count UTF-16 code units, as Telegram does.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct MessageEntity {
    #[serde(rename = "type")]
    pub kind: String,
    pub offset: usize,
    pub length: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PhotoSize {
    pub file_id: String,
    #[serde(default)]
    pub file_unique_id: String,
    pub width: u32,
    pub height: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Document {
    pub file_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CallbackQuery {
    pub id: String,
    pub from: User,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// What `sendMessage` and friends return that we keep: the new message's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub i64);

/// An inline button: either sends `callback_data` back to the bot or opens `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineKeyboardButton {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl InlineKeyboardButton {
    pub fn callback(text: impl Into<String>, data: impl Into<String>) -> Self {
        InlineKeyboardButton {
            text: text.into(),
            callback_data: Some(data.into()),
            url: None,
        }
    }

    pub fn link(text: impl Into<String>, url: impl Into<String>) -> Self {
        InlineKeyboardButton {
            text: text.into(),
            callback_data: None,
            url: Some(url.into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InlineKeyboardMarkup {
    pub inline_keyboard: Vec<Vec<InlineKeyboardButton>>,
}

impl InlineKeyboardMarkup {
    /// A keyboard from rows of `(label, callback data)`.
    pub fn rows<L: Into<String>, D: Into<String>>(rows: Vec<Vec<(L, D)>>) -> Self {
        InlineKeyboardMarkup {
            inline_keyboard: rows
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .map(|(text, data)| InlineKeyboardButton::callback(text, data))
                        .collect()
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyboardButton {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyKeyboardMarkup {
    pub keyboard: Vec<Vec<KeyboardButton>>,
    pub resize_keyboard: bool,
}

impl ReplyKeyboardMarkup {
    pub fn rows<L: Into<String>>(rows: Vec<Vec<L>>) -> Self {
        ReplyKeyboardMarkup {
            keyboard: rows
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .map(|t| KeyboardButton { text: t.into() })
                        .collect()
                })
                .collect(),
            resize_keyboard: true,
        }
    }
}

/// The `reply_markup` of an outgoing message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReplyMarkup {
    Inline(InlineKeyboardMarkup),
    Keyboard(ReplyKeyboardMarkup),
}

/// A Bot API failure, classified so the caller knows whether and when to retry
/// (the shape teloxide uses).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelegramError {
    /// 429: wait this many seconds, then the same request may succeed.
    #[error("telegram: too many requests, retry after {0} s")]
    RetryAfter(u64),
    /// The API refused the request (4xx other than 429); retrying will not help.
    #[error("telegram api error {code}: {description}")]
    Api { code: i64, description: String },
    /// The request did not get an answer (connection, timeout, 5xx); may be retried.
    #[error("telegram network error: {0}")]
    Network(String),
    /// The answer was not the JSON we expected.
    #[error("telegram sent invalid json: {0}")]
    InvalidJson(String),
}

impl TelegramError {
    /// "message is not modified" is what editMessageText says when nothing changed: not a failure.
    pub fn is_not_modified(&self) -> bool {
        matches!(self, TelegramError::Api { description, .. } if description.contains("not modified"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Payloads shaped as the Bot API sends them (fields we do not model included), so a
    /// change in our types that stops parsing real updates fails here.
    const TEXT_WITH_ENTITIES: &str = r#"{"update_id":815731002,"message":{"message_id":42,
        "from":{"id":5106617740,"is_bot":false,"first_name":"Анна","username":"anna_re","language_code":"ru","is_premium":true},
        "chat":{"id":5106617740,"first_name":"Анна","username":"anna_re","type":"private"},
        "date":1764190000,"text":"/start promo","entities":[{"offset":0,"length":6,"type":"bot_command"}],
        "link_preview_options":{"is_disabled":true}}}"#;
    const CALLBACK: &str = r#"{"update_id":815731003,"callback_query":{"id":"4382061798347718144",
        "from":{"id":5106617740,"is_bot":false,"first_name":"Анна","language_code":"en"},
        "message":{"message_id":77,"from":{"id":777000111,"is_bot":true,"first_name":"groupcast","username":"groupcast_bot"},
        "chat":{"id":5106617740,"type":"private"},"date":1764190010,"text":"👀 Предпросмотр",
        "reply_markup":{"inline_keyboard":[[{"text":"✅ Начать","callback_data":"go"}]]}},
        "chat_instance":"-1183719248763","data":"go"}}"#;
    const PHOTO_IN_ALBUM: &str = r#"{"update_id":815731004,"message":{"message_id":43,
        "from":{"id":5106617740,"is_bot":false,"first_name":"Анна"},"chat":{"id":5106617740,"type":"private"},
        "date":1764190020,"media_group_id":"13812345678901234",
        "photo":[{"file_id":"AgACAgIAAxkBAAIB","file_unique_id":"AQADa","file_size":1374,"width":90,"height":67},
                 {"file_id":"AgACAgIAAxkBAAIC","file_unique_id":"AQADb","file_size":98211,"width":1280,"height":960}],
        "caption":"Фото *1*","caption_entities":[{"offset":5,"length":3,"type":"italic"}]}}"#;
    const EDITED_IGNORED: &str = r#"{"update_id":815731005,"edited_message":{"message_id":42,
        "chat":{"id":1,"type":"private"},"date":1,"edit_date":2,"text":"x"}}"#;

    #[test]
    fn real_payloads_parse() {
        let u: Update = serde_json::from_str(TEXT_WITH_ENTITIES).unwrap();
        let m = u.message.unwrap();
        assert_eq!(m.from.unwrap().id, UserId(5106617740));
        assert_eq!(m.chat.kind, "private");
        assert_eq!(m.entities[0].kind, "bot_command");

        let u: Update = serde_json::from_str(CALLBACK).unwrap();
        let q = u.callback_query.unwrap();
        assert_eq!(q.data.as_deref(), Some("go"));
        assert_eq!(q.message.unwrap().message_id, 77);

        let u: Update = serde_json::from_str(PHOTO_IN_ALBUM).unwrap();
        let m = u.message.unwrap();
        assert_eq!(m.photo.len(), 2);
        assert_eq!(m.photo[1].width, 1280);
        assert_eq!(m.media_group_id.as_deref(), Some("13812345678901234"));
        assert_eq!(m.caption_entities[0].kind, "italic");

        let u: Update = serde_json::from_str(EDITED_IGNORED).unwrap();
        assert!(u.message.is_none() && u.callback_query.is_none());
    }

    #[test]
    fn error_answers_parse() {
        let r: ApiResponse<serde_json::Value> = serde_json::from_str(
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#,
        )
        .unwrap();
        assert!(!r.ok);
        assert_eq!(r.parameters.unwrap().retry_after, Some(7));
    }

    #[test]
    fn outgoing_markup_serialises_as_the_api_expects() {
        let inline =
            ReplyMarkup::Inline(InlineKeyboardMarkup::rows(vec![vec![("⛔", "cancel:1")]]));
        assert_eq!(
            serde_json::to_value(&inline).unwrap(),
            serde_json::json!({"inline_keyboard":[[{"text":"⛔","callback_data":"cancel:1"}]]})
        );
        let kb = ReplyMarkup::Keyboard(ReplyKeyboardMarkup::rows(vec![vec!["📬"]]));
        assert_eq!(
            serde_json::to_value(&kb).unwrap(),
            serde_json::json!({"keyboard":[[{"text":"📬"}]],"resize_keyboard":true})
        );
    }
}
