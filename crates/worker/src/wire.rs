//! Pure helpers of the Worker's HTTP edges, tested natively: the shapes of the queue and
//! runner messages, form decoding, the constant-time secret check, and the small parts of the
//! Wappi and Telegram wire handling that do not need `fetch`.

use groupcast_core::telegram::{ApiResponse, TelegramError};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The one message shape on `MAILING_QUEUE`: "a runner should drive this mailing".
/// Sent by the webhook when a mailing starts or is resumed, re-sent by the Cron recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailingTask {
    pub mailing_id: i64,
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

/// `Retry-After` value assumed when the header is present but unreadable.
pub const RETRY_AFTER_FALLBACK_SECS: u64 = 5;
/// Upper bound on a `Retry-After`, so a silly value cannot park a profile for ever.
pub const RETRY_AFTER_MAX_SECS: u64 = 24 * 3600;

/// Parses a `Retry-After` value into seconds: delay-seconds, or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`) measured from `now_unix`. Unreadable is
/// [`RETRY_AFTER_FALLBACK_SECS`]; a past date is 0; capped at [`RETRY_AFTER_MAX_SECS`].
pub fn parse_retry_after(value: &str, now_unix: i64) -> u64 {
    let v = value.trim();
    let secs = if let Ok(n) = v.parse::<u64>() {
        n
    } else if let Some(at) = parse_http_date(v) {
        at.saturating_sub(now_unix).max(0) as u64
    } else {
        RETRY_AFTER_FALLBACK_SECS
    };
    secs.min(RETRY_AFTER_MAX_SECS)
}

fn parse_http_date(v: &str) -> Option<i64> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u32 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| m == month)? as u32 + 1;
    let year: i64 = year.parse().ok().filter(|y| (1970..=9999).contains(y))?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    if !(0..24).contains(h) || !(0..60).contains(m) || !(0..=60).contains(s) {
        return None;
    }
    let days = groupcast_core::billing::days_from_civil(year, month, day);
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// Whether a Wappi call only reads (safe to repeat) or sends a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WappiKind {
    Read,
    Send,
}

/// A Wappi `200` that is still a failure: `"status": "error"` always is; a read must say
/// `done` if it has a `status` at all (same rule as the server's client).
pub fn wappi_error_reply(v: &serde_json::Value, kind: WappiKind) -> bool {
    match v.get("status") {
        None => false,
        Some(s) => s == "error" || (kind == WappiKind::Read && s != "done"),
    }
}

/// Wappi wants raw base64; a `data:…;base64,` prefix is removed if one slipped through.
pub fn raw_base64(b64: &str) -> &str {
    match b64
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
    {
        Some((_, raw)) => raw,
        None => b64,
    }
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
    fn retry_after_values() {
        let now = 1_445_412_480; // Wed, 21 Oct 2015 07:28:00 GMT
        let cases: &[(&str, u64)] = &[
            ("7", 7),
            (" 120 ", 120),
            ("Wed, 21 Oct 2015 07:28:30 GMT", 30),
            ("Wed, 21 Oct 2015 07:27:00 GMT", 0),
            ("soon", RETRY_AFTER_FALLBACK_SECS),
            ("999999999", RETRY_AFTER_MAX_SECS),
        ];
        for (v, want) in cases {
            assert_eq!(parse_retry_after(v, now), *want, "{v:?}");
        }
    }

    #[test]
    fn wappi_replies() {
        use serde_json::json;
        assert!(!wappi_error_reply(
            &json!({"authorized": true}),
            WappiKind::Read
        ));
        assert!(wappi_error_reply(
            &json!({"status": "error"}),
            WappiKind::Send
        ));
        assert!(!wappi_error_reply(
            &json!({"status": "done"}),
            WappiKind::Send
        ));
        assert!(wappi_error_reply(&json!({"status": "x"}), WappiKind::Read));
        assert_eq!(raw_base64("data:image/png;base64,QUJD"), "QUJD");
        assert_eq!(raw_base64("QUJD"), "QUJD");
        assert_eq!(scrub("bot123:abc failed", "123:abc"), "bot*** failed");
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
