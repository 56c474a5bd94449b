//! Webhook mode (`PUBLIC_URL` set): the secret header is required (401 otherwise, nothing
//! processed), repeats of an `update_id` are processed once, and a lower `update_id` than
//! one seen before is still processed (a set, not a high-water mark).

use groupcast_e2e::harness::WEBHOOK_SECRET;
use groupcast_e2e::world::{World, STEP};
use serde_json::json;

async fn webhook_world() -> World {
    World::start_with(|env| {
        env.insert("PUBLIC_URL".into(), "https://bot.example.test".into());
        env.insert("TELEGRAM_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
    })
    .await
}

fn start_update(w: &World, update_id: i64, user: i64) -> serde_json::Value {
    let mut u = json!({"update_id": update_id});
    u["message"] = w.tg.text_message(user, "/help")["message"].clone();
    u
}

#[tokio::test]
async fn secret_header_is_required() {
    let w = webhook_world().await;
    let url = format!("{}/telegram/webhook", w.server.url());
    let (code, _) =
        w.tg.deliver_webhook(&url, None, start_update(&w, 10, 5001))
            .await;
    assert_eq!(code, 401);
    let (code, _) =
        w.tg.deliver_webhook(&url, Some("wrong"), start_update(&w, 11, 5001))
            .await;
    assert_eq!(code, 401);
    let (code, _) =
        w.tg.deliver_webhook(&url, Some(WEBHOOK_SECRET), start_update(&w, 12, 5001))
            .await;
    assert_eq!(code, 200);
    w.person(5001).hears("groupcast").await;
    let seen: i64 = w
        .server
        .db()
        .query_row("SELECT COUNT(*) FROM telegram_updates", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seen, 1, "refused updates are not recorded");
    assert!(w.tg.sent_to(5001).len() == 1);
    assert!(
        w.tg.calls_of("getUpdates").is_empty(),
        "no polling in webhook mode"
    );
    w.server.assert_no_secrets_in_logs(&[]);
}

#[tokio::test]
async fn duplicates_processed_once_and_lower_ids_still_processed() {
    let w = webhook_world().await;
    let url = format!("{}/telegram/webhook", w.server.url());
    for _ in 0..3 {
        let (code, _) =
            w.tg.deliver_webhook(&url, Some(WEBHOOK_SECRET), start_update(&w, 500, 5002))
                .await;
        assert_eq!(code, 200);
    }
    // Concurrent repeats too.
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (tg, url, update) = (w.tg.clone(), url.clone(), start_update(&w, 501, 5002));
            tokio::spawn(
                async move { tg.deliver_webhook(&url, Some(WEBHOOK_SECRET), update).await },
            )
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().0, 200);
    }
    // After a week of silence Telegram may restart ids lower: still processed.
    let (code, _) =
        w.tg.deliver_webhook(&url, Some(WEBHOOK_SECRET), start_update(&w, 7, 5002))
            .await;
    assert_eq!(code, 200);
    w.tg.wait_until(|tg| tg.sent_to(5002).len() >= 3, STEP)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(w.tg.sent_to(5002).len(), 3, "500, 501 and 7 once each");
}

#[tokio::test]
async fn set_webhook_registers_public_url_with_the_secret() {
    let w = webhook_world().await;
    // The fake runs on this test's runtime: wait for the child off it.
    let env = w.server.env.clone();
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new(groupcast_e2e::harness::binary())
            .arg("set-webhook")
            .env_clear()
            .envs(&env)
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(status.success());
    let hook = w.tg.webhook().expect("webhook registered");
    assert_eq!(hook.url, "https://bot.example.test/telegram/webhook");
    assert_eq!(hook.secret_token.as_deref(), Some(WEBHOOK_SECRET));
}
