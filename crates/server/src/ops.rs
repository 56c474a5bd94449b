//! Operator commands: `set-webhook` and `check`.
//!
//! `check` prints one line per part, `ok      <part>: …` or `PROBLEM <part>: … (the fix)`, and
//! fails when any part has a problem. It only reads: it creates no database file, applies no
//! migration and writes no key. Every printed line goes through the log redactor.

use crate::db::SqliteDb;
use crate::logging::print_line;
use crate::settings::Settings;
use crate::telegram::HttpTelegram;
use serde_json::Value;

pub async fn set_webhook(settings: &Settings) -> anyhow::Result<()> {
    let (Some(public), Some(secret)) = (&settings.public_url, &settings.webhook_secret) else {
        anyhow::bail!(
            "PUBLIC_URL and TELEGRAM_WEBHOOK_SECRET must both be set to register a webhook"
        );
    };
    let url = format!("{public}/telegram/webhook");
    let tg = HttpTelegram::new(&settings.telegram_api_url, settings.telegram_token.clone());
    tg.set_webhook(&url, secret)
        .await
        .map_err(|e| anyhow::anyhow!("setWebhook: {e}"))?;
    println!("webhook set to {url}");
    Ok(())
}

/// The lines of a check run, and how many are problems.
#[derive(Default)]
struct Report {
    problems: usize,
}

impl Report {
    fn ok(&mut self, part: &str, detail: impl AsRef<str>) {
        print_line(&format!("ok      {part}: {}", detail.as_ref()));
    }

    fn problem(&mut self, part: &str, detail: impl AsRef<str>) {
        self.problems += 1;
        print_line(&format!("PROBLEM {part}: {}", detail.as_ref()));
    }
}

/// Prints one line per check; fails when any check fails.
pub async fn check(settings: &Settings) -> anyhow::Result<()> {
    let mut r = Report::default();
    configuration(&mut r, settings);
    let tg = HttpTelegram::new(&settings.telegram_api_url, settings.telegram_token.clone());
    match tg.get_me().await {
        Ok(me) => r.ok(
            "telegram",
            format!("getMe: bot @{}", me.username.unwrap_or_default()),
        ),
        Err(e) => r.problem(
            "telegram",
            format!("getMe failed: {e} (check TELEGRAM_BOT_TOKEN and TELEGRAM_API_URL)"),
        ),
    }
    match tg.get_webhook_info().await {
        Ok(info) => webhook(&mut r, settings, &info),
        Err(e) => r.problem(
            "webhook",
            format!("getWebhookInfo failed: {e} (check TELEGRAM_BOT_TOKEN and TELEGRAM_API_URL)"),
        ),
    }
    database(&mut r, settings);
    redis(&mut r, settings).await;
    encryption_key(&mut r, settings);
    if r.problems > 0 {
        anyhow::bail!("{} check(s) found a problem", r.problems);
    }
    Ok(())
}

/// The settings loaded (or the command would not have started); says what they amount to.
fn configuration(r: &mut Report, s: &Settings) {
    let mode = match &s.public_url {
        Some(url) => format!("webhook at {url}/telegram/webhook"),
        None => "long polling".into(),
    };
    let payments = if s.core.payments.is_some() {
        "payments on"
    } else {
        "payments off"
    };
    r.ok(
        "configuration",
        format!(
            "valid; {mode}; {payments}; {} operator(s); state {}",
            s.core.admin_ids.len(),
            if s.redis_url.is_some() {
                "redis"
            } else {
                "embedded"
            }
        ),
    );
    if s.public_url.is_some() && s.webhook_secret.is_none() {
        r.problem(
            "configuration",
            "PUBLIC_URL is set but TELEGRAM_WEBHOOK_SECRET is not: set a random secret of 32+ characters (A-Z a-z 0-9 _ -)",
        );
    }
    if s.core.admin_ids.is_empty() {
        r.ok(
            "configuration",
            "no ADMIN_TELEGRAM_IDS: /stats, /grant and /broadcast answer nobody",
        );
    }
}

