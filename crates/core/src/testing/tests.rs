//! The fakes of `testing` hold to the port semantics they stand in for (they are the reference
//! for the real backends), so a test that passes on them means something.

use crate::model::ids::{ChatId, MailingId};
use crate::model::pacing::{Pace, PacingConfig};
use crate::model::secret::Secret;
use crate::ports::{
    Cancels, Clock, Entropy, Heartbeats, Intake, IntakeConsumer, Leases, Pacer, TelegramApi,
    WappiApi,
};
use crate::telegram::{InlineKeyboardMarkup, ReplyMarkup, TelegramError};
use crate::testing::*;
use crate::wappi::{WappiCreds, WappiError};

#[tokio::test]
async fn in_mem_db_keeps_the_contract() {
    db_contract_suite(&InMemDb::new(), "inmem").await;
}

#[tokio::test]
async fn in_mem_db_injected_failures_and_write_log() {
    let (svc, f) = services(Default::default());
    let prof = profile("prof-1");
    let id = create_mailing(&svc, crate::UserId(1), &prof, &jids(2), "x").await;
    svc.db.claim_mailing(id, 3).await.unwrap();
    let mut row = f.db.rows(id)[0].clone();
    row.state = crate::model::ledger::DeliveryState::Sending;
    f.db.fail_update_delivery(1);
    assert!(matches!(
        svc.db.update_delivery(&row, 3).await,
        Err(crate::ports::DbError::Backend(_))
    ));
    svc.db.update_delivery(&row, 3).await.unwrap();
    assert_eq!(
        svc.db.update_delivery(&row, 2).await,
        Err(crate::ports::DbError::StaleFence)
    );
    assert_eq!(f.db.delivery_writes().len(), 1);
    assert_eq!(f.db.delivery_writes()[0].fence, 3);
    assert_eq!(f.db.refused_writes().len(), 1);
}

#[tokio::test]
async fn memory_state_keeps_the_contract() {
    contract::state_suite(&MemoryState::reproducible()).await;
}

#[tokio::test]
async fn memory_state_keeps_the_contract_twice_on_one_backend() {
    let state = MemoryState::reproducible();
    contract::state_suite(&state).await;
    contract::state_suite(&state).await;
}

#[tokio::test]
async fn in_mem_state_leases_fence_upwards_and_check_the_token() {
    let s = MemoryState::reproducible();
    let p = profile("prof-1");
    let a = s.acquire_lease(&p, 1000, T0).await.unwrap().expect("free");
    assert_eq!((a.token.clone(), a.fence), (lease_token(1), 1));
    assert_eq!(a.token.len(), 32);
    assert_eq!(
        s.acquire_lease(&p, 1000, T0 + 999).await.unwrap(),
        None,
        "held"
    );
    assert!(s.renew_lease(&a, 1000, T0 + 500).await.unwrap());
    assert_eq!(
        s.acquire_lease(&p, 1000, T0 + 1499).await.unwrap(),
        None,
        "renewed until T0 + 1500"
    );
    assert!(
        !s.renew_lease(&a, 1000, T0 + 1500).await.unwrap(),
        "expired"
    );
    let b = s
        .acquire_lease(&p, 1000, T0 + 1500)
        .await
        .unwrap()
        .expect("expired, so free");
    assert!(b.fence > a.fence);
    s.release_lease(&a).await.unwrap();
    assert_eq!(
        s.lease_of(&p),
        Some((b.token.clone(), b.fence)),
        "a stale holder cannot release"
    );
    s.expire_lease(&p);
    let c = s.acquire_lease(&p, 1000, T0 + 1501).await.unwrap().unwrap();
    assert!(c.fence > b.fence);
    assert!(!s.renew_lease(&b, 1000, T0 + 1502).await.unwrap());
}

