//! Subscriptions paid through Robokassa, end to end: the signed payment link (recomputed here
//! independently), the ResultURL notification accepted once and replays answered `OK` with
//! nothing changed, every kind of tampering refused, the payer's pages, reminders sent once,
//! and the operator's /grant and /stats. The test plays Robokassa: it signs notifications the
//! way the spec says, with its own MD5, not the product's code.

use groupcast_e2e::harness::free_port;
use groupcast_e2e::scenarios::{
    self, invoice_for, live_form, md5_hex, notify, LOGIN, PASS1, PASS2,
};
use groupcast_e2e::world::{Account, World, STEP};
use std::time::Duration;

const ADMIN: i64 = 9000;

async fn shop() -> World {
    World::start_with(|env| {
        for (k, v) in scenarios::shop_settings() {
            env.insert(k.into(), v);
        }
        env.insert("ADMIN_TELEGRAM_IDS".into(), ADMIN.to_string());
        env.insert("REMINDER_INTERVAL_SECS".into(), "1".into());
    })
    .await
}

#[tokio::test]
async fn the_payment_link_is_signed_as_robokassa_expects() {
    let w = shop().await;
    let p = w.person(6001);
    let (inv, q) = invoice_for(&w, &p, 1, "90 дн").await;
    assert_eq!(q["MerchantLogin"], LOGIN);
    assert_eq!(q["OutSum"], "1290.00");
    assert_eq!(q["Shp_plan"], "90");
    assert_eq!(q["Culture"], "ru");
    assert_eq!(q["Encoding"], "utf-8");
    assert!(q["Description"].contains("90"), "{q:?}");
    assert!(!q.contains_key("IsTest"), "live mode");
    let want = md5_hex(&format!("{LOGIN}:1290.00:{inv}:{PASS1}:Shp_plan=90"));
    assert_eq!(q["SignatureValue"].to_lowercase(), want);
    // The invoice was recorded first, at the server's price.
    let (amount, days, status): (i64, i64, String) = w
        .server
        .db()
        .query_row(
            "SELECT amount_kopecks, plan_days, status FROM invoices WHERE id = ?1",
            [inv],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((amount, days, status.as_str()), (129_000, 90, "pending"));
}

#[tokio::test]
async fn a_notification_extends_once_and_replays_change_nothing() {
    let w = shop().await;
    let p = w.person(6002);
    let (inv, _) = invoice_for(&w, &p, 2, "30 дн").await;
    scenarios::a_notification_extends_once_despite_replays(&w, &p, inv, "490.000000", 30).await;
}

#[tokio::test]
async fn tampered_or_foreign_notifications_are_refused_and_change_nothing() {
    let w = shop().await;
    let p = w.person(6003);
    let (inv, _) = invoice_for(&w, &p, 3, "30 дн").await;
    let page = scenarios::tampered_or_foreign_notifications_change_nothing(&w, &p, inv).await;
    assert!(page.contains("https://t.me/groupcast_test_bot"), "{page}");
}

#[tokio::test]
async fn allowed_ips_keep_others_out() {
    let w = World::start_with(|env| {
        env.insert("ROBOKASSA_MERCHANT_LOGIN".into(), LOGIN.into());
        env.insert("ROBOKASSA_PASSWORD1".into(), PASS1.into());
        env.insert("ROBOKASSA_PASSWORD2".into(), PASS2.into());
        env.insert(
            "ROBOKASSA_ALLOWED_IPS".into(),
            "185.59.216.65,185.59.217.65".into(),
        );
    })
    .await;
    let (code, body) = notify(&w, &live_form(1, "490.000000", "30", PASS2)).await;
    assert_eq!((code, body.as_str()), (403, "forbidden"));
    let _ = free_port;
}

#[tokio::test]
async fn reminders_go_out_once_and_operators_grant_and_count() {
    let w = shop().await;
    let acc = Account::numbered(4);
    w.wappi.add_profile(&acc.profile, &acc.token);
    let user = w.person(6004);
    user.registers(&acc).await;
    let admin = w.person(ADMIN);
    admin.says("/start");
    admin.hears("токен").await;

    // Not an operator: refused.
    user.says("/grant 6004 30");
    user.hears("только для оператора").await;

    // Two days of access: the 3-day reminder, once.
    admin.says("/grant 6004 2");
    admin.hears("добавлено 2 дн.").await;
    // The gift note and the reminder race each other (the reminder job runs every second).
    let received = |needle: &'static str| {
        w.tg.wait_until(
            move |tg| tg.sent_to(6004).iter().any(|m| m.text.contains(needle)),
            STEP,
        )
    };
    received("🎁").await.unwrap();
    received("через 3 дня").await.unwrap();

    // Move the end to within a day, then past it: one reminder each.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let set_until = |t: i64| {
        let db = rusqlite::Connection::open(w.server.data.join("groupcast.db")).unwrap();
        db.busy_timeout(Duration::from_secs(5)).unwrap();
        db.execute(
            "UPDATE users SET subscription_until = ?1 WHERE id = 6004",
            [t],
        )
        .unwrap();
    };
    set_until(now + 3600);
    received("завтра").await.unwrap();
    set_until(now - 10);
    received("закончилась").await.unwrap();
    // Several more job runs: nothing repeats.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let reminders =
        w.tg.sent_to(6004)
            .into_iter()
            .filter(|m| m.text.starts_with('🔔') || m.text.starts_with('🔒'))
            .count();
    assert_eq!(reminders, 3);

    admin.says("/stats");
    let stats = admin.hears("Пользователей: 2").await;
    assert!(
        stats.text.contains("Выручка за месяц: 0 ₽"),
        "{}",
        stats.text
    );
}

