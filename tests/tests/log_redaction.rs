//! No secret in any log line. The real binary runs the main scenarios with sentinel secrets
//! (bot token, webhook secret, a user's Wappi token, Robokassa passwords, the encryption key,
//! the signatures computed from them), including forced errors whose texts could carry them
//! (a Wappi 500 echoing the token, a Telegram 429 and 502, an unreachable Telegram, a bad
//! signature, a webhook call with a wrong secret), at `RUST_LOG=debug`, in both log formats.
//! Every line the process wrote (stdout and stderr) and the output of `check` and `export` are
//! searched for each sentinel; and the lines that must be there (one per mailing event, one per
//! external call outcome, one per Robokassa callback) are looked for too, so that a silent
//! logger cannot pass.

use groupcast_e2e::fake_wappi::Fault;
use groupcast_e2e::harness::{
    binary, events_in, free_port, wait_until, BOT_TOKEN, ENCRYPTION_KEY, WEBHOOK_SECRET,
};
use groupcast_e2e::world::{Account, Person, World, STEP};
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::time::Duration;

const WAPPI_TOKEN: &str = "5e471e1wappiTokenSentinel0123456789abcd";
const PASS1: &str = "sentinelRoboPassOne7";
const PASS2: &str = "sentinelRoboPassTwo8";
const LOGIN: &str = "groupcast_shop";
const USER: i64 = 4242;
const TEXT: &str = "Объявление для проверки журналов";

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// A `groupcast` subcommand with the server's settings; (success, stdout + stderr).
async fn run(args: Vec<String>, env: HashMap<String, String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(binary())
            .args(&args)
            .env_clear()
            .envs(&env)
            .output()
            .expect("run groupcast");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
    .await
    .expect("join")
}

