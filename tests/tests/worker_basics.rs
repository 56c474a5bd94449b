//! The Cloudflare Worker under `wrangler dev` (real workerd, local D1): health, the webhook's
//! secret and `update_id` dedup, registration, the text and the groups — the same scenarios as
//! the native suites, driven by webhook. Needs `scripts/worker-setup` (scripts/test runs it).

use groupcast_e2e::harness::WEBHOOK_SECRET;
use groupcast_e2e::scenarios;
use groupcast_e2e::worker_harness::{worker_world, Worker};
use groupcast_e2e::world::{Account, World, STEP};
use serde_json::{json, Value};

fn help_update(w: &World<Worker>, update_id: i64, user: i64) -> Value {
    let mut u = json!({ "update_id": update_id });
    u["message"] = w.tg.text_message(user, "/help")["message"].clone();
    u
}

#[tokio::test]
async fn healthz_reports_storage_and_runtime() {
    let w = worker_world().await;
    let r = reqwest::get(format!("{}/healthz", w.server.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["mode"], "webhook", "{body}");
    w.server.assert_no_secrets_in_logs(&[]);
}

#[tokio::test]
async fn the_webhook_needs_the_secret_and_processes_each_update_once() {
    let w = worker_world().await;
    let url = w.server.webhook_url();
    let (code, _) =
        w.tg.deliver_webhook(&url, None, help_update(&w, 1_000_010, 5001))
            .await;
    assert_eq!(code, 401);
    let (code, _) =
        w.tg.deliver_webhook(&url, Some("wrong"), help_update(&w, 1_000_011, 5001))
            .await;
    assert_eq!(code, 401);
    // The same update three times in a row and five times at once: answered once.
    for _ in 0..3 {
        let (code, _) =
            w.tg.deliver_webhook(&url, Some(WEBHOOK_SECRET), help_update(&w, 1_000_012, 5001))
                .await;
        assert_eq!(code, 200);
    }
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (tg, url, u) = (w.tg.clone(), url.clone(), help_update(&w, 1_000_013, 5001));
            tokio::spawn(async move { tg.deliver_webhook(&url, Some(WEBHOOK_SECRET), u).await })
        })
        .collect();
    // While the first of them is being handled the others are answered 503 ("in hand"):
    // Telegram delivers such an update again later and then hears "duplicate", and if the
    // first handler died meanwhile the update is not lost. Handled once either way (below).
    for t in tasks {
        let code = t.await.unwrap().0;
        assert!(code == 200 || code == 503, "{code}");
    }
    // A lower id than one seen before is still processed (a set, not a high-water mark).
    let (code, _) =
        w.tg.deliver_webhook(&url, Some(WEBHOOK_SECRET), help_update(&w, 7, 5001))
            .await;
    assert_eq!(code, 200);
    w.tg.wait_until(|tg| tg.sent_to(5001).len() >= 3, STEP)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        w.tg.sent_to(5001).len(),
        3,
        "1000012, 1000013 and 7 once each"
    );
    assert_eq!(
        w.server.query_i64(
            "SELECT COUNT(*) FROM telegram_updates WHERE update_id IN (1000010, 1000011)"
        ),
        0,
        "refused updates are not recorded"
    );
    assert!(w.tg.calls_of("getUpdates").is_empty(), "no polling");
    w.server.assert_no_secrets_in_logs(&[]);
}

#[tokio::test]
async fn registration_checks_wappi_and_stores_the_token_encrypted() {
    let w = worker_world().await;
    let acc = Account::numbered(1);
    w.wappi.add_profile(&acc.profile, &acc.token);
    let alice = w.person(1001);
    alice.says("/start");
    alice.hears("токен").await;
    alice.says("not a token!");
    alice.hears("не похоже на токен").await;
    alice.says(&acc.token);
    let masked = alice.hears("профиля").await;
    assert!(
        !masked.text.contains(&acc.token),
        "the token is shown only masked"
    );
    alice.says("deadbeef-0000");
    alice.hears("не знает такой профиль").await;
    alice.says(&acc.profile);
    let done = alice.hears("✔️").await;
    assert!(
        done.reply_markup.as_ref().unwrap()["keyboard"].is_array(),
        "main menu keyboard"
    );
    let (enc, profile): (String, String) = w
        .server
        .db()
        .query_row(
            "SELECT wappi_token_enc, profile_id FROM users WHERE id = 1001",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(!enc.is_empty() && !enc.contains(&acc.token));
    assert_eq!(profile, acc.profile);
    // Neither the Wappi token nor the bot token is anywhere in the Worker's storage in clear
    // (D1, DO storage, KV, queues). Left out: `v3/observability`, the trace store of
    // `wrangler dev` itself, which records every subrequest's URL — and a Bot API URL carries
    // the bot token (docs/cloudflare.md warns against turning traces on in production).
    let bot_secret = groupcast_e2e::harness::BOT_TOKEN.split(':').nth(1).unwrap();
    let traces = w.server.state.join("v3/observability");
    for file in files_under(&w.server.state) {
        if file.starts_with(&traces) {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap_or_default();
        for secret in [acc.token.as_str(), bot_secret] {
            if let Some(at) = bytes
                .windows(secret.len())
                .position(|win| win == secret.as_bytes())
            {
                panic!(
                    "a secret stored in clear in {}: …{}…",
                    file.display(),
                    String::from_utf8_lossy(&bytes[at.saturating_sub(300)..at + 60])
                );
            }
        }
    }
    alice.says("/start");
    alice.hears("Главное меню").await;
    w.server.assert_no_secrets_in_logs(&[&acc.token]);
}

#[tokio::test]
async fn text_and_groups_are_saved_like_the_server_does() {
    let w = worker_world().await;
    let acc = Account::numbered(2);
    w.wappi.add_profile(&acc.profile, &acc.token);
    let p = w.person(2001);
    p.registers(&acc).await;
    scenarios::text_formatting_becomes_whatsapp_markup(&w, &p).await;
    scenarios::pasted_groups_report_duplicates_and_junk(&w, &p).await;
}

#[tokio::test]
async fn commands_wait_for_registration_and_lang_switches() {
    let w = worker_world().await;
    scenarios::commands_wait_for_registration(&w, 1003).await;
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
