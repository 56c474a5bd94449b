//! Exactly once, for real: the ways a group could still get the post twice (or a cancel let
//! one more out), each staged against the real binary and the fake Wappi, and judged by what
//! the fake received: which group, how many times, what text.

use groupcast_e2e::fake_wappi::{Fault, Request};
use groupcast_e2e::harness::wait_until;
use groupcast_e2e::world::{Person, World};
use std::collections::HashMap;
use std::time::Duration;

/// Long enough for a settle that waits out the Wappi timeout and its margin, a few times.
const DONE: Duration = Duration::from_secs(60);

/// The mailing is over: its report (the next message with "Рассылка #" after the 🚀 one).
async fn report(w: &World, p: &Person<'_>, id: i64) -> String {
    w.server.wait_done(id, DONE).await;
    p.hears("Рассылка #").await.text
}

/// The sends to `jid` that reached its chat, with their texts.
fn texts_to(w: &World, jid: &str) -> Vec<String> {
    w.wappi
        .deliveries_to(jid)
        .into_iter()
        .map(|r: Request| r.body_text.unwrap_or_default())
        .collect()
}

fn history_reads_of(w: &World, jid: &str) -> usize {
    w.wappi
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/messages/get") && r.chat_id.as_deref() == Some(jid))
        .count()
}

#[tokio::test]
async fn a_post_buried_under_newer_messages_is_found_by_paging_back() {
    let w = World::start().await;
    let text = "Пост утонул в чате";
    let (p, _acc, jids) = w.ready(5101, 51, 3, text).await;
    // Our post goes out, the answer is lost, and 120 members' messages follow it at once.
    w.wappi.set_chatter_after_post(&jids[0], 120);
    w.wappi.push_fault(Fault::DropAfterAccept);
    let id = p.starts_mailing().await;
    let report = report(&w, &p, id).await;
    assert_eq!(
        texts_to(&w, &jids[0]),
        vec![text.to_string()],
        "posted once"
    );
    w.assert_each_delivered_once(&jids);
    assert!(report.starts_with('✅'), "{report}");
    assert!(
        history_reads_of(&w, &jids[0]) >= 2,
        "the history was read page after page"
    );
    assert_eq!(
        w.server.delivery_states(id),
        HashMap::from([("sent".to_string(), 3)])
    );
}

#[tokio::test]
async fn a_history_that_cannot_be_paged_leaves_the_group_in_doubt_not_resent() {
    let w = World::start().await;
    let text = "История без страниц";
    let (p, _acc, jids) = w.ready(5102, 52, 3, text).await;
    w.wappi.set_chatter_after_post(&jids[0], 120);
    w.wappi.set_history_paging(false);
    w.wappi.push_fault(Fault::DropAfterAccept);
    let id = p.starts_mailing().await;
    let report = report(&w, &p, id).await;
    assert_eq!(
        texts_to(&w, &jids[0]),
        vec![text.to_string()],
        "never resent"
    );
    w.assert_each_delivered_once(&jids);
    assert!(
        report.starts_with('⚠') && report.contains("Под вопросом: 1"),
        "{report}"
    );
    assert_eq!(
        w.server.delivery_states(id),
        HashMap::from([("sent".to_string(), 2), ("in_doubt".to_string(), 1)])
    );
}

