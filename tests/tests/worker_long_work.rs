//! Long work on the Cloudflare Worker under `wrangler dev`: the collage built by the queue
//! consumer (not by the webhook), once per queue message even when the message comes twice,
//! then mailed as one image with the caption per group; and the operator's `/broadcast`
//! delivered by the `BroadcastRunner` Durable Object: one copy per user, at most 30 a second,
//! a 429's `retry_after` honoured, the report to the operator. Mirrors tests/images.rs and
//! the broadcast test of tests/operator_tools.rs. Needs `scripts/worker-setup`.

use base64::Engine as _;
use groupcast_core::collage::fixtures::synthetic_jpeg;
use groupcast_core::collage::{plan_layout, CollageOptions};
use groupcast_e2e::fake_telegram::SentMessage;
use groupcast_e2e::harness::{Server, WEBHOOK_SECRET};
use groupcast_e2e::scenarios::{
    assert_retry_after_honoured, busiest_second, everyone_starts, operator_broadcasts,
};
use groupcast_e2e::worker_harness::{worker_world_with, Worker};
use groupcast_e2e::world::{Person, World, STEP};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn hooks_on(vars: &mut std::collections::BTreeMap<String, String>) {
    vars.insert("GROUPCAST_TEST_HOOKS".into(), "1".into());
}

/// /images, then an album of `n` landscape photos (registered at the fake Telegram with their
/// bytes); waits until the album's answer (returned) shows all of them.
async fn uploads(w: &World<Worker>, p: &Person<'_, Worker>, n: u32) -> SentMessage {
    p.says("/images");
    p.hears("Пришлите до 10 фото").await;
    let photos: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                format!("AgACw{}_{i}", p.id),
                synthetic_jpeg(1280, 960, i, 8, 1),
            )
        })
        .collect();
    w.sends_album(p.id, &format!("album-{}", p.id), &photos);
    let answer = p.hears("Фото сохранено").await;
    let want = format!("Фото сохранено: {n} из 10");
    w.shows(p.id, answer.message_id, &want).await;
    answer
}

/// Puts a raw message on `MAILING_QUEUE` through the test hook.
async fn put_on_queue(w: &World<Worker>, body: &serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/__test/queue", w.server.url()))
        .header("X-Telegram-Bot-Api-Secret-Token", WEBHOOK_SECRET)
        .json(body)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "POST /__test/queue answered {}",
        r.status()
    );
}

