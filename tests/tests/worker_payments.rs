//! Subscriptions paid through Robokassa on the Cloudflare Worker under `wrangler dev`, as in
//! the native suite: the signed payment link (recomputed here with its own MD5), the ResultURL
//! notification accepted once, replays answered `OK` with nothing changed, tampering refused,
//! the payer's pages, and the Cron reminder pass. Needs `scripts/worker-setup`.

use groupcast_e2e::harness::Server;
use groupcast_e2e::worker_harness::{worker_world_with, Worker};
use groupcast_e2e::world::{Account, Person, World, STEP};
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::time::Duration;

const LOGIN: &str = "groupcast_shop";
const PASS1: &str = "sentinel-pass-one";
const PASS2: &str = "sentinel-pass-two";
const TEST_PASS2: &str = "sentinel-test-pass-two";

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

async fn shop() -> World<Worker> {
    worker_world_with(|vars| {
        vars.insert("TRIAL_DAYS".into(), "0".into());
        vars.insert("ROBOKASSA_MERCHANT_LOGIN".into(), LOGIN.into());
        vars.insert("ROBOKASSA_PASSWORD1".into(), PASS1.into());
        vars.insert("ROBOKASSA_PASSWORD2".into(), PASS2.into());
        vars.insert("SUBSCRIPTION_PLANS".into(), "30:490,90:1290".into());
    })
    .await
}

fn query(url: &str) -> HashMap<String, String> {
    let q = url.split_once('?').unwrap().1;
    q.split('&')
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (
                k.to_string(),
                urlencoding::decode(&v.replace('+', " "))
                    .unwrap()
                    .into_owned(),
            )
        })
        .collect()
}

/// Registers a user, opens /subscribe and presses the plan; returns (InvId, the link's query).
async fn invoice_for(
    w: &World<Worker>,
    p: &Person<'_, Worker>,
    n: u32,
    plan_label: &str,
) -> (i64, HashMap<String, String>) {
    let acc = Account::numbered(n);
    w.wappi.add_profile(&acc.profile, &acc.token);
    p.registers(&acc).await;
    p.says("/subscribe");
    let plans = p.hears("Подписка не активна").await;
    p.presses(
        plans.message_id,
        &Person::<Server>::button(&plans, plan_label),
    );
    let link = p.hears("Счёт №").await;
    let markup = link.reply_markup.unwrap();
    let url = markup["inline_keyboard"][0][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        url.starts_with("https://auth.robokassa.ru/Merchant/Index.aspx?"),
        "{url}"
    );
    let q = query(&url);
    (q["InvId"].parse().unwrap(), q)
}

async fn notify(w: &World<Worker>, form: &[(&str, String)]) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("{}/robokassa/result", w.server.url()))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A notification as a live Robokassa sends it: 6-decimal OutSum, uppercase signature, the
/// legacy duplicates and extra fields.
fn live_form(inv: i64, out_sum: &str, plan: &str, password: &str) -> Vec<(&'static str, String)> {
    let sig = md5_hex(&format!("{out_sum}:{inv}:{password}:Shp_plan={plan}")).to_uppercase();
    vec![
        ("OutSum", out_sum.to_string()),
        ("InvId", inv.to_string()),
        ("SignatureValue", sig.clone()),
        ("out_summ", out_sum.to_string()),
        ("inv_id", inv.to_string()),
        ("crc", sig),
        ("Shp_plan", plan.to_string()),
        ("PaymentMethod", "BankCard".into()),
        ("EMail", "payer@example.test".into()),
        ("Fee", "12.250000".into()),
    ]
}