#[tokio::test]
async fn a_send_wappi_carries_out_after_our_timeout_is_not_resent() {
    let w = World::start_with(|env| {
        env.insert("WAPPI_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    let text = "Медленный Wappi";
    let (p, _acc, jids) = w.ready(5103, 53, 3, text).await;
    // We give up after 1 s; the message enters the chat 4 s after the request.
    w.wappi.push_fault(Fault::Slow {
        visible_after: Duration::from_secs(4),
        answer_after: Duration::from_secs(6),
    });
    let id = p.starts_mailing().await;
    let report = report(&w, &p, id).await;
    assert_eq!(
        texts_to(&w, &jids[0]),
        vec![text.to_string()],
        "posted once"
    );
    w.assert_each_delivered_once(&jids);
    assert!(report.starts_with('✅'), "{report}");
}

#[tokio::test]
async fn a_restart_during_a_slow_send_waits_before_settling() {
    let mut w = World::start().await; // WAPPI_TIMEOUT_SECS=3
    let text = "Перезапуск во время отправки";
    let (p, acc, jids) = w.ready(5104, 54, 4, text).await;
    w.wappi.push_fault(Fault::Slow {
        visible_after: Duration::from_secs(3),
        answer_after: Duration::from_secs(20),
    });
    let id = p.starts_mailing().await;
    wait_until(
        "the first send is in flight",
        Duration::from_secs(10),
        || !w.sends(&acc.profile).is_empty(),
    )
    .await;
    w.server.kill9();
    w.server.restart().await;
    w.server.wait_done(id, DONE).await;
    assert_eq!(
        texts_to(&w, &jids[0]),
        vec![text.to_string()],
        "posted once"
    );
    w.assert_each_delivered_once(&jids);
    assert_eq!(
        w.server.delivery_states(id),
        HashMap::from([("sent".to_string(), 4)])
    );
}

#[tokio::test]
async fn a_gateway_error_after_the_message_went_out_is_settled_not_resent() {
    let w = World::start().await;
    let text = "Шлюз ответил 502";
    let (p, _acc, jids) = w.ready(5105, 55, 4, text).await;
    w.wappi.push_fault(Fault::AcceptThenStatus(502));
    w.wappi.push_fault(Fault::AcceptThenStatus(504));
    let id = p.starts_mailing().await;
    let report = report(&w, &p, id).await;
    for jid in &jids[..2] {
        assert_eq!(texts_to(&w, jid), vec![text.to_string()], "{jid} once");
        assert!(history_reads_of(&w, jid) >= 1, "{jid}: settled first");
    }
    w.assert_each_delivered_once(&jids);
    assert!(report.starts_with('✅'), "{report}");
}

#[tokio::test]
async fn rate_limited_history_reads_pause_and_never_use_up_the_sends() {
    let w = World::start_with(|env| {
        env.insert("MAX_SEND_ATTEMPTS".into(), "3".into());
    })
    .await;
    let text = "Чтение истории под 429";
    let (p, _acc, jids) = w.ready(5106, 56, 3, text).await;
    // The first send never reaches the chat, and its answer is lost.
    w.wappi.push_fault(Fault::DropBeforeAccept);
    let id = p.starts_mailing().await;
    for _ in 0..4 {
        w.wappi.push_read_fault(Fault::RateLimit {
            retry_after_secs: 1,
        });
    }
    let report = report(&w, &p, id).await;
    assert_eq!(
        texts_to(&w, &jids[0]),
        vec![text.to_string()],
        "resent once"
    );
    w.assert_each_delivered_once(&jids);
    assert!(report.starts_with('✅'), "{report}");
}

#[tokio::test]
async fn a_null_field_in_the_history_does_not_break_settling() {
    let w = World::start().await;
    let text = "Пустые поля в истории";
    let (p, _acc, jids) = w.ready(5107, 57, 3, text).await;
    w.wappi.set_null_fields_in_history(true);
    w.wappi.set_chatter_after_post(&jids[0], 3);
    w.wappi.push_fault(Fault::DropAfterAccept);
    let id = p.starts_mailing().await;
    let report = report(&w, &p, id).await;
    assert_eq!(
        texts_to(&w, &jids[0]),
        vec![text.to_string()],
        "posted once"
    );
    assert!(report.starts_with('✅'), "{report}");
    assert_eq!(
        w.server.delivery_states(id),
        HashMap::from([("sent".to_string(), 3)])
    );
}

#[tokio::test]
async fn a_cancel_written_only_to_the_database_stops_the_armed_row() {
    let w = World::start_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "1".into());
    })
    .await;
    let (p, acc, jids) = w.ready(5108, 58, 6, "Отмена в базе").await;
    let id = p.starts_mailing().await;
    w.wappi
        .wait_for_deliveries(2, Duration::from_secs(20))
        .await
        .unwrap();
    // A row is armed (`sending`) for its slot, and has not reached Wappi yet.
    let db = rusqlite::Connection::open(w.dir.path().join("groupcast.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let armed = || -> Option<String> {
        let sent: Vec<String> = w
            .sends(&acc.profile)
            .into_iter()
            .filter_map(|r| r.recipient)
            .collect();
        let mut stmt = db
            .prepare("SELECT group_jid FROM deliveries WHERE mailing_id = ?1 AND state = 'sending'")
            .unwrap();
        let rows: Vec<String> = stmt
            .query_map([id], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows.into_iter().find(|g| !sent.contains(g))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let group = loop {
        if let Some(g) = armed() {
            break g;
        }
        assert!(std::time::Instant::now() < deadline, "no row armed");
        tokio::task::yield_now().await;
    };
    // An operator tool (or a state backend that lost the flag) cancels in the database only.
    db.execute(
        "UPDATE mailings SET cancel_requested = 1 WHERE id = ?1",
        [id],
    )
    .unwrap();
    let sends_at_cancel = w.sends(&acc.profile).len();
    wait_until("the mailing is cancelled", DONE, || {
        w.server.mailing_status(id) == "cancelled"
    })
    .await;
    assert_eq!(
        w.sends(&acc.profile).len(),
        sends_at_cancel,
        "the armed row for {group} went out after the cancel"
    );
    assert!(jids.len() > sends_at_cancel);
}
