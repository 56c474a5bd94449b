//! The platform-free half of a Bot API client, shared by the server's reqwest client and the
//! Worker's `fetch` client: the request bodies of the methods we call, the photo upload's
//! multipart body, the URL shapes and the decoding of an answer into its `result` or a
//! classified [`TelegramError`]. Sending, pacing and 429 waits stay with each client.
//!
//! The URLs carry the bot token: callers must never put them into logs or error texts.

use super::{ApiResponse, InlineKeyboardMarkup, MessageId, ReplyMarkup, TelegramError};
use crate::model::ids::ChatId;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Used when a 429 comes without `parameters.retry_after`.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 5;

/// `{base}/bot{token}/{method}` (secret: contains the token).
pub fn method_url(base: &str, token: &str, method: &str) -> String {
    format!("{base}/bot{token}/{method}")
}

/// `{base}/file/bot{token}/{file_path}` (secret: contains the token).
pub fn file_url(base: &str, token: &str, file_path: &str) -> String {
    format!(
        "{base}/file/bot{token}/{}",
        file_path.trim_start_matches('/')
    )
}

/// Turns an HTTP status and body into the `result` or a classified error.
pub fn decode<T: DeserializeOwned>(
    method: &str,
    status: u16,
    body: &[u8],
) -> Result<T, TelegramError> {
    let resp: ApiResponse<T> = match serde_json::from_slice(body) {
        Ok(resp) => resp,
        Err(_) if status >= 500 => {
            return Err(TelegramError::Network(format!("{method}: http {status}")))
        }
        Err(_) if status == 429 => return Err(TelegramError::RetryAfter(DEFAULT_RETRY_AFTER_SECS)),
        Err(e) => {
            return Err(TelegramError::InvalidJson(format!(
                "{method}: http {status}: {e}"
            )))
        }
    };
    if resp.ok {
        return resp
            .result
            .ok_or_else(|| TelegramError::InvalidJson(format!("{method}: ok without a result")));
    }
    let code = resp.error_code.unwrap_or(i64::from(status));
    let description = resp.description.unwrap_or_default();
    if code == 429 || status == 429 {
        let secs = resp
            .parameters
            .and_then(|p| p.retry_after)
            .unwrap_or(DEFAULT_RETRY_AFTER_SECS);
        return Err(TelegramError::RetryAfter(secs));
    }
    if code >= 500 || status >= 500 {
        return Err(TelegramError::Network(format!(
            "{method}: http {code}: {description}"
        )));
    }
    Err(TelegramError::Api { code, description })
}

/// The body of `sendMessage`.
pub fn send_message(chat: ChatId, text: &str, markup: Option<&ReplyMarkup>) -> Value {
    let mut body = json!({ "chat_id": chat.0, "text": text });
    if let Some(markup) = markup {
        body["reply_markup"] = json!(markup);
    }
    body
}

/// The body of `editMessageText`.
pub fn edit_message_text(
    chat: ChatId,
    message: MessageId,
    text: &str,
    markup: Option<&InlineKeyboardMarkup>,
) -> Value {
    let mut body = json!({ "chat_id": chat.0, "message_id": message.0, "text": text });
    if let Some(markup) = markup {
        body["reply_markup"] = json!(markup);
    }
    body
}

/// The body of `editMessageReplyMarkup`.
pub fn edit_message_reply_markup(
    chat: ChatId,
    message: MessageId,
    markup: &InlineKeyboardMarkup,
) -> Value {
    json!({ "chat_id": chat.0, "message_id": message.0, "reply_markup": markup })
}

/// The body of `answerCallbackQuery`.
pub fn answer_callback_query(id: &str, text: Option<&str>) -> Value {
    let mut body = json!({ "callback_query_id": id });
    if let Some(text) = text {
        body["text"] = json!(text);
    }
    body
}

/// The body of `getFile`.
pub fn get_file(file_id: &str) -> Value {
    json!({ "file_id": file_id })
}

