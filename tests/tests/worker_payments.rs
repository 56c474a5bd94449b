//! Subscriptions paid through Robokassa on the Cloudflare Worker under `wrangler dev`, as in
//! the native suite: the signed payment link (recomputed here with its own MD5), the ResultURL
//! notification accepted once, replays answered `OK` with nothing changed, tampering refused,
//! the payer's pages, calls over the size and field limits refused undecoded, and the Cron
//! reminder pass. Needs `scripts/worker-setup`.

use groupcast_e2e::scenarios::{
    self, invoice_for, invoice_of, live_form, md5_hex, notify, overlong_calls_are_refused,
    oversized_form, post_raw, LOGIN, PASS1, PASS2,
};
use groupcast_e2e::worker_harness::{worker_world_with, Worker};
use groupcast_e2e::world::{Account, World, STEP};
use std::time::Duration;

async fn shop() -> World<Worker> {
    worker_world_with(|vars| {
        for (k, v) in scenarios::shop_settings() {
            vars.insert(k.into(), v);
        }
    })
    .await
}

#[tokio::test]
async fn the_link_is_signed_and_a_notification_extends_once_despite_replays() {
    let w = shop().await;
    let p = w.person(6002);
    let (inv, q) = invoice_for(&w, &p, 2, "90 дн").await;
    assert_eq!(q["MerchantLogin"], LOGIN);
    assert_eq!(q["OutSum"], "1290.00");
    assert_eq!(q["Shp_plan"], "90");
    let want = md5_hex(&format!("{LOGIN}:1290.00:{inv}:{PASS1}:Shp_plan=90"));
    assert_eq!(q["SignatureValue"].to_lowercase(), want);
    assert_eq!(
        w.server.query_i64(&format!(
            "SELECT amount_kopecks FROM invoices WHERE id = {inv} AND status = 'pending'"
        )),
        129_000
    );

    scenarios::a_notification_extends_once_despite_replays(&w, &p, inv, "1290.000000", 90).await;
}

#[tokio::test]
async fn tampered_or_foreign_notifications_are_refused_and_change_nothing() {
    let w = shop().await;
    let p = w.person(6003);
    let (inv, _) = invoice_for(&w, &p, 3, "30 дн").await;
    scenarios::tampered_or_foreign_notifications_change_nothing(&w, &p, inv).await;
}

#[tokio::test]
async fn the_cron_sends_a_reminder_once() {
    let w = shop().await;
    let acc = Account::numbered(4);
    w.wappi.add_profile(&acc.profile, &acc.token);
    let p = w.person(6004);
    p.registers(&acc).await;
    let (inv, _) = invoice_of(&p, "30 дн").await;
    assert_eq!(
        notify(&w, &live_form(inv, "490.000000", "30", PASS2)).await,
        (200, format!("OK{inv}"))
    );
    p.hears("Оплата получена").await;
    // 30 days left: the Cron pass has nothing to say.
    w.server.run_cron("* * * * *").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(w.tg.sent_to(6004).iter().all(|m| !m.text.starts_with('🔔')));
    // An expired subscription (set with `wrangler d1 execute`): one reminder, however many Cron passes run.
    w.server
        .d1_execute(&format!(
            "UPDATE users SET subscription_until = {} WHERE id = 6004",
            groupcast_e2e::harness::unix_ms() / 1000 - 10
        ))
        .await;
    for _ in 0..3 {
        w.server.run_cron("* * * * *").await;
    }
    w.tg.wait_until(
        |tg| {
            tg.sent_to(6004)
                .iter()
                .any(|m| m.text.contains("закончилась"))
        },
        STEP,
    )
    .await
    .unwrap();
    w.server.run_cron("* * * * *").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reminders =
        w.tg.sent_to(6004)
            .into_iter()
            .filter(|m| m.text.starts_with('🔔') || m.text.starts_with('🔒'))
            .count();
    assert_eq!(reminders, 1);
}

/// As on the server (`payments_limits.rs`): calls no real Robokassa makes (almost 1 MiB of
/// `Shp_` fields with or without a declared length, too many fields, as a POST body or a GET
/// query, at the result and the payer's pages) are refused undecoded, with one log line each
/// and nothing of the body in the logs, while the bot answers a user; a real notification still
/// reaches the signature check.
#[tokio::test]
async fn oversized_or_overlong_calls_are_refused_undecoded_while_the_bot_answers() {
    let w = shop().await;
    let base = w.server.url();
    let big = oversized_form(1, 1_000_000);
    let calls: Vec<_> = [None, None, Some(8192)]
        .into_iter()
        .map(|chunk| {
            let (base, big) = (base.clone(), big.clone());
            tokio::spawn(async move { post_raw(&base, "/robokassa/result", big, chunk).await })
        })
        .collect();
    let p = w.person(7001);
    p.says("/help");
    p.hears("groupcast").await;
    for call in calls {
        assert_eq!(call.await.unwrap(), (413, "too large".to_string()));
    }

    overlong_calls_are_refused(&w, &base, PASS2).await;

    let logs = w.server.logs();
    let refused = |reason: &str| {
        logs.lines()
            .filter(|l| l.contains("robokassa call refused") && l.contains(reason))
            .count()
    };
    assert_eq!(refused(": too large"), 5, "{logs}");
    assert_eq!(refused(": too many fields"), 2, "{logs}");
    assert!(!logs.contains("Shp_k0"), "a log line holds the body");
    assert!(!logs.contains("Shp_10"), "a log line holds the body");
    w.server.assert_no_secrets_in_logs(&[PASS1, PASS2]);
}
