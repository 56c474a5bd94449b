//! The operator's side of the binary: `check`, `migrate`, `/healthz`, and a clean stop on
//! SIGTERM.

use groupcast_e2e::harness::{binary, free_port};
use groupcast_e2e::world::World;
use std::collections::HashMap;
use std::time::Duration;

/// Runs a `groupcast` subcommand off the test's runtime (the fakes live on it).
async fn run(args: &'static [&'static str], env: HashMap<String, String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(binary())
            .args(args)
            .env_clear()
            .envs(&env)
            .output()
            .unwrap();
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
    .unwrap()
}

#[tokio::test]
async fn check_reports_each_part_and_fails_on_a_problem() {
    let w = World::start().await;
    let (ok, out) = run(&["check"], w.server.env.clone()).await;
    assert!(ok, "{out}");
    for part in [
        "configuration",
        "telegram",
        "webhook",
        "database",
        "state",
        "encryption key",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with("ok") && l.contains(part)),
            "{part} in:\n{out}"
        );
    }
    assert!(w
        .tg
        .calls_of("getMe")
        .iter()
        .any(|c| c.token == groupcast_e2e::harness::BOT_TOKEN));

    // Telegram unreachable: a PROBLEM line naming the fix, and a failing exit.
    let mut env = w.server.env.clone();
    env.insert(
        "TELEGRAM_API_URL".into(),
        format!("http://127.0.0.1:{}", free_port()),
    );
    let (ok, out) = run(&["check"], env).await;
    assert!(!ok);
    let line = out.lines().find(|l| l.contains("telegram")).unwrap();
    assert!(
        line.starts_with("PROBLEM") && line.contains("TELEGRAM_API_URL"),
        "{out}"
    );
    assert!(
        !out.contains(groupcast_e2e::harness::BOT_TOKEN),
        "token in output"
    );
}

#[tokio::test]
async fn migrate_is_idempotent_and_healthz_reports_storage_and_runner() {
    let w = World::start().await;
    let (ok, out) = run(&["migrate"], w.server.env.clone()).await;
    assert!(ok && out.contains("0 pending"), "{out}");
    let health: serde_json::Value = reqwest::get(format!("{}/healthz", w.server.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["storage"], true);
    assert_eq!(health["mode"], "polling");
    assert!(
        health["runner_heartbeat_age_secs"].as_f64().unwrap() < 10.0,
        "{health}"
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_promptly() {
    let mut w = World::start().await;
    let took = w
        .server
        .terminate(Duration::from_secs(10))
        .expect("exited within 10 s");
    assert!(took < Duration::from_secs(10));
    assert!(
        w.server.logs().contains("groupcast stopped"),
        "{}",
        w.server.logs()
    );
}
