//! Operator commands: `set-webhook` and `check`.

use crate::app;
use crate::settings::Settings;
use crate::telegram::HttpTelegram;

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

/// Prints one line per check; fails when any check fails.
pub async fn check(settings: &Settings) -> anyhow::Result<()> {
    let mut failed = 0;
    let mut line = |ok: bool, what: &str, detail: String| {
        if !ok {
            failed += 1;
        }
        println!(
            "{} {what}: {detail}",
            if ok { "ok     " } else { "PROBLEM" }
        );
    };
    line(true, "configuration", "all settings valid".into());
    let tg = HttpTelegram::new(&settings.telegram_api_url, settings.telegram_token.clone());
    match tg.get_me().await {
        Ok(me) => line(
            true,
            "telegram",
            format!("bot @{}", me.username.unwrap_or_default()),
        ),
        Err(e) => line(
            false,
            "telegram",
            format!("getMe failed: {e} (check TELEGRAM_BOT_TOKEN and TELEGRAM_API_URL)"),
        ),
    }
    match tg.get_webhook_info().await {
        Ok(info) => {
            let url = info
                .get("url")
                .and_then(|u| u.as_str())
                .unwrap_or("")
                .to_string();
            let want = settings
                .public_url
                .as_ref()
                .map(|p| format!("{p}/telegram/webhook"));
            match want {
                Some(w) if w == url => line(true, "webhook", format!("registered at {url}")),
                Some(w) => line(
                    false,
                    "webhook",
                    format!("Telegram has {url:?}, expected {w}: run `groupcast set-webhook`"),
                ),
                None if url.is_empty() => line(true, "webhook", "none (long polling mode)".into()),
                None => line(
                    true,
                    "webhook",
                    format!("{url} is registered; `serve` removes it for long polling"),
                ),
            }
        }
        Err(e) => line(false, "webhook", format!("getWebhookInfo failed: {e}")),
    }
    match crate::db::SqliteDb::open(&settings.database_path) {
        Ok(db) => match db.pending_migrations() {
            Ok(p) if p.is_empty() => line(
                true,
                "database",
                format!(
                    "{} reachable, migrations applied",
                    settings.database_path.display()
                ),
            ),
            Ok(p) => line(
                false,
                "database",
                format!("{} migration(s) pending: run `groupcast migrate`", p.len()),
            ),
            Err(e) => line(false, "database", format!("{e}")),
        },
        Err(e) => line(
            false,
            "database",
            format!(
                "{}: {e} (check DATABASE_PATH)",
                settings.database_path.display()
            ),
        ),
    }
    match &settings.redis_url {
        None => line(true, "state", "embedded (REDIS_URL not set)".into()),
        Some(url) => {
            match crate::redis_state::RedisState::connect(url.expose(), &settings.redis_prefix)
                .await
            {
                Ok(r) => match r.ping().await {
                    Ok(()) => line(true, "state", "redis reachable".into()),
                    Err(e) => line(false, "state", format!("{e} (check REDIS_URL)")),
                },
                Err(e) => line(false, "state", format!("{e} (check REDIS_URL)")),
            }
        }
    }
    match app::load_or_create_key(settings) {
        Ok(_) => line(true, "encryption key", "usable".into()),
        Err(e) => line(false, "encryption key", format!("{e}")),
    }
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    Ok(())
}
