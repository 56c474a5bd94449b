//! Runs the real `groupcast` binary as a child process against the local fakes, and drives it
//! as a Telegram user would. Every process started here is stopped by its PID (on drop too).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The sentinel secrets every test uses; `assert_no_secrets_in` greps logs for them.
pub const BOT_TOKEN: &str = "777000111:AAE-sentinelBotToken-DoNotLog";
pub const WEBHOOK_SECRET: &str = "sentinel_webhook_secret_do_not_log";
pub const ENCRYPTION_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The path of the `groupcast` binary built by `cargo build --bin groupcast` (the test
/// command builds it first), or `GROUPCAST_BIN`.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("GROUPCAST_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/groupcast");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin groupcast` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// One running `groupcast serve`, with its own data folder and log file.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub data: PathBuf,
    pub env: HashMap<String, String>,
    runs: u32,
}

impl Server {
    /// The settings of a test server: fakes' URLs, a temp database, fast pacing.
    pub fn env(telegram_url: &str, wappi_url: &str, data: &Path) -> HashMap<String, String> {
        let pairs = [
            ("TELEGRAM_BOT_TOKEN", BOT_TOKEN.to_string()),
            ("TELEGRAM_API_URL", telegram_url.to_string()),
            ("WAPPI_API_URL", wappi_url.to_string()),
            ("DATABASE_PATH", data.join("groupcast.db").display().to_string()),
            ("ENCRYPTION_KEY", ENCRYPTION_KEY.to_string()),
            ("TRIAL_DAYS", "30".to_string()),
            ("PROFILE_RATE_PER_SEC", "10".to_string()),
            ("PROGRESS_INTERVAL_SECS", "3".to_string()),
            ("RETRY_BASE_MS", "200".to_string()),
            ("WAPPI_TIMEOUT_SECS", "3".to_string()),
            ("LEASE_TTL_SECS", "5".to_string()),
            ("RUST_LOG", "info,groupcast_server=debug".to_string()),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Starts the binary and waits until `/healthz` answers.
    pub async fn start(env: HashMap<String, String>, data: &Path) -> Server {
        let mut s = Server { child: None, port: free_port(), data: data.to_path_buf(), env, runs: 0 };
        s.spawn().await;
        s
    }

    async fn spawn(&mut self) {
        self.runs += 1;
        let log = std::fs::File::create(self.data.join(format!("server-{}.log", self.runs))).expect("log file");
        let child = Command::new(binary())
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", self.port))
            .current_dir(&self.data)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start groupcast");
        self.child = Some(child);
        let url = format!("{}/healthz", self.url());
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("groupcast exited at start ({status}):\n{}", self.logs());
            }
            assert!(Instant::now() < deadline, "groupcast did not become healthy:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit (at most `timeout`); returns how long it took.
    pub fn terminate(&mut self, timeout: Duration) -> Option<Duration> {
        let mut c = self.child.take()?;
        let started = Instant::now();
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        while started.elapsed() < timeout {
            if c.try_wait().ok().flatten().is_some() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Starts the binary again on the same data (after `kill9` or `terminate`).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        self.spawn().await;
    }

    /// Everything every run of this server logged.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for i in 1..=self.runs {
            all.push_str(&std::fs::read_to_string(self.data.join(format!("server-{i}.log"))).unwrap_or_default());
        }
        all
    }

    /// Fails if a log line holds a secret (the bot token, the webhook secret, the key, or any
    /// extra given).
    pub fn assert_no_secrets_in_logs(&self, extra: &[&str]) {
        let logs = self.logs();
        let bot_secret_part = BOT_TOKEN.split(':').nth(1).expect("token");
        for secret in [BOT_TOKEN, bot_secret_part, WEBHOOK_SECRET, ENCRYPTION_KEY].iter().chain(extra) {
            assert!(!logs.contains(secret), "a secret reached the logs: {secret}");
        }
    }

    /// Opens the database read-only (for assertions on the ledger).
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.data.join("groupcast.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open db")
    }

    /// Delivery states of a mailing, counted.
    pub fn delivery_states(&self, mailing_id: i64) -> HashMap<String, i64> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT state, COUNT(*) FROM deliveries WHERE mailing_id = ?1 GROUP BY state")
            .expect("query");
        let rows = stmt
            .query_map([mailing_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .expect("rows");
        rows.map(|r| r.expect("row")).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits until `cond` holds, polling every 20 ms; panics with `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
