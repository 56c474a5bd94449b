//! Mailings end to end: every group exactly once, with the right text, paced; progress and
//! the report; cancel; subscription; a 429 storm; two users at once.

use groupcast_e2e::fake_wappi::Fault;
use groupcast_e2e::harness::wait_until;
use groupcast_e2e::scenarios::{self, min_gap};
use groupcast_e2e::world::{Person, World, JITTER_MS};
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test]
async fn fifty_groups_each_exactly_once_paced_with_progress_and_report() {
    let w = World::start().await; // PROFILE_RATE_PER_SEC=10
    let text = "Продаётся квартира, 2 комнаты";
    let (p, acc, jids) = w.ready(3001, 1, 50, text).await;

    p.says("/mailing");
    let preview = p.hears("Предпросмотр").await;
    assert!(
        preview.text.contains(text) && preview.text.contains("Групп: 50"),
        "{}",
        preview.text
    );
    assert!(
        preview.text.contains("5 с"),
        "ETA at 10/s: {}",
        preview.text
    );
    p.presses(preview.message_id, &Person::button(&preview, "✅"));
    let started = p.hears("🚀 Рассылка #").await;
    let report = p.hears("Рассылка #").await;
    assert!(
        report.text.starts_with('✅'),
        "the next message is the report: {}",
        report.text
    );
    assert!(
        report.text.contains("отправлено 50 из 50"),
        "{}",
        report.text
    );

    // At the fake: each group exactly once, the right text, in the list's order, paced.
    let sent = w.sends(&acc.profile);
    assert_eq!(sent.len(), 50);
    let by_group: HashMap<_, _> = w.wappi.delivery_count_by_recipient();
    for jid in &jids {
        assert_eq!(by_group.get(jid), Some(&1), "{jid}");
    }
    assert!(sent
        .iter()
        .all(|r| r.body_text.as_deref() == Some(text) && r.token == acc.token));
    let order: Vec<_> = sent.iter().map(|r| r.recipient.clone().unwrap()).collect();
    assert_eq!(order, jids);
    let gap = min_gap(&sent);
    assert!(gap >= 100 - JITTER_MS, "min gap {gap} ms at 10/s");
    let total = sent.last().unwrap().at_ms - sent[0].at_ms;
    assert!(total < 4900 + 1500, "50 sends at 10/s took {total} ms");

    // Progress: the start message, edited at most every 3 s, with ⛔ while running.
    assert!(started
        .reply_markup
        .as_ref()
        .unwrap()
        .to_string()
        .contains("cancel:"));
    let edits: Vec<_> =
        w.tg.edits_of(3001)
            .into_iter()
            .filter(|e| e.message_id == started.message_id)
            .collect();
    assert!(
        edits.iter().any(|e| e.text.starts_with('⏳')),
        "progress was shown: {edits:?}"
    );
    let mut times = vec![started.at_ms];
    times.extend(
        edits
            .iter()
            .filter(|e| e.text.starts_with('⏳'))
            .map(|e| e.at_ms),
    );
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 3000 - 50,
            "progress edited too often: {times:?}"
        );
    }
    let final_text = w.tg.current_text(3001, started.message_id).unwrap();
    assert!(final_text.contains("Отправлено: 50"), "{final_text}");
    assert!(
        w.tg.sent_to(3001).iter().all(|m| !m.text.starts_with('⏳')),
        "no second progress message"
    );

    // The ledger agrees.
    let id: i64 = w
        .server
        .db()
        .query_row("SELECT MAX(id) FROM mailings", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        w.server.delivery_states(id),
        HashMap::from([("sent".to_string(), 50)])
    );
    // /status after the end shows the report.
    p.says("/status");
    p.hears("✅ Рассылка").await;
    w.server.assert_no_secrets_in_logs(&[&acc.token]);
}

#[tokio::test]
async fn cancel_stops_before_the_next_send() {
    let w = World::start_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "4".into());
    })
    .await;
    scenarios::cancel_stops_before_the_next_send(&w).await;
}

#[tokio::test]
async fn no_subscription_no_mailing() {
    let w = World::start_with(|env| {
        env.insert("TRIAL_DAYS".into(), "0".into());
    })
    .await;
    let (p, _, _) = w.ready(3003, 3, 2, "Без подписки").await;
    p.says("/mailing");
    p.hears("Подписка не активна").await;
    p.says("/subscribe");
    p.hears("не активна").await;
    assert!(w.wappi.requests().iter().all(|r| !r.is_send()));
}

#[tokio::test]
async fn a_second_start_on_a_busy_profile_is_refused() {
    let w = World::start_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "2".into());
    })
    .await;
    scenarios::a_second_start_on_a_busy_profile_is_refused(&w).await;
}

