//! Scenarios written once and run against either runtime: each takes a [`World`] over any
//! [`Bot`] (the native `groupcast` server or the Cloudflare Worker), and the suites of both
//! call it from their own `#[tokio::test]`. Only scenarios whose steps and assertions are the
//! same on both runtimes live here (parameters where only numbers differ: group counts,
//! timing tolerances); what only one runtime has stays in its suite.
//!
//! Robokassa: the test plays Robokassa. It reads the payment link the bot gives and signs
//! notifications the way the spec says, with its own MD5, not the product's code.

use crate::fake_telegram::{Call, SentMessage, ViolationKind};
use crate::fake_wappi::{Outcome, Request};
use crate::harness::Server;
use crate::world::{Account, Bot, Person, World, STEP};
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The shop's login and passwords the payment suites configure.
pub const LOGIN: &str = "groupcast_shop";
pub const PASS1: &str = "sentinel-pass-one";
pub const PASS2: &str = "sentinel-pass-two";
/// A test-mode Password #2 the shop is *not* configured with.
pub const TEST_PASS2: &str = "sentinel-test-pass-two";

/// The settings of a shop: the three credentials and two plans (30 days for 490 ₽, 90 days
/// for 1290 ₽), no trial.
pub fn shop_settings() -> Vec<(&'static str, String)> {
    vec![
        ("TRIAL_DAYS", "0".into()),
        ("ROBOKASSA_MERCHANT_LOGIN", LOGIN.into()),
        ("ROBOKASSA_PASSWORD1", PASS1.into()),
        ("ROBOKASSA_PASSWORD2", PASS2.into()),
        ("SUBSCRIPTION_PLANS", "30:490,90:1290".into()),
    ]
}