/// The JSON body of `sendPhoto` for a photo already on Telegram's servers (by `file_id`).
pub fn send_photo_by_id(
    chat: ChatId,
    file_id: &str,
    caption: Option<&str>,
    markup: Option<&ReplyMarkup>,
) -> Value {
    let mut body = json!({ "chat_id": chat.0, "photo": file_id });
    if let Some(caption) = caption {
        body["caption"] = json!(caption);
    }
    if let Some(markup) = markup {
        body["reply_markup"] = json!(markup);
    }
    body
}

/// The multipart body of a `sendPhoto` upload (field `photo`); returns the content type too.
/// `boundary_seed` must be random (the boundary is checked against the bytes anyway).
pub fn send_photo_upload(
    chat: ChatId,
    bytes: &[u8],
    file_name: &str,
    caption: Option<&str>,
    markup: Option<&ReplyMarkup>,
    boundary_seed: u128,
) -> (String, Vec<u8>) {
    let mut fields = vec![("chat_id", chat.0.to_string())];
    if let Some(caption) = caption {
        fields.push(("caption", caption.to_string()));
    }
    if let Some(markup) = markup {
        fields.push(("reply_markup", json!(markup).to_string()));
    }
    multipart(&fields, "photo", file_name, bytes, boundary_seed)
}

/// The multipart body of a `sendDocument` upload (field `document`); returns the content
/// type too. The file's type follows its name (`.csv` is `text/csv`).
pub fn send_document_upload(
    chat: ChatId,
    file_name: &str,
    bytes: &[u8],
    caption: Option<&str>,
    boundary_seed: u128,
) -> (String, Vec<u8>) {
    let mut fields = vec![("chat_id", chat.0.to_string())];
    if let Some(caption) = caption {
        fields.push(("caption", caption.to_string()));
    }
    let mime = match file_name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("csv") => "text/csv",
        Some("txt") => "text/plain",
        _ => "application/octet-stream",
    };
    multipart_file(&fields, "document", file_name, mime, bytes, boundary_seed)
}

/// A multipart/form-data body with text fields and one JPEG or PNG file; returns the content
/// type too. `boundary_seed` must be random (the boundary is checked against the bytes anyway).
pub fn multipart(
    fields: &[(&str, String)],
    file_field: &str,
    file_name: &str,
    bytes: &[u8],
    boundary_seed: u128,
) -> (String, Vec<u8>) {
    let mime = if bytes.starts_with(b"\x89PNG") {
        "image/png"
    } else {
        "image/jpeg"
    };
    multipart_file(fields, file_field, file_name, mime, bytes, boundary_seed)
}

