//! `groupcast-bench`: the benchmark command (`scripts/bench`). Runs the release `groupcast`
//! binary against the local fakes and prints figures:
//! - pacing efficiency of one 400-group mailing at 50 sends/s (ideal time / actual);
//! - 200 profiles × 20 groups at 5/s each, all at once (actual vs the ideal 4 s), and the
//!   server's peak RSS during that run;
//! - webhook acknowledgement latency p50/p99 at 500 updates/s;
//! - the engine's cost of planning a careful-paced post: one decision (the next post's time)
//!   and one with the mailing's forecast (the ETA run forward over the posts left), in µs.
//!
//! Mailings are seeded straight into the database (users, groups, a running mailing) so the
//! figures measure the engine, not the dialogue; the server resumes them at start-up exactly as
//! after a restart. The pacing figures are taken on the embedded state (one process) and on
//! Redis with one and with two processes sharing the Redis and the database.
//!
//! The figures of many long, sleeping mailings (`scale`, `burst`, `startup`, `press`; see
//! `bench/scale.rs`) take their sizes as arguments after their name, e.g.
//! `groupcast-bench scale 2000 4` or `groupcast-bench burst 100 20`. With `redis` among the
//! arguments `scale` and `burst` also run on Redis (`REDIS_URL`) with 2 processes.
//! Usage: `groupcast-bench [pacing] [profiles] [webhook] [redis] [plan] [scale [accounts]
//! [groups]] [burst [accounts] [groups]] [startup [mailings]] [press [groups]]`
//! (default: all, at the sizes).

use groupcast_core::crypto::TokenCipher;
use groupcast_core::services::Ports;
use groupcast_core::{Secret, UserId};
use groupcast_e2e::fake_telegram::FakeTelegram;
use groupcast_e2e::fake_wappi::{FakeWappi, Pacing};
use groupcast_e2e::harness::{Server, ENCRYPTION_KEY, WEBHOOK_SECRET};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "bench/scale.rs"]
mod scale;