#[tokio::test]
async fn in_mem_state_pacing_peek_takes_nothing() {
    let s = MemoryState::reproducible();
    let p = profile("prof-1");
    let cfg = PacingConfig::default();
    let g = jid(1);
    assert_eq!(s.pace_peek(&p, &g, &cfg, T0).await.unwrap(), Pace::Go);
    assert_eq!(
        s.pace_peek(&p, &g, &cfg, T0).await.unwrap(),
        Pace::Go,
        "a peek takes no slot"
    );
    assert_eq!(s.pace(&p, &g, &cfg, T0).await.unwrap(), Pace::Go);
    assert_eq!(
        s.pace_peek(&p, &jid(2), &cfg, T0).await.unwrap(),
        Pace::WaitUntil(T0 + 1000)
    );
    assert_eq!(
        s.pace(&p, &jid(2), &cfg, T0 + 1000).await.unwrap(),
        Pace::Go
    );
    s.set_backoff(&p, T0 + 9000).await.unwrap();
    s.set_backoff(&p, T0 + 5000).await.unwrap();
    assert_eq!(
        s.pace_state(&p).backoff_until,
        T0 + 9000,
        "a backoff is never shortened"
    );
    assert_eq!(
        s.pace(&p, &g, &cfg, T0 + 2000).await.unwrap(),
        Pace::WaitUntil(T0 + 9000)
    );
    assert_eq!(
        s.pace(&profile("prof-2"), &g, &cfg, T0 + 2000)
            .await
            .unwrap(),
        Pace::Go,
        "per profile"
    );
}

#[tokio::test]
async fn in_mem_state_flags_queue_and_heartbeats() {
    let s = MemoryState::reproducible();
    assert!(!s.is_cancelled(MailingId(1)).await.unwrap());
    s.set_cancel(MailingId(1)).await.unwrap();
    assert!(s.is_cancelled(MailingId(1)).await.unwrap());
    assert!(!s.is_cancelled(MailingId(2)).await.unwrap());
    for i in [3, 1, 2] {
        s.enqueue(MailingId(i)).await.unwrap();
    }
    assert_eq!(s.queued(), vec![MailingId(3), MailingId(1), MailingId(2)]);
    assert_eq!(s.dequeue().await.unwrap(), Some(MailingId(3)));
    assert_eq!(s.last_heartbeat().await.unwrap(), None);
    s.heartbeat("a", 10).await.unwrap();
    s.heartbeat("b", 30).await.unwrap();
    s.heartbeat("a", 20).await.unwrap();
    assert_eq!(s.last_heartbeat().await.unwrap(), Some(30));
}

fn creds(p: &str) -> WappiCreds {
    WappiCreds {
        token: Secret::new("t"),
        profile_id: profile(p),
    }
}

#[tokio::test]
async fn scripted_wappi_delivers_records_and_answers_history() {
    let clock = FakeClock::new(T0);
    let w = ScriptedWappi::new(clock.clone());
    let (me, g) = (creds("prof-me"), jid(1));
    w.set_latency(40);
    w.script_send(SendScript::Fail(WappiError::Temporary("502".into())));
    w.script_send(SendScript::unknown_but_delivered());
    w.script_send_to(&g, SendScript::Deliver); // wins over the general queue
    assert!(w.send_text(&me, &g, "one").await.is_ok());
    assert_eq!(
        w.send_text(&me, &g, "two").await.unwrap_err(),
        WappiError::Temporary("502".into())
    );
    assert!(matches!(
        w.send_text(&me, &g, "three").await,
        Err(WappiError::Unknown(_))
    ));
    assert!(
        w.send_text(&me, &g, "four").await.is_ok(),
        "the default is Deliver"
    );
    assert_eq!(clock.now(), T0 + 160, "each call took 40 ms");
    let sends = w.sends();
    assert_eq!(
        sends.iter().map(|c| c.at - T0).collect::<Vec<_>>(),
        vec![0, 40, 80, 120]
    );
    assert_eq!(
        sends.iter().map(|c| c.delivered).collect::<Vec<_>>(),
        vec![true, false, true, true]
    );

    w.inject_message(&g, &profile("prof-other"), "hello", T0 + 5000);
    let history = w.chat_messages(&me, &g, 3, 0).await.unwrap().messages;
    let older = w.chat_messages(&me, &g, 3, 3).await.unwrap();
    assert_eq!(older.total_count, Some(4));
    assert_eq!(older.messages.len(), 1, "paged back by offset");
    assert_eq!(older.messages[0].body, "one");
    let seen: Vec<(&str, bool)> = history
        .iter()
        .map(|m| (m.body.as_str(), m.from_me))
        .collect();
    assert_eq!(
        seen,
        vec![("hello", false), ("four", true), ("three", true)],
        "newest first, limited"
    );
    assert_eq!(history[1].time, (T0 + 120) / 1000, "seconds");
    assert_eq!(
        w.delivered_to(&g, &me.profile_id),
        vec!["one", "three", "four"]
    );

    w.fail_next_read(WappiError::RateLimited(1000));
    assert_eq!(
        w.chat_messages(&me, &g, 3, 0).await.unwrap_err(),
        WappiError::RateLimited(1000)
    );
    assert!(w.chat_messages(&me, &g, 3, 0).await.is_ok());
    w.script_status(Err(WappiError::BadToken));
    assert_eq!(w.get_status(&me).await.unwrap_err(), WappiError::BadToken);
    assert!(w.get_status(&me).await.unwrap().is_ready());
    assert_eq!(w.calls_of(WappiMethod::GetStatus).len(), 2);
}

