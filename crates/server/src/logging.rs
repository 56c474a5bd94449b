//! Log set-up and secret redaction.
//!
//! Lines are human-readable by default and JSON with `LOG_FORMAT=json`; the level comes from
//! `RUST_LOG` (default `info`). Every line goes through [`scrub`] on its way to stderr, as do
//! the operator commands' printed lines and panic messages. `scrub` is the second line of
//! defence: secrets are wrapped in `Secret` and HTTP clients strip URLs from their errors, but
//! should a secret slip into a text anyway (an upstream error echoing a URL, a new log line), it
//! is replaced by `[redacted]` here. It knows
//! - every secret of the settings (bot token and its secret half, webhook secret, Robokassa
//!   passwords, encryption key, the Redis password), registered at start-up;
//! - each user's Wappi token, registered by the Wappi client the first time it is used;
//! - the shapes of secrets it cannot know in advance: `bot<id>:<token>` in Bot API URLs, the
//!   value after `SignatureValue` (Robokassa signatures) and after `Authorization` or
//!   `X-Telegram-Bot-Api-Secret-Token`.

use crate::settings::Settings;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Mutex, RwLock};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// What a redacted secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Shorter values are not treated as secrets (they would blank out ordinary words).
const MIN_SECRET_LEN: usize = 6;

/// The known secret values. A service knows thousands (a Wappi token per user), and every log
/// line is scrubbed, so they are searched with one automaton (one pass over the line whatever
/// their number), rebuilt once [`REBUILD_AFTER`] new ones are waiting; those few are searched
/// one by one meanwhile.
static SECRETS: RwLock<Known> = RwLock::new(Known {
    all: Vec::new(),
    set: std::collections::BTreeSet::new(),
    matcher: None,
    built: 0,
});

/// New secrets searched one by one before the automaton is rebuilt with them.
const REBUILD_AFTER: usize = 32;

struct Known {
    /// Every secret, in the order registered.
    all: Vec<String>,
    /// The same, to tell a known one at once (the Wappi client registers its token per call).
    set: std::collections::BTreeSet<String>,
    /// Finds `all[..built]`, the longest at a place first (a secret containing another is
    /// replaced whole).
    matcher: Option<aho_corasick::AhoCorasick>,
    built: usize,
}

impl Known {
    fn contains(&self, secret: &str) -> bool {
        self.set.contains(secret)
    }

    fn rebuild(&mut self) {
        // Too many to build (cannot happen at these sizes): the rest stay searched one by one.
        if let Ok(m) = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&self.all)
        {
            self.matcher = Some(m);
            self.built = self.all.len();
        }
    }

    /// `text` with every known secret replaced: the waiting ones longest first, then the
    /// automaton's.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        let mut waiting: Vec<&String> = self.all[self.built..].iter().collect();
        waiting.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in waiting {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        match &self.matcher {
            Some(m) if m.is_match(&out) => m.replace_all(&out, &vec![REDACTED; m.patterns_len()]),
            _ => out,
        }
    }
}

/// Values seen in requests (Robokassa signatures that verified): only the latest few are kept,
/// so that the list stays short.
static TRANSIENT: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
const TRANSIENT_KEEP: usize = 64;

/// Adds a value that came in with a request to a short redaction list. Only for a value that
/// proved to be a secret (a Robokassa signature that verified): anything a caller sends
/// unchecked could be a chosen word, which would then be blanked out of every later line.
pub fn register_transient(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    if let Ok(mut list) = TRANSIENT.lock() {
        if !list.iter().any(|k| k == secret) {
            if list.len() >= TRANSIENT_KEEP {
                list.pop_front();
            }
            list.push_back(secret.to_string());
        }
    }
}

/// Adds a secret value to the redaction list (cheap when already known).
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    if SECRETS.read().map(|s| s.contains(secret)).unwrap_or(false) {
        return;
    }
    if let Ok(mut known) = SECRETS.write() {
        if !known.contains(secret) {
            known.all.push(secret.to_string());
            known.set.insert(secret.to_string());
            if known.all.len() - known.built >= REBUILD_AFTER {
                known.rebuild();
            }
        }
    }
}

/// Registers every secret the settings hold.
pub fn register_settings(settings: &Settings) {
    let token = settings.telegram_token.expose();
    register(token);
    if let Some((_, half)) = token.split_once(':') {
        register(half);
    }
    for secret in [&settings.webhook_secret, &settings.encryption_key]
        .into_iter()
        .flatten()
    {
        register(secret.expose());
    }
    if let Some(url) = &settings.redis_url {
        if let Some(password) = url_password(url.expose()) {
            register(&password);
        }
    }
    if let Some(p) = &settings.core.payments {
        register(p.merchant.password1.expose());
        register(p.merchant.password2.expose());
    }
    if let Ok(mut known) = SECRETS.write() {
        known.rebuild();
    }
}