/// A multipart/form-data body (RFC 7578) with text fields and one file of type `mime`;
/// returns the content type too.
pub fn multipart_file(
    fields: &[(&str, String)],
    file_field: &str,
    file_name: &str,
    mime: &str,
    bytes: &[u8],
    boundary_seed: u128,
) -> (String, Vec<u8>) {
    let mut seed = boundary_seed;
    let boundary = loop {
        let b = format!("groupcast-{seed:032x}");
        if !bytes.windows(b.len()).any(|w| w == b.as_bytes()) {
            break b;
        }
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    };
    let quote = |s: &str| s.replace(['"', '\r', '\n'], "_");
    let mut body = Vec::with_capacity(bytes.len() + 512);
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(value.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"{}\"\r\nContent-Type: {mime}\r\n\r\n",
            quote(file_name)
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_answers() {
        let cases: Vec<(u16, &str, Result<Value, TelegramError>)> = vec![
            (200, r#"{"ok":true,"result":{"a":1}}"#, Ok(json!({"a":1}))),
            (
                429,
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#,
                Err(TelegramError::RetryAfter(7)),
            ),
            (
                429,
                r#"{"ok":false,"error_code":429}"#,
                Err(TelegramError::RetryAfter(5)),
            ),
            (429, "<html>", Err(TelegramError::RetryAfter(5))),
            (
                400,
                r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
                Err(TelegramError::Api {
                    code: 400,
                    description: "Bad Request: chat not found".into(),
                }),
            ),
            (
                403,
                r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#,
                Err(TelegramError::Api {
                    code: 403,
                    description: "Forbidden: bot was blocked by the user".into(),
                }),
            ),
            (
                502,
                "<html>Bad Gateway</html>",
                Err(TelegramError::Network("m: http 502".into())),
            ),
            (
                500,
                r#"{"ok":false,"error_code":500,"description":"Internal"}"#,
                Err(TelegramError::Network("m: http 500: Internal".into())),
            ),
            (
                200,
                r#"{"ok":true}"#,
                Err(TelegramError::InvalidJson("m: ok without a result".into())),
            ),
        ];
        for (status, body, want) in cases {
            assert_eq!(
                decode::<Value>("m", status, body.as_bytes()),
                want,
                "{status} {body}"
            );
        }
        assert!(decode::<Value>(
            "m",
            400,
            br#"{"ok":false,"error_code":400,"description":"Bad Request: message is not modified"}"#,
        )
        .unwrap_err()
        .is_not_modified());
        assert!(matches!(
            decode::<Value>("m", 200, b"nope"),
            Err(TelegramError::InvalidJson(_))
        ));
    }

    #[test]
    fn builds_bodies() {
        let kb = InlineKeyboardMarkup {
            inline_keyboard: vec![],
        };
        assert_eq!(
            send_message(ChatId(5), "hi", None),
            json!({"chat_id": 5, "text": "hi"})
        );
        assert_eq!(
            edit_message_text(ChatId(5), MessageId(7), "t", Some(&kb)),
            json!({"chat_id": 5, "message_id": 7, "text": "t", "reply_markup": {"inline_keyboard": []}})
        );
        assert_eq!(
            edit_message_reply_markup(ChatId(5), MessageId(7), &kb),
            json!({"chat_id": 5, "message_id": 7, "reply_markup": {"inline_keyboard": []}})
        );
        assert_eq!(
            answer_callback_query("q", Some("ok")),
            json!({"callback_query_id": "q", "text": "ok"})
        );
        assert_eq!(
            answer_callback_query("q", None),
            json!({"callback_query_id": "q"})
        );
        assert_eq!(get_file("f"), json!({"file_id": "f"}));
        assert_eq!(
            send_photo_by_id(ChatId(5), "f", Some("c"), None),
            json!({"chat_id": 5, "photo": "f", "caption": "c"})
        );
    }

    #[test]
    fn urls() {
        assert_eq!(method_url("http://h", "T", "getMe"), "http://h/botT/getMe");
        assert_eq!(
            file_url("http://h", "T", "/a/b.jpg"),
            "http://h/file/botT/a/b.jpg"
        );
    }

    #[test]
    fn multipart_body_has_fields_and_file() {
        let (ct, body) = send_photo_upload(ChatId(5), b"\x89PNGdata", "a.png", Some("c"), None, 1);
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"chat_id\"\r\n\r\n5\r\n"));
        assert!(text.contains("name=\"caption\"\r\n\r\nc\r\n"));
        assert!(text.contains("filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
        let (_, body) = multipart(&[], "photo", "a\".jpg", b"JPEGDATA", 7);
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("filename=\"a_.jpg\"\r\nContent-Type: image/jpeg\r\n\r\nJPEGDATA"));
        // A boundary that occurs in the file is replaced.
        let clash = format!("x--groupcast-{:032x}--x", 1u128);
        let (ct, _) = multipart(&[], "photo", "a.jpg", clash.as_bytes(), 1);
        assert!(!clash.contains(ct.strip_prefix("multipart/form-data; boundary=").unwrap()));
    }

    #[test]
    fn document_upload_carries_the_file_its_name_type_and_caption() {
        let csv = "a,b\r\n1,2\r\n".as_bytes();
        let (ct, body) = send_document_upload(ChatId(-5), "mailing-7.csv", csv, Some("📄 #7"), 3);
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body).unwrap();
        assert_eq!(
            text,
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n-5\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\n📄 #7\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"document\"; filename=\"mailing-7.csv\"\r\n\
                 Content-Type: text/csv\r\n\r\na,b\r\n1,2\r\n\r\n--{boundary}--\r\n"
            )
        );
        let (_, body) = send_document_upload(ChatId(1), "x.bin", b"\0", None, 3);
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("caption"));
        assert!(text.contains("Content-Type: application/octet-stream\r\n"));
    }
}