#[tokio::test]
async fn test_mode_with_a_receipt_and_sha256() {
    use sha2::{Digest, Sha256};
    let w = World::start_with(|env| {
        env.insert("TRIAL_DAYS".into(), "0".into());
        env.insert("ROBOKASSA_MERCHANT_LOGIN".into(), LOGIN.into());
        env.insert("ROBOKASSA_PASSWORD1".into(), PASS1.into());
        env.insert("ROBOKASSA_PASSWORD2".into(), PASS2.into());
        env.insert("ROBOKASSA_TEST_MODE".into(), "1".into());
        env.insert("ROBOKASSA_RECEIPT".into(), "1".into());
        env.insert("ROBOKASSA_HASH".into(), "sha256".into());
    })
    .await;
    let p = w.person(6005);
    let (inv, q) = invoice_for(&w, &p, 5, "30 дн").await;
    assert_eq!(q["IsTest"], "1");
    // The URL carries the receipt encoded twice; decoded once it is the signed form, and
    // decoded again the 54-FZ JSON with one service item at the plan's price.
    let receipt_once = &q["Receipt"];
    let json: serde_json::Value =
        serde_json::from_str(&urlencoding::decode(&receipt_once.replace('+', " ")).unwrap())
            .unwrap();
    assert_eq!(json["items"][0]["sum"], 490);
    assert_eq!(json["items"][0]["quantity"], 1);
    assert_eq!(json["items"][0]["payment_object"], "service");
    let want = hex::encode(Sha256::digest(
        format!("{LOGIN}:490.00:{inv}:{receipt_once}:{PASS1}:Shp_plan=30").as_bytes(),
    ));
    assert_eq!(q["SignatureValue"].to_lowercase(), want);
    // A test notification signed with the configured (test) Password #2 and SHA-256 is taken.
    let sig = hex::encode(Sha256::digest(
        format!("490.000000:{inv}:{PASS2}:Shp_plan=30").as_bytes(),
    ));
    let form = vec![
        ("OutSum", "490.000000".to_string()),
        ("InvId", inv.to_string()),
        ("SignatureValue", sig),
        ("Shp_plan", "30".to_string()),
        ("IsTest", "1".to_string()),
    ];
    assert_eq!(notify(&w, &form).await, (200, format!("OK{inv}")));
    p.hears("Оплата получена").await;
}