#[tokio::test]
async fn a_429_storm_pauses_the_profile_and_loses_nothing() {
    let w = World::start().await;
    // The 6th send onwards: five 429s in a row, each asking for 1 s.
    scenarios::a_429_storm_pauses_the_profile_and_loses_nothing(&w, 20, 5, JITTER_MS).await;
}

#[tokio::test]
async fn server_errors_are_retried_and_hopeless_groups_reported() {
    let w = World::start().await;
    let (p, acc, jids) = w.ready(3006, 6, 6, "Ошибки").await;
    w.wappi.push_fault(Fault::Status(502, "bad gateway".into()));
    w.wappi.push_fault(Fault::Status(500, "oops".into()));
    p.starts_mailing().await;
    let report = p.hears("Рассылка #").await;
    let report = if report.text.starts_with('⏳') {
        p.hears("✅").await
    } else {
        report
    };
    assert!(report.text.starts_with('✅'), "{}", report.text);
    let counts = w.wappi.delivery_count_by_recipient();
    assert!(jids.iter().all(|j| counts.get(j) == Some(&1)));
    let _ = acc;
}

#[tokio::test]
async fn a_refused_group_fails_with_a_reason_and_the_rest_is_sent() {
    let w = World::start().await;
    let (p, acc, mut jids) = w.ready(3007, 7, 3, "Не участник").await;
    // A group the account is not in: strict mode refuses unknown recipients.
    w.wappi.set_strict_recipients(true);
    jids.push("120363999999999999@g.us".into());
    p.sets_groups(&jids).await;
    // The pre-flight check doubts it (the id does not resolve): included on purpose.
    p.starts_mailing_including_doubtful().await;
    let report = p.hears("⚠️").await;
    assert!(
        report.text.contains("120363999999999999@g.us"),
        "{}",
        report.text
    );
    assert!(report.text.contains("Ошибок: 1"), "{}", report.text);
    assert_eq!(
        w.sends(&acc.profile)
            .iter()
            .filter(|r| r.recipient.as_deref() == Some("120363999999999999@g.us"))
            .count(),
        1,
        "never retried"
    );
}

#[tokio::test]
async fn two_users_mail_at_once_on_their_own_numbers() {
    let w = World::start_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "5".into());
    })
    .await;
    scenarios::two_users_mail_at_once(&w, 15, JITTER_MS).await;
    wait_until("both mailings done", Duration::from_secs(5), || {
        let n: i64 = w
            .server
            .db()
            .query_row(
                "SELECT COUNT(*) FROM mailings WHERE status = 'done'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        n == 2
    })
    .await;
}

#[tokio::test]
async fn whatsapp_logged_out_pauses_and_resume_continues() {
    let w = World::start().await;
    scenarios::whatsapp_logged_out_pauses_and_resume_continues(&w, 3012).await;
}

/// Issue 12 item 11: the progress edits and the report go through Telegram's limits on their
/// own; a Telegram that answers 429 for a long while never holds a post to WhatsApp back.
#[tokio::test]
async fn telegram_rate_limits_never_slow_the_posts() {
    let w = World::start_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "4".into());
        env.insert("PROGRESS_INTERVAL_SECS".into(), "1".into());
    })
    .await;
    let (p, _, jids) = w.ready(7201, 81, 12, "Пост без задержек").await;
    let (id, _) = p.starts_mailing_msg().await;
    w.wappi
        .wait_for_deliveries(1, Duration::from_secs(20))
        .await
        .unwrap();
    // From now on the user's chat is refused three times over, 5 s each: 15 s in all.
    w.tg.fail_next_with_429(p.id, 5, 3);
    let started = groupcast_e2e::harness::unix_ms();
    w.wappi
        .wait_for_deliveries(12, Duration::from_secs(30))
        .await
        .unwrap();
    let took = groupcast_e2e::harness::unix_ms() - started;
    let arrivals: Vec<i64> = w.wappi.deliveries().iter().map(|r| r.at_ms).collect();
    let widest = arrivals.windows(2).map(|g| g[1] - g[0]).max().unwrap();
    assert!(
        widest < 1_500,
        "a post waited {widest} ms behind Telegram (11 posts took {took} ms)"
    );
    w.assert_each_delivered_once(&jids);
    // The report still comes, once Telegram lets it through.
    let report = p.hears(&format!("Рассылка #{id}")).await;
    assert!(report.text.starts_with('✅'), "{}", report.text);
}

#[tokio::test]
async fn the_first_post_never_waits_for_telegram() {
    let w = World::start().await;
    scenarios::the_first_post_never_waits_for_telegram(&w, 7301, 91).await;
}
