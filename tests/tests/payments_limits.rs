//! What no real Robokassa call looks like is refused before any work, and what a caller sends
//! before its signature verified changes nothing, not even the logs (issue 12, item 4).
//!
//! - A notification of almost 1 MiB of `Shp_` fields, four at once, is answered 413 without
//!   being decoded, while a user's webhook update sent at the same time is answered by the bot;
//!   a short form of too many fields is answered 400, also undecoded; the same holds for a GET
//!   query and for the payer's pages. One operator line per refusal, without the body.
//! - A notification with a made-up signature that is a word of the logs (`mailing`,
//!   `callback`) does not blank that word out of the lines logged after it.

use groupcast_e2e::harness::{events_in, WEBHOOK_SECRET};
use groupcast_e2e::scenarios::{
    self, get_text, notify, overlong_calls_are_refused, oversized_form, post_raw, LOGIN, PASS1,
    PASS2,
};
use groupcast_e2e::world::{Account, World};
use serde_json::json;

/// A shop in webhook mode with JSON logs.
async fn webhook_shop() -> World {
    World::start_with(|env| {
        for (k, v) in scenarios::shop_settings() {
            env.insert(k.into(), v);
        }
        env.insert("PUBLIC_URL".into(), "https://bot.example.test".into());
        env.insert("TELEGRAM_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
        env.insert("LOG_FORMAT".into(), "json".into());
    })
    .await
}

#[tokio::test]
async fn oversized_or_overlong_calls_are_refused_undecoded_while_the_bot_answers() {
    let w = webhook_shop().await;
    let base = w.server.url();
    let result = format!("{base}/robokassa/result");

    // Four notifications of almost 1 MiB (the server's general body limit) at once: on a
    // 2-core server, enough to hold every runtime thread if they were decoded and compared.
    let big = oversized_form(1, 1_000_000);
    assert!(big.len() > 990_000);
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let (base, big) = (base.clone(), big.clone());
            tokio::spawn(async move { post_raw(&base, "/robokassa/result", big, None).await })
        })
        .collect();
    // Meanwhile a user writes to the bot.
    let mut update = json!({ "update_id": 71_001 });
    update["message"] = w.tg.text_message(7001, "/help")["message"].clone();
    let (code, _) =
        w.tg.deliver_webhook(
            &format!("{base}/telegram/webhook"),
            Some(WEBHOOK_SECRET),
            update,
        )
        .await;
    assert_eq!(code, 200);
    w.person(7001).hears("groupcast").await;
    for call in calls {
        assert_eq!(call.await.unwrap(), (413, "too large".to_string()));
    }

    // The same size with no declared length: refused once 16 KiB have been read.
    assert_eq!(
        post_raw(&base, "/robokassa/result", big.clone(), Some(8192)).await,
        (413, "too large".to_string())
    );

    let many = overlong_calls_are_refused(&w, &base, PASS2).await;
    // The too-many-fields form as a GET query at the result URL too.
    assert_eq!(
        get_text(format!("{result}?{many}")).await,
        (400, "too many fields".to_string())
    );
    let page = get_text(format!(
        "{base}/robokassa/success?OutSum=490.00&InvId=5&Culture=en&SignatureValue=00&Shp_plan=30"
    ))
    .await;
    assert_eq!(page.0, 200);
    assert!(page.1.contains("Payment received"), "{}", page.1);

    // One operator line per refused call, saying why, holding nothing of what was sent; and
    // no line from a reading of the fields (a conflicting `Shp_k000000`, a bad signature).
    let logs = w.server.logs();
    let refused = events_in(&logs, "robokassa call refused");
    let reasons: Vec<&str> = refused
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "too large").count(),
        7,
        "{refused:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| **r == "too many fields").count(),
        3,
        "{refused:?}"
    );
    assert!(refused.iter().all(|e| e["limit"].is_u64()), "{refused:?}");
    assert!(!logs.contains("Shp_k0"), "a log line holds the body");
    assert!(!logs.contains("Shp_10"), "a log line holds the body");
    assert!(
        events_in(&logs, "robokassa notification refused").is_empty(),
        "a refused call was read"
    );
    w.server.assert_no_secrets_in_logs(&[PASS1, PASS2, LOGIN]);
}

#[tokio::test]
async fn an_unverified_signature_never_blanks_words_out_of_later_log_lines() {
    let w = World::start_with(|env| {
        env.insert("LOG_FORMAT".into(), "json".into());
        env.insert("ROBOKASSA_MERCHANT_LOGIN".into(), LOGIN.into());
        env.insert("ROBOKASSA_PASSWORD1".into(), PASS1.into());
        env.insert("ROBOKASSA_PASSWORD2".into(), PASS2.into());
    })
    .await;
    let acc = Account::numbered(21);
    w.wappi.add_profile(&acc.profile, &acc.token);
    let jids = w.groups(&acc, 2, 21);
    let p = w.person(7101);
    p.registers(&acc).await;
    p.sets_text("Объявление").await;
    p.sets_groups(&jids).await;

    // Someone without Password #2 sends "signatures" that are words of the logs.
    for word in ["mailing", "callback"] {
        let form = [
            ("OutSum", "490.000000".to_string()),
            ("InvId", "1".to_string()),
            ("SignatureValue", word.to_string()),
            ("Shp_plan", "30".to_string()),
        ];
        assert_eq!(
            notify(&w, &form).await,
            (400, "bad notification".to_string())
        );
    }

    // The lines logged after them keep those words.
    let (id, _) = p.starts_mailing_msg().await;
    let report = p.hears(&format!("Рассылка #{id}")).await;
    assert!(report.text.starts_with('✅'), "{}", report.text);
    w.assert_each_delivered_once(&jids);
    let logs = w.server.logs();
    let callbacks = events_in(&logs, "robokassa callback");
    assert_eq!(callbacks.len(), 2, "both refusals logged as such");
    assert!(callbacks.iter().all(|e| e["outcome"] == "refused"));
    let started = events_in(&logs, "mailing started");
    assert_eq!(started.len(), 1, "the start of the mailing is logged");
    assert_eq!(started[0]["event"], "mailing_started");
    assert_eq!(started[0]["mailing"], id);
    assert_eq!(events_in(&logs, "mailing finished").len(), 1);
    let blanked: Vec<&str> = logs.lines().filter(|l| l.contains("[redacted]")).collect();
    assert!(blanked.is_empty(), "{blanked:#?}");
}