/// What Telegram has registered, against what this deployment expects.
fn webhook(r: &mut Report, s: &Settings, info: &Value) {
    let url = info["url"].as_str().unwrap_or("");
    let pending = info["pending_update_count"].as_i64().unwrap_or(0);
    let last_error = info["last_error_message"]
        .as_str()
        .filter(|e| !e.is_empty());
    match &s.public_url {
        Some(public) => {
            let want = format!("{public}/telegram/webhook");
            if url == want {
                r.ok(
                    "webhook",
                    format!("registered at {url}, {pending} update(s) pending"),
                );
            } else if url.is_empty() {
                r.problem(
                    "webhook",
                    format!("none registered, expected {want}: run `groupcast set-webhook`"),
                );
            } else {
                r.problem(
                    "webhook",
                    format!("Telegram has {url}, expected {want}: run `groupcast set-webhook`"),
                );
            }
            if let Some(e) = last_error {
                let when = info["last_error_date"].as_i64().unwrap_or(0);
                r.problem(
                    "webhook",
                    format!(
                        "Telegram's last delivery error ({}): {e} (check that PUBLIC_URL reaches this server over HTTPS and that TELEGRAM_WEBHOOK_SECRET matches the one registered; `groupcast set-webhook` registers it again)",
                        crate::export::iso_time(when * 1000)
                    ),
                );
            }
        }
        None if url.is_empty() => r.ok(
            "webhook",
            format!("none (long polling), {pending} update(s) pending"),
        ),
        None => r.ok(
            "webhook",
            format!("{url} is registered; `serve` removes it to use long polling (set PUBLIC_URL to keep it)"),
        ),
    }
}

/// The file exists, answers, and has every embedded migration recorded.
fn database(r: &mut Report, s: &Settings) {
    let path = &s.database_path;
    if !path.exists() {
        r.problem(
            "database",
            format!(
                "{} does not exist (check DATABASE_PATH, or run `groupcast migrate` to create it)",
                path.display()
            ),
        );
        return;
    }
    let db = match SqliteDb::open(path) {
        Ok(db) => db,
        Err(e) => {
            r.problem(
                "database",
                format!(
                    "{}: {e} (check DATABASE_PATH and the file's permissions)",
                    path.display()
                ),
            );
            return;
        }
    };
    match db.pending_migrations() {
        Ok(p) if p.is_empty() => r.ok(
            "database",
            format!("{} reachable, all migrations applied", path.display()),
        ),
        Ok(p) => r.problem(
            "database",
            format!(
                "migration(s) not applied: {} (run `groupcast migrate`)",
                p.join(", ")
            ),
        ),
        Err(e) => r.problem(
            "database",
            format!("{}: {e} (check DATABASE_PATH)", path.display()),
        ),
    }
}

async fn redis(r: &mut Report, s: &Settings) {
    let Some(url) = &s.redis_url else {
        r.ok("state", "embedded (REDIS_URL not set)");
        return;
    };
    match crate::redis_state::RedisState::connect(url.expose(), &s.redis_prefix).await {
        Ok(redis) => match redis.ping().await {
            Ok(()) => r.ok(
                "state",
                format!("redis reachable, prefix {:?}", s.redis_prefix),
            ),
            Err(e) => r.problem("state", format!("redis: {e} (check REDIS_URL)")),
        },
        Err(e) => r.problem("state", format!("redis: {e} (check REDIS_URL)")),
    }
}

/// `ENCRYPTION_KEY` or the key file must be readable; a missing file is fine before the first
/// start (which creates it).
fn encryption_key(r: &mut Report, s: &Settings) {
    use groupcast_core::crypto::TokenCipher;
    if let Some(key) = &s.encryption_key {
        match TokenCipher::from_base64_key(key.expose()) {
            Ok(_) => r.ok("encryption key", "ENCRYPTION_KEY usable"),
            Err(e) => r.problem(
                "encryption key",
                format!("ENCRYPTION_KEY: {e} (32 random bytes, base64)"),
            ),
        }
        return;
    }
    let path = s.data_dir().join("encryption.key");
    if !path.exists() {
        r.ok(
            "encryption key",
            format!(
                "{} not created yet (`serve` creates it on first start: back it up)",
                path.display()
            ),
        );
        return;
    }
    match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|t| TokenCipher::from_base64_key(t.trim()).map_err(|e| e.to_string()))
    {
        Ok(_) => r.ok("encryption key", format!("{} usable", path.display())),
        Err(e) => r.problem(
            "encryption key",
            format!(
                "{}: {e} (restore the file from a backup, or set ENCRYPTION_KEY)",
                path.display()
            ),
        ),
    }
}