/// Waits until the consumer has logged `n` collage jobs of `user`; returns those lines.
async fn collage_jobs_logged(w: &World<Worker>, user: i64, n: usize) -> Vec<String> {
    let needle = format!("collage job of user {user}:");
    let deadline = Instant::now() + STEP;
    loop {
        let lines: Vec<String> = w
            .server
            .logs()
            .lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_string)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} collage jobs of {user} ran:\n{}",
            lines.len(),
            w.server.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_queue_consumer_builds_the_collage_and_every_group_gets_it() {
    let w = worker_world_with(hooks_on).await;
    let text = "Продаётся дом у озера, 120 м²";
    let (p, acc, jids) = w.ready(7001, 1, 3, text).await;
    let summary = uploads(&w, &p, 3).await;

    p.presses(
        summary.message_id,
        &Person::<Server>::button(&summary, "🌅"),
    );
    // The webhook said the collage is on its way before any photo was sent; the queue
    // consumer built and sent it. (Locally the consumer may run in the webhook's isolate, so
    // its CPU work can hold up the webhook's last steps: the order of the two messages and
    // the consumer's log line are what show who did the work.)
    let building = p.hears("Собираю коллаж").await;
    let preview = p.hears("Коллаж готов").await;
    assert!(building.at_ms <= preview.at_ms);
    let uploads: Vec<_> = w.tg.calls_of("sendPhoto");
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let told =
        w.tg.calls_of("sendMessage")
            .into_iter()
            .find(|c| {
                c.body["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("Собираю коллаж"))
            })
            .expect("the 'building' message");
    assert!(told.at < uploads[0].at);
    assert!(uploads[0].body["photo"]["size"].as_u64() > Some(0));
    let lines = collage_jobs_logged(&w, p.id, 1).await;
    assert!(lines[0].contains("Built"), "{lines:?}");

    // ✅, then a mailing: every group gets the collage once, the text as its caption.
    let confirm = w.current_button(p.id, &preview, "✅").await;
    p.presses(preview.message_id, &confirm);
    p.hears("Группы получат коллаж").await;
    p.starts_mailing_msg().await;
    let report = p.hears("Рассылка #").await;
    assert!(report.text.contains("отправлено 3 из 3"), "{}", report.text);
    let planned = plan_layout(&[(1280, 960); 3], &CollageOptions::default());
    for jid in &jids {
        let got = w.wappi.deliveries_to(jid);
        assert_eq!(got.len(), 1, "{jid}: {got:?}");
        assert!(got[0].path.ends_with("/message/img/send"), "{:?}", got[0]);
        assert_eq!(got[0].caption.as_deref(), Some(text));
        assert_eq!(got[0].token, acc.token);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(got[0].b64.as_deref().expect("b64_file"))
            .expect("valid base64");
        let img = image::load_from_memory(&bytes).expect("a decodable image");
        assert_eq!((img.width(), img.height()), (planned.width, planned.height));
    }
}

#[tokio::test]
async fn the_same_collage_message_delivered_twice_previews_once() {
    let w = worker_world_with(hooks_on).await;
    let (p, _acc, _jids) = w.ready(7002, 2, 1, "Текст").await;
    uploads(&w, &p, 2).await;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let job = serde_json::json!({
        "collage": { "user_id": p.id, "chat_id": p.id, "requested_at": now_ms }
    });
    // The same message twice, back to back (the consumer may see them in one batch or two).
    put_on_queue(&w, &job).await;
    put_on_queue(&w, &job).await;
    let preview = p.hears("Коллаж готов").await;
    let lines = collage_jobs_logged(&w, p.id, 2).await;
    assert_eq!(
        lines.iter().filter(|l| l.contains("Built")).count(),
        1,
        "{lines:?}"
    );
    assert_eq!(w.tg.calls_of("sendPhoto").len(), 1);
    // Two photos and one collage stored.
    let images = format!("SELECT COUNT(*) FROM images WHERE user_id = {}", p.id);
    assert_eq!(w.server.query_i64(&images), 3);

    // A late redelivery, after the user discarded the preview: still nothing new.
    let discard = w.current_button(p.id, &preview, "❌").await;
    p.presses(preview.message_id, &discard);
    p.hears("").await;
    put_on_queue(&w, &job).await;
    let lines = collage_jobs_logged(&w, p.id, 3).await;
    assert!(lines[2].contains("AlreadyDone"), "{lines:?}");
    assert_eq!(w.tg.calls_of("sendPhoto").len(), 1);
}

const ADMIN: i64 = 9000;
const FIRST_USER: i64 = 9100;
const USERS: i64 = 11;
const HELD_USER: i64 = FIRST_USER + 4;
const RETRY_AFTER_SECS: u64 = 2;
const BROADCAST: &str = "Плановые работы сегодня в 23:00, бот будет недоступен 10 минут.";

#[tokio::test]
async fn broadcast_reaches_every_user_once_within_telegram_limits() {
    let w = worker_world_with(|vars| {
        vars.insert("ADMIN_TELEGRAM_IDS".into(), ADMIN.to_string());
    })
    .await;
    let everyone: Vec<i64> = (FIRST_USER..FIRST_USER + USERS).chain([ADMIN]).collect();
    everyone_starts(&w, &everyone).await;
    let calls =
        operator_broadcasts(&w, ADMIN, &everyone, BROADCAST, HELD_USER, RETRY_AFTER_SECS).await;

    // At most 30 a second overall, paced 40 ms apart; the held chat repeated only after its
    // retry_after, and it did not stall the others.
    let at: Vec<Instant> = calls.iter().map(|c| c.at).collect();
    let busiest = busiest_second(&at);
    let span = at.last().unwrap().duration_since(at[0]);
    eprintln!(
        "worker broadcast: {} sends in {span:?}, at most {busiest} in any second",
        at.len()
    );
    assert!(busiest <= 30, "{busiest} broadcast sends within a second");
    let gaps: Vec<u128> = at
        .windows(2)
        .map(|p| p[1].duration_since(p[0]).as_millis())
        .collect();
    assert!(
        gaps.iter().all(|g| *g >= 30),
        "sends closer than the 40 ms pace: {gaps:?}"
    );
    let held = assert_retry_after_honoured(&w, &calls, HELD_USER, RETRY_AFTER_SECS);
    // The first attempts all went within a second.
    let firsts: Vec<Instant> = calls
        .iter()
        .filter(|c| !(c.body["chat_id"] == HELD_USER && c.at > held[0].at))
        .map(|c| c.at)
        .collect();
    let first_span = firsts.last().unwrap().duration_since(firsts[0]);
    assert!(
        first_span < Duration::from_secs(1),
        "12 first attempts took {first_span:?}"
    );
}
