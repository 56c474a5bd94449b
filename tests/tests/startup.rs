//! Start-up refusals of the real binary, for set-ups that would let two runners send to the
//! same group: a lease not longer than one Wappi call (a send in flight could outlive it), and
//! a second `groupcast serve` on a database without Redis (the embedded state lives in one
//! process, so each would think it holds every profile). Each refusal is one line on stderr and
//! a failing exit; a crash (`kill -9`) of the holder never blocks the next start.

use groupcast_e2e::harness::{binary, free_port, Server};
use groupcast_e2e::world::World;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How one `groupcast serve` start ended.
#[derive(Debug)]
enum Start {
    /// It exited by itself: its exit code and what it wrote on stderr.
    Exited { code: Option<i32>, stderr: String },
    /// It answered `/healthz` (it was stopped by its PID right after).
    Served,
}

/// Runs `groupcast serve` with `env` on a free port until it exits or answers `/healthz`; a
/// process that serves is killed by its PID at once. Its output goes to `<name>.out` and
/// `<name>.err` in `dir`.
async fn try_serve(env: &HashMap<String, String>, dir: &Path, name: &str) -> Start {
    let port = free_port();
    let err_path = dir.join(format!("{name}.err"));
    let mut child = Command::new(binary())
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start groupcast");
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Start::Exited {
                code: status.code(),
                stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
            };
        }
        let healthy = client
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if healthy {
            let _ = child.kill();
            let _ = child.wait();
            return Start::Served;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: neither exited nor served within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 12, item 9: `LEASE_TTL_SECS` at or below `WAPPI_TIMEOUT_SECS` stops start-up with one
/// line naming both variables (exit status 2, as every settings error); a longer lease starts.
#[tokio::test]
async fn a_lease_not_longer_than_a_wappi_call_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on these: a refusal needs no outside service.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let base = Server::env(&nowhere, &nowhere, dir.path());
    for (lease, wappi) in [("3", "3"), ("2", "3"), ("1", "1")] {
        let mut env = base.clone();
        env.insert("LEASE_TTL_SECS".into(), lease.into());
        env.insert("WAPPI_TIMEOUT_SECS".into(), wappi.into());
        match try_serve(&env, dir.path(), &format!("lease-{lease}-wappi-{wappi}")).await {
            Start::Exited { code, stderr } => {
                assert_eq!(code, Some(2), "{stderr}");
                let lines: Vec<&str> = stderr.lines().collect();
                assert_eq!(lines.len(), 1, "one line: {stderr}");
                assert!(
                    lines[0].starts_with("error: LEASE_TTL_SECS: ")
                        && lines[0].contains("WAPPI_TIMEOUT_SECS")
                        && lines[0].contains(&format!("{lease} s"))
                        && lines[0].contains(&format!("{wappi} s")),
                    "{}",
                    lines[0]
                );
            }
            Start::Served => panic!(
                "serve started with LEASE_TTL_SECS={lease} WAPPI_TIMEOUT_SECS={wappi}: a send \
                 in flight could outlive the lease"
            ),
        }
    }
    // Not refused: a lease longer than the call.
    let mut env = base.clone();
    env.insert("LEASE_TTL_SECS".into(), "4".into());
    env.insert("WAPPI_TIMEOUT_SECS".into(), "3".into());
    let started = try_serve(&env, dir.path(), "lease-4-wappi-3").await;
    assert!(matches!(started, Start::Served), "{started:?}");
}

/// Issue 12, item 10: without `REDIS_URL`, a second `serve` on the same database refuses to
/// start with one line naming `DATABASE_PATH`, `REDIS_URL` and the holder's PID, and the first
/// one serves on. After `kill -9` of the holder a new process starts at once (the OS drops the
/// lock with the process), and holds the database in its turn.
#[tokio::test]
async fn a_second_serve_on_one_database_without_redis_is_refused() {
    let mut w = World::start().await;
    let first_pid = w.server.pid().expect("running");
    let env = w.server.env.clone();
    assert!(!env.contains_key("REDIS_URL"));

    let refused = |start: Start, holder: u32| match start {
        Start::Exited { code, stderr } => {
            assert_eq!(code, Some(1), "{stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "one line: {stderr}");
            assert!(
                lines[0].starts_with("error: DATABASE_PATH ")
                    && lines[0].contains("groupcast.db")
                    && lines[0].contains("REDIS_URL")
                    && lines[0].contains(&format!("(pid {holder})")),
                "{}",
                lines[0]
            );
        }
        Start::Served => panic!("a second serve started on the same database without Redis"),
    };
    refused(try_serve(&env, w.dir.path(), "second").await, first_pid);
    assert!(w.server.is_running(), "the first one serves on");
    assert!(reqwest::get(format!("{}/healthz", w.server.url()))
        .await
        .unwrap()
        .status()
        .is_success());

    // A crash of the holder: the next start is not blocked.
    w.server.kill9();
    w.server.restart().await;
    let new_pid = w.server.pid().expect("running");
    assert_ne!(new_pid, first_pid);
    // ...and the new process holds the database as the first did.
    refused(try_serve(&env, w.dir.path(), "third").await, new_pid);
}
