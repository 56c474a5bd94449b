//! Pure helpers of the Worker's HTTP edges, tested natively: the shapes of the queue and
//! runner messages, form decoding, the constant-time secret check, and the small parts of the
//! Telegram wire handling that do not need `fetch` (the Wappi client is the core's
//! `wappi::client`).

use groupcast_core::telegram::{ApiResponse, TelegramError};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The one message shape on `MAILING_QUEUE`: "a runner should drive this mailing".
/// Sent by the webhook when a mailing starts or is resumed, re-sent by the Cron recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailingTask {
    pub mailing_id: i64,
}

/// A message on `MAILING_QUEUE`: `{"mailing_id": 42}` (a runner should drive that mailing) or
/// `{"collage": {"user_id", "chat_id", "requested_at"}}` (🌅 pressed: build and preview the
/// user's collage, see `groupcast_core::long_work`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueueTask {
    Mailing(MailingTask),
    Collage {
        collage: groupcast_core::long_work::CollageJob,
    },
}

/// The body of `POST /start` and `POST /cancel` to a `ProfileRunner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerCommand {
    pub mailing_id: i64,
}

/// Compares a received secret with the expected one without leaking where they differ.
pub fn secret_matches(expected: &[u8], got: &[u8]) -> bool {
    expected.len() == got.len() && bool::from(expected.ct_eq(got))
}

/// `application/x-www-form-urlencoded` (a query string or a form body) into pairs, decoded
/// once (`+` is a space).
pub fn form_pairs(s: &str) -> Vec<(String, String)> {
    let decode = |v: &str| {
        let v = v.replace('+', " ");
        urlencoding::decode(&v).map(|c| c.into_owned()).unwrap_or(v)
    };
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Replaces every occurrence of `secret` in `text` by `***` (belt and braces for error texts).
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "***")
    }
}

/// Used when a Telegram 429 comes without `parameters.retry_after`.
pub const DEFAULT_TELEGRAM_RETRY_AFTER_SECS: u64 = 5;

/// Turns a Bot API HTTP status and body into the `result` or a classified error (the same
/// rules as the server's client).
pub fn telegram_classify<T: serde::de::DeserializeOwned>(
    method: &str,
    status: u16,
    body: &[u8],
) -> Result<T, TelegramError> {
    let resp: ApiResponse<T> = match serde_json::from_slice(body) {
        Ok(resp) => resp,
        Err(_) if status >= 500 => {
            return Err(TelegramError::Network(format!("{method}: http {status}")))
        }
        Err(_) if status == 429 => {
            return Err(TelegramError::RetryAfter(DEFAULT_TELEGRAM_RETRY_AFTER_SECS))
        }
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
            .unwrap_or(DEFAULT_TELEGRAM_RETRY_AFTER_SECS);
        return Err(TelegramError::RetryAfter(secs));
    }
    if code >= 500 || status >= 500 {
        return Err(TelegramError::Network(format!(
            "{method}: http {code}: {description}"
        )));
    }
    Err(TelegramError::Api { code, description })
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

/// A multipart/form-data body with text fields and one JPEG file; returns the content type
/// too. `boundary_seed` must be random (the boundary is checked against the bytes anyway).
pub fn multipart(
    fields: &[(&str, String)],
    file_field: &str,
    file_name: &str,
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
    let mime = if bytes.starts_with(b"\x89PNG") {
        "image/png"
    } else {
        "image/jpeg"
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
    fn forms() {
        let pairs = form_pairs("OutSum=490.000000&InvId=7&Description=%D0%9F+x&empty=&flag");
        assert_eq!(pairs[0], ("OutSum".into(), "490.000000".into()));
        assert_eq!(pairs[2], ("Description".into(), "П x".into()));
        assert_eq!(pairs[3], ("empty".into(), "".into()));
        assert_eq!(pairs[4], ("flag".into(), "".into()));
    }

    #[test]
    fn secret_compare() {
        assert!(secret_matches(b"abc", b"abc"));
        assert!(!secret_matches(b"abc", b"abd"));
        assert!(!secret_matches(b"abc", b""));
    }

    #[test]
    fn scrubbing() {
        assert_eq!(scrub("bot123:abc failed", "123:abc"), "bot*** failed");
        assert_eq!(scrub("nothing", ""), "nothing");
    }

    #[test]
    fn telegram_answers() {
        let ok: Result<serde_json::Value, _> =
            telegram_classify("m", 200, br#"{"ok":true,"result":{"message_id":5}}"#);
        assert_eq!(ok.unwrap()["message_id"], 5);
        let e = telegram_classify::<serde_json::Value>(
            "m",
            429,
            br#"{"ok":false,"error_code":429,"parameters":{"retry_after":3}}"#,
        )
        .unwrap_err();
        assert_eq!(e, TelegramError::RetryAfter(3));
        let e = telegram_classify::<serde_json::Value>("m", 502, b"<html>").unwrap_err();
        assert!(matches!(e, TelegramError::Network(_)));
        let e = telegram_classify::<serde_json::Value>(
            "m",
            400,
            br#"{"ok":false,"error_code":400,"description":"Bad Request: message is not modified"}"#,
        )
        .unwrap_err();
        assert!(e.is_not_modified());
        let e = scrub_telegram(TelegramError::Network("bot1:x failed".into()), "1:x");
        assert_eq!(e, TelegramError::Network("bot*** failed".into()));
    }

    #[test]
    fn multipart_body() {
        let (ct, body) = multipart(
            &[("chat_id", "5".into())],
            "photo",
            "a\".jpg",
            b"JPEGDATA",
            7,
        );
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"chat_id\"\r\n\r\n5\r\n"));
        assert!(text.contains("filename=\"a_.jpg\"\r\nContent-Type: image/jpeg\r\n\r\nJPEGDATA"));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }
}
