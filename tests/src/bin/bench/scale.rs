//! The long, sleeping mailings of a busy service (issue 17): many accounts each with one
//! mailing at a careful-like pace, the burst of many fast accounts at once, the start-up with
//! many running mailings, and the ✅ press through the bot.
//!
//! How each figure is taken:
//! - peak RSS: `VmHWM` of each server process (`/proc/<pid>/status`), the highest;
//! - CPU: `utime + stime` of the server processes (`/proc/<pid>/stat`) over a window, as a
//!   share of one core;
//! - lateness: every send's log line carries `planned_at`, the instant the engine planned the
//!   call for (the plan's post time or the pacer's slot, decided before the wait and never moved
//!   by a late wake-up); the fake Wappi stamps the request's arrival. Lateness = arrival −
//!   planned, per post. A mailing's first post is left out (every mailing's first post is due
//!   at start-up, all at once: that is the start-up figure);
//! - fsyncs: `perf stat -e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync` attached to
//!   the first server during the run (kernel tracepoints: the process is not slowed), divided
//!   by the posts that arrived meanwhile (`BENCH_NO_FSYNCS=1` leaves it out).

use super::{now_ms, seeded, Backend, Seed};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A custom pace of random gaps `lo..=hi` ms between posts, no batch pause, no window, no caps.
pub fn gap_pace(lo_ms: u64, hi_ms: u64) -> String {
    use groupcast_core::model::pacing::pace::{PaceSettings, Span};
    serde_json::to_string(&PaceSettings {
        gap: Span::new(lo_ms, hi_ms),
        batch: None,
        pause: Span::new(0, 0),
        window: None,
        hour: None,
        day: None,
    })
    .expect("a pace serialises")
}

/// A pace whose daily window is closed now (it opens in ~12 hours, UTC): every mailing is held.
fn closed_window_pace() -> String {
    use groupcast_core::model::pacing::pace::{PaceSettings, Span, Window};
    let minute = ((now_ms() / 60_000) % 1440) as u32;
    let start = (minute + 720) % 1440;
    serde_json::to_string(&PaceSettings {
        gap: Span::new(5_000, 15_000),
        batch: None,
        pause: Span::new(0, 0),
        window: Some(Window {
            start_min: start,
            end_min: (start + 60) % 1440,
        }),
        hour: None,
        day: None,
    })
    .expect("a pace serialises")
}

/// CPU ticks (utime + stime) of a process.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Total CPU seconds of `pids` so far.
fn cpu_secs(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|p| cpu_ticks(*p)).sum::<u64>() as f64 / ticks_per_sec()
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// `perf stat` of the server's fsync and fdatasync calls: attach before the work, read after.
struct FsyncCount {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl FsyncCount {
    fn attach(pid: u32, dir: &std::path::Path) -> Option<FsyncCount> {
        let out = dir.join(format!("fsyncs-{pid}.txt"));
        let child = std::process::Command::new("perf")
            .args([
                "stat",
                "-x",
                ",",
                "-e",
                "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync",
                "-o",
            ])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        std::thread::sleep(Duration::from_millis(300));
        Some(FsyncCount { child, out })
    }

    /// Detaches and returns the fsync + fdatasync calls counted.
    fn finish(mut self) -> Option<u64> {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).ok()?;
        Some(
            text.lines()
                .filter(|l| l.contains("sys_enter_f"))
                .filter_map(|l| l.split(',').next()?.trim().parse::<u64>().ok())
                .sum(),
        )
    }
}

