//! A preview's ✅ (CONTRACT "A preview's ✅") and Telegram's message limits, end to end: a
//! ✅ starts exactly the mailing its preview showed, at most once; a superseded or changed
//! preview starts nothing and says so; a post up to Telegram's limit gets a preview with ✅;
//! a report with many long failures arrives and `/status` answers.

use groupcast_e2e::fake_wappi::Fault;
use groupcast_e2e::world::{Person, World};

/// The bot's answer to the ✅ of a void preview.
const VOID: &str = "предпросмотр устарел";

/// /mailing, and the preview's message id with its ✅ data.
async fn preview(p: &Person<'_>) -> (i64, String) {
    p.says("/mailing");
    let preview = p.hears("Предпросмотр").await;
    (preview.message_id, Person::button(&preview, "✅"))
}

/// How many mailings the bot said it started to this person.
fn starts(w: &World, user: i64) -> usize {
    w.tg.sent_to(user)
        .iter()
        .filter(|m| m.text.starts_with("🚀 Рассылка #"))
        .count()
}

/// How many mailings the database holds.
fn mailings(w: &World) -> i64 {
    w.server
        .db()
        .query_row("SELECT count(*) FROM mailings", [], |r| r.get(0))
        .expect("count mailings")
}

#[tokio::test]
async fn only_the_newest_preview_starts_a_mailing() {
    let w = World::start().await;
    let (p, acc, jids) = w.ready(7101, 1, 5, "Два предпросмотра").await;
    let (first, first_go) = preview(&p).await;
    let (second, second_go) = preview(&p).await;

    p.presses(first, &first_go);
    let void = p.hears(VOID).await;
    assert!(
        Person::button(&void, "🚀").starts_with("preview"),
        "a fresh preview is offered: {void:?}"
    );
    assert_eq!(
        starts(&w, 7101),
        0,
        "the superseded preview started a mailing"
    );

    p.presses(second, &second_go);
    p.hears("🚀 Рассылка #").await;
    let report = p.hears("завершена").await;
    assert!(report.text.starts_with('✅'), "{}", report.text);
    // The first preview is still void after the mailing of the second.
    p.presses(first, &first_go);
    p.hears(VOID).await;
    assert_eq!(starts(&w, 7101), 1);
    assert_eq!(w.sends(&acc.profile).len(), jids.len());
    w.assert_each_delivered_once(&jids);
}

#[tokio::test]
async fn a_changed_group_list_voids_the_preview() {
    let w = World::start().await;
    let (p, acc, jids) = w.ready(7102, 2, 4, "Группы поменялись").await;
    let (mid, go) = preview(&p).await;
    p.sets_groups(&jids[..2]).await;

    p.presses(mid, &go);
    p.hears(VOID).await;
    p.says("/status");
    p.hears("Рассылок ещё не было").await;
    assert!(w.sends(&acc.profile).is_empty());
    assert_eq!((starts(&w, 7102), mailings(&w)), (0, 0));
}

#[tokio::test]
async fn the_same_confirm_pressed_twice_starts_one_mailing() {
    let w = World::start().await;
    let (p, acc, jids) = w.ready(7103, 3, 3, "Дважды").await;
    let (mid, go) = preview(&p).await;

    p.presses(mid, &go);
    p.hears("🚀 Рассылка #").await;
    let report = p.hears("завершена").await;
    assert!(report.text.starts_with('✅'), "{}", report.text);
    // Pressed again once the mailing is over (no active mailing refuses it).
    p.presses(mid, &go);
    p.hears(VOID).await;
    assert_eq!(starts(&w, 7103), 1);
    assert_eq!(mailings(&w), 1);
    assert_eq!(w.sends(&acc.profile).len(), jids.len());
    w.assert_each_delivered_once(&jids);
}

#[tokio::test]
async fn a_post_of_four_thousand_characters_gets_a_preview_and_goes_out_exactly() {
    let w = World::start().await;
    let line = "Продаётся квартира у моря, 2 комнаты, торг.\n";
    let mut text: String = line.repeat(4000 / line.chars().count() + 1);
    text = text.chars().take(3999).collect::<String>() + "!";
    assert_eq!(text.chars().count(), 4000);
    let (p, acc, jids) = w.ready(7104, 4, 3, &text).await;

    let (mid, go) = preview(&p).await;
    // The user sees exactly what is sent: the post as its own message, before the frame.
    let sent = w.tg.sent_to(7104);
    let at = sent.iter().position(|m| m.message_id == mid).unwrap();
    assert_eq!(sent[at - 1].text, text, "the post is shown as sent");
    assert!(sent[at].text.contains("Групп: 3"), "{}", sent[at].text);

    p.presses(mid, &go);
    let report = p.hears("завершена").await;
    assert!(report.text.starts_with('✅'), "{}", report.text);
    let sends = w.sends(&acc.profile);
    assert_eq!(sends.len(), jids.len());
    assert!(sends.iter().all(|r| r.body_text.as_deref() == Some(&*text)));
    w.assert_each_delivered_once(&jids);
}

#[tokio::test]
async fn a_report_of_many_long_failures_arrives_and_status_answers() {
    let w = World::start().await;
    // 40 groups refuse the post; every fifth of 50 takes it, so the breaker (five failed
    // posts in a row pause a mailing) never trips and the report lists all 40.
    let groups = 50;
    let (p, _acc, _jids) = w.ready(7105, 5, groups, "Много ошибок").await;
    let reason = "группа недоступна: ".to_string() + &"очень длинная причина ".repeat(20);
    for i in 0..groups {
        if i % 5 == 4 {
            w.wappi.push_fault(Fault::Delay(std::time::Duration::ZERO));
            continue;
        }
        let body = format!(r#"{{"detail":"{reason}","status":"error"}}"#);
        w.wappi.push_fault(Fault::Status(400, body));
    }
    p.starts_mailing().await;
    let report = p.hears("завершена с ошибками").await;
    assert!(report.text.starts_with("⚠️"), "{}", report.text);
    assert!(report.text.contains("Ошибок: 40"), "{}", report.text);
    assert!(report.text.contains("… и ещё"), "{}", report.text);

    p.says("/status");
    let status = p.hears("Рассылка #").await;
    assert_eq!(status.text, report.text, "/status shows the report");
    // Every text the fake Telegram was asked to show fits its limit.
    for call in w.tg.calls() {
        let text = call.body["text"].as_str().unwrap_or("");
        let units = text.encode_utf16().count();
        assert!(units <= 4096, "{} of {units} units", call.method);
    }
}
