//! `GET /metrics` after a mailing: the counters agree with what the fakes received and the
//! gauges with the database, in valid Prometheus text.

use groupcast_e2e::fake_wappi::Fault;
use groupcast_e2e::world::World;
use std::collections::HashMap;

/// `name{labels}` → value, from the exposition text; checks every sample has a `# TYPE`.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut types = Vec::new();
    let mut out = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            types.push(parts.next().expect("name").to_string());
            let kind = parts.next().expect("type");
            assert!(
                ["counter", "gauge", "histogram", "summary"].contains(&kind),
                "{line}"
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("sample line");
        let name = key.split('{').next().expect("name");
        assert!(
            types.iter().any(|t| name.starts_with(t.as_str())),
            "no # TYPE before {line}"
        );
        out.insert(key.to_string(), value.parse::<f64>().expect("number"));
    }
    out
}

async fn scrape(w: &World) -> (String, HashMap<String, f64>) {
    let resp = reqwest::get(format!("{}/metrics", w.server.url()))
        .await
        .expect("scrape");
    assert_eq!(resp.status().as_u16(), 200);
    let ctype = resp.headers()["content-type"]
        .to_str()
        .expect("content type")
        .to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = resp.text().await.expect("body");
    let parsed = parse(&text);
    (text, parsed)
}

#[tokio::test]
async fn metrics_match_what_the_fakes_received() {
    // Counting does not depend on what is logged.
    let w = World::start_with(|env| {
        env.insert("RUST_LOG".into(), "warn".into());
    })
    .await;
    let (p, acc, jids) = w.ready(8101, 1, 12, "Метрики").await;
    // One send answered 500 (maybe sent: in doubt, settled through the history and sent again),
    // one 429 (the profile pauses, the row is sent later).
    w.wappi.push_fault(Fault::Status(
        500,
        r#"{"status":"error","detail":"oops"}"#.into(),
    ));
    w.wappi.push_fault(Fault::RateLimit {
        retry_after_secs: 1,
    });
    let id = p.starts_mailing().await;
    let report = p.hears(&format!("Рассылка #{id}")).await;
    assert!(report.text.starts_with('✅'), "{}", report.text);
    w.assert_each_delivered_once(&jids);

    let (text, m) = scrape(&w).await;
    let sends = w.sends(&acc.profile);
    let delivered = sends.iter().filter(|r| r.is_delivered()).count() as f64;
    assert_eq!(delivered, jids.len() as f64);
    assert_eq!(
        m["groupcast_sends_total{outcome=\"sent\"}"], delivered,
        "{text}"
    );
    assert_eq!(
        m["groupcast_sends_total{outcome=\"in_doubt\"}"], 1.0,
        "{text}"
    );
    assert_eq!(
        m["groupcast_sends_total{outcome=\"rate_limited\"}"], 1.0,
        "{text}"
    );
    for outcome in ["failed", "retried", "paused"] {
        assert_eq!(
            m[&format!("groupcast_sends_total{{outcome=\"{outcome}\"}}")],
            0.0
        );
    }
    // Every send attempt the fake saw has exactly one outcome.
    let outcomes: f64 = [
        "sent",
        "retried",
        "rate_limited",
        "failed",
        "in_doubt",
        "paused",
    ]
    .iter()
    .map(|o| m[&format!("groupcast_sends_total{{outcome=\"{o}\"}}")])
    .sum();
    assert_eq!(outcomes, sends.len() as f64);

    // Every Wappi call (status checks included) is in the latency histogram.
    let calls = w.wappi.requests().len() as f64;
    assert_eq!(m["groupcast_wappi_request_duration_seconds_count"], calls);
    assert_eq!(
        m["groupcast_wappi_request_duration_seconds_bucket{le=\"+Inf\"}"],
        calls
    );
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("groupcast_wappi_request_duration_seconds_bucket"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert!(
        buckets.windows(2).all(|p| p[0] <= p[1]),
        "cumulative buckets"
    );
    assert!(m["groupcast_wappi_request_duration_seconds_sum"] > 0.0);

    // Gauges from the database and the state.
    assert_eq!(m["groupcast_mailings{status=\"done\"}"], 1.0);
    assert_eq!(m["groupcast_mailings{status=\"running\"}"], 0.0);
    assert_eq!(m["groupcast_queue_depth"], 0.0);
    assert!(m["groupcast_runner_heartbeat_age_seconds"] < 10.0);
    // Drivers waited for slots (10/s, and the 429's pause).
    assert!(m["groupcast_pacing_wait_seconds_count"] >= 1.0);
    assert!(m["groupcast_pacing_wait_seconds_sum"] >= 0.5, "{text}");

    // Updates: one per update the bot accepted (every message and button press of the test).
    let accepted: i64 = w
        .server
        .db()
        .query_row("SELECT COUNT(*) FROM telegram_updates", [], |r| r.get(0))
        .unwrap();
    assert_eq!(m["groupcast_updates_received_total"], accepted as f64);

    // One more update, one more count.
    p.says("/help");
    p.hears("groupcast").await;
    let (_, after) = scrape(&w).await;
    assert_eq!(
        after["groupcast_updates_received_total"],
        m["groupcast_updates_received_total"] + 1.0
    );
}

#[tokio::test]
async fn on_redis_the_gauges_come_from_redis() {
    let w = World::start_redis_with(|_| {}).await;
    let (p, _, jids) = w.ready(8102, 2, 3, "Метрики на Redis").await;
    let id = p.starts_mailing().await;
    p.hears(&format!("Рассылка #{id}")).await;
    w.assert_each_delivered_once(&jids);
    let (text, m) = scrape(&w).await;
    assert_eq!(m["groupcast_queue_depth"], 0.0, "{text}");
    assert!(m["groupcast_runner_heartbeat_age_seconds"] < 10.0);
    assert_eq!(m["groupcast_sends_total{outcome=\"sent\"}"], 3.0);
    assert_eq!(m["groupcast_mailings{status=\"done\"}"], 1.0);
}