pub fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// The decoded query of a URL.
pub fn query(url: &str) -> HashMap<String, String> {
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

/// A registered user opens /subscribe and presses the plan; returns (InvId, the link's query).
pub async fn invoice_of<S: Bot>(
    p: &Person<'_, S>,
    plan_label: &str,
) -> (i64, HashMap<String, String>) {
    p.says("/subscribe");
    let plans = p.hears("Подписка не активна").await;
    p.presses(
        plans.message_id,
        &Person::<Server>::button(&plans, plan_label),
    );
    let link: SentMessage = p.hears("Счёт №").await;
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

/// Registers a user on account `n`, then [`invoice_of`].
pub async fn invoice_for<S: Bot>(
    w: &World<S>,
    p: &Person<'_, S>,
    n: u32,
    plan_label: &str,
) -> (i64, HashMap<String, String>) {
    let acc = Account::numbered(n);
    w.wappi.add_profile(&acc.profile, &acc.token);
    p.registers(&acc).await;
    invoice_of(p, plan_label).await
}

/// POSTs a notification to `/robokassa/result`: (status, body).
pub async fn notify<S: Bot>(w: &World<S>, form: &[(&str, String)]) -> (u16, String) {
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
pub fn live_form(
    inv: i64,
    out_sum: &str,
    plan: &str,
    password: &str,
) -> Vec<(&'static str, String)> {
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
        ("IncCurrLabel", "BankCardPSR".into()),
        ("EMail", "payer@example.test".into()),
        ("Fee", "12.250000".into()),
    ]
}

/// The user's `subscription_until` in the ledger (unix seconds, 0 = never paid).
pub fn subscription_until<S: Bot>(w: &World<S>, user: i64) -> i64 {
    w.server
        .db()
        .query_row(
            "SELECT subscription_until FROM users WHERE id = ?1",
            [user],
            |r| r.get(0),
        )
        .unwrap()
}

fn now_secs() -> i64 {
    crate::harness::unix_ms() / 1000
}

/// User `p` has pending invoice `inv` for `days` days at `out_sum` (6 decimals): the signed
/// notification is answered `OK{inv}` and extends the subscription by `days` with one
/// "Оплата получена" message; 5 sequential, 5 concurrent and one GET replay are all answered
/// `OK` and change nothing; /subscribe then states the date after "до"; no secret is logged.
pub async fn a_notification_extends_once_despite_replays<S: Bot>(
    w: &World<S>,
    p: &Person<'_, S>,
    inv: i64,
    out_sum: &str,
    days: i64,
) {
    let form = live_form(inv, out_sum, &days.to_string(), PASS2);
    let before = now_secs();
    assert_eq!(notify(w, &form).await, (200, format!("OK{inv}")));
    let paid = p.hears("Оплата получена").await;
    let until = subscription_until(w, p.id);
    assert!(
        (until - (before + days * 86_400)).abs() <= 5,
        "until {until}"
    );
    assert!(
        paid.text
            .contains(&groupcast_core::texts::date(until, moscow())),
        "{}",
        paid.text
    );

    // 5 sequential and 5 concurrent replays: all OK, nothing changes.
    for _ in 0..5 {
        assert_eq!(notify(w, &form).await, (200, format!("OK{inv}")));
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
    // Robokassa may be set to GET: the same notification as a query string is a replay too.
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
    assert_eq!(subscription_until(w, p.id), until);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paid_messages =
        w.tg.sent_to(p.id)
            .iter()
            .filter(|m| m.text.contains("Оплата получена"))
            .count();
    assert_eq!(paid_messages, 1);

    // /subscribe now states the date after "до".
    p.says("/subscribe");
    let state = p.hears("Подписка активна до").await;
    assert!(
        state.text.contains(&format!(
            "до {}",
            groupcast_core::texts::date(until, moscow())
        )),
        "{}",
        state.text
    );
    w.server.assert_no_secrets_in_logs(&[PASS1, PASS2]);
}

/// User `p` has a pending 30-day invoice `inv` (490 ₽): tampered fields, an unknown InvId, a
/// wrong amount, the wrong password or none are all refused (not 200, not `OK`), and nothing
/// changes; the payer's success and fail pages are only pages. Returns the success page (in
/// English) for the caller's own checks.
pub async fn tampered_or_foreign_notifications_change_nothing<S: Bot>(
    w: &World<S>,
    p: &Person<'_, S>,
    inv: i64,
) -> String {
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
        let (code, body) = notify(w, &form).await;
        assert!(!body.starts_with("OK"), "{what}: {code} {body}");
        assert_ne!(code, 200, "{what}");
    }
    assert_eq!(subscription_until(w, p.id), 0);
    let status: String = w
        .server
        .db()
        .query_row("SELECT status FROM invoices WHERE id = ?1", [inv], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(status, "pending");
    // The payer's pages are only pages.
    let page = reqwest::get(format!(
        "{}/robokassa/success?InvId={inv}&OutSum=490.00&Culture=en",
        w.server.url()
    ))
    .await
    .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("Payment received"), "{page}");
    let fail = reqwest::get(format!("{}/robokassa/fail?InvId={inv}", w.server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(fail.contains("Оплата не завершена"), "{fail}");
    assert_eq!(subscription_until(w, p.id), 0);
    w.server.assert_no_secrets_in_logs(&[PASS1, PASS2]);
    page
}

// ---- Robokassa calls that no real Robokassa makes ----

/// A notification form of about `bytes` bytes that no real Robokassa sends: `OutSum`, `InvId`
/// and a made-up `SignatureValue` for invoice `inv`, then `Shp_k000000=1`, `Shp_k000001=1`, …
/// with distinct keys, and at the end the first key again with another value: a conflict that
/// only a reading of every `Shp_` field finds.
pub fn oversized_form(inv: i64, bytes: usize) -> String {
    let mut form = format!(
        "OutSum=490.000000&InvId={inv}&SignatureValue={}",
        "A".repeat(32)
    );
    let mut i = 0;
    while form.len() + 2 * 14 < bytes {
        form.push_str(&format!("&Shp_k{i:06}=1"));
        i += 1;
    }
    form.push_str("&Shp_k000000=2");
    form
}

/// A short form of `fields` fields for invoice `inv` (`OutSum`, `InvId`, a made-up
/// `SignatureValue`, then `Shp_` ones): far under the size limit, over the field limit.
pub fn many_fields_form(inv: i64, fields: usize) -> String {
    let mut form = format!(
        "OutSum=490.000000&InvId={inv}&SignatureValue={}",
        "A".repeat(32)
    );
    for i in 3..fields {
        form.push_str(&format!("&Shp_{i}=1"));
    }
    form
}

/// The short calls no real Robokassa makes, refused by either runtime before any decoding:
/// more fields than any Robokassa call has (as a POST body at the result URL and as a query at
/// the fail page), an over-long query (a GET at the result URL, a POST body at the success
/// page); and a notification as Robokassa sends it (signed with `password2`, for an invoice
/// that does not exist) still reaches the signature check and the ledger. Returns the
/// too-many-fields form.
pub async fn overlong_calls_are_refused<S: Bot>(
    w: &World<S>,
    base: &str,
    password2: &str,
) -> String {
    let result = format!("{base}/robokassa/result");
    let many = many_fields_form(1, 65);
    assert!(many.len() < 2048);
    assert_eq!(
        post_form(result.clone(), many.clone()).await,
        (400, "too many fields".to_string())
    );
    let long_query = oversized_form(1, 20_000);
    assert_eq!(
        get_text(format!("{result}?{long_query}")).await,
        (413, "too large".to_string())
    );
    assert_eq!(
        post_raw(base, "/robokassa/success", long_query, None).await,
        (413, "too large".to_string())
    );
    assert_eq!(
        get_text(format!("{base}/robokassa/fail?{many}")).await,
        (400, "too many fields".to_string())
    );
    assert_eq!(
        notify(w, &live_form(424_242, "490.000000", "30", password2)).await,
        (404, "unknown invoice".to_string())
    );
    many
}

/// POSTs `body` as a form to `url`: (status, body). A transport error or no answer within a
/// minute fails the test.
pub async fn post_form(url: String, body: String) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// POSTs `body` as a form to `path` at `base` (`http://127.0.0.1:<port>`) over a plain TCP
/// connection: (status, body). With `chunk` the body goes in chunks of that many bytes
/// (`Transfer-Encoding: chunked`, so its size shows only as it is read), else with its
/// `Content-Length`. The body is written while the answer is read, and a write that fails
/// because the server answered and closed without reading it all is no error: an HTTP client
/// that stops at its first write error (as reqwest does) would lose such an answer.
pub async fn post_raw(base: &str, path: &str, body: String, chunk: Option<usize>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (mut rx, mut tx) = stream.into_split();
    let framing = match chunk {
        Some(_) => "Transfer-Encoding: chunked".to_string(),
        None => format!("Content-Length: {}", body.len()),
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    // The write side stays open until the answer is in: a server may take a half-closed
    // connection for a client that left.
    let write = async {
        tx.write_all(head.as_bytes()).await?;
        match chunk {
            None => tx.write_all(body.as_bytes()).await?,
            Some(size) => {
                for part in body.as_bytes().chunks(size) {
                    tx.write_all(format!("{:x}\r\n", part.len()).as_bytes())
                        .await?;
                    tx.write_all(part).await?;
                    tx.write_all(b"\r\n").await?;
                }
                tx.write_all(b"0\r\n\r\n").await?;
            }
        }
        tx.flush().await
    };
    // Bytes read before a reset stay in `answer`.
    let mut answer = Vec::new();
    let read = rx.read_to_end(&mut answer);
    let (_, read) =
        tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(write, read) })
            .await
            .unwrap_or_else(|_| panic!("POST {path}: no answer within a minute"));
    drop(tx);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("POST {path}: not an HTTP answer: {answer:?} ({read:?})"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

/// GETs `url`: (status, body), as [`post_form`].
pub async fn get_text(url: String) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {}: {e}", &url[..url.len().min(80)]));
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

// ---- Content: the mailing text and the group list ----

/// Commands other than /start, /lang and /help answer an unregistered user with a pointer to
/// /start; /lang switches to English and registration then asks in English.
pub async fn commands_wait_for_registration<S: Bot>(w: &World<S>, user: i64) {
    let carol = w.person(user);
    carol.says("/mailing");
    carol.hears("/start").await;
    carol.says("/lang");
    let pick = carol.hears("language").await;
    carol.presses(pick.message_id, "lang:en");
    carol.hears("English").await;
    carol.says("/start");
    carol.hears("token").await;
}

/// Registered user `p` sends a text with Telegram formatting (an emoji first shifts the
/// UTF-16 offsets): it is confirmed and stored as WhatsApp markup.
pub async fn text_formatting_becomes_whatsapp_markup<S: Bot>(w: &World<S>, p: &Person<'_, S>) {
    p.says("/text");
    p.hears("📝").await;
    // "Скидка 20% сегодня" with "Скидка" bold, "20%" italic, "сегодня" struck, "PROMO" code.
    let text = "🔥 Скидка 20% сегодня, код PROMO";
    p.says_formatted(
        text,
        serde_json::json!([
            {"type": "bold", "offset": 3, "length": 6},
            {"type": "italic", "offset": 10, "length": 3},
            {"type": "strikethrough", "offset": 14, "length": 7},
            {"type": "code", "offset": 27, "length": 5}
        ]),
    );
    let saved = p.hears("Текст сохранён").await;
    let want = "🔥 *Скидка* _20%_ ~сегодня~, код ```PROMO```";
    assert!(saved.text.contains(want), "{}", saved.text);
    let stored: String = w
        .server
        .db()
        .query_row("SELECT body FROM texts WHERE user_id = ?1", [p.id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, want);
}

fn group_jids<S: Bot>(w: &World<S>, user: i64) -> Vec<String> {
    let db = w.server.db();
    let mut st = db
        .prepare("SELECT jid FROM groups WHERE user_id = ?1 ORDER BY position")
        .unwrap();
    let rows = st.query_map([user], |r| r.get(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

/// Registered user `p` pastes a list with a duplicate, a bare id, junk and a personal chat:
/// two groups are saved in order, the duplicate and the bad lines (by line number) are
/// reported; a list with nothing valid is refused and the saved list kept.
pub async fn pasted_groups_report_duplicates_and_junk<S: Bot>(w: &World<S>, p: &Person<'_, S>) {
    p.says("/groups");
    p.hears("👥").await;
    p.says("120363000000000001@g.us\n120363000000000002\nhello world\n120363000000000001@g.us\n\n79115576367@c.us");
    let saved = p.hears("Сохранено групп: 2").await;
    assert!(
        saved.text.contains("Повторы пропущены: 1"),
        "{}",
        saved.text
    );
    assert!(saved.text.contains("3: hello world"), "{}", saved.text);
    assert!(saved.text.contains("6: 79115576367@c.us"), "{}", saved.text);
    assert_eq!(
        group_jids(w, p.id),
        vec!["120363000000000001@g.us", "120363000000000002@g.us"]
    );

    // Nothing valid: refused, list unchanged.
    p.says("/groups");
    p.hears("👥").await;
    p.says("just words");
    p.hears("Не нашёл ни одного").await;
    assert_eq!(group_jids(w, p.id).len(), 2);
}

// ---- Mailings ----

/// The smallest gap between two consecutive sends.
pub fn min_gap(sends: &[Request]) -> i64 {
    sends
        .windows(2)
        .map(|p| p[1].at_ms - p[0].at_ms)
        .min()
        .unwrap_or(i64::MAX)
}

/// A mailing's status in the ledger.
pub fn mailing_status<S: Bot>(w: &World<S>, id: i64) -> String {
    w.server
        .db()
        .query_row("SELECT status FROM mailings WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap_or_else(|e| format!("(no mailing {id}: {e})"))
}

/// Waits (at most [`STEP`]) until the mailing's status in the ledger is `want`.
pub async fn wait_mailing_status<S: Bot>(w: &World<S>, id: i64, want: &str) {
    let deadline = std::time::Instant::now() + STEP;
    while mailing_status(w, id) != want {
        if std::time::Instant::now() > deadline {
            panic!(
                "mailing {id} not {want} within {STEP:?} (status {});\n{}",
                mailing_status(w, id),
                log_tail(w, 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn log_tail<S: Bot>(w: &World<S>, n: usize) -> String {
    let logs = w.server.logs();
    let tail: Vec<&str> = logs.lines().rev().take(n).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// At `PROFILE_RATE_PER_SEC=4`, a 40-group mailing is cancelled with ⛔ after 8 deliveries: at
/// most one send after the acknowledgement, none later, the ⚠️ report counts the sent ones
/// and the ledger says `cancelled`.
pub async fn cancel_stops_before_the_next_send<S: Bot>(w: &World<S>) {
    let (p, acc, _) = w.ready(3002, 2, 40, "Отмена посреди").await;
    let (id, progress) = p.starts_mailing_msg().await;
    w.wappi
        .wait_for_deliveries(8, Duration::from_secs(20))
        .await
        .unwrap();
    p.presses(
        progress.message_id,
        &Person::<Server>::button(&progress, "⛔"),
    );
    let ack =
        w.tg.wait_for_message(3002, |t| t.contains("⏹"), STEP)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(w, 40)));
    let report = p.hears("⚠️").await;
    assert!(report.text.contains("остановлена"), "{}", report.text);
    let sent = w.sends(&acc.profile);
    let after_ack = sent.iter().filter(|r| r.at_ms > ack.at_ms).count();
    assert!(
        after_ack <= 1,
        "{after_ack} sends after the cancel was acknowledged"
    );
    assert!(sent.len() < 40);
    let n = sent.len();
    tokio::time::sleep(Duration::from_millis(1000)).await; // four send intervals at 4/s
    assert_eq!(w.sends(&acc.profile).len(), n, "nothing is sent later");
    wait_mailing_status(w, id, "cancelled").await;
    assert!(
        report.text.contains(&format!("Отправлено: {n}")),
        "{}",
        report.text
    );
}

/// While a mailing runs, a second /mailing on the same profile is refused; /cancel ends it.
pub async fn a_second_start_on_a_busy_profile_is_refused<S: Bot>(w: &World<S>) {
    let (p, _, _) = w.ready(3004, 4, 10, "Один раз").await;
    p.starts_mailing().await;
    p.says("/mailing");
    p.hears("уже идёт").await;
    p.says("/cancel");
    p.hears("⚠️").await;
}

/// A mailing to `groups` groups meets five 429s in a row (Retry-After 1 s) after `before`
/// deliveries: each time the profile waits its Retry-After (less `jitter_ms`) before the next
/// call, the report is ✅ and every group got the text exactly once.
pub async fn a_429_storm_pauses_the_profile_and_loses_nothing<S: Bot>(
    w: &World<S>,
    groups: usize,
    before: usize,
    jitter_ms: i64,
) {
    let (p, acc, jids) = w.ready(3005, 5, groups, "Шторм").await;
    p.starts_mailing().await;
    w.wappi
        .wait_for_deliveries(before, Duration::from_secs(20))
        .await
        .unwrap();
    w.wappi.set_rate_limit_storm(&acc.profile, 5, 1);
    let report = p.hears("Рассылка #").await;
    let report = if report.text.starts_with('✅') || report.text.starts_with('⚠') {
        report
    } else {
        p.hears("✅").await
    };
    assert!(report.text.starts_with('✅'), "{}", report.text);
    let all = w.sends(&acc.profile);
    let limited: Vec<&Request> = all
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Refused { http: 429, .. }))
        .collect();
    assert_eq!(limited.len(), 5);
    // After each 429 the profile waited its Retry-After before calling again.
    for r in &limited {
        let next = all
            .iter()
            .find(|n| n.at_ms > r.at_ms)
            .expect("a call after the 429");
        assert!(
            next.at_ms - r.at_ms >= 1000 - jitter_ms,
            "called {} ms after a 429 with Retry-After 1",
            next.at_ms - r.at_ms
        );
    }
    w.assert_each_delivered_once(&jids);
}

/// At `PROFILE_RATE_PER_SEC=5`, two users with `groups` groups each press ✅ one right after
/// the other: each list gets its own text only, both run in parallel (the spans overlap),
/// each paced on its own (gaps of 200 ms less `jitter_ms`).
pub async fn two_users_mail_at_once<S: Bot>(w: &World<S>, groups: usize, jitter_ms: i64) {
    let (a, acc_a, jids_a) = w.ready(3010, 10, groups, "Текст Анны").await;
    let (b, acc_b, jids_b) = w.ready(3011, 11, groups, "Текст Бориса").await;
    a.says("/mailing");
    b.says("/mailing");
    let pa = a.hears("Предпросмотр").await;
    let pb = b.hears("Предпросмотр").await;
    a.presses(pa.message_id, &Person::<Server>::button(&pa, "✅"));
    b.presses(pb.message_id, &Person::<Server>::button(&pb, "✅"));
    a.hears("✅").await;
    b.hears("✅").await;
    let sa = w.sends(&acc_a.profile);
    let sb = w.sends(&acc_b.profile);
    assert_eq!((sa.len(), sb.len()), (groups, groups));
    assert!(sa
        .iter()
        .all(|r| r.body_text.as_deref() == Some("Текст Анны")
            && jids_a.contains(r.recipient.as_ref().unwrap())));
    assert!(sb
        .iter()
        .all(|r| r.body_text.as_deref() == Some("Текст Бориса")
            && jids_b.contains(r.recipient.as_ref().unwrap())));
    // They ran in parallel: the two spans overlap, each paced on its own.
    assert!(sa[0].at_ms < sb.last().unwrap().at_ms && sb[0].at_ms < sa.last().unwrap().at_ms);
    assert!(min_gap(&sa) >= 200 - jitter_ms && min_gap(&sb) >= 200 - jitter_ms);
}

/// The operator's `/broadcast`, the same on both runtimes. `everyone` (the operator among
/// them) write `/start` and so become the bot's users.
pub async fn everyone_starts<S: Bot>(w: &World<S>, everyone: &[i64]) {
    for id in everyone {
        w.person(*id).says("/start");
    }
    for id in everyone {
        w.person(*id).hears("токен").await;
    }
}

/// The operator `admin` broadcasts `text` to the users `everyone` (all started, the operator
/// included): /broadcast, the text, the confirmation naming it and the count, ✅; the first
/// send to `held_user` meets a 429 with `retry_after_secs`. Waits for the report of all sent,
/// none failed, and checks each user got exactly one copy. Returns the `sendMessage` calls
/// that carried the broadcast, in order.
pub async fn operator_broadcasts<S: Bot>(
    w: &World<S>,
    admin: i64,
    everyone: &[i64],
    text: &str,
    held_user: i64,
    retry_after_secs: u64,
) -> Vec<Call> {
    let n = everyone.len();
    let admin = w.person(admin);
    admin.says("/broadcast");
    admin.hears("📣 Пришлите").await;
    admin.says(text);
    let confirm = admin.hears("📣 Отправить").await;
    assert!(
        confirm.text.contains(&format!("({n})")) && confirm.text.contains(text),
        "{}",
        confirm.text
    );
    w.tg.fail_next_with_429(held_user, retry_after_secs, 1);
    admin.presses(
        confirm.message_id,
        &Person::<Server>::button(&confirm, "✅"),
    );
    admin.hears("запущена").await;
    let report = admin.hears("завершена").await;
    assert!(
        report
            .text
            .contains(&format!("отправлено {n}, не доставлено 0")),
        "{}",
        report.text
    );
    for id in everyone {
        let copies = w.tg.sent_to(*id).iter().filter(|m| m.text == text).count();
        assert_eq!(copies, 1, "user {id}");
    }
    w.tg.calls_of("sendMessage")
        .into_iter()
        .filter(|c| c.body["text"] == text)
        .collect()
}

/// The most of `at` (in order) that fall within any one second.
pub fn busiest_second(at: &[Instant]) -> usize {
    (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| t.duration_since(at[i]).as_millis() < 1000)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Checks that the broadcast `calls` sent to `held_user` twice (the 429 and the repeat), the
/// repeat no sooner than `retry_after_secs` later, and that the fake Telegram saw neither
/// its global rate exceeded nor a `retry_after` ignored. Returns the two calls to `held_user`.
pub fn assert_retry_after_honoured<'a, S: Bot>(
    w: &World<S>,
    calls: &'a [Call],
    held_user: i64,
    retry_after_secs: u64,
) -> Vec<&'a Call> {
    let held: Vec<&Call> = calls
        .iter()
        .filter(|c| c.body["chat_id"] == held_user)
        .collect();
    assert_eq!(held.len(), 2, "the 429 and the repeat");
    let waited = held[1].at.duration_since(held[0].at);
    assert!(
        waited.as_millis() >= u128::from(retry_after_secs) * 1000,
        "repeated after {waited:?}"
    );
    let violations = w.tg.violations();
    assert!(
        !violations.iter().any(|v| matches!(
            v.kind,
            ViolationKind::GlobalRate | ViolationKind::IgnoredRetryAfter
        )),
        "{violations:?}"
    );
    held
}

/// The default time zone (`DEFAULT_TZ`), in which a user who set none reads every date.
fn moscow() -> chrono_tz::Tz {
    groupcast_core::model::zone::parse("Europe/Moscow").expect("a known zone")
}

// --- the user's pace (issue 13) --------------------------------------------------------------

/// Arrival jitter at the fake for paced posts (loopback, scheduling, the arming write before
/// each post, workerd's fetch scheduling).
pub const PACE_SLACK_MS: i64 = 80;

/// Gaps between consecutive deliveries at the fake Wappi, ms.
pub fn gaps_between<S: Bot>(w: &World<S>) -> Vec<i64> {
    let at: Vec<i64> = w.wappi.deliveries().iter().map(|r| r.at_ms).collect();
    at.windows(2).map(|p| p[1] - p[0]).collect()
}

/// `gap` is inside `[lo, hi]` ms, give or take [`PACE_SLACK_MS`].
pub fn within_pace(gap: i64, lo: i64, hi: i64) -> bool {
    gap >= lo - PACE_SLACK_MS && gap <= hi + PACE_SLACK_MS
}

/// `/pace <args>`, answered with the pace in force.
pub async fn sets_pace<S: Bot>(p: &Person<'_, S>, args: &str) {
    p.says(&format!("/pace {args}"));
    p.hears("✅ Темп").await;
}

/// A custom seconds-scale pace (issue 13): every gap inside its range and varied, a pause
/// after each 5th post, shown as ⏸ on the progress message.
pub async fn a_custom_pace_varies_the_gaps_and_pauses_after_each_batch<S: Bot>(
    w: &World<S>,
    user: i64,
) {
    let (p, _, jids) = w.ready(user, 91, 12, "Пост в своём темпе").await;
    sets_pace(&p, "gap=0.3-0.8s batch=5 pause=3-4s window=off day=off").await;
    p.says("/mailing");
    let preview = p.hears("Предпросмотр").await;
    assert!(preview.text.contains("Темп: ⚙️ свой"), "{}", preview.text);
    p.presses(
        preview.message_id,
        &Person::<Server>::button(&preview, "✅"),
    );
    let (started_id, _) = (p.hears("🚀 Рассылка #").await.message_id, ());
    w.wappi
        .wait_for_deliveries(12, Duration::from_secs(40))
        .await
        .unwrap();
    w.assert_each_delivered_once(&jids);
    let gaps = gaps_between(w);
    for (i, gap) in gaps.iter().enumerate() {
        let post = i + 1;
        if post % 5 == 0 {
            assert!(
                within_pace(*gap, 3000, 4000),
                "pause after post {post}: {gap} ms"
            );
        } else {
            assert!(
                within_pace(*gap, 300, 800),
                "gap after post {post}: {gap} ms"
            );
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

/// ⏸ on the progress message and `/pause` stop the mailing before its next post; `/resume`
/// and ▶️ go on; every group gets the post once.
pub async fn pause_and_resume_from_the_progress_message_and_by_command<S: Bot>(
    w: &World<S>,
    user: i64,
) {
    let (p, _, jids) = w.ready(user, 94, 10, "Пост с паузой").await;
    sets_pace(&p, "gap=0.5s batch=off window=off day=off").await;
    let (id, started) = p.starts_mailing_msg().await;
    w.wappi
        .wait_for_deliveries(2, Duration::from_secs(20))
        .await
        .unwrap();
    p.presses(started.message_id, &Person::<Server>::button(&started, "⏸"));
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
        &Person::<Server>::button(&paused_again, "▶️"),
    );
    p.hears("✅ Рассылка").await;
    w.assert_each_delivered_once(&jids);
}

/// The breaker (issue 13): five groups in a row refusing the post pause the mailing with the
/// reason and ▶️; nothing more goes out until the resume, then the rest is sent.
pub async fn a_run_of_refused_posts_trips_the_breaker_and_resume_goes_on<S: Bot>(
    w: &World<S>,
    user: i64,
) {
    let (p, _, mut jids) = w.ready(user, 97, 3, "Пост и отказы").await;
    // Six groups the account is not in come first: every send to them is refused.
    w.wappi.set_strict_recipients(true);
    let strangers: Vec<String> = (0..6)
        .map(|i| format!("12036399999999{i:04}@g.us"))
        .collect();
    jids.splice(0..0, strangers.iter().cloned());
    p.sets_groups(&jids).await;
    // The pre-flight check doubts them (the ids do not resolve): included on purpose.
    let id = p.starts_mailing_including_doubtful().await;
    let paused = p.hears(&format!("⏸ Рассылка #{id} приостановлена")).await;
    assert!(
        paused.text.contains("5 групп подряд не получили пост"),
        "{}",
        paused.text
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tried: Vec<String> = w
        .wappi
        .requests()
        .into_iter()
        .filter(|r| r.is_send())
        .filter_map(|r| r.recipient)
        .collect();
    assert_eq!(
        tried,
        strangers[..5].to_vec(),
        "nothing after the fifth refusal"
    );
    p.presses(paused.message_id, &Person::<Server>::button(&paused, "▶️"));
    let report = p.hears("⚠️ Рассылка").await;
    assert!(report.text.contains("Ошибок: 6"), "{}", report.text);
    for j in &jids[6..] {
        assert_eq!(w.wappi.deliveries_to(j).len(), 1, "{j}");
    }
}

/// The breaker (issue 13): WhatsApp's `temporary ban` delivery status on our posts, read back
/// after the tenth, pauses the mailing with the reason; after ▶️ the next posts go at half pace.
pub async fn a_temporary_ban_pauses_the_mailing_and_it_goes_on_at_half_pace<S: Bot>(
    w: &World<S>,
    user: i64,
) {
    let (p, acc, jids) = w.ready(user, 98, 14, "Пост и бан").await;
    sets_pace(&p, "gap=0.2s batch=off window=off day=off").await;
    w.wappi.set_delivery_status(&acc.profile, "temporary ban");
    let id = p.starts_mailing().await;
    let paused = p.hears(&format!("⏸ Рассылка #{id} приостановлена")).await;
    assert!(paused.text.contains("temporary ban"), "{}", paused.text);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        w.wappi.deliveries().len(),
        10,
        "paused after the tenth post's check"
    );
    w.wappi.set_delivery_status(&acc.profile, "delivered");
    p.presses(paused.message_id, &Person::<Server>::button(&paused, "▶️"));
    p.hears("✅ Рассылка").await;
    w.assert_each_delivered_once(&jids);
    // Half pace after the resume: gaps of 0.4 s instead of 0.2 s.
    let after: Vec<i64> = gaps_between(w)[10..].to_vec();
    assert!(
        after.iter().all(|g| *g >= 400 - PACE_SLACK_MS),
        "half pace after the resume: {after:?}"
    );
}

/// A ban signal (issue 13): WhatsApp logged out mid-mailing pauses it with the reason and ▶️;
/// after the resume every group has the post once.
pub async fn whatsapp_logged_out_pauses_and_resume_continues<S: Bot>(w: &World<S>, user: i64) {
    let (p, acc, jids) = w.ready(user, 12, 8, "Пауза").await;
    // Three sends go through, then WhatsApp turns out to be logged out.
    for _ in 0..3 {
        w.wappi
            .push_fault(crate::fake_wappi::Fault::Delay(Duration::ZERO));
    }
    w.wappi.push_fault(crate::fake_wappi::Fault::NotAuthorized);
    p.starts_mailing().await;
    let paused = p.hears("⏸").await;
    assert!(
        paused.text.contains("WhatsApp не подключён"),
        "{}",
        paused.text
    );
    w.wappi.set_authorized(&acc.profile, true);
    p.presses(
        paused.message_id,
        &Person::<Server>::button(&paused, "Продолжить"),
    );
    p.hears("✅").await;
    let counts = w.wappi.delivery_count_by_recipient();
    assert!(jids.iter().all(|j| counts.get(j) == Some(&1)), "{counts:?}");
}

// ---------------------------------------------------------------------------------------------
// Scheduled and repeating mailings (issue 14)

/// What [`schedules_for_the_next_minute`] set up, for [`scheduled_runs_went_as_said`].
pub struct Scheduled {
    /// When the schedules were given (unix ms): every run is due a minute later.
    pub at_ms: i64,
    /// The groups of each user, by role.
    pub once: Vec<String>,
    pub daily: Vec<String>,
    pub skipped: Vec<String>,
    pub paused: Vec<String>,
    pub waiting: Vec<String>,
    users: [i64; 5],
}

/// The run's moment as the bot shows it: `DD.MM.YYYY HH:MM` in Moscow time, `days` later.
fn moscow_moment(at_ms: i64, days: i64) -> String {
    use chrono::TimeZone;
    chrono_tz::Europe::Moscow
        .timestamp_millis_opt(at_ms + days * 86_400_000)
        .unwrap()
        .format("%d.%m.%Y %H:%M")
        .to_string()
}

/// Five users each schedule a post for a minute from now (`/schedule +1m`): a one-off; a
/// daily series; a daily series whose next run is skipped (⏭ in `/schedules`); a one-off
/// paused (⏸); and a one-off of a user whose earlier mailing is still active (held by its
/// pace's window). `users` are five consecutive Telegram ids from `first_user`.
pub async fn schedules_for_the_next_minute<S: Bot>(w: &World<S>, first_user: i64) -> Scheduled {
    let u = |i: i64| first_user + i;
    let (once, _, once_groups) = w.ready(u(0), 141, 3, "Разовый пост по расписанию").await;
    let (daily, _, daily_groups) = w.ready(u(1), 142, 2, "Ежедневный пост").await;
    let (skip, _, skip_groups) = w.ready(u(2), 143, 2, "Пост, который пропустят").await;
    let (pause, _, pause_groups) = w.ready(u(3), 144, 2, "Пост на паузе").await;
    let (wait, _, wait_groups) = w.ready(u(4), 145, 2, "Пост после текущей").await;
    // The waiting user's earlier mailing: active, held by a window that opens in two hours.
    let now = {
        use chrono::{TimeZone, Timelike};
        chrono_tz::Europe::Moscow
            .timestamp_millis_opt(crate::harness::unix_ms())
            .unwrap()
            .hour()
    };
    let (start, end) = ((now + 2) % 24, (now + 3) % 24);
    sets_pace(&wait, &format!("gap=0.2s window={start:02}:00-{end:02}:00")).await;
    let (_, held) = wait.starts_mailing_msg().await;
    w.shows(wait.id, held.message_id, "вне окна отправки").await;

    let at_ms = crate::harness::unix_ms();
    for p in [&once, &skip, &pause, &wait] {
        let repeat = if p.id == skip.id { " repeat daily" } else { "" };
        p.says(&format!("/schedule +1m{repeat}"));
    }
    daily.says("/schedule +1m повтор ежедневно");
    let due = moscow_moment(at_ms + 60_000, 0);
    for p in [&once, &daily, &skip, &pause, &wait] {
        let answer = p.hears("🕒").await;
        assert!(answer.text.contains(&due), "names {due}: {}", answer.text);
    }
    let answer = w.tg.sent_to(daily.id).last().unwrap().text.clone();
    assert!(
        answer.contains(&moscow_moment(at_ms + 60_000, 1)),
        "a series names its next three runs: {answer}"
    );

    skip.says("/schedules");
    let card = skip.hears("🕒 #").await;
    skip.presses(card.message_id, &Person::<Server>::button(&card, "⏭"));
    skip.hears("будет пропущен").await;
    pause.says("/schedules");
    let card = pause.hears("🕒 #").await;
    pause.presses(card.message_id, &Person::<Server>::button(&card, "⏸"));
    pause.hears("на паузе").await;
    Scheduled {
        at_ms,
        once: once_groups,
        daily: daily_groups,
        skipped: skip_groups,
        paused: pause_groups,
        waiting: wait_groups,
        users: [u(0), u(1), u(2), u(3), u(4)],
    }
}

/// After the minute: the one-off and the daily series ran once each at their time (every group
/// once, nothing before the due time) and the series shows its next run tomorrow; the skipped
/// and the paused runs sent nothing; the waiting run was told it waits and started once the
/// user's earlier mailing was cancelled.
pub async fn scheduled_runs_went_as_said<S: Bot>(w: &World<S>, s: &Scheduled) {
    let [once, daily, skip, pause, wait] = s.users.map(|id| w.person(id));
    let long = Duration::from_secs(120);
    for (p, groups) in [(&once, &s.once), (&daily, &s.daily)] {
        w.tg.wait_for_message(
            p.id,
            |t| t.starts_with("🚀 Рассылка #") && t.contains("по расписанию"),
            long,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.server.logs()));
        p.hears("✅ Рассылка #").await;
        for g in groups {
            let got = w.wappi.deliveries_to(g);
            assert_eq!(got.len(), 1, "{g} once");
            assert!(
                got[0].at_ms >= s.at_ms + 59_000,
                "not before its time: {} ms after scheduling",
                got[0].at_ms - s.at_ms
            );
        }
    }
    daily.says("/schedules");
    let card = daily.hears("🕒 #").await;
    let tomorrow = moscow_moment(s.at_ms + 60_000, 1);
    assert!(
        card.text.contains(&tomorrow),
        "next run {tomorrow}: {}",
        card.text
    );

    // The waiting run: told, then started after the earlier mailing ends.
    wait.hears("ждёт окончания текущей рассылки").await;
    sets_pace(&wait, "fast").await;
    wait.says("/cancel");
    wait.hears("⚠️ Рассылка #").await;
    w.tg.wait_for_message(wait.id, |t| t.contains("по расписанию запущена"), STEP)
        .await
        .unwrap();
    wait.hears("✅ Рассылка #").await;

    // Nothing for the skipped and the paused run, and each run decided once.
    for g in s.skipped.iter().chain(&s.paused) {
        assert!(w.wappi.deliveries_to(g).is_empty(), "{g} got a post");
    }
    for g in &s.waiting {
        assert_eq!(w.wappi.deliveries_to(g).len(), 1, "{g} once");
    }
    skip.says("/schedules");
    let card = skip.hears("🕒 #").await;
    assert!(
        card.text.contains(&tomorrow),
        "after the skipped run, tomorrow's: {}",
        card.text
    );
    pause.says("/schedules");
    let card = pause.hears("🕒 #").await;
    assert!(card.text.contains("на паузе"), "{}", card.text);
    let db = w.server.db();
    let runs: Vec<(String, i64)> = db
        .prepare("SELECT outcome, COUNT(*) FROM series_runs GROUP BY outcome ORDER BY outcome")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        runs,
        vec![("skipped".to_string(), 1), ("started".to_string(), 3)],
        "one record per run"
    );
}

// ---------------------------------------------------------------------------------------------
// Groups that really get the post (issue 15)

/// A list of four groups of the account: two fine, one the number left, one announcement-only
/// where the number is not an admin. The preview names the two doubtful ones with the reason
/// and counts two groups; ✅ sends to the two fine ones only, and the report lists the two
/// left out with why. Pasted ids are shown with their names from the chat list.
pub async fn the_preflight_check_leaves_out_groups_that_would_not_get_the_post<S: Bot>(
    w: &World<S>,
    user: i64,
) {
    let (p, acc, jids) = w.ready(user, 161, 4, "Пост для проверенных групп").await;
    w.wappi.leave_group(&acc.profile, &jids[1]);
    w.wappi.set_announce(&acc.profile, &jids[2], true, false);
    p.says("/mailing");
    let preview = p.hears("Предпросмотр").await;
    let t = &preview.text;
    assert!(t.contains("Групп: 2"), "{t}");
    assert!(t.contains("Проверка групп: 2 не получат пост"), "{t}");
    assert!(
        t.contains(&format!(
            "Группа 161-1 ({}) — номер больше не участник группы",
            jids[1]
        )),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "Группа 161-2 ({}) — писать могут только админы",
            jids[2]
        )),
        "{t}"
    );
    p.presses(
        preview.message_id,
        &Person::<Server>::button(&preview, "✅"),
    );
    let report = p.hears("Рассылка #").await;
    let report = if report.text.starts_with('🚀') {
        p.hears("Рассылка #").await
    } else {
        report
    };
    assert!(report.text.starts_with("⚠️"), "{}", report.text);
    assert!(report.text.contains("Группа 161-1"), "{}", report.text);
    assert!(
        report.text.contains("номер больше не участник группы"),
        "{}",
        report.text
    );
    assert!(report.text.contains("Группа 161-2"), "{}", report.text);
    for (i, jid) in jids.iter().enumerate() {
        let want = usize::from(i == 0 || i == 3);
        assert_eq!(w.wappi.deliveries_to(jid).len(), want, "group {i}");
    }

    // ➕ includes them: the next preview counts all four.
    p.says("/mailing");
    let preview = p.hears("Предпросмотр").await;
    p.presses(
        preview.message_id,
        &Person::<Server>::button(&preview, "➕"),
    );
    let all = p.hears("Предпросмотр").await;
    assert!(all.text.contains("Групп: 4"), "{}", all.text);
    assert!(
        all.text.contains("вряд ли получат пост, но включены"),
        "{}",
        all.text
    );
}

/// A canary start (issue 15, switched on with 🐤 for a short list): the first three groups get
/// the post; one of them never shows it delivered, so after the wait the mailing pauses with
/// what was seen and the other groups get nothing; ▶️ sends them the post anyway.
pub async fn a_canary_whose_first_posts_stay_undelivered_stops_the_rest<S: Bot>(
    w: &World<S>,
    user: i64,
) {
    use crate::fake_wappi::DeliveryPlan;
    let (p, _, jids) = w.ready(user, 162, 6, "Пост с канарейкой").await;
    w.wappi
        .set_group_delivery(&jids[1], DeliveryPlan::pending_forever());
    p.says("/mailing");
    let preview = p.hears("Предпросмотр").await;
    p.presses(
        preview.message_id,
        &Person::<Server>::button(&preview, "🐤"),
    );
    let canary = p.hears("Предпросмотр").await;
    assert!(
        canary.text.contains("Сначала 3 группы, проверка доставки"),
        "{}",
        canary.text
    );
    p.presses(canary.message_id, &Person::<Server>::button(&canary, "✅"));
    let paused = p.hears("Проверка первых групп: доставлено 2 из 3").await;
    assert!(
        paused.text.contains(&format!("{}): pending", jids[1])),
        "{}",
        paused.text
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (i, jid) in jids.iter().enumerate() {
        assert_eq!(
            w.wappi.deliveries_to(jid).len(),
            usize::from(i < 3),
            "group {i}"
        );
    }
    p.presses(paused.message_id, &Person::<Server>::button(&paused, "▶️"));
    p.hears("✅ Рассылка #").await;
    w.assert_each_delivered_once(&jids);
}

/// Issue 17: the ✅ press hands the mailing to the runner before any Telegram call of the
/// bot, so the first post goes out at once even while Telegram holds the chat back (a 429
/// asking for 3 s, met by the start message). The start message still comes first, becomes
/// the progress message (no second one), and the report waits for it.
pub async fn the_first_post_never_waits_for_telegram<S: Bot>(w: &World<S>, user: i64, n: u32) {
    let (p, _, jids) = w.ready(user, n, 3, "Первый пост без ожидания").await;
    p.says("/mailing");
    let preview = p.hears("Предпросмотр").await;
    let before = w.tg.sent_to(p.id).len();
    w.tg.fail_next_with_429(p.id, 3, 1);
    let pressed = crate::harness::unix_ms();
    p.presses(
        preview.message_id,
        &Person::<Server>::button(&preview, "✅"),
    );
    w.wappi
        .wait_for_deliveries(1, Duration::from_secs(20))
        .await
        .unwrap();
    let first = w.wappi.deliveries().iter().map(|r| r.at_ms).min().unwrap();
    assert!(
        first - pressed < 1_500,
        "the first post went {} ms after the press: it waited for Telegram",
        first - pressed
    );
    let report = p.hears("завершена").await;
    let said: Vec<SentMessage> = w.tg.sent_to(p.id).into_iter().skip(before).collect();
    let starts: Vec<&SentMessage> = said
        .iter()
        .filter(|m| m.text.starts_with("🚀 Рассылка #"))
        .collect();
    assert_eq!(starts.len(), 1, "one start message: {said:#?}");
    let start = starts[0];
    assert!(
        start.at_ms >= pressed + 2_500,
        "the start message met the 429 ({} ms after the press)",
        start.at_ms - pressed
    );
    assert!(
        start.message_id < report.message_id,
        "the report overtook the start message: {said:#?}"
    );
    assert!(
        !said.iter().any(|m| m.text.starts_with("📊")),
        "a second progress message: {said:#?}"
    );
    let shown =
        w.tg.current_text(p.id, start.message_id)
            .unwrap_or_default();
    assert!(shown.starts_with("📊 Рассылка #"), "{shown}");
    w.assert_each_delivered_once(&jids);
}
