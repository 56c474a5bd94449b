//! Mailings on the Cloudflare Worker under `wrangler dev` (the ProfileRunner Durable Object
//! sends one message per alarm), checked at the fake Wappi as in the native suite: every group
//! exactly once with the right text, in order and paced; progress and the report; cancel; a
//! 429 storm. Needs `scripts/worker-setup` (scripts/test runs it).

use groupcast_e2e::fake_wappi::{Outcome, Request};
use groupcast_e2e::harness::Server;
use groupcast_e2e::worker_harness::{worker_world, worker_world_with};
use groupcast_e2e::world::{Person, JITTER_MS, STEP};
use std::collections::HashMap;
use std::time::Duration;

/// Send-arrival tolerance at the fake Wappi for the Worker: the runner's alarm is set for the
/// exact pacing slot, and workerd's outgoing fetch adds a few ms more scheduling jitter than the
/// native client does ([`JITTER_MS`]).
const WORKER_JITTER_MS: i64 = 2 * JITTER_MS;

fn gaps(sends: &[Request]) -> Vec<i64> {
    sends.windows(2).map(|p| p[1].at_ms - p[0].at_ms).collect()
}

fn min_gap(sends: &[Request]) -> i64 {
    sends
        .windows(2)
        .map(|p| p[1].at_ms - p[0].at_ms)
        .min()
        .unwrap_or(i64::MAX)
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
    let (p, acc, _) = w.ready(3002, 2, 40, "Отмена посреди").await;
    let (id, progress) = p.starts_mailing_msg().await;
    w.wappi
        .wait_for_deliveries(8, Duration::from_secs(20))
        .await
        .unwrap();
    p.presses(
        progress.message_id,
        &Person::<Server>::button(&progress, "⛔"),
    );
    let ack =
        w.tg.wait_for_message(3002, |t| t.contains("⏹"), STEP)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", w.server.log_tail(40)));
    let report = p.hears("⚠️").await;
    assert!(report.text.contains("остановлена"), "{}", report.text);
    let sent = w.sends(&acc.profile);
    let after_ack = sent.iter().filter(|r| r.at_ms > ack.at_ms).count();
    assert!(
        after_ack <= 1,
        "{after_ack} sends after the cancel was acknowledged"
    );
    assert!(sent.len() < 40);
    let n = sent.len();
    tokio::time::sleep(Duration::from_millis(1000)).await; // four send intervals at 4/s
    assert_eq!(w.sends(&acc.profile).len(), n, "nothing is sent later");
    w.server.wait_status(id, "cancelled", STEP).await;
    assert!(
        report.text.contains(&format!("Отправлено: {n}")),
        "{}",
        report.text
    );
}

#[tokio::test]
async fn a_429_storm_pauses_the_profile_and_loses_nothing() {
    let w = worker_world().await;
    let (p, acc, jids) = w.ready(3005, 5, 12, "Шторм").await;
    p.starts_mailing().await;
    w.wappi
        .wait_for_deliveries(4, Duration::from_secs(20))
        .await
        .unwrap();
    // Five 429s in a row, each asking for 1 s.
    w.wappi.set_rate_limit_storm(&acc.profile, 5, 1);
    let report = p.hears("Рассылка #").await;
    let report = if report.text.starts_with('✅') || report.text.starts_with('⚠') {
        report
    } else {
        p.hears("✅").await
    };
    assert!(report.text.starts_with('✅'), "{}", report.text);
    let all = w.sends(&acc.profile);
    let limited: Vec<&Request> = all
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Refused { http: 429, .. }))
        .collect();
    assert_eq!(limited.len(), 5);
    for r in &limited {
        let next = all
            .iter()
            .find(|n| n.at_ms > r.at_ms)
            .expect("a call after the 429");
        assert!(
            next.at_ms - r.at_ms >= 1000 - WORKER_JITTER_MS,
            "called {} ms after a 429 with Retry-After 1",
            next.at_ms - r.at_ms
        );
    }
    w.assert_each_delivered_once(&jids);
}

#[tokio::test]
async fn a_second_start_on_a_busy_profile_is_refused() {
    let w = worker_world_with(|vars| {
        vars.insert("PROFILE_RATE_PER_SEC".into(), "2".into());
    })
    .await;
    let (p, _, _) = w.ready(3004, 4, 10, "Один раз").await;
    p.starts_mailing().await;
    p.says("/mailing");
    p.hears("уже идёт").await;
    p.says("/cancel");
    p.hears("⚠️").await;
}

#[tokio::test]
async fn two_users_mail_at_once_each_on_its_own_runner() {
    let w = worker_world_with(|vars| {
        vars.insert("PROFILE_RATE_PER_SEC".into(), "5".into());
    })
    .await;
    let (a, acc_a, jids_a) = w.ready(3010, 10, 10, "Текст Анны").await;
    let (b, acc_b, jids_b) = w.ready(3011, 11, 10, "Текст Бориса").await;
    a.says("/mailing");
    b.says("/mailing");
    let pa = a.hears("Предпросмотр").await;
    let pb = b.hears("Предпросмотр").await;
    a.presses(pa.message_id, &Person::<Server>::button(&pa, "✅"));
    b.presses(pb.message_id, &Person::<Server>::button(&pb, "✅"));
    a.hears("✅").await;
    b.hears("✅").await;
    let sa = w.sends(&acc_a.profile);
    let sb = w.sends(&acc_b.profile);
    assert_eq!((sa.len(), sb.len()), (10, 10));
    assert!(sa
        .iter()
        .all(|r| r.body_text.as_deref() == Some("Текст Анны")
            && jids_a.contains(r.recipient.as_ref().unwrap())));
    assert!(sb
        .iter()
        .all(|r| r.body_text.as_deref() == Some("Текст Бориса")
            && jids_b.contains(r.recipient.as_ref().unwrap())));
    // Two Durable Objects ran in parallel, each paced on its own.
    assert!(sa[0].at_ms < sb.last().unwrap().at_ms && sb[0].at_ms < sa.last().unwrap().at_ms);
    assert!(min_gap(&sa) >= 200 - WORKER_JITTER_MS && min_gap(&sb) >= 200 - WORKER_JITTER_MS);
}