/// The password of `scheme://user:password@host…`, if any.
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let password = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
    Some(password.to_string()).filter(|p| !p.is_empty())
}

/// `text` with every known secret and every secret-shaped value replaced by [`REDACTED`].
pub fn scrub(text: &str) -> String {
    let mut out = match SECRETS.read() {
        Ok(known) => known.scrub(text),
        Err(_) => text.to_string(),
    };
    if let Ok(list) = TRANSIENT.lock() {
        for secret in list.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
    }
    let mut out = redact_bot_tokens(&out);
    let lower = out.to_ascii_lowercase();
    for key in [
        "signaturevalue",
        "authorization",
        "x-telegram-bot-api-secret-token",
        "secret_token",
    ] {
        if lower.contains(key) {
            out = redact_after_key(&out, key);
        }
    }
    out
}

/// `bot<digits>:<token>` (Bot API URL paths) → `bot<digits>:[redacted]`.
fn redact_bot_tokens(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while let Some(pos) = text[i..].find("bot") {
        let start = i + pos + 3;
        let digits = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let colon = start + digits;
        if digits > 0 && bytes.get(colon) == Some(&b':') {
            let token_len = bytes[colon + 1..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'-')
                .count();
            if token_len >= MIN_SECRET_LEN {
                out.push_str(&text[copied..=colon]);
                out.push_str(REDACTED);
                copied = colon + 1 + token_len;
                i = copied;
                continue;
            }
        }
        i = start;
    }
    out.push_str(&text[copied..]);
    out
}

/// Replaces the value that follows `key` (case-insensitive; after `=`, `:` and quotes or
/// spaces) up to the next delimiter.
fn redact_after_key(text: &str, key: &str) -> String {
    let lower = text.to_ascii_lowercase();
    if !lower.contains(key) {
        return text.to_string();
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(pos) = lower[from..].find(key) {
        let mut j = from + pos + key.len();
        // Separators: `=`, `:`, quotes, spaces, a backslash of an escaped JSON quote.
        let sep_start = j;
        while j < bytes.len() && matches!(bytes[j], b'=' | b':' | b'"' | b'\'' | b' ' | b'\\') {
            j += 1;
        }
        let has_sep = bytes[sep_start..j].iter().any(|b| matches!(b, b'=' | b':'));
        let value_len = bytes[j..]
            .iter()
            .take_while(|b| {
                !matches!(
                    b,
                    b'&' | b'"' | b'\'' | b' ' | b',' | b';' | b'\\' | b'}' | b'\n'
                )
            })
            .count();
        if has_sep && value_len > 0 && !text[j..j + value_len].starts_with(REDACTED) {
            out.push_str(&text[copied..j]);
            out.push_str(REDACTED);
            copied = j + value_len;
        }
        from = (j + value_len).max(from + pos + key.len());
    }
    out.push_str(&text[copied..]);
    out
}

/// A writer for the log formatter: each formatted event arrives in one `write` and leaves
/// scrubbed.
pub struct RedactingStderr;

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr()
            .lock()
            .write_all(scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

/// Installs the subscriber (redacting log lines, metrics from events) and a panic hook that
/// redacts panic messages. Call once, first thing.
pub fn init(settings: &Settings) {
    register_settings(settings);
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(std::io::stderr(), "{}", scrub(&info.to_string()));
    }));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(RedactingStderr);
    let fmt = if settings.log_json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .try_init();
}

/// Prints a line for the operator on stdout, scrubbed.
pub fn print_line(line: &str) {
    println!("{}", scrub(line));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_and_shapes() {
        register("sentinel-secret-value-1");
        assert_eq!(
            scrub("error: sentinel-secret-value-1 refused"),
            "error: [redacted] refused"
        );
        assert_eq!(
            scrub("POST http://127.0.0.1:9/bot123456:AAE-abc_DEF123/sendMessage failed"),
            "POST http://127.0.0.1:9/bot123456:[redacted]/sendMessage failed"
        );
        assert_eq!(
            scrub("https://x/?OutSum=1&SignatureValue=ABCDEF0123&InvId=7"),
            "https://x/?OutSum=1&SignatureValue=[redacted]&InvId=7"
        );
        assert_eq!(
            scrub(r#"{"fields":{"msg":"Authorization: tok123456 x"}}"#),
            r#"{"fields":{"msg":"Authorization: [redacted] x"}}"#
        );
        assert_eq!(scrub("robot 42:1 is fine"), "robot 42:1 is fine");
        assert_eq!(scrub("no secrets here"), "no secrets here");
        assert_eq!(
            url_password("redis://user:p4ssw0rd@127.0.0.1:6379").as_deref(),
            Some("p4ssw0rd")
        );
        assert_eq!(url_password("redis://127.0.0.1:6379"), None);
    }
}