/// Runs every scenario against a server logging in `format`; returns (all output, signatures
/// computed along the way).
async fn scenarios(format: &str) -> (World, String, Vec<String>) {
    let w = World::start_with(|env| {
        env.insert("LOG_FORMAT".into(), format.into());
        env.insert("RUST_LOG".into(), "debug".into());
        env.insert("TELEGRAM_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
        env.insert("ROBOKASSA_MERCHANT_LOGIN".into(), LOGIN.into());
        env.insert("ROBOKASSA_PASSWORD1".into(), PASS1.into());
        env.insert("ROBOKASSA_PASSWORD2".into(), PASS2.into());
        env.insert("PROGRESS_INTERVAL_SECS".into(), "1".into());
    })
    .await;
    let mut signatures = Vec::new();

    // Registration with the sentinel Wappi token; text; groups.
    let acc = Account {
        token: WAPPI_TOKEN.into(),
        profile: "5e471e10-0042".into(),
    };
    w.wappi.add_profile(&acc.profile, &acc.token);
    let jids = w.groups(&acc, 5, 42);
    let p = w.person(USER);
    p.registers(&acc).await;
    p.sets_text(TEXT).await;
    p.sets_groups(&jids).await;

    // Telegram refuses the answer to /help with a 502, then the apology with a 429 (waited
    // out and repeated).
    w.tg.fail_next_with_status(USER, 502, 1);
    w.tg.fail_next_with_429(USER, 1, 1);
    p.says("/help");
    p.hears("⚠️").await;

    // A mailing through a Wappi 500 that echoes the token (a send's 5xx is "maybe sent": the
    // row goes in doubt, the history shows it absent, and it is sent again).
    w.wappi.push_fault(Fault::Status(
        500,
        format!(r#"{{"status":"error","detail":"internal error for token {WAPPI_TOKEN}"}}"#),
    ));
    let (id, _) = p.starts_mailing_msg().await;
    let report = p.hears(&format!("Рассылка #{id}")).await;
    assert!(report.text.starts_with('✅'), "{}", report.text);
    w.assert_each_delivered_once(&jids);

    // A payment: the link (signed with password #1), a notification with a bad signature and
    // one with the good one (password #2).
    p.says("/subscribe");
    let plans = p.hears("Подписка").await;
    p.presses(plans.message_id, &Person::button(&plans, "30 дн"));
    let link = p.hears("Счёт №").await;
    let url = link.reply_markup.expect("pay button")["inline_keyboard"][0][0]["url"]
        .as_str()
        .expect("url")
        .to_string();
    let link_sig = url
        .split("SignatureValue=")
        .nth(1)
        .expect("signed link")
        .split('&')
        .next()
        .expect("sig")
        .to_string();
    signatures.push(link_sig);
    let inv: i64 = url
        .split("InvId=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .and_then(|s| s.parse().ok())
        .expect("InvId");
    let good = md5_hex(&format!("490.000000:{inv}:{PASS2}:Shp_plan=30")).to_uppercase();
    let bad = md5_hex(&format!("490.000000:{inv}:not-the-password:Shp_plan=30")).to_uppercase();
    signatures.push(good.clone());
    signatures.push(bad.clone());
    let client = reqwest::Client::new();
    for (sig, want) in [(bad, 400), (good, 200)] {
        let form = [
            ("OutSum", "490.000000".to_string()),
            ("InvId", inv.to_string()),
            ("SignatureValue", sig),
            ("Shp_plan", "30".to_string()),
        ];
        let r = client
            .post(format!("{}/robokassa/result", w.server.url()))
            .form(&form)
            .send()
            .await
            .expect("notify");
        assert_eq!(r.status().as_u16(), want);
    }
    p.hears("Оплата получена").await;

    // The webhook with a wrong secret.
    let mut update = serde_json::json!({ "update_id": 990_001 });
    update["message"] = w.tg.text_message(USER, "/help")["message"].clone();
    let (code, _) =
        w.tg.deliver_webhook(
            &format!("{}/telegram/webhook", w.server.url()),
            Some("wrong_secret"),
            update,
        )
        .await;
    assert_eq!(code, 401);

    // Operator commands: export, and check with Telegram unreachable (a transport error).
    let mut output = String::new();
    let (ok, out) = run(
        vec!["export".into(), "--user".into(), USER.to_string()],
        w.server.env.clone(),
    )
    .await;
    assert!(ok, "{out}");
    output.push_str(&out);
    let mut env = w.server.env.clone();
    env.insert(
        "TELEGRAM_API_URL".into(),
        format!("http://127.0.0.1:{}", free_port()),
    );
    let (ok, out) = run(vec!["check".into()], env).await;
    assert!(!ok, "check must fail with Telegram unreachable:\n{out}");
    output.push_str(&out);

    // The server's closing lines too.
    let mut w = w;
    w.server.terminate_async(Duration::from_secs(10)).await;
    output.push_str(&w.server.logs());
    (w, output, signatures)
}

/// The first line holding a sentinel, and the sentinel.
fn find_secret(output: &str, signatures: &[String]) -> Option<(String, String)> {
    let bot_secret_half = BOT_TOKEN.split_once(':').expect("token").1;
    let mut sentinels: Vec<String> = [
        BOT_TOKEN,
        bot_secret_half,
        WEBHOOK_SECRET,
        ENCRYPTION_KEY,
        WAPPI_TOKEN,
        PASS1,
        PASS2,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for sig in signatures {
        sentinels.push(sig.to_uppercase());
        sentinels.push(sig.to_lowercase());
    }
    output.lines().find_map(|line| {
        sentinels
            .iter()
            .find(|s| line.contains(s.as_str()))
            .map(|s| (line.to_string(), s.clone()))
    })
}

fn assert_clean(output: &str, signatures: &[String]) {
    if let Some((line, secret)) = find_secret(output, signatures) {
        panic!("a line holds the secret {secret}:\n{line}");
    }
}

#[test]
fn the_search_finds_a_planted_secret() {
    let sigs = vec!["AB12CD34EF56".to_string()];
    for planted in [
        format!("GET /bot{BOT_TOKEN}/getMe failed"),
        format!("wappi: Authorization {WAPPI_TOKEN}"),
        "SignatureValue=ab12cd34ef56".to_string(),
    ] {
        assert!(find_secret(&planted, &sigs).is_some(), "{planted}");
    }
    assert!(find_secret("all clean", &sigs).is_none());
}

/// A line of the text format with this message and these `key=value` fields.
fn text_lines<'a>(output: &'a str, message: &str, fields: &[&str]) -> Vec<&'a str> {
    output
        .lines()
        .filter(|l| l.contains(message) && fields.iter().all(|f| l.contains(f)))
        .collect()
}

#[tokio::test]
async fn text_logs_hold_no_secret_and_every_event() {
    let (w, out, sigs) = scenarios("text").await;
    assert_clean(&out, &sigs);
    assert_eq!(
        text_lines(&out, "mailing started", &["event=\"mailing_started\""]).len(),
        1
    );
    assert_eq!(
        text_lines(&out, " sent ", &["outcome=\"sent\""]).len(),
        5,
        "one line per group sent"
    );
    assert_eq!(
        text_lines(&out, "send failed", &["outcome=\"in_doubt\""]).len(),
        1
    );
    assert_eq!(
        text_lines(&out, "mailing finished", &["event=\"mailing_done\""]).len(),
        1
    );
    assert!(!text_lines(&out, "wappi call ok", &["path=\"/api/sync/message/send\""]).is_empty());
    assert_eq!(
        text_lines(&out, "wappi call failed", &["status=500"]).len(),
        1
    );
    assert!(!text_lines(&out, "telegram call failed", &["status=429"]).is_empty());
    assert!(!text_lines(&out, "telegram call failed", &["status=502"]).is_empty());
    assert!(!text_lines(&out, "telegram call ok", &["method=\"sendMessage\""]).is_empty());
    assert_eq!(
        text_lines(&out, "robokassa callback", &["outcome=\"refused\""]).len(),
        1
    );
    assert_eq!(
        text_lines(&out, "robokassa callback", &["outcome=\"accepted\""]).len(),
        1
    );
    assert_eq!(text_lines(&out, "wrong secret header", &[]).len(), 1);
    drop(w);
}

#[tokio::test]
async fn json_logs_hold_no_secret_and_every_event() {
    let (w, out, sigs) = scenarios("json").await;
    assert_clean(&out, &sigs);
    let logs = w.server.logs();
    let json_lines = logs
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count();
    assert!(
        json_lines * 10 >= logs.lines().count() * 9,
        "log lines are JSON"
    );
    let started = events_in(&logs, "mailing started");
    assert_eq!(started.len(), 1);
    let id = started[0]["mailing"].as_i64().expect("mailing id");
    let sent = events_in(&logs, "sent");
    assert_eq!(sent.len(), 5);
    assert!(sent
        .iter()
        .all(|e| e["event"] == "send" && e["outcome"] == "sent" && e["mailing"] == id));
    let failed = events_in(&logs, "send failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["outcome"], "in_doubt");
    let done = events_in(&logs, "mailing finished");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["event"], "mailing_done");
    assert_eq!(done[0]["sent"], 5);
    let wappi_ok = events_in(&logs, "wappi call ok");
    assert!(wappi_ok
        .iter()
        .all(|e| e["status"] == 200 && e["latency_ms"].is_u64()));
    let tg_failed = events_in(&logs, "telegram call failed");
    for status in [429, 502] {
        assert!(
            tg_failed.iter().any(|e| e["status"] == status),
            "a telegram {status} line"
        );
    }
    let callbacks = events_in(&logs, "robokassa callback");
    let outcomes: Vec<_> = callbacks.iter().map(|e| e["outcome"].clone()).collect();
    assert_eq!(outcomes, ["refused", "accepted"]);
    // Every call the fakes saw has its outcome line (getUpdates polls included).
    wait_until("logs flushed", STEP, || true).await;
    let tg_lines = events_in(&logs, "telegram call ok").len() + tg_failed.len();
    let tg_calls = w.tg.calls().len();
    assert!(
        tg_lines + 1 >= tg_calls && tg_lines <= tg_calls,
        "{tg_lines} telegram outcome lines for {tg_calls} calls"
    );
    let wappi_lines = wappi_ok.len() + events_in(&logs, "wappi call failed").len();
    assert_eq!(wappi_lines, w.wappi.requests().len());
}
