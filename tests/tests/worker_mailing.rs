//! Mailings on the Cloudflare Worker under `wrangler dev` (the ProfileRunner Durable Object
//! sends one message per alarm), checked at the fake Wappi as in the native suite: every group
//! exactly once with the right text, in order and paced; progress and the report; cancel; a
//! 429 storm. Needs `scripts/worker-setup` (scripts/test runs it).

use groupcast_e2e::fake_wappi::Request;
use groupcast_e2e::harness::Server;
use groupcast_e2e::scenarios::{self, min_gap};
use groupcast_e2e::worker_harness::{worker_world, worker_world_with};
use groupcast_e2e::world::{Person, JITTER_MS, STEP};
use std::collections::HashMap;

/// Send-arrival tolerance at the fake Wappi for the Worker. The engine never starts a call
/// sooner than the interval after its previous one (core `engine`, checked exactly under a fake
/// clock in its unit tests); what the fake sees adds workerd's outgoing-fetch scheduling, which
/// on a loaded 2-core machine was measured at up to ~20 ms (a 93 ms arrival gap at 10/s), more
/// than the native client's [`JITTER_MS`].
const WORKER_JITTER_MS: i64 = 4 * JITTER_MS;

fn gaps(sends: &[Request]) -> Vec<i64> {
    sends.windows(2).map(|p| p[1].at_ms - p[0].at_ms).collect()
}

#[tokio::test]
async fn thirty_groups_each_exactly_once_paced_with_progress_and_report() {
    let w = worker_world().await; // PROFILE_RATE_PER_SEC=10
    let text = "Продаётся квартира, 2 комнаты";
    let (p, acc, jids) = w.ready(3001, 1, 30, text).await;

    p.says("/mailing");
    let preview = p.hears("Предпросмотр").await;
    assert!(
        preview.text.contains(text) && preview.text.contains("Групп: 30"),
        "{}",
        preview.text
    );
    p.presses(
        preview.message_id,
        &Person::<Server>::button(&preview, "✅"),
    );
    let started = p.hears("🚀 Рассылка #").await;
    let id: i64 = started.text["🚀 Рассылка #".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .expect("mailing id");
    let report = p.hears("Рассылка #").await;
    assert!(
        report.text.starts_with('✅'),
        "the next message is the report: {}",
        report.text
    );
    assert!(
        report.text.contains("отправлено 30 из 30"),
        "{}",
        report.text
    );

    // At the fake: each group once, the right text and token, in the list's order, paced.
    let sent = w.sends(&acc.profile);
    assert_eq!(sent.len(), 30);
    w.assert_each_delivered_once(&jids);
    assert!(sent
        .iter()
        .all(|r| r.body_text.as_deref() == Some(text) && r.token == acc.token));
    let order: Vec<_> = sent.iter().map(|r| r.recipient.clone().unwrap()).collect();
    assert_eq!(order, jids);
    let gap = min_gap(&sent);
    assert!(
        gap >= 100 - WORKER_JITTER_MS,
        "min gap {gap} ms at 10/s: {:?}",
        gaps(&sent)
    );
    let total = sent.last().unwrap().at_ms - sent[0].at_ms;
    assert!(total < 2900 + 1500, "30 sends at 10/s took {total} ms");

    // Progress: the start message edited (never more often than every 3 s), no second one.
    assert!(started
        .reply_markup
        .as_ref()
        .unwrap()
        .to_string()
        .contains("cancel:"));
    let mut times = vec![started.at_ms];
    times.extend(
        w.tg.edits_of(3001)
            .iter()
            .filter(|e| e.message_id == started.message_id && e.text.starts_with('⏳'))
            .map(|e| e.at_ms),
    );
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 3000 - 50,
            "progress edited too often: {times:?}"
        );
    }
    let final_text = w.tg.current_text(3001, started.message_id).unwrap();
    assert!(final_text.contains("Отправлено: 30"), "{final_text}");

    // The ledger in D1 agrees.
    w.server.wait_status(id, "done", STEP).await;
    assert_eq!(
        w.server.delivery_states(id),
        HashMap::from([("sent".to_string(), 30)])
    );
    p.says("/status");
    p.hears("✅ Рассылка").await;
    w.server.assert_no_secrets_in_logs(&[&acc.token]);
}

#[tokio::test]
async fn cancel_stops_before_the_next_send() {
    let w = worker_world_with(|vars| {
        vars.insert("PROFILE_RATE_PER_SEC".into(), "4".into());
    })
    .await;
    scenarios::cancel_stops_before_the_next_send(&w).await;
}

#[tokio::test]
async fn a_429_storm_pauses_the_profile_and_loses_nothing() {
    let w = worker_world().await;
    scenarios::a_429_storm_pauses_the_profile_and_loses_nothing(&w, 12, 4, WORKER_JITTER_MS).await;
}

#[tokio::test]
async fn a_second_start_on_a_busy_profile_is_refused() {
    let w = worker_world_with(|vars| {
        vars.insert("PROFILE_RATE_PER_SEC".into(), "2".into());
    })
    .await;
    scenarios::a_second_start_on_a_busy_profile_is_refused(&w).await;
}

#[tokio::test]
async fn two_users_mail_at_once_each_on_its_own_runner() {
    let w = worker_world_with(|vars| {
        vars.insert("PROFILE_RATE_PER_SEC".into(), "5".into());
    })
    .await;
    // Two Durable Objects, each pacing its own profile.
    scenarios::two_users_mail_at_once(&w, 10, WORKER_JITTER_MS).await;
}

/// Issue 13 on the Worker: the Durable Object keeps the user's pace (varied gaps, a pause
/// after each batch, ⏸ on the progress message).
#[tokio::test]
async fn a_custom_pace_varies_the_gaps_and_pauses_after_each_batch() {
    let w = worker_world().await;
    scenarios::a_custom_pace_varies_the_gaps_and_pauses_after_each_batch(&w, 3301).await;
}

/// Issue 13 on the Worker: ⏸ / `/pause`, `/resume` / ▶️.
#[tokio::test]
async fn pause_and_resume_from_the_progress_message_and_by_command() {
    let w = worker_world().await;
    scenarios::pause_and_resume_from_the_progress_message_and_by_command(&w, 3304).await;
}

/// Issue 13 on the Worker: the breaker on a run of refusals, and on `temporary ban`.
#[tokio::test]
async fn a_run_of_refused_posts_trips_the_breaker_and_resume_goes_on() {
    let w = worker_world().await;
    scenarios::a_run_of_refused_posts_trips_the_breaker_and_resume_goes_on(&w, 3307).await;
}

#[tokio::test]
async fn a_temporary_ban_pauses_the_mailing_and_it_goes_on_at_half_pace() {
    let w = worker_world().await;
    scenarios::a_temporary_ban_pauses_the_mailing_and_it_goes_on_at_half_pace(&w, 3308).await;
}

/// Issue 13 on the Worker: the breaker on "not authorized".
#[tokio::test]
async fn whatsapp_logged_out_pauses_and_resume_continues() {
    let w = worker_world().await;
    scenarios::whatsapp_logged_out_pauses_and_resume_continues(&w, 3312).await;
}

#[tokio::test]
async fn the_first_post_never_waits_for_telegram() {
    let w = worker_world().await;
    scenarios::the_first_post_never_waits_for_telegram(&w, 7301, 91).await;
}