/// The numbers given after argument `name` (its sizes), or `defaults`.
fn sizes<const N: usize>(args: &[String], name: &str, defaults: [u32; N]) -> [u32; N] {
    let mut out = defaults;
    if let Some(at) = args.iter().position(|a| a == name) {
        for (slot, arg) in out.iter_mut().zip(&args[at + 1..]) {
            match arg.parse() {
                Ok(n) => *slot = n,
                Err(_) => break,
            }
        }
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let want = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    let redis = args.is_empty() || args.iter().any(|a| a == "redis");
    if std::env::var("GROUPCAST_BIN").is_err() {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/groupcast");
        anyhow::ensure!(
            bin.exists(),
            "build the release binary first: cargo build --release --bin groupcast"
        );
        std::env::set_var("GROUPCAST_BIN", bin);
    }
    println!(
        "groupcast benchmarks ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    if want("pacing") {
        pacing_one_profile(Backend::Embedded).await?;
    }
    if want("profiles") {
        many_profiles(Backend::Embedded).await?;
    }
    if want("redis") {
        for processes in [1, 2] {
            pacing_one_profile(Backend::Redis { processes }).await?;
            many_profiles(Backend::Redis { processes }).await?;
        }
    }
    if want("webhook") {
        webhook_latency().await?;
    }
    if want("plan") {
        plan_cost();
    }
    if want("scale") {
        let [accounts, groups] = sizes(&args, "scale", [10_000, 4]);
        scale::scale(accounts, groups, Backend::Embedded).await?;
        if redis {
            scale::scale(accounts, groups, Backend::Redis { processes: 2 }).await?;
        }
    }
    // Only the waiting half of `scale`.
    if args.iter().any(|a| a == "waiting") {
        let [accounts] = sizes(&args, "waiting", [10_000]);
        scale::waiting(accounts, Backend::Embedded).await?;
        if redis {
            scale::waiting(accounts, Backend::Redis { processes: 2 }).await?;
        }
    }
    if want("burst") {
        let [accounts, groups] = sizes(&args, "burst", [1_000, 20]);
        scale::burst(accounts, groups, Backend::Embedded).await?;
        if redis {
            scale::burst(accounts, groups, Backend::Redis { processes: 2 }).await?;
        }
    }
    if want("startup") {
        let [mailings] = sizes(&args, "startup", [10_000]);
        scale::startup(mailings).await?;
    }
    if want("press") {
        let [groups] = sizes(&args, "press", [20]);
        scale::press(groups as usize).await?;
    }
    Ok(())
}

/// µs per planning decision at the `careful` pace, with a full day of the account's posts
/// behind (its daily cap, 150) and 200 posts of the mailing left to forecast.
fn plan_cost() {
    use groupcast_core::model::pacing::pace::Preset;
    use groupcast_core::model::pacing::plan::{finish_at, Plan};
    let pace = Preset::Careful.settings();
    let plan = Plan {
        pace: &pace,
        floor_ms: 1000,
        warmup_day: None,
        tz: chrono_tz::Europe::Moscow,
        seed: 42,
        slow: false,
    };
    // 2026-12-05 12:00 in Moscow, after 150 posts since the morning.
    let now = 1_764_925_200_000 + 365 * 86_400_000;
    let recent: Vec<i64> = (0..150).map(|i| now - 150 * 60_000 + i * 60_000).collect();
    let time = |rounds: u32, f: &dyn Fn(u64) -> i64| {
        let started = Instant::now();
        let mut sink = 0i64;
        for i in 0..rounds {
            sink = sink.wrapping_add(f(u64::from(i)));
        }
        std::hint::black_box(sink);
        started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
    };
    let next = time(20_000, &|i| plan.next(i % 1000, &recent, now).at);
    let forecast = time(200, &|i| {
        plan.next(i, &recent, now).at + finish_at(&plan, i, &recent, 200, now)
    });
    println!(
        "plan (careful, 150 posts today): next post {next:.2} µs per decision; with the forecast of 200 posts left {forecast:.0} µs"
    );
}

struct Seed {
    users: u32,
    groups_per_user: u32,
    /// The users' pace (JSON of `PaceSettings`); `None`: the operator's default.
    pace: Option<String>,
}

/// Writes users with encrypted tokens, their groups and one running mailing each.
fn seed(db_path: &Path, wappi: &FakeWappi, s: &Seed, now_ms: i64) -> anyhow::Result<()> {
    let cipher =
        TokenCipher::from_base64_key(ENCRYPTION_KEY).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut db = rusqlite::Connection::open(db_path)?;
    let tx = db.transaction()?;
    for u in 0..s.users {
        let user = 10_000 + u as i64;
        let token = format!("{:040x}", 0xbe11_0000u64 + u as u64);
        let profile = format!("{:08x}-{:04x}", 0x1000_0000u32 + u, u);
        wappi.add_profile(&profile, &token);
        let enc = cipher.encrypt(
            &Secret::new(token),
            &Ports::token_aad(UserId(user)),
            [u as u8; 12],
        );
        tx.execute(
            "INSERT INTO users (id, lang, wappi_token_enc, profile_id, subscription_until, dialogue, created_at, pace)
             VALUES (?1, 'ru', ?2, ?3, ?4, '', ?5, ?6)",
            // A month of subscription: no reminder is due during a run.
            rusqlite::params![user, enc, profile, now_ms / 1000 + 30 * 86_400, now_ms, s.pace],
        )?;
        let text = format!("Benchmark post of user {user}");
        tx.execute(
            "INSERT INTO texts (user_id, body, updated_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![user, text, now_ms],
        )?;
        tx.execute(
            "INSERT INTO mailings (user_id, chat_id, profile_id, status, content, created_at)
             VALUES (?1, ?1, ?2, 'running', ?3, ?4)",
            rusqlite::params![
                user,
                profile,
                serde_json::json!({ "text": text }).to_string(),
                now_ms
            ],
        )?;
        let mailing = tx.last_insert_rowid();
        for g in 0..s.groups_per_user {
            let jid = format!("120363{:06}{:06}@g.us", u, g);
            tx.execute(
                "INSERT INTO groups (user_id, jid, name, position) VALUES (?1, ?2, NULL, ?3)",
                rusqlite::params![user, jid, g],
            )?;
            tx.execute(
                "INSERT INTO deliveries (mailing_id, group_jid, part, position, state, attempts, next_attempt_at, updated_at)
                 VALUES (?1, ?2, 0, ?3, 'pending', 0, 0, ?4)",
                rusqlite::params![mailing, jid, g, now_ms],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Creates the schema by running `groupcast migrate` with the server's settings.
fn migrate(env: &HashMap<String, String>) -> anyhow::Result<()> {
    let status = std::process::Command::new(groupcast_e2e::harness::binary())
        .arg("migrate")
        .env_clear()
        .envs(env)
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "groupcast migrate failed");
    Ok(())
}

/// Where the coordination state lives, and how many `groupcast serve` share the work.
#[derive(Clone, Copy)]
enum Backend {
    Embedded,
    Redis { processes: usize },
}

impl Backend {
    fn label(self) -> String {
        match self {
            Backend::Embedded => "embedded, 1 process".into(),
            Backend::Redis { processes } => format!(
                "redis, {processes} process{}",
                if processes > 1 { "es" } else { "" }
            ),
        }
    }
}

/// Fakes plus the seeded servers (all on one database file).
struct Rig {
    _tg: FakeTelegram,
    wappi: FakeWappi,
    servers: Vec<Server>,
    _dirs: Vec<tempfile::TempDir>,
    /// When the first server was started (unix ms).
    started_ms: i64,
}

impl Rig {
    fn stop(&mut self) {
        for s in &mut self.servers {
            s.terminate(Duration::from_secs(10));
        }
    }

    /// The highest peak RSS among the servers (VmHWM, KiB).
    fn peak_rss_kib(&self) -> Option<u64> {
        self.servers
            .iter()
            .filter_map(|s| s.pid().and_then(peak_rss_kib))
            .max()
    }
}

async fn seeded(
    rate: &str,
    s: Seed,
    backend: Backend,
    tune: impl FnOnce(&mut HashMap<String, String>),
) -> anyhow::Result<Rig> {
    let tg = FakeTelegram::start().await;
    let wappi = FakeWappi::start().await;
    let dir = tempfile::tempdir()?;
    let mut env = Server::env(&tg.url(), &wappi.url(), dir.path());
    env.insert("PROFILE_RATE_PER_SEC".into(), rate.into());
    env.insert("RUST_LOG".into(), "warn".into());
    let processes = match backend {
        Backend::Embedded => 1,
        Backend::Redis { processes } => {
            env.insert(
                "REDIS_URL".into(),
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            );
            env.insert(
                "REDIS_PREFIX".into(),
                format!("bench-{}-{}:", std::process::id(), now_ms()),
            );
            processes
        }
    };
    tune(&mut env);
    // The harness's lease is 5 s (quick takeovers in tests); `BENCH_LEASE_TTL_SECS=15` runs
    // with the product's default instead.
    if let Ok(secs) = std::env::var("BENCH_LEASE_TTL_SECS") {
        env.insert("LEASE_TTL_SECS".into(), secs);
    }
    migrate(&env)?;
    seed(&dir.path().join("groupcast.db"), &wappi, &s, now_ms())?;
    let started_ms = now_ms();
    let mut servers = vec![Server::start(env.clone(), dir.path()).await];
    let mut dirs = vec![dir];
    for _ in 1..processes {
        // Same settings (so the same database file and Redis), its own folder for logs.
        let logs = tempfile::tempdir()?;
        servers.push(Server::start(env.clone(), logs.path()).await);
        dirs.push(logs);
    }
    Ok(Rig {
        _tg: tg,
        wappi,
        servers,
        _dirs: dirs,
        started_ms,
    })
}

async fn pacing_one_profile(backend: Backend) -> anyhow::Result<()> {
    let (n, rate) = (400usize, 50.0);
    let mut rig = seeded(
        "50",
        Seed {
            users: 1,
            groups_per_user: n as u32,
            pace: None,
        },
        backend,
        |_| {},
    )
    .await?;
    let Pacing {
        ideal,
        actual,
        min_gap,
        doubles,
    } = rig
        .wappi
        .pacing(n, rate, Duration::from_secs(120))
        .await
        .map_err(anyhow::Error::msg)?;
    rig.stop();
    println!(
        "pacing [{}], 1 profile, {n} groups at {rate}/s: ideal {ideal:.2} s, actual {actual:.3} s (first to last send + one interval), efficiency {:.4} (target >= 0.98), min gap {min_gap} ms, duplicates {doubles}",
        backend.label(),
        ideal / actual
    );
    Ok(())
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

async fn many_profiles(backend: Backend) -> anyhow::Result<()> {
    let (profiles, per, rate) = (200usize, 20usize, 5.0);
    let mut rig = seeded(
        "5",
        Seed {
            users: profiles as u32,
            groups_per_user: per as u32,
            pace: None,
        },
        backend,
        |_| {},
    )
    .await?;
    let started = Instant::now();
    rig.wappi
        .wait_for_deliveries(profiles * per, Duration::from_secs(180))
        .await
        .map_err(anyhow::Error::msg)?;
    let waited = started.elapsed().as_secs_f64();
    let rss = rig.peak_rss_kib();
    let sends = rig.wappi.deliveries();
    let first = sends.iter().map(|r| r.at_ms).min().unwrap_or(0);
    let last = sends.iter().map(|r| r.at_ms).max().unwrap_or(0);
    let mut by_profile: HashMap<String, Vec<i64>> = HashMap::new();
    for r in &sends {
        by_profile
            .entry(r.profile_id.clone())
            .or_default()
            .push(r.at_ms);
    }
    let min_gap = by_profile
        .values()
        .flat_map(|t| t.windows(2).map(|p| p[1] - p[0]).collect::<Vec<_>>())
        .min()
        .unwrap_or(0);
    let doubles = sends.len() - rig.wappi.delivery_count_by_recipient().len();
    let ideal = per as f64 / rate;
    let actual = (last - first) as f64 / 1000.0 + 1.0 / rate;
    rig.stop();
    println!(
        "pacing [{}], {profiles} profiles x {per} groups at {rate}/s each: ideal {ideal:.1} s, actual {actual:.2} s (first to last send + one interval; target <= {:.1} s), {:.1} s from servers ready to the last send, min per-profile gap {min_gap} ms, duplicates {doubles}",
        backend.label(),
        1.2 * ideal + 1.0,
        waited
    );
    match rss {
        Some(kib) => println!(
            "peak RSS of a server during that run: {:.1} MB (VmHWM; target <= 80 MB)",
            kib as f64 / 1024.0
        ),
        None => println!("peak RSS: unavailable (no /proc)"),
    }
    Ok(())
}

async fn webhook_latency() -> anyhow::Result<()> {
    let tg = FakeTelegram::start().await;
    let wappi = FakeWappi::start().await;
    let dir = tempfile::tempdir()?;
    let mut env = Server::env(&tg.url(), &wappi.url(), dir.path());
    env.insert("PUBLIC_URL".into(), "https://bench.example.test".into());
    env.insert("TELEGRAM_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
    env.insert("RUST_LOG".into(), "warn".into());
    let mut server = Server::start(env, dir.path()).await;
    let url = format!("{}/telegram/webhook", server.url());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let (rate, seconds) = (500u64, 4u64);
    let total = rate * seconds;
    let begin = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let at = begin + Duration::from_micros(i * 1_000_000 / rate);
        let user = 50_000 + (i % 500) as i64;
        let mut update = tg.text_message(user, if i % 2 == 0 { "/help" } else { "/status" });
        update["update_id"] = serde_json::json!(1_000_000 + i);
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let t = Instant::now();
            let r = client
                .post(&url)
                .header("X-Telegram-Bot-Api-Secret-Token", WEBHOOK_SECRET)
                .json(&update)
                .send()
                .await;
            (t.elapsed(), r.map(|r| r.status().as_u16()).unwrap_or(0))
        }));
    }
    let mut lat = Vec::with_capacity(total as usize);
    let mut bad = 0;
    for t in tasks {
        let (d, code) = t.await?;
        if code != 200 {
            bad += 1;
        }
        lat.push(d);
    }
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    server.terminate(Duration::from_secs(10));
    println!(
        "webhook ack latency at {rate} updates/s for {seconds} s ({total} updates, {bad} not 200): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 <= 50 ms)",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