/// `accounts` accounts each with one mailing of `groups` groups at random gaps of 5–15 s.
pub async fn scale(accounts: u32, groups: u32, backend: Backend) -> anyhow::Result<()> {
    let setup = Instant::now();
    let mut rig = seeded(
        "5",
        Seed {
            users: accounts,
            groups_per_user: groups,
            pace: Some(gap_pace(5_000, 15_000)),
        },
        backend,
        |env| {
            env.insert("LOG_FORMAT".into(), "json".into());
            env.insert(
                "RUST_LOG".into(),
                "warn,groupcast_core::mailing::engine=info,groupcast_server::runner=info".into(),
            );
        },
    )
    .await?;
    let pids: Vec<u32> = rig.servers.iter().filter_map(|s| s.pid()).collect();
    let strace = std::env::var("BENCH_NO_FSYNCS")
        .is_err()
        .then(|| FsyncCount::attach(pids[0], rig._dirs[0].path()))
        .flatten();
    let total = (accounts * groups) as usize;
    let cpu0 = cpu_secs(&pids);
    let t0 = Instant::now();
    // Every mailing's first post is due at once; the rest follow 5–15 s apart.
    let timeout = Duration::from_secs(60 + u64::from(groups) * 20);
    let done = rig.wappi.wait_for_deliveries(total, timeout).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs(&pids) - cpu0;
    let fsyncs = strace.and_then(FsyncCount::finish);
    let rss = rig.peak_rss_kib();
    let sends = rig.wappi.deliveries();
    let logs: String = rig.servers.iter().map(|s| s.logs()).collect();
    rig.stop();
    if let Err(e) = done {
        let mut kinds: HashMap<String, usize> = HashMap::new();
        for r in rig.wappi.requests() {
            *kinds
                .entry(format!("{} {:?}", r.path, r.outcome))
                .or_default() += 1;
        }
        let mut warns: HashMap<String, (usize, String)> = HashMap::new();
        for l in logs.lines().filter(|l| l.contains("WARN")) {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            let key = v["fields"]["message"].as_str().unwrap_or(l).to_string();
            let e = warns.entry(key).or_insert((0, l.to_string()));
            e.0 += 1;
        }
        let _ = std::fs::write(
            std::env::temp_dir().join("groupcast-scale-failed.log"),
            &logs,
        );
        let mut stops: HashMap<String, usize> = HashMap::new();
        for v in groupcast_e2e::harness::events_in(&logs, "driver stopped") {
            *stops.entry(v["outcome"].to_string()).or_default() += 1;
        }
        anyhow::bail!("{e}; requests {kinds:?}; drivers stopped {stops:?}; warnings {warns:#?}");
    }
    let arrived: HashMap<String, (i64, &str)> = sends
        .iter()
        .filter_map(|r| Some((r.recipient.clone()?, (r.at_ms, r.profile_id.as_str()))))
        .collect();
    let mut first_of: HashMap<String, i64> = HashMap::new();
    for r in &sends {
        let e = first_of.entry(r.profile_id.clone()).or_insert(i64::MAX);
        *e = (*e).min(r.at_ms);
    }
    let mut late = Vec::new();
    for v in groupcast_e2e::harness::events_in(&logs, "sent") {
        let (Some(group), Some(planned)) = (v["group"].as_str(), v["planned_at"].as_i64()) else {
            continue;
        };
        let Some(&(at, profile)) = arrived.get(group) else {
            continue;
        };
        // The first post of a mailing is the start-up's (see the module).
        if first_of.get(profile) == Some(&at) {
            continue;
        }
        late.push(at - planned);
    }
    late.sort_unstable();
    let doubles = sends.len() - rig.wappi.delivery_count_by_recipient().len();
    println!(
        "scale [{}], {accounts} mailings x {groups} groups at gaps of 5-15 s: {total} posts in {wall:.1} s, duplicates {doubles}; seeding and start {:.1} s",
        backend.label(),
        setup.elapsed().as_secs_f64() - wall
    );
    println!(
        "  lateness at the fake Wappi (arrival - planned, {} posts after each mailing's first): p50 {} ms, p99 {} ms, max {} ms (target p99 <= 50 ms)",
        late.len(),
        pct(&late, 0.5),
        pct(&late, 0.99),
        late.last().copied().unwrap_or(0)
    );
    println!(
        "  CPU while sending: {:.1} % of one core ({} process{}), {:.0} µs per post; peak RSS {:.1} MB (target <= 300 MB)",
        100.0 * cpu / wall,
        pids.len(),
        if pids.len() > 1 { "es together" } else { "" },
        cpu * 1e6 / total as f64,
        rss.unwrap_or(0) as f64 / 1024.0
    );
    if let Some(n) = fsyncs {
        println!(
            "  fsyncs of the first process while sending: {n}, {:.2} per post",
            n as f64 / total as f64 * pids.len() as f64
        );
    }
    waiting(accounts, backend).await
}

