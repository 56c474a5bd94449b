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
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// One running `groupcast serve`, with its own data folder and log file.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub data: PathBuf,
    pub env: HashMap<String, String>,
    runs: u32,
    /// Set by [`Server::start_named`]: the log files are `server-<name>-<run>.log`, so several
    /// servers can share one data folder (one database file).
    name: Option<String>,
}

impl Server {
    /// The settings of a test server: fakes' URLs, a temp database, fast pacing.
    pub fn env(telegram_url: &str, wappi_url: &str, data: &Path) -> HashMap<String, String> {
        let pairs = [
            ("TELEGRAM_BOT_TOKEN", BOT_TOKEN.to_string()),
            ("TELEGRAM_API_URL", telegram_url.to_string()),
            ("WAPPI_API_URL", wappi_url.to_string()),
            (
                "DATABASE_PATH",
                data.join("groupcast.db").display().to_string(),
            ),
            ("ENCRYPTION_KEY", ENCRYPTION_KEY.to_string()),
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
            ("LEASE_TTL_SECS", "5".to_string()),
            ("RUST_LOG", "info,groupcast_server=debug".to_string()),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Starts the binary and waits until `/healthz` answers.
    pub async fn start(env: HashMap<String, String>, data: &Path) -> Server {
        let mut s = Server {
            child: None,
            port: free_port(),
            data: data.to_path_buf(),
            env,
            runs: 0,
            name: None,
        };
        s.spawn().await;
        s
    }

    /// Like [`Server::start`], under a name: several named servers can run on one data folder
    /// (the same database file), each logging to its own `server-<name>-<run>.log`.
    pub async fn start_named(env: HashMap<String, String>, data: &Path, name: &str) -> Server {
        let mut s = Server {
            child: None,
            port: free_port(),
            data: data.to_path_buf(),
            env,
            runs: 0,
            name: Some(name.to_string()),
        };
        s.spawn().await;
        s
    }

    /// The log file of one run (1-based).
    fn log_path(&self, run: u32) -> PathBuf {
        match &self.name {
            Some(name) => self.data.join(format!("server-{name}-{run}.log")),
            None => self.data.join(format!("server-{run}.log")),
        }
    }

    async fn spawn(&mut self) {
        // A port picked free can be taken by another test's listener before the server binds
        // it: then the server says so at once and is started again on another free port.
        for attempt in 1..=3 {
            self.runs += 1;
            let log = std::fs::File::create(self.log_path(self.runs)).expect("log file");
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
            let child = self.child.as_mut().expect("just started");
            match wait_healthy(&url, child, Duration::from_secs(20)).await {
                Ok(()) => return,
                Err(e) => {
                    let run_log =
                        std::fs::read_to_string(self.log_path(self.runs)).unwrap_or_default();
                    if attempt < 3 && run_log.contains("Address already in use") {
                        self.child = None;
                        self.port = free_port();
                        continue;
                    }
                    panic!("groupcast {e}:\n{}", self.logs());
                }
            }
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
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
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
        logs_of_runs(self.runs, |run| self.log_path(run))
    }

    /// Fails if a log line holds a secret (the bot token, the webhook secret, the key, or any
    /// extra given).
    pub fn assert_no_secrets_in_logs(&self, extra: &[&str]) {
        assert_no_secrets_in(&self.logs(), extra);
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
            .query_map([mailing_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
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
/// Waits up to `within` until `url` (a `/healthz`) answers 2xx. Fails (with what happened,
/// for the caller to name the process and add its logs) if `child` exits first or time runs
/// out.
pub(crate) async fn wait_healthy(
    url: &str,
    child: &mut Child,
    within: Duration,
) -> Result<(), String> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = client.get(url).timeout(Duration::from_secs(5)).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if let Some(status) = child.try_wait().ok().flatten() {
            return Err(format!("exited at start ({status})"));
        }
        if Instant::now() >= deadline {
            return Err(format!("did not answer {url} within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything the runs `1..=runs` of a process logged, each run's file at `log_path(run)`.
pub(crate) fn logs_of_runs(runs: u32, log_path: impl Fn(u32) -> PathBuf) -> String {
    (1..=runs)
        .map(|run| std::fs::read_to_string(log_path(run)).unwrap_or_default())
        .collect()
}

/// Fails if `logs` hold a secret: the sentinels (the bot token and its secret part, the
/// webhook secret, the encryption key) or any extra given.
pub(crate) fn assert_no_secrets_in(logs: &str, extra: &[&str]) {
    let bot_secret_part = BOT_TOKEN.split(':').nth(1).expect("token");
    for secret in [BOT_TOKEN, bot_secret_part, WEBHOOK_SECRET, ENCRYPTION_KEY]
        .iter()
        .chain(extra)
    {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {secret}"
        );
    }
}

pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --- several processes, signals, Redis ----------------------------------------------------------

impl Server {
    /// Sends a signal (`STOP`, `CONT`, `TERM`, ...) to the running process.
    pub fn signal(&self, name: &str) {
        let pid = self.pid().expect("the server is not running");
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "kill -{name} {pid} failed");
    }

    /// `kill -STOP`: the process is frozen (timers, sockets and all) until [`Server::resume`].
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// `kill -CONT`: a paused process runs on.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// SIGTERM, then waits for the exit without blocking the test's runtime (the fakes run on
    /// it); returns how long the exit took, or `None` (after a `kill -9`) past `timeout`.
    pub async fn terminate_async(&mut self, timeout: Duration) -> Option<Duration> {
        self.signal("TERM");
        let started = Instant::now();
        let mut c = self.child.take()?;
        while started.elapsed() < timeout {
            if c.try_wait().ok().flatten().is_some() {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Whether the process is still alive (not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The JSON log lines (`LOG_FORMAT=json`) of every run whose `fields.message` is
    /// `message`: their `fields` objects, in order.
    pub fn log_events(&self, message: &str) -> Vec<serde_json::Value> {
        events_in(&self.logs(), message)
    }
}

/// The `fields` of the JSON log lines in `logs` whose message is `message`.
pub fn events_in(logs: &str, message: &str) -> Vec<serde_json::Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .map(|v| v["fields"].clone())
        .collect()
}

/// The seed of a randomized test: `GROUPCAST_SEED` when set (to replay a failure), else a
/// fresh one. Printed either way, so a failing run shows how to replay it.
pub fn test_seed(test: &str) -> u64 {
    let seed = std::env::var("GROUPCAST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("{test}: seed {seed} (replay with GROUPCAST_SEED={seed})");
    seed
}

/// Unix milliseconds now (the clock the fakes stamp requests with).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Where the tests find the shared Redis: `REDIS_TEST_URL`, `REDIS_URL`, or
/// `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("REDIS_TEST_URL")
        .or_else(|_| std::env::var("REDIS_URL"))
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Runs `redis-cli -u <url> <args>`; its stdout.
pub fn redis_cli(url: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("redis-cli")
        .arg("-u")
        .arg(url)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("redis-cli: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A random key prefix on a Redis (`REDIS_PREFIX` of the servers of one test, so parallel
/// tests never share keys); its keys are deleted when this is dropped.
pub struct RedisNamespace {
    pub url: String,
    pub prefix: String,
}

impl RedisNamespace {
    pub fn new(url: &str) -> RedisNamespace {
        RedisNamespace {
            url: url.to_string(),
            prefix: format!("groupcast-e2e-{:016x}:", rand::random::<u64>()),
        }
    }

    /// The keys under the prefix (the prefix included), sorted.
    pub fn keys(&self) -> Vec<String> {
        let out = redis_cli(
            &self.url,
            &["--scan", "--pattern", &format!("{}*", self.prefix)],
        )
        .unwrap_or_default();
        let mut keys: Vec<String> = out
            .lines()
            .map(str::to_string)
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for RedisNamespace {
    fn drop(&mut self) {
        let script =
            "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 1";
        let _ = redis_cli(
            &self.url,
            &["EVAL", script, "0", &format!("{}*", self.prefix)],
        );
    }
}

/// A private `redis-server` on a free port, without persistence (`--save "" --appendonly no`):
/// a restart loses everything. Stopped by its PID when dropped.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    pub async fn start() -> PrivateRedis {
        let mut r = PrivateRedis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        r.spawn().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))
            .expect("redis log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server must be installed: {e}"));
        self.child = Some(child);
        let url = self.url();
        wait_until(
            "the private redis-server answers PING",
            Duration::from_secs(10),
            || redis_cli(&url, &["PING"]).is_ok_and(|o| o.trim() == "PONG"),
        )
        .await;
    }

    /// `kill -9`: Redis is gone, with everything it held.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn().await;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One send request as it left one process (seen by a [`WappiTap`]).
#[derive(Debug, Clone)]
pub struct TapSend {
    pub at: Instant,
    pub at_ms: i64,
    /// The body's `recipient`.
    pub recipient: String,
}

/// A TCP relay between one server and the fake Wappi, so that a test knows which process made
/// which send: it forwards bytes unchanged both ways and notes every `"recipient":"…"` it sees
/// going upstream (one per send request; reads carry none).
pub struct WappiTap {
    port: u16,
    sends: std::sync::Arc<std::sync::Mutex<Vec<TapSend>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl WappiTap {
    /// Starts relaying to `upstream` (`http://127.0.0.1:<port>`). Needs a tokio runtime (it may
    /// be called from a synchronous settings closure inside a test).
    pub fn start(upstream: &str) -> WappiTap {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let std_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        let listener = tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
        let sends = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = sends.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    if let Ok(server) = tokio::net::TcpStream::connect(&upstream).await {
                        relay(client, server, log).await;
                    }
                });
            }
        });
        WappiTap {
            port,
            sends,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every send request that went through, in order.
    pub fn sends(&self) -> Vec<TapSend> {
        self.sends.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for WappiTap {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    log: std::sync::Arc<std::sync::Mutex<Vec<TapSend>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const NEEDLE: &[u8] = b"\"recipient\":\"";
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            loop {
                let Some(start) = pending.windows(NEEDLE.len()).position(|w| w == NEEDLE) else {
                    let keep = pending.len().saturating_sub(NEEDLE.len());
                    pending.drain(..keep);
                    break;
                };
                let from = start + NEEDLE.len();
                let Some(len) = pending[from..].iter().position(|b| *b == b'"') else {
                    pending.drain(..start);
                    break;
                };
                let recipient = String::from_utf8_lossy(&pending[from..from + len]).into_owned();
                log.lock().unwrap_or_else(|p| p.into_inner()).push(TapSend {
                    at: Instant::now(),
                    at_ms: unix_ms(),
                    recipient,
                });
                pending.drain(..from + len);
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
    };
    let down = async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}

impl Server {
    /// A mailing's status in the ledger.
    pub fn mailing_status(&self, id: i64) -> String {
        self.db()
            .query_row("SELECT status FROM mailings WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap()
    }

    /// A mailing's fencing number in the ledger.
    pub fn mailing_fence(&self, id: i64) -> u64 {
        self.db()
            .query_row("SELECT fence FROM mailings WHERE id = ?1", [id], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap() as u64
    }

    /// The fences of this server's "driving mailing" log lines for one mailing, in order.
    pub fn driving_fences(&self, id: i64) -> Vec<u64> {
        self.log_events("driving mailing")
            .iter()
            .filter(|e| e["mailing"] == id)
            .map(|e| e["fence"].as_u64().expect("fence"))
            .collect()
    }

    /// Waits until the mailing is `done`; on timeout fails with its delivery states and the
    /// last log lines.
    pub async fn wait_done(&self, id: i64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.mailing_status(id) != "done" {
            if Instant::now() > deadline {
                let logs = self.logs();
                let tail: Vec<&str> = logs.lines().rev().take(30).collect();
                panic!(
                    "mailing {id} not done within {timeout:?} ({:?}); last log lines:\n{}",
                    self.delivery_states(id),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
