//! The user's pace against the real binary (issue 13): custom gaps and batch pauses measured at
//! the fake Wappi, an hourly cap and a window holding the mailing back with a ⏸ progress
//! message that names when it goes on, ⏸ / ▶️, and the same plan after a `kill -9`.
//!
//! The operator's ceiling here is 10 posts a second; the paces are seconds-scale so the tests
//! run in seconds.

use chrono::{TimeZone, Timelike};
use groupcast_e2e::harness::wait_until;
use groupcast_e2e::scenarios::{self, gaps_between, within_pace};
use groupcast_e2e::world::{Person, World};
use std::time::Duration;

fn moscow() -> chrono_tz::Tz {
    chrono_tz::Europe::Moscow
}

use scenarios::sets_pace;

#[tokio::test]
async fn a_custom_pace_varies_the_gaps_and_pauses_after_each_batch() {
    let w = World::start().await;
    scenarios::a_custom_pace_varies_the_gaps_and_pauses_after_each_batch(&w, 7301).await;
}

#[tokio::test]
async fn an_hourly_cap_holds_the_mailing_with_a_message_naming_when_it_goes_on() {
    let w = World::start().await;
    let (p, _, jids) = w.ready(7302, 92, 5, "Пост с лимитом").await;
    sets_pace(&p, "gap=0.2s batch=off window=off day=off hour=3").await;
    let (_, started) = p.starts_mailing_msg().await;
    w.wappi
        .wait_for_deliveries(3, Duration::from_secs(20))
        .await
        .unwrap();
    let first = w.wappi.deliveries()[0].at_ms;
    let goes_on = moscow().timestamp_millis_opt(first + 3_600_000).unwrap();
    let when = format!("{:02}:{:02}", goes_on.hour(), goes_on.minute());
    w.shows(p.id, started.message_id, "лимит постов в час")
        .await;
    let text = w.tg.current_text(p.id, started.message_id).unwrap();
    assert!(text.starts_with("⏸"), "{text}");
    assert!(text.contains(&when), "names {when}: {text}");
    // Held: nothing more goes out (a second is five gaps of this pace).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(w.wappi.deliveries().len(), 3, "the cap holds");
    // ⛔ works while held: the report comes at once and counts what was sent.
    p.presses(started.message_id, &Person::button(&started, "⛔"));
    let report = p.hears("Рассылка #").await;
    assert!(report.text.starts_with("⚠️"), "{}", report.text);
    assert_eq!(
        jids.iter()
            .filter(|j| !w.wappi.deliveries_to(j).is_empty())
            .count(),
        3
    );
}

#[tokio::test]
async fn a_window_that_excludes_now_holds_the_mailing_from_its_start() {
    let w = World::start().await;
    let (p, _, _) = w.ready(7303, 93, 3, "Пост в окне").await;
    // A one-hour window that opens two hours from now, Moscow time.
    let now = moscow()
        .timestamp_millis_opt(groupcast_e2e::harness::unix_ms())
        .unwrap();
    let start = (now.hour() + 2) % 24;
    let window = format!("{start:02}:00-{:02}:00", (start + 1) % 24);
    sets_pace(&p, &format!("gap=0.2s window={window}")).await;
    let (_, started) = p.starts_mailing_msg().await;
    w.shows(p.id, started.message_id, "вне окна отправки").await;
    let text = w.tg.current_text(p.id, started.message_id).unwrap();
    assert!(text.starts_with("⏸"), "{text}");
    assert!(text.contains(&format!("{start:02}:00")), "{text}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        w.wappi.deliveries().is_empty(),
        "nothing outside the window"
    );
    p.says("/cancel");
    p.hears("⚠️ Рассылка").await;
    assert!(w.wappi.deliveries().is_empty());
}

#[tokio::test]
async fn pause_and_resume_from_the_progress_message_and_by_command() {
    let w = World::start().await;
    scenarios::pause_and_resume_from_the_progress_message_and_by_command(&w, 7304).await;
}

#[tokio::test]
async fn a_kill_9_and_restart_continue_the_same_plan() {
    let mut w = World::start().await;
    let (p, _, jids) = w.ready(7305, 95, 10, "Пост переживёт сбой").await;
    sets_pace(&p, "gap=0.3-0.8s batch=4 pause=3-4s window=off day=off").await;
    p.starts_mailing().await;
    w.wappi
        .wait_for_deliveries(6, Duration::from_secs(30))
        .await
        .unwrap();
    w.server.kill9();
    w.server.restart().await;
    w.wappi
        .wait_for_deliveries(10, Duration::from_secs(60))
        .await
        .unwrap();
    w.assert_each_delivered_once(&jids);
    let gaps = gaps_between(&w);
    // Batches end after posts 4 and 8 of the mailing, whatever happened after post 6: a plan
    // started afresh at the restart would pause after post 10 instead.
    assert!(
        within_pace(gaps[3], 3000, 4000),
        "pause after post 4: {}",
        gaps[3]
    );
    assert!(
        within_pace(gaps[7], 3000, 4000),
        "pause after post 8: {}",
        gaps[7]
    );
    for post in [7, 9] {
        let gap = gaps[post - 1];
        assert!(
            within_pace(gap, 300, 800),
            "gap after post {post}: {gap} ms"
        );
    }
    wait_until("the report", Duration::from_secs(20), || {
        w.tg.sent_to(p_id())
            .iter()
            .any(|m| m.text.starts_with("✅"))
    })
    .await;
}

fn p_id() -> i64 {
    7305
}

#[tokio::test]
async fn a_young_number_gets_the_warm_up_cap_and_the_preview_says_so() {
    let w = World::start().await;
    let (p, acc, _) = w.ready(7306, 96, 40, "Пост с молодого номера").await;
    // Linked to WhatsApp 30 hours ago: day 2 of the warm-up, 30 posts a day.
    let linked = chrono::Utc
        .timestamp_millis_opt(groupcast_e2e::harness::unix_ms() - 30 * 3_600_000)
        .unwrap();
    w.wappi
        .set_authorized_at(&acc.profile, &linked.to_rfc3339());
    sets_pace(&p, "gap=0.1s batch=off window=off day=off").await;
    p.says("/mailing");
    let preview = p.hears("Предпросмотр").await;
    assert!(
        preview.text.contains("(день 2): до 30 постов в день"),
        "{}",
        preview.text
    );
    assert!(
        preview.text.contains("Риск блокировки: высокий"),
        "{}",
        preview.text
    );
    p.presses(preview.message_id, &Person::button(&preview, "✅"));
    let started = p.hears("🚀 Рассылка #").await;
    w.wappi
        .wait_for_deliveries(30, Duration::from_secs(30))
        .await
        .unwrap();
    w.shows(p.id, started.message_id, "лимит постов в день")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        w.wappi.deliveries().len(),
        30,
        "the day's warm-up cap holds"
    );
}

#[tokio::test]
async fn a_run_of_refused_sends_trips_the_breaker_and_resume_goes_on() {
    let w = World::start().await;
    scenarios::a_run_of_refused_posts_trips_the_breaker_and_resume_goes_on(&w, 7307).await;
}

#[tokio::test]
async fn a_temporary_ban_pauses_the_mailing_and_it_goes_on_at_half_pace() {
    let w = World::start().await;
    scenarios::a_temporary_ban_pauses_the_mailing_and_it_goes_on_at_half_pace(&w, 7308).await;
}