fn subscription_until(w: &World<Worker>, user: i64) -> i64 {
    w.server.query_i64(&format!(
        "SELECT subscription_until FROM users WHERE id = {user}"
    ))
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

    let form = live_form(inv, "1290.000000", "90", PASS2);
    let before = groupcast_e2e::harness::unix_ms() / 1000;
    assert_eq!(notify(&w, &form).await, (200, format!("OK{inv}")));
    let paid = p.hears("Оплата получена").await;
    let until = subscription_until(&w, 6002);
    assert!((until - (before + 90 * 86_400)).abs() <= 5, "until {until}");
    assert!(
        paid.text.contains(&groupcast_core::texts::date(until)),
        "{}",
        paid.text
    );

    // 5 sequential and 5 concurrent replays, and one as GET: all OK, nothing changes.
    for _ in 0..5 {
        assert_eq!(notify(&w, &form).await, (200, format!("OK{inv}")));
    }
    let url = format!("{}/robokassa/result", w.server.url());
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (url, form) = (url.clone(), form.clone());
            tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .post(url)
                    .form(&form)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), (200, format!("OK{inv}")));
    }
    let get = reqwest::Client::new()
        .get(&url)
        .query(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (get.status().as_u16(), get.text().await.unwrap()),
        (200, format!("OK{inv}"))
    );
    assert_eq!(subscription_until(&w, 6002), until);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paid_messages =
        w.tg.sent_to(6002)
            .iter()
            .filter(|m| m.text.contains("Оплата получена"))
            .count();
    assert_eq!(paid_messages, 1);
    p.says("/subscribe");
    let state = p.hears("Подписка активна до").await;
    assert!(
        state
            .text
            .contains(&format!("до {}", groupcast_core::texts::date(until))),
        "{}",
        state.text
    );
    w.server.assert_no_secrets_in_logs(&[PASS1, PASS2]);
}

#[tokio::test]
async fn tampered_or_foreign_notifications_are_refused_and_change_nothing() {
    let w = shop().await;
    let p = w.person(6003);
    let (inv, _) = invoice_for(&w, &p, 3, "30 дн").await;
    let good = live_form(inv, "490.000000", "30", PASS2);
    let with = |key: &str, value: String| -> Vec<(&'static str, String)> {
        good.iter()
            .map(|(k, v)| (*k, if *k == key { value.clone() } else { v.clone() }))
            .collect()
    };
    let mut bad_sig = good[2].1.clone();
    let last = bad_sig.pop().unwrap();
    bad_sig.push(if last == 'A' { 'B' } else { 'A' });
    let cases: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        ("tampered OutSum", with("OutSum", "4900.000000".into())),
        ("tampered InvId", with("InvId", (inv + 1).to_string())),
        ("tampered Shp", with("Shp_plan", "90".into())),
        ("tampered signature", with("SignatureValue", bad_sig)),
        (
            "unknown InvId",
            live_form(inv + 1000, "490.000000", "30", PASS2),
        ),
        (
            "signed, wrong amount",
            live_form(inv, "1.000000", "30", PASS2),
        ),
        (
            "test password in live mode",
            live_form(inv, "490.000000", "30", TEST_PASS2),
        ),
        ("password #1", live_form(inv, "490.000000", "30", PASS1)),
        (
            "no signature",
            good.iter()
                .filter(|(k, _)| *k != "SignatureValue" && *k != "crc")
                .cloned()
                .collect(),
        ),
    ];
    for (what, form) in cases {
        let (code, body) = notify(&w, &form).await;
        assert!(!body.starts_with("OK"), "{what}: {code} {body}");
        assert_ne!(code, 200, "{what}");
    }
    assert_eq!(subscription_until(&w, 6003), 0);
    assert_eq!(
        w.server.query_i64(&format!(
            "SELECT COUNT(*) FROM invoices WHERE id = {inv} AND status = 'pending'"
        )),
        1
    );
    // The payer's pages are only pages.
    let page = reqwest::get(format!(
        "{}/robokassa/success?InvId={inv}&OutSum=490.00&Culture=en",
        w.server.url()
    ))
    .await
    .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Payment received"));
    let fail = reqwest::get(format!("{}/robokassa/fail?InvId={inv}", w.server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(fail.contains("Оплата не завершена"), "{fail}");
    assert_eq!(subscription_until(&w, 6003), 0);
    w.server.assert_no_secrets_in_logs(&[PASS1, PASS2]);
}

#[tokio::test]
async fn the_cron_sends_a_reminder_once() {
    let w = shop().await;
    let acc = Account::numbered(4);
    w.wappi.add_profile(&acc.profile, &acc.token);
    let p = w.person(6004);
    p.registers(&acc).await;
    let (inv, _) = {
        p.says("/subscribe");
        let plans = p.hears("Подписка не активна").await;
        p.presses(plans.message_id, &Person::<Server>::button(&plans, "30 дн"));
        let link = p.hears("Счёт №").await;
        let url = link.reply_markup.unwrap()["inline_keyboard"][0][0]["url"]
            .as_str()
            .unwrap()
            .to_string();
        let q = query(&url);
        (q["InvId"].parse::<i64>().unwrap(), q)
    };
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