/// `accounts` mailings all held by their pace (the window is closed): the CPU of the servers
/// while every mailing waits, and their RSS.
pub async fn waiting(accounts: u32, backend: Backend) -> anyhow::Result<()> {
    let mut rig = seeded(
        "5",
        Seed {
            users: accounts,
            groups_per_user: 5,
            pace: Some(closed_window_pace()),
        },
        backend,
        |env| {
            env.insert("LOG_FORMAT".into(), "json".into());
            env.insert(
                "RUST_LOG".into(),
                "warn,groupcast_server::runner=info".into(),
            );
        },
    )
    .await?;
    let pids: Vec<u32> = rig.servers.iter().filter_map(|s| s.pid()).collect();
    // Every mailing driven (and its hold shown) first.
    let started = Instant::now();
    loop {
        let driving: usize = rig
            .servers
            .iter()
            .map(|s| s.logs().matches("\"driving mailing\"").count())
            .sum();
        if driving >= accounts as usize || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let window = Duration::from_secs(20);
    let cpu0 = cpu_secs(&pids);
    let tg0 = rig._tg.calls().len();
    tokio::time::sleep(window).await;
    let cpu = cpu_secs(&pids) - cpu0;
    let tg = rig._tg.calls().len() - tg0;
    let rss = rig.peak_rss_kib();
    let sends = rig.wappi.deliveries().len();
    rig.stop();
    println!(
        "  waiting [{}]: {accounts} mailings all held by their pace, CPU {:.2} % of one core over {} s (target <= 5 %), peak RSS {:.1} MB; meanwhile {sends} sends and {tg} Telegram calls (the holds being shown, at the Bot API's 30/s)",
        backend.label(),
        100.0 * cpu / window.as_secs_f64(),
        window.as_secs(),
        rss.unwrap_or(0) as f64 / 1024.0
    );
    Ok(())
}

/// The shortest gap between two calls of one mailing as the engine made them (`called_at` of
/// the send log lines, the engine's clock right before the call): what the pacer controls,
/// where the gap at the fake adds the jitter of the call's way there.
fn min_call_gap(logs: &str) -> i64 {
    let mut by_mailing: HashMap<i64, Vec<i64>> = HashMap::new();
    for v in groupcast_e2e::harness::events_in(logs, "sent")
        .into_iter()
        .chain(groupcast_e2e::harness::events_in(logs, "send failed"))
    {
        if let (Some(m), Some(at)) = (v["mailing"].as_i64(), v["called_at"].as_i64()) {
            by_mailing.entry(m).or_default().push(at);
        }
    }
    shortest_gap(by_mailing)
}

/// The shortest gap between two times of one key (0 when no key has two).
fn shortest_gap<K>(times: HashMap<K, Vec<i64>>) -> i64 {
    times
        .into_values()
        .flat_map(|mut t| {
            t.sort_unstable();
            t.windows(2).map(|p| p[1] - p[0]).collect::<Vec<_>>()
        })
        .min()
        .unwrap_or(0)
}

/// `accounts` accounts × `groups` groups at 5/s each, all at once (the `fast` pace).
pub async fn burst(accounts: u32, groups: u32, backend: Backend) -> anyhow::Result<()> {
    let rate = 5.0;
    let mut rig = seeded(
        "5",
        Seed {
            users: accounts,
            groups_per_user: groups,
            pace: None,
        },
        backend,
        |env| {
            // The send log lines carry each call's time (`min_call_gap`).
            env.insert("LOG_FORMAT".into(), "json".into());
            env.insert(
                "RUST_LOG".into(),
                "warn,groupcast_core::mailing::engine=info".into(),
            );
        },
    )
    .await?;
    let pids: Vec<u32> = rig.servers.iter().filter_map(|s| s.pid()).collect();
    let strace = std::env::var("BENCH_NO_FSYNCS")
        .is_err()
        .then(|| FsyncCount::attach(pids[0], rig._dirs[0].path()))
        .flatten();
    let total = (accounts * groups) as usize;
    let started = Instant::now();
    let done = rig
        .wappi
        .wait_for_deliveries(total, Duration::from_secs(120 + u64::from(groups)))
        .await;
    let waited = started.elapsed().as_secs_f64();
    let fsyncs = strace.and_then(FsyncCount::finish);
    let rss = rig.peak_rss_kib();
    let sends = rig.wappi.deliveries();
    let logs: String = rig.servers.iter().map(|s| s.logs()).collect();
    rig.stop();
    done.map_err(anyhow::Error::msg)?;
    let min_call_gap = min_call_gap(&logs);
    let first = sends.iter().map(|r| r.at_ms).min().unwrap_or(0);
    let last = sends.iter().map(|r| r.at_ms).max().unwrap_or(0);
    let mut by_profile: HashMap<&str, Vec<i64>> = HashMap::new();
    for r in &sends {
        by_profile.entry(&r.profile_id).or_default().push(r.at_ms);
    }
    let min_gap = shortest_gap(by_profile);
    let doubles = sends.len() - rig.wappi.delivery_count_by_recipient().len();
    let ideal = f64::from(groups) / rate;
    let actual = (last - first) as f64 / 1000.0 + 1.0 / rate;
    println!(
        "burst [{}], {accounts} accounts x {groups} groups at {rate}/s each: ideal {ideal:.1} s, actual {actual:.2} s (first to last send + one interval; target <= {:.1} s), {waited:.1} s from servers ready to the last send, min per-account gap {min_gap} ms at the fake, {min_call_gap} ms between the calls as made (interval {} ms), posts {} of {total}, duplicates {doubles}, peak RSS {:.1} MB",
        backend.label(),
        1.2 * ideal + 1.0,
        (1000.0 / rate) as i64,
        sends.len(),
        rss.unwrap_or(0) as f64 / 1024.0
    );
    if let Some(n) = fsyncs {
        println!(
            "  fsyncs of the first process during the burst: {n}, {:.2} per post",
            n as f64 / total as f64 * pids.len() as f64
        );
    }
    Ok(())
}

/// Start-up with `mailings` running mailings (as after a restart): time from the process's
/// start until every mailing made its first post (its driver runs again).
pub async fn startup(mailings: u32) -> anyhow::Result<()> {
    let t0 = now_ms();
    let mut rig = seeded(
        "5",
        Seed {
            users: mailings,
            groups_per_user: 3,
            pace: Some(gap_pace(5_000, 15_000)),
        },
        Backend::Embedded,
        |_| {},
    )
    .await?;
    let started = rig.started_ms;
    let waited = Instant::now();
    let sends = loop {
        let sends = rig.wappi.deliveries();
        let profiles: std::collections::HashSet<&str> =
            sends.iter().map(|r| r.profile_id.as_str()).collect();
        if profiles.len() >= mailings as usize || waited.elapsed() > Duration::from_secs(120) {
            break sends;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    rig.stop();
    let mut first: HashMap<&str, i64> = HashMap::new();
    for r in &sends {
        let e = first.entry(&r.profile_id).or_insert(i64::MAX);
        *e = (*e).min(r.at_ms);
    }
    let mut times: Vec<i64> = first.values().map(|t| t - started).collect();
    times.sort_unstable();
    println!(
        "start-up with {mailings} running mailings: every mailing driven (its first post arrived) {:.2} s after the process started (p50 {:.2} s; target <= 10 s; {} of {mailings} seen; seeding took {:.1} s)",
        times.last().copied().unwrap_or(0) as f64 / 1000.0,
        pct(&times, 0.5) as f64 / 1000.0,
        first.len(),
        (started - t0) as f64 / 1000.0
    );
    Ok(())
}

/// A new user's 20-group mailing at 5/s through the bot: ✅ press → first post, and last post
/// → the ✅ report (`groupcast_e2e::press`).
pub async fn press(groups: usize) -> anyhow::Result<()> {
    use groupcast_e2e::world::World;
    let w = World::start_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "5".into());
        env.insert("DEFAULT_PACE".into(), "fast".into());
        env.insert("RUST_LOG".into(), "warn".into());
        env.insert("DELIVERY_AUDIT_DELAY_SECS".into(), "0".into());
    })
    .await;
    let trace = std::env::var("BENCH_TRACE").is_ok();
    let figures = groupcast_e2e::press::press(&w, 777_001, 1, groups, trace).await?;
    println!("{}", figures.line("server", groups));
    Ok(())
}
