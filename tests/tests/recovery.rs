//! Crashes and lost answers: `kill -9` mid-mailing then a restart, and a send whose answer was
//! lost. Every group ends up sent exactly once: rows caught `sending` become `in_doubt` and
//! are settled by reading the group's history (Wappi `messages/get`) before any resend.

use groupcast_e2e::fake_wappi::Fault;
use groupcast_e2e::world::{Account, World};
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test]
async fn kill_9_mid_mailing_then_restart_sends_every_group_once() {
    let w = World::start().await; // 10/s
    let acc = Account::numbered(1);
    w.wappi.add_profile(&acc.profile, &acc.token);
    let jids = w.groups(&acc, 40, 1);
    let p = w.person(4001);
    p.registers(&acc).await;
    p.sets_text("Переживёт сбой").await;
    p.sets_groups(&jids).await;
    // Slow answers widen the window between "Wappi delivered" and "ledger says sent", so the
    // kill lands inside a send with high probability.
    for _ in 0..40 {
        w.wappi.push_fault(Fault::Delay(Duration::from_millis(60)));
    }
    let id = p.starts_mailing().await;
    w.wappi
        .wait_for_deliveries(12, Duration::from_secs(20))
        .await
        .unwrap();

    let mut w = w;
    w.server.kill9();
    let delivered_before = w.wappi.deliveries().len();
    assert!(delivered_before < 40, "killed too late");
    w.server.restart().await;

    p_hears_done(&w, 4001).await;
    let counts = w.wappi.delivery_count_by_recipient();
    for jid in &jids {
        assert_eq!(
            counts.get(jid),
            Some(&1),
            "{jid} delivered {:?} times",
            counts.get(jid)
        );
    }
    assert_eq!(
        w.server.delivery_states(id),
        HashMap::from([("sent".to_string(), 40)])
    );
    // The restarted process resumed by itself: the log says so.
    assert!(w.server.logs().contains("driving mailing"));
}

async fn p_hears_done(w: &World, user: i64) {
    w.person(user).hears("✅").await;
}

#[tokio::test]
async fn repeated_kills_never_double_or_skip() {
    let w = World::start_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "20".into());
    })
    .await;
    let acc = Account::numbered(2);
    w.wappi.add_profile(&acc.profile, &acc.token);
    let jids = w.groups(&acc, 60, 2);
    let p = w.person(4002);
    p.registers(&acc).await;
    p.sets_text("Три сбоя подряд").await;
    p.sets_groups(&jids).await;
    for _ in 0..60 {
        w.wappi.push_fault(Fault::Delay(Duration::from_millis(30)));
    }
    let id = p.starts_mailing().await;
    let mut w = w;
    for round in 1..=3 {
        w.wappi
            .wait_for_deliveries(round * 12, Duration::from_secs(30))
            .await
            .unwrap();
        w.server.kill9();
        w.server.restart().await;
    }
    w.person(4002).hears("✅").await;
    let counts = w.wappi.delivery_count_by_recipient();
    assert_eq!(counts.len(), 60);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert_eq!(
        w.server.delivery_states(id),
        HashMap::from([("sent".to_string(), 60)])
    );
}

#[tokio::test]
async fn a_lost_answer_is_settled_from_history_not_resent() {
    let w = World::start().await;
    let acc = Account::numbered(3);
    w.wappi.add_profile(&acc.profile, &acc.token);
    let jids = w.groups(&acc, 5, 3);
    let p = w.person(4003);
    p.registers(&acc).await;
    p.sets_text("Ответ потерян").await;
    p.sets_groups(&jids).await;
    // First send: delivered, then the connection drops. Second: refused before delivery.
    w.wappi.push_fault(Fault::DropAfterAccept);
    w.wappi.push_fault(Fault::DropBeforeAccept);
    let id = p.starts_mailing().await;
    p.hears("✅").await;
    let counts = w.wappi.delivery_count_by_recipient();
    assert!(jids.iter().all(|j| counts.get(j) == Some(&1)), "{counts:?}");
    // The history was read for the group whose answer was lost.
    let reads: Vec<_> = w
        .wappi
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/messages/get"))
        .collect();
    assert!(
        reads
            .iter()
            .any(|r| r.chat_id.as_deref() == Some(jids[0].as_str())),
        "no reconciliation read"
    );
    assert_eq!(
        w.server.delivery_states(id),
        HashMap::from([("sent".to_string(), 5)])
    );
}