#[tokio::test]
async fn scripted_wappi_pages_chats() {
    let w = ScriptedWappi::new(FakeClock::default());
    let dialogs = (0..5)
        .map(|i| crate::wappi::Dialog {
            id: jid(i).to_string(),
            ..Default::default()
        })
        .collect();
    w.set_chats(dialogs);
    let c = creds("prof-me");
    assert_eq!(w.list_chats(&c, 2, 0).await.unwrap().len(), 2);
    assert_eq!(w.list_chats(&c, 2, 4).await.unwrap().len(), 1);
    w.fail_next_list(WappiError::NotAuthorized);
    assert!(w.list_chats(&c, 2, 0).await.is_err());
}

#[tokio::test]
async fn recording_telegram_behaves_like_the_bot_api() {
    let clock = FakeClock::new(T0);
    let t = RecordingTelegram::new(clock.clone());
    let chat = ChatId(7);
    let kb = InlineKeyboardMarkup::rows(vec![vec![("⛔", "cancel:1")]]);
    let a = t
        .send_message(chat, "a", Some(&ReplyMarkup::Inline(kb.clone())))
        .await
        .unwrap();
    let b = t.send_message(chat, "b", None).await.unwrap();
    assert_eq!((a.0, b.0), (1001, 1002));
    let not_modified = t
        .edit_message_text(chat, a, "a", Some(&kb))
        .await
        .unwrap_err();
    assert!(not_modified.is_not_modified());
    clock.advance(5);
    t.edit_message_text(chat, a, "a", None)
        .await
        .expect("removing the keyboard is a change");
    assert!(t
        .message(chat, a)
        .unwrap()
        .keyboard
        .inline_keyboard
        .is_empty());
    let missing = t
        .edit_message_text(ChatId(8), a, "x", None)
        .await
        .unwrap_err();
    assert!(matches!(missing, TelegramError::Api { code: 400, .. }) && !missing.is_not_modified());
    t.fail_next(TelegramError::RetryAfter(3));
    assert_eq!(
        t.send_message(chat, "c", None).await,
        Err(TelegramError::RetryAfter(3))
    );
    assert_eq!(
        t.sent_texts(chat),
        vec!["a", "b"],
        "a failed call is not recorded"
    );
    assert_eq!(t.edits_of(chat, a), vec![(T0 + 5, "a".to_string())]);
    assert!(t.can_send_now(chat));
    t.set_busy(true);
    assert!(!t.can_send_now(chat));
}

#[test]
fn clock_and_entropy_are_deterministic() {
    let c = FakeClock::new(100);
    let shared = c.clone();
    c.advance(50);
    shared.advance_to(120);
    assert_eq!(c.now_ms(), 150, "advance_to never goes back");
    c.set(90);
    assert_eq!(shared.now(), 90);

    let (e1, e2) = (FixedEntropy::default(), FixedEntropy::default());
    let (mut a, mut b, mut c1) = ([0u8; 12], [0u8; 12], [0u8; 12]);
    e1.fill(&mut a);
    e1.fill(&mut b);
    e2.fill(&mut c1);
    assert_ne!(a, b, "fresh bytes each time");
    assert_eq!(a, c1, "the same sequence every run");
    assert_eq!(e1.fills(), 2);
}
