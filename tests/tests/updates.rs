//! Telegram updates on the server, against the real binary: a cancel is not queued behind the
//! same user's slow update, and an update cut off by a crash or a shutdown is handled after the
//! restart instead of being dropped as already seen. A slow update is staged with the fake
//! Telegram holding file downloads, so a photo's handling lasts as long as the test wants.

use groupcast_core::collage::fixtures::synthetic_jpeg;
use groupcast_e2e::harness::wait_until;
use groupcast_e2e::world::{Bot, Person, World};
use std::time::Duration;

/// The user's photo whose handling is held at its file download; returns once it is.
async fn photo_stuck_in_download(w: &World, p: &Person<'_>, file_id: &str) {
    p.says("/images");
    p.hears("Пришлите до 10 фото").await;
    w.tg.add_file(file_id, synthetic_jpeg(640, 480, 1, 8, 1));
    w.tg.hold_files();
    let before = w.tg.file_downloads();
    w.server
        .deliver(&w.tg, w.tg.photo_message(p.id, file_id, None));
    wait_until(
        "the photo's download began",
        Duration::from_secs(20),
        || w.tg.file_downloads() > before,
    )
    .await;
}

#[tokio::test]
async fn a_cancel_takes_effect_while_the_users_earlier_update_is_still_being_handled() {
    let w = World::start_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "4".into());
    })
    .await;
    // One user cancels with the progress message's ⛔, the other with /cancel.
    let (a, _, a_jids) = w.ready(7101, 71, 200, "Пост A").await;
    let (b, _, b_jids) = w.ready(7102, 72, 200, "Пост B").await;
    let (a_id, a_started) = a.starts_mailing_msg().await;
    let b_id = b.starts_mailing().await;
    w.wappi
        .wait_for_deliveries(4, Duration::from_secs(20))
        .await
        .unwrap();

    // Each user's photo is stuck in its download: their next updates queue behind it.
    photo_stuck_in_download(&w, &a, "AgACheldA").await;
    let before = w.tg.file_downloads();
    w.tg.add_file("AgACheldB", synthetic_jpeg(640, 480, 2, 8, 1));
    w.server
        .deliver(&w.tg, w.tg.photo_message(b.id, "AgACheldB", None));
    wait_until("B's download began", Duration::from_secs(20), || {
        w.tg.file_downloads() > before
    })
    .await;

    let sent_at_press = w.wappi.deliveries().len();
    a.presses(a_started.message_id, &Person::button(&a_started, "⛔"));
    b.says("/cancel");
    let a_report = a.hears(&format!("Рассылка #{a_id}")).await;
    let b_report = b.hears(&format!("Рассылка #{b_id}")).await;
    assert!(a_report.text.starts_with('⚠'), "{}", a_report.text);
    assert!(b_report.text.starts_with('⚠'), "{}", b_report.text);
    // At most one more post per mailing after the press (the one already on its way).
    let after = w.wappi.deliveries().len() - sent_at_press;
    assert!(after <= 2, "{after} posts went out after the cancels");
    let a_got = a_jids
        .iter()
        .filter(|j| !w.wappi.deliveries_to(j).is_empty())
        .count();
    let b_got = b_jids
        .iter()
        .filter(|j| !w.wappi.deliveries_to(j).is_empty())
        .count();
    assert!(
        a_got < 50 && b_got < 50,
        "A {a_got}, B {b_got} of 200 groups"
    );

    // The held photos are still handled, after the cancels.
    w.tg.release_files();
    a.hears("Фото сохранено: 1 из 10").await;
    b.hears("Фото сохранено: 1 из 10").await;
}

#[tokio::test]
async fn an_update_cut_off_by_a_crash_is_handled_after_the_restart() {
    let mut w = World::start().await;
    {
        let (p, _, _) = w.ready(7103, 73, 2, "Пост").await;
        photo_stuck_in_download(&w, &p, "AgACcrash").await;
    }
    w.server.kill9();
    w.tg.release_files();
    w.server.restart().await;
    // Recorded as received but never finished: the restarted server handles it.
    w.person(7103).hears("Фото сохранено: 1 из 10").await;
    let saved: i64 = w
        .server
        .db()
        .query_row("SELECT COUNT(*) FROM images", [], |r| r.get(0))
        .unwrap();
    assert_eq!(saved, 1, "the photo is stored once");
}

#[tokio::test]
async fn an_update_still_running_at_shutdown_is_handed_back_and_handled_after_the_restart() {
    let mut w = World::start().await;
    {
        let (p, _, _) = w.ready(7104, 74, 2, "Пост").await;
        photo_stuck_in_download(&w, &p, "AgACterm").await;
        // The next update queues behind the held one.
        p.says("/status");
    }
    let stopped = w.server.terminate(Duration::from_secs(30));
    assert!(
        stopped.is_some(),
        "the server stopped on SIGTERM within its grace"
    );
    w.tg.release_files();
    w.server.restart().await;
    let p = w.person(7104);
    p.hears("Фото сохранено: 1 из 10").await;
    // The queued /status was handed back too, and answered after the photo.
    p.hears("Рассылок").await;
}
