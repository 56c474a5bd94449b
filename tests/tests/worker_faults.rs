//! Faults only the Cloudflare Worker has, under `wrangler dev`: `wrangler dev` stopped and
//! started again mid-mailing on the same persisted state (D1, the Durable Object's storage and
//! alarm, the queue); the runner's alarm throwing right after a Wappi send (workerd retries the
//! alarm); the same queue message delivered twice; a Wappi answer lost after the send; a
//! running mailing nobody drives, picked up by the Cron pass. In every case each group gets the
//! text exactly once. Needs `scripts/worker-setup`.

use groupcast_e2e::fake_wappi::Fault;
use groupcast_e2e::harness::WEBHOOK_SECRET;
use groupcast_e2e::worker_harness::{worker_world, worker_world_with};
use std::collections::HashMap;
use std::time::Duration;

/// Long enough for the runner to finish a few dozen sends after a restart.
const MAILING: Duration = Duration::from_secs(60);

#[tokio::test]
async fn restarting_wrangler_mid_mailing_sends_every_group_once() {
    let mut w = worker_world().await; // 10/s
    let (p, _acc, jids) = w.ready(4001, 1, 40, "Переживёт перезапуск").await;
    // Slow answers widen the window between "Wappi delivered" and "recorded as sent".
    for _ in 0..40 {
        w.wappi.push_fault(Fault::Delay(Duration::from_millis(60)));
    }
    let id = p.starts_mailing().await;
    w.wappi
        .wait_for_deliveries(12, Duration::from_secs(20))
        .await
        .unwrap();
    w.server.stop().await;
    let delivered_before = w.wappi.deliveries().len();
    assert!(delivered_before < 40, "stopped too late");
    // Nothing is sent while the Worker is down.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.wappi.deliveries().len(), delivered_before);

    w.server.restart().await;
    // The runner's alarm is kept in the Durable Object's storage: the mailing goes on by itself,
    // without the Cron recovery pass.
    w.server.wait_status(id, "done", MAILING).await;
    w.assert_each_delivered_once(&jids);
    assert_eq!(
        w.server.delivery_states(id),
        HashMap::from([("sent".to_string(), 40)])
    );
    let w = &w;
    w.person(4001).hears("✅").await;
}

#[tokio::test]
async fn an_alarm_that_throws_after_a_send_is_retried_without_a_double() {
    let w = worker_world_with(|vars| {
        vars.insert("GROUPCAST_TEST_HOOKS".into(), "1".into());
        vars.insert("GROUPCAST_TEST_CRASH_AFTER_SEND".into(), "3".into());
    })
    .await;
    let (p, _acc, jids) = w.ready(4002, 2, 8, "Будильник упал").await;
    let id = p.starts_mailing().await;
    let report = p.hears("Рассылка #").await;
    let report = if report.text.starts_with('✅') || report.text.starts_with('⚠') {
        report
    } else {
        p.hears("✅").await
    };
    assert!(report.text.starts_with('✅'), "{}", report.text);
    w.assert_each_delivered_once(&jids);
    assert_eq!(
        w.server.delivery_states(id),
        HashMap::from([("sent".to_string(), 8)])
    );
    // The hook did fire: the alarm threw once and was run again.
    assert!(
        w.server.logs().contains("test hook"),
        "the crash hook never fired:\n{}",
        w.server.log_tail(60)
    );
}

#[tokio::test]
async fn the_same_queue_message_delivered_twice_starts_one_mailing_run() {
    let w = worker_world_with(|vars| {
        vars.insert("GROUPCAST_TEST_HOOKS".into(), "1".into());
        vars.insert("PROFILE_RATE_PER_SEC".into(), "5".into());
    })
    .await;
    let (p, _acc, jids) = w.ready(4003, 3, 10, "Дважды в очереди").await;
    let id = p.starts_mailing().await;
    // The test hook puts the same message on MAILING_QUEUE again, twice, while it runs.
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let r = client
            .post(format!("{}/__test/queue", w.server.url()))
            .header("X-Telegram-Bot-Api-Secret-Token", WEBHOOK_SECRET)
            .json(&serde_json::json!({ "mailing_id": id }))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "POST /__test/queue (GROUPCAST_TEST_HOOKS=1) answered {}",
            r.status()
        );
    }
    w.server.wait_status(id, "done", MAILING).await;
    p.hears("✅").await;
    w.assert_each_delivered_once(&jids);
    // ... and one report, not three.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reports =
        w.tg.sent_to(4003)
            .iter()
            .filter(|m| m.text.starts_with('✅') && m.text.contains("Рассылка #"))
            .count();
    assert_eq!(reports, 1);
}

#[tokio::test]
async fn a_lost_answer_is_settled_by_reading_the_history() {
    let w = worker_world().await;
    let (p, _acc, jids) = w.ready(4004, 4, 6, "Ответ потерян").await;
    // The 3rd send is carried out but its answer never arrives.
    w.wappi.push_fault(Fault::Delay(Duration::ZERO));
    w.wappi.push_fault(Fault::Delay(Duration::ZERO));
    w.wappi.push_fault(Fault::DropAfterAccept);
    let id = p.starts_mailing().await;
    w.server.wait_status(id, "done", MAILING).await;
    p.hears("✅").await;
    w.assert_each_delivered_once(&jids);
}

#[tokio::test]
async fn the_cron_recovers_a_running_mailing_nobody_drives() {
    let w = worker_world().await;
    let (p, acc, jids) = w.ready(4005, 5, 5, "Подобрано кроном").await;
    // A mailing that is `running` in D1 but whose queue message never arrived (as after a
    // lost hand-off): written straight into the ledger.
    let now = groupcast_e2e::harness::unix_ms();
    let mut sql = format!(
        "INSERT INTO mailings (id, user_id, chat_id, profile_id, status, content, created_at) \
         VALUES (777, 4005, 4005, '{}', 'running', '{{\"text\":\"Подобрано кроном\"}}', {now});",
        acc.profile
    );
    for (i, jid) in jids.iter().enumerate() {
        sql.push_str(&format!(
            "INSERT INTO deliveries (mailing_id, group_jid, part, position, state, attempts, \
             next_attempt_at, updated_at) VALUES (777, '{jid}', 0, {i}, 'pending', 0, 0, {now});"
        ));
    }
    w.server.d1_execute(&sql).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        w.wappi.deliveries().is_empty(),
        "nothing runs it before the Cron pass"
    );
    w.server.run_cron("* * * * *").await;
    w.server.wait_status(777, "done", MAILING).await;
    w.assert_each_delivered_once(&jids);
    p.hears("Рассылка #777").await;
}
