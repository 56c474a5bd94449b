//! The user's pace against the real binary (issue 13): custom gaps and batch pauses measured at
//! the fake Wappi, an hourly cap and a window holding the mailing back with a ⏸ progress
//! message that names when it goes on, ⏸ / ▶️, and the same plan after a `kill -9`.
//!
//! The operator's ceiling here is 10 posts a second; the paces are seconds-scale so the tests
//! run in seconds.

use chrono::{TimeZone, Timelike};
use groupcast_e2e::harness::wait_until;
use groupcast_e2e::world::{Person, World};
use std::time::Duration;

/// Arrival jitter at the fake (loopback, scheduling, the arming write before each post).
const SLACK_MS: i64 = 60;

fn moscow() -> chrono_tz::Tz {
    chrono_tz::Europe::Moscow
}

/// Gaps between consecutive deliveries, ms.
fn gaps(w: &World) -> Vec<i64> {
    let at: Vec<i64> = w.wappi.deliveries().iter().map(|r| r.at_ms).collect();
    at.windows(2).map(|p| p[1] - p[0]).collect()
}

fn within(gap: i64, lo: i64, hi: i64) -> bool {
    gap >= lo - SLACK_MS && gap <= hi + SLACK_MS
}

async fn sets_pace(p: &Person<'_>, args: &str) {
    p.says(&format!("/pace {args}"));
    p.hears("✅ Темп").await;
}

#[tokio::test]
async fn a_custom_pace_varies_the_gaps_and_pauses_after_each_batch() {
    let w = World::start().await;
    let (p, _, jids) = w.ready(7301, 91, 12, "Пост в своём темпе").await;
    sets_pace(&p, "gap=0.3-0.8s batch=5 pause=3-4s window=off day=off").await;
    p.says("/mailing");
    let preview = p.hears("Предпросмотр").await;
    assert!(preview.text.contains("Темп: ⚙️ свой"), "{}", preview.text);
    p.presses(preview.message_id, &Person::button(&preview, "✅"));
    let (started_id, _) = (p.hears("🚀 Рассылка #").await.message_id, ());
    w.wappi
        .wait_for_deliveries(12, Duration::from_secs(40))
        .await
        .unwrap();
    w.assert_each_delivered_once(&jids);
    let gaps = gaps(&w);
    for (i, gap) in gaps.iter().enumerate() {
        let post = i + 1;
        if post % 5 == 0 {
            assert!(
                within(*gap, 3000, 4000),
                "pause after post {post}: {gap} ms"
            );
        } else {
            assert!(within(*gap, 300, 800), "gap after post {post}: {gap} ms");
        }
    }
    let short: Vec<i64> = gaps
        .iter()
        .enumerate()
        .filter(|(i, _)| (i + 1) % 5 != 0)
        .map(|(_, g)| *g)
        .collect();
    let spread = short.iter().max().unwrap() - short.iter().min().unwrap();
    assert!(spread > 150, "the gaps vary: {short:?}");
    // A batch pause showed on the progress message as ⏸.
    let held =
        w.tg.edits_of(p.id)
            .into_iter()
            .filter(|m| m.message_id == started_id)
            .any(|m| m.text.starts_with("⏸") && m.text.contains("перерыв между пачками"));
    assert!(held, "a ⏸ batch pause on the progress message");
    p.hears("✅ Рассылка").await;
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
    let (p, _, jids) = w.ready(7304, 94, 10, "Пост с паузой").await;
    sets_pace(&p, "gap=0.5s batch=off window=off day=off").await;
    let (id, started) = p.starts_mailing_msg().await;
    w.wappi
        .wait_for_deliveries(2, Duration::from_secs(20))
        .await
        .unwrap();
    p.presses(started.message_id, &Person::button(&started, "⏸"));
    let paused = p.hears(&format!("⏸ Рассылка #{id} приостановлена")).await;
    let at_pause = w.wappi.deliveries().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = w.wappi.deliveries().len();
    assert!(
        held <= at_pause + 1,
        "{at_pause} at the press, {held} two seconds later"
    );
    assert!(held < 10);
    // /resume goes on; then ⏸ again and the ▶️ button.
    p.says("/resume");
    p.hears(&format!("▶️ Рассылка #{id} продолжается")).await;
    let more = held + 2;
    w.wappi
        .wait_for_deliveries(more, Duration::from_secs(20))
        .await
        .unwrap();
    p.says("/pause");
    let paused_again = p.hears(&format!("⏸ Рассылка #{id} приостановлена")).await;
    assert_ne!(paused_again.message_id, paused.message_id);
    p.presses(
        paused_again.message_id,
        &Person::button(&paused_again, "▶️"),
    );
    p.hears("✅ Рассылка").await;
    w.assert_each_delivered_once(&jids);
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
    let gaps = gaps(&w);
    // Batches end after posts 4 and 8 of the mailing, whatever happened after post 6: a plan
    // started afresh at the restart would pause after post 10 instead.
    assert!(
        within(gaps[3], 3000, 4000),
        "pause after post 4: {}",
        gaps[3]
    );
    assert!(
        within(gaps[7], 3000, 4000),
        "pause after post 8: {}",
        gaps[7]
    );
    for post in [7, 9] {
        let gap = gaps[post - 1];
        assert!(within(gap, 300, 800), "gap after post {post}: {gap} ms");
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
