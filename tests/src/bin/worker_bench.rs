//! `groupcast-worker-bench`: the Cloudflare Worker's budgets (run by `scripts/bench` after
//! `scripts/worker-setup` built the Worker):
//! - the upload size Cloudflare counts, from `wrangler deploy --dry-run --outdir DIR` (target
//!   ≤ 1 MiB gzip; the free plan's hard limit is 3 MiB, the paid plan's 10 MiB);
//! - pacing efficiency of one 200-group mailing at 10 sends/s under `wrangler dev` (ideal time
//!   / actual, as the native benchmark counts it; target ≥ 0.95), driven through the dialogue
//!   by webhook like a real user, measured at the fake Wappi.
//!
//! - the ✅ press of a new user's 20-group mailing at 5/s, through the bot: press → first
//!   post and last post → report (targets ≤ 300 ms and ≤ 1 s), as the server's benchmark
//!   takes them (`groupcast_e2e::press`).
//!
//! - `counts [groups] [key=value…]`: what one post and one mailing cost on Cloudflare, counted
//!   by the Worker itself (`GET /__test/counts`, see `groupcast_worker::counts`): Durable
//!   Object storage calls, D1 statements and rows, subrequests, Queue messages, Durable Object
//!   requests and alarms, per post and per mailing (two mailings through the bot, the
//!   difference), per idle Cron pass and per Cron poke of a mailing asleep; and from those
//!   counts the monthly bill of many accounts on the Workers paid plan, with its assumptions
//!   as `key=value` arguments (not run by default: it takes about two minutes).
//!
//! Usage: `groupcast-worker-bench [size] [pacing] [press [groups]] [counts [groups] [key=value…]]`
//! (default: the first three).

use groupcast_e2e::fake_wappi::Pacing;
use groupcast_e2e::harness::{Server, WEBHOOK_SECRET};
use groupcast_e2e::worker_harness::{
    assert_worker_available, repo_root, worker_world_with, Worker,
};
use groupcast_e2e::world::{Person, World};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One MiB, the upload target.
const TARGET_GZIP_KIB: f64 = 1024.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let want = |name: &str| (args.is_empty() && name != "counts") || args.iter().any(|a| a == name);
    assert_worker_available();
    if want("size") {
        upload_size()?;
    }
    if want("pacing") {
        pacing().await?;
    }
    if want("press") {
        let groups = args
            .iter()
            .skip_while(|a| *a != "press")
            .nth(1)
            .and_then(|g| g.parse().ok())
            .unwrap_or(20);
        press(groups).await?;
    }
    if want("counts") {
        let rest: Vec<&String> = args.iter().skip_while(|a| *a != "counts").skip(1).collect();
        let groups = rest.first().and_then(|g| g.parse().ok()).unwrap_or(50usize);
        let mut plan = Plan {
            groups: groups as f64,
            ..Plan::default()
        };
        for kv in rest.iter().filter(|a| a.contains('=')) {
            plan.set(kv)?;
        }
        counts(groups, &plan).await?;
    }
    Ok(())
}

/// `wrangler deploy --dry-run`: bundles exactly what a deploy would upload, offline, and
/// prints `Total Upload: X KiB / gzip: Y KiB`.
fn upload_size() -> anyhow::Result<()> {
    let root = repo_root();
    let out_dir = tempfile::tempdir()?;
    let out = Command::new(root.join("node_modules/.bin/node"))
        .arg(root.join("node_modules/wrangler/bin/wrangler.js"))
        .args(["deploy", "--dry-run", "--outdir"])
        .arg(out_dir.path())
        .current_dir(&root)
        .env("SKIP_WORKER_BUILD", "1")
        .env("WRANGLER_SEND_METRICS", "false")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(
        out.status.success(),
        "wrangler deploy --dry-run failed:\n{text}"
    );
    let line = text
        .lines()
        .find(|l| l.contains("Total Upload:"))
        .ok_or_else(|| anyhow::anyhow!("no `Total Upload` line in:\n{text}"))?;
    let kib = |label: &str| -> Option<f64> {
        let rest = line.split(label).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    };
    let (total, gzip) = (kib("Total Upload:"), kib("gzip:"));
    let (Some(total), Some(gzip)) = (total, gzip) else {
        anyhow::bail!("cannot read sizes from: {line}");
    };
    let wasm = std::fs::metadata(root.join("crates/worker/build/index_bg.wasm"))?.len();
    println!(
        "worker upload (wrangler deploy --dry-run): total {total:.2} KiB, gzip {gzip:.2} KiB \
         (target <= {TARGET_GZIP_KIB:.0} KiB; limits 3 MiB free, 10 MiB paid), {} \
         [index_bg.wasm {wasm} B]",
        if gzip <= TARGET_GZIP_KIB {
            "ok"
        } else {
            "OVER TARGET"
        }
    );
    Ok(())
}

/// A 200-group mailing at 10/s through the Worker; efficiency = ideal / actual, where ideal is
/// n / rate and actual is first to last send plus one interval.
async fn pacing() -> anyhow::Result<()> {
    let (n, rate) = (200usize, 10.0);
    let w = worker_world_with(|vars| {
        vars.insert("PROFILE_RATE_PER_SEC".into(), "10".into());
    })
    .await;
    let acc = groupcast_e2e::world::Account::numbered(1);
    w.wappi.add_profile(&acc.profile, &acc.token);
    let jids = w.groups(&acc, n, 1);
    let p = w.person(7001);
    p.registers(&acc).await;
    p.sets_text("Benchmark post").await;
    // Bare ids keep the list under Telegram's 4096 characters per message.
    let bare: Vec<String> = jids
        .iter()
        .map(|j| j.trim_end_matches("@g.us").to_string())
        .collect();
    p.sets_groups(&bare).await;
    p.starts_mailing().await;
    let Pacing {
        ideal,
        actual,
        min_gap,
        doubles,
    } = w
        .wappi
        .pacing(n, rate, Duration::from_secs(120))
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "worker pacing (wrangler dev), 1 profile, {n} groups at {rate}/s: ideal {ideal:.2} s, \
         actual {actual:.3} s (first to last send + one interval), efficiency {:.4} \
         (target >= 0.95), min gap {min_gap} ms, duplicates {doubles}",
        ideal / actual
    );
    Ok(())
}

/// The ✅ press through the Worker (see `groupcast_e2e::press`).
async fn press(groups: usize) -> anyhow::Result<()> {
    let w = worker_world_with(|vars| {
        vars.insert("PROFILE_RATE_PER_SEC".into(), "5".into());
        vars.insert("DEFAULT_PACE".into(), "fast".into());
        vars.insert("DELIVERY_AUDIT_DELAY_SECS".into(), "0".into());
    })
    .await;
    let trace = std::env::var("BENCH_TRACE").is_ok();
    let figures = groupcast_e2e::press::press(&w, 777_001, 1, groups, trace).await?;
    println!("{}", figures.line("worker", groups));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// `counts`: what a post costs on Cloudflare, counted, and the monthly bill from the counts.

/// Cloudflare's published prices (USD), Workers paid plan, as looked up on 2026-12-05:
/// - Workers: <https://developers.cloudflare.com/workers/platform/pricing/> ($5 a month; 10 M
///   requests included then $0.30/M; 30 M CPU ms included then $0.02/M CPU ms; "Cloudflare
///   does not bill for subrequests you make from your Worker").
/// - Durable Objects: <https://developers.cloudflare.com/durable-objects/platform/pricing/>
///   (requests, which include alarm invocations: 1 M then $0.15/M; duration: 400,000 GB-s then
///   $12.50/M GB-s, for 128 MB whatever is used, while the object runs or waits on I/O and
///   not while it is idle and hibernatable; SQLite-backed storage: rows read 25 B then
///   $0.001/M, rows written 50 M then $1.00/M, where `get`/`put`/`delete` are billed as rows
///   and "each `setAlarm()` is billed as a single row written").
/// - D1: <https://developers.cloudflare.com/d1/platform/pricing/> (rows read 25 B then
///   $0.001/M, rows written 50 M then $1.00/M).
/// - Queues: <https://developers.cloudflare.com/queues/platform/pricing/> (1 M operations then
///   $0.40/M; a message under 64 KB takes 3: a write, a read, a delete).
mod price {
    pub const BASE_PER_MONTH: f64 = 5.00;
    pub const WORKER_REQUESTS_INCLUDED: f64 = 10e6;
    pub const WORKER_REQUESTS_PER_M: f64 = 0.30;
    pub const WORKER_CPU_MS_INCLUDED: f64 = 30e6;
    pub const WORKER_CPU_PER_M_MS: f64 = 0.02;
    pub const DO_REQUESTS_INCLUDED: f64 = 1e6;
    pub const DO_REQUESTS_PER_M: f64 = 0.15;
    pub const DO_GB_S_INCLUDED: f64 = 400_000.0;
    pub const DO_PER_M_GB_S: f64 = 12.50;
    /// The memory a Durable Object is billed for, GB.
    pub const DO_GB: f64 = 0.128;
    pub const ROWS_READ_INCLUDED: f64 = 25e9;
    pub const ROWS_READ_PER_M: f64 = 0.001;
    pub const ROWS_WRITTEN_INCLUDED: f64 = 50e6;
    pub const ROWS_WRITTEN_PER_M: f64 = 1.00;
    pub const QUEUE_OPS_INCLUDED: f64 = 1e6;
    pub const QUEUE_OPS_PER_M: f64 = 0.40;
    /// Operations per message: a write, a read, a delete.
    pub const QUEUE_OPS_PER_MESSAGE: f64 = 3.0;
}

/// The runner the counters are read through before any mailing (any name will do).
const PROBE_PROFILE: &str = "probe";

/// Counter name → count, as `/__test/counts` answers them (or a difference, or per post).
type Counts = BTreeMap<String, f64>;

fn minus(a: &Counts, b: &Counts) -> Counts {
    a.iter()
        .map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0.0)))
        .collect()
}

/// The phases added up.
fn plus(phases: &[Counts]) -> Counts {
    let mut all = Counts::new();
    for (k, v) in phases.iter().flatten() {
        *all.entry(k.clone()).or_default() += v;
    }
    all
}

fn times(a: &Counts, f: f64) -> Counts {
    a.iter().map(|(k, v)| (k.clone(), v * f)).collect()
}

fn sum(c: &Counts, keys: &[&str]) -> f64 {
    keys.iter().map(|k| c.get(*k).copied().unwrap_or(0.0)).sum()
}

/// The assumptions of the monthly bill: each can be changed on the command line as
/// `key=value` (the names below).
struct Plan {
    /// `accounts`: Wappi accounts (one runner Durable Object each).
    accounts: f64,
    /// `mailings_per_day`: mailings each account sends a day.
    mailings_per_day: f64,
    /// `groups`: groups per mailing (default: the size measured).
    groups: f64,
    /// `days`: days in the month.
    days: f64,
    /// `run_minutes`: minutes a mailing runs, asleep between its posts (each gets a Cron
    /// poke): 15 for 50 groups at the `normal` pace (8-20 s gaps, a 2-5 min batch pause).
    run_minutes: f64,
    /// `step_us`: native CPU of one engine step per post (`scripts/bench step`: ~31 µs).
    step_us: f64,
    /// `wasm_factor`: wasm in workerd against native (the collage's measured 2.15×).
    wasm_factor: f64,
    /// `wappi_ms`, `telegram_ms`, `d1_ms`: wall time the runner waits on one such call.
    wappi_ms: f64,
    telegram_ms: f64,
    d1_ms: f64,
    /// `wake_ms`: wall time of one runner request or alarm besides those waits.
    wake_ms: f64,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            accounts: 10_000.0,
            mailings_per_day: 1.0,
            groups: 50.0,
            days: 30.0,
            run_minutes: 15.0,
            step_us: 31.0,
            wasm_factor: 2.15,
            wappi_ms: 1000.0,
            telegram_ms: 200.0,
            d1_ms: 20.0,
            wake_ms: 5.0,
        }
    }
}

impl Plan {
    fn set(&mut self, kv: &str) -> anyhow::Result<()> {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v: f64 = v
            .parse()
            .map_err(|_| anyhow::anyhow!("{k}: not a number: {v}"))?;
        let slot = match k {
            "accounts" => &mut self.accounts,
            "mailings_per_day" => &mut self.mailings_per_day,
            "groups" => &mut self.groups,
            "days" => &mut self.days,
            "run_minutes" => &mut self.run_minutes,
            "step_us" => &mut self.step_us,
            "wasm_factor" => &mut self.wasm_factor,
            "wappi_ms" => &mut self.wappi_ms,
            "telegram_ms" => &mut self.telegram_ms,
            "d1_ms" => &mut self.d1_ms,
            "wake_ms" => &mut self.wake_ms,
            _ => anyhow::bail!("unknown assumption {k}"),
        };
        *slot = v;
        Ok(())
    }

    fn mailings(&self) -> f64 {
        self.accounts * self.mailings_per_day * self.days
    }

    fn posts(&self) -> f64 {
        self.mailings() * self.groups
    }

    /// Wall seconds a runner is billed for, from its counted calls: each request or alarm
    /// costs `wake_ms`, each Wappi, Telegram and D1 call it waits on its own time. Storage
    /// calls are local to the object and taken as free of time.
    fn runner_seconds(&self, c: &Counts) -> f64 {
        (sum(c, &["runner_requests", "runner_alarms"]) * self.wake_ms
            + sum(c, &["fetch_wappi"]) * self.wappi_ms
            + sum(c, &["fetch_telegram"]) * self.telegram_ms
            + sum(c, &["d1_calls"]) * self.d1_ms)
            / 1000.0
    }
}

/// The rows of the table: a label and the counters it adds up.
const ROWS: &[(&str, &[&str])] = &[
    ("DO storage get", &["do_storage_get"]),
    ("DO storage put", &["do_storage_put"]),
    ("DO storage delete", &["do_storage_delete"]),
    ("DO storage getAlarm", &["do_storage_get_alarm"]),
    ("DO storage setAlarm", &["do_storage_set_alarm"]),
    ("D1 statements", &["d1_statements"]),
    ("D1 calls (a batch is one)", &["d1_calls"]),
    ("D1 rows read", &["d1_rows_read"]),
    ("D1 rows written", &["d1_rows_written"]),
    ("subrequests: fetch to Wappi", &["fetch_wappi"]),
    ("subrequests: fetch to Telegram", &["fetch_telegram"]),
    ("Queue messages sent", &["queue_sends"]),
    ("Queue batches consumed", &["queue_batches"]),
    ("DO stub fetches (to any DO)", &["do_stub_fetches"]),
    ("runner DO requests", &["runner_requests"]),
    ("runner DO alarms", &["runner_alarms"]),
    (
        "other DO requests + alarms",
        &[
            "scheduler_requests",
            "scheduler_alarms",
            "broadcast_requests",
            "broadcast_alarms",
        ],
    ),
    ("Worker fetches (webhooks)", &["worker_fetches"]),
    ("Cron runs", &["cron_runs"]),
];

/// The counters as the Worker answers them: the runner's view when it shares the isolate of
/// the fetch handler (then they are one set of counters), else both added up.
async fn read_counts(w: &World<Worker>, profile: &str) -> anyhow::Result<Counts> {
    Ok(read_views(w, profile).await?.0)
}

/// [`read_counts`], and whether the runner and the fetch handler shared an isolate.
async fn read_views(w: &World<Worker>, profile: &str) -> anyhow::Result<(Counts, bool)> {
    let url = format!(
        "{}/__test/counts?profile={}",
        w.server.url(),
        urlencoding::encode(profile)
    );
    let v: serde_json::Value = reqwest::Client::new()
        .get(url)
        .header("X-Telegram-Bot-Api-Secret-Token", WEBHOOK_SECRET)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let view = |name: &str| -> Counts {
        v[name]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, n)| (k.clone(), n.as_f64().unwrap_or(0.0)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let runner = view("runner");
    if v["same_isolate"].as_bool() == Some(true) {
        Ok((runner, true))
    } else {
        Ok((plus(&[view("edge"), runner]), false))
    }
}

/// Reads the counters until nothing but the reads moves for two reads 600 ms apart; returns
/// the last reading and how many reads were made.
async fn settle(w: &World<Worker>, profile: &str, read: &Counts) -> anyhow::Result<(Counts, u32)> {
    let mut last = read_counts(w, profile).await?;
    let (mut reads, mut quiet) = (1, 0);
    let started = std::time::Instant::now();
    while quiet < 2 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "never settled"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        let now = read_counts(w, profile).await?;
        reads += 1;
        let moved = minus(&minus(&now, &last), read)
            .iter()
            .any(|(k, v)| k != "counts_reads" && v.abs() > 0.0);
        quiet = if moved { 0 } else { quiet + 1 };
        last = now;
    }
    Ok((last, reads))
}

/// What one mailing of `groups` groups costs, in its three phases: the preview (`/mailing`),
/// the run (✅ to the report, the runner at rest) and the delivery audit (one Cron pass).
async fn one_mailing(
    w: &World<Worker>,
    n: u32,
    groups: usize,
    read: &Counts,
) -> anyhow::Result<[Counts; 3]> {
    let user = 880_000 + i64::from(n);
    let (p, acc, _) = w.ready(user, n, groups, "Cost benchmark post").await;
    let profile = acc.profile.clone();
    let phase = |from: &Counts, to: &Counts, reads: u32| {
        minus(&minus(to, from), &times(read, f64::from(reads)))
    };
    let c0 = read_counts(w, &profile).await?;
    p.says("/mailing");
    let preview = p.hears("Предпросмотр").await;
    let (c1, k1) = settle(w, &profile, read).await?;
    let prior = w.wappi.deliveries().len();
    let before = w.tg.sent_to(user).len();
    p.presses(
        preview.message_id,
        &Person::<Server>::button(&preview, "✅"),
    );
    w.wappi
        .wait_for_deliveries(prior + groups, Duration::from_secs(60 + 2 * groups as u64))
        .await
        .map_err(anyhow::Error::msg)?;
    let started = std::time::Instant::now();
    while !w
        .tg
        .sent_to(user)
        .into_iter()
        .skip(before)
        .any(|m| m.text.starts_with('✅') || m.text.contains("завершена"))
    {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "no report");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (c2, k2) = settle(w, &profile, read).await?;
    w.server.run_cron("* * * * *").await;
    let (c3, k3) = settle(w, &profile, read).await?;
    Ok([
        phase(&c0, &c1, k1),
        phase(&c1, &c2, k2),
        phase(&c2, &c3, k3),
    ])
}

/// Two mailings (a fifth of `groups`, then `groups`) through the bot under `wrangler dev`;
/// per post is the difference over the difference in posts, the fixed part of a mailing
/// what is left of the smaller one. Then the monthly bill of `plan`.
async fn counts(groups: usize, plan: &Plan) -> anyhow::Result<()> {
    let small = (groups / 5).max(2);
    anyhow::ensure!(groups > small, "counts needs at least 3 groups");
    let w = worker_world_with(|vars| {
        vars.insert("GROUPCAST_TEST_HOOKS".into(), "1".into());
        // The production ceiling: 1 post a second, every gap longer than the engine's lead
        // (250 ms), so each post is armed and sent by alarms of its own, as in a long mailing.
        vars.insert("PROFILE_RATE_PER_SEC".into(), "1".into());
        vars.insert("DEFAULT_PACE".into(), "fast".into());
        // Below the gap: a progress edit after each post, as in a real mailing whose posts
        // are more than 3 s (the default interval) apart.
        vars.insert("PROGRESS_INTERVAL_SECS".into(), "0.5".into());
        // The audit is due at once; the benchmark runs the Cron pass that takes it.
        vars.insert("DELIVERY_AUDIT_DELAY_SECS".into(), "0".into());
    })
    .await;
    // One read of the counters costs a little itself (a Worker fetch, a stub fetch, a runner
    // request): measured here, taken off every phase.
    let (r0, same_isolate) = read_views(&w, PROBE_PROFILE).await?;
    let r1 = read_counts(&w, PROBE_PROFILE).await?;
    let read = minus(&r1, &r0);
    let a = one_mailing(&w, 1, small, &read).await?;
    let b = one_mailing(&w, 2, groups, &read).await?;
    // A Cron pass with nothing due: what every minute costs, and what the audit phase's Cron
    // pass costs besides the audit.
    let c0 = read_counts(&w, PROBE_PROFILE).await?;
    w.server.run_cron("* * * * *").await;
    let (c1, k) = settle(&w, PROBE_PROFILE, &read).await?;
    let cron = minus(&minus(&c1, &c0), &times(&read, f64::from(k)));
    let poke = asleep(&w, &read, &cron).await?;
    let d = (groups - small) as f64;
    let per_post: Vec<Counts> = (0..3)
        .map(|i| times(&minus(&b[i], &a[i]), 1.0 / d))
        .collect();
    let mut fixed: Vec<Counts> = (0..3)
        .map(|i| minus(&a[i], &times(&per_post[i], small as f64)))
        .collect();
    fixed[2] = minus(&fixed[2], &cron);
    let (post, mailing) = (plus(&per_post), plus(&fixed));
    println!(
        "worker counts (wrangler dev), mailings of {small} and {groups} groups at 1 post/s, \
         counted by the Worker; per post = difference / {d} posts, fixed = the {small}-group \
         mailing less its posts and less an idle Cron pass; the runner DO and the fetch handler \
         {} one isolate (one set of counters); one read of the counters, taken off: {}",
        if same_isolate {
            "shared"
        } else {
            "did not share"
        },
        fmt_counts(&read)
    );
    println!(
        "  {:<32} {:>9} {:>9} {:>9} {:>9} {:>13} {:>9} {:>9}",
        "per post:", "preview", "run", "audit", "total", "fixed/mailing", "Cron/min", "asleep"
    );
    for (label, keys) in ROWS {
        println!(
            "  {:<32} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>13.1} {:>9.1} {:>9.1}",
            label,
            sum(&per_post[0], keys),
            sum(&per_post[1], keys),
            sum(&per_post[2], keys),
            sum(&post, keys),
            sum(&mailing, keys),
            sum(&cron, keys),
            sum(&poke, keys),
        );
    }
    println!(
        "  (Cron/min: one Cron pass with nothing due, every minute; asleep: what that pass costs \
         more for each mailing running but asleep between posts, its recovery poke)"
    );
    let run = Run {
        post: &per_post[1],
        mailing: &fixed[1],
        poke: &poke,
    };
    bill(plan, &post, &mailing, &cron, &run);
    Ok(())
}

/// What one Cron pass costs for a mailing that is running but asleep (its pace's gap is 10
/// minutes; one post is out): the recovery poke every running mailing gets each minute (the
/// pass less an idle one, `cron`).
async fn asleep(w: &World<Worker>, read: &Counts, cron: &Counts) -> anyhow::Result<Counts> {
    let user = 880_003;
    let (p, acc, _) = w.ready(user, 3, 3, "Cost benchmark post").await;
    let told = w.tg.sent_to(user).len();
    p.says("/pace gap=10m");
    let started = std::time::Instant::now();
    while w.tg.sent_to(user).len() == told {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "no answer to /pace"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let prior = w.wappi.deliveries().len();
    p.starts_mailing().await;
    w.wappi
        .wait_for_deliveries(prior + 1, Duration::from_secs(60))
        .await
        .map_err(anyhow::Error::msg)?;
    let (c0, _) = settle(w, &acc.profile, read).await?;
    w.server.run_cron("* * * * *").await;
    let (c1, k) = settle(w, &acc.profile, read).await?;
    anyhow::ensure!(
        w.wappi.deliveries().len() == prior + 1,
        "the mailing was to sleep after its first post"
    );
    Ok(minus(
        &minus(&minus(&c1, &c0), &times(read, f64::from(k))),
        cron,
    ))
}

fn fmt_counts(c: &Counts) -> String {
    c.iter()
        .filter(|(k, v)| *k != "counts_reads" && v.abs() > 0.0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the runner does, for its duration: the run phase per post and per mailing, and the
/// poke of a mailing asleep.
struct Run<'a> {
    post: &'a Counts,
    mailing: &'a Counts,
    poke: &'a Counts,
}

/// The monthly bill of `plan` from the counts per post, per mailing, per Cron pass (one a
/// minute) and per minute a mailing runs (its poke).
fn bill(plan: &Plan, post: &Counts, mailing: &Counts, cron: &Counts, run: &Run<'_>) {
    use price::*;
    let (posts, mailings, cron_runs) = (plan.posts(), plan.mailings(), plan.days * 1440.0);
    let pokes = mailings * plan.run_minutes;
    let month = |keys: &[&str]| {
        sum(post, keys) * posts
            + sum(mailing, keys) * mailings
            + sum(cron, keys) * cron_runs
            + sum(run.poke, keys) * pokes
    };
    let over = |units: f64, included: f64, per_m: f64| (units - included).max(0.0) / 1e6 * per_m;
    let worker_requests = month(&["worker_fetches", "queue_batches", "cron_runs"]);
    let cpu_ms = posts * plan.step_us * plan.wasm_factor / 1000.0;
    let do_requests = month(&[
        "runner_requests",
        "runner_alarms",
        "scheduler_requests",
        "scheduler_alarms",
        "broadcast_requests",
        "broadcast_alarms",
    ]);
    let gb_s = (plan.runner_seconds(run.post) * posts
        + plan.runner_seconds(run.mailing) * mailings
        + plan.runner_seconds(run.poke) * pokes)
        * DO_GB;
    let do_read = month(&["do_storage_get", "do_storage_get_alarm"]);
    let do_written = month(&[
        "do_storage_put",
        "do_storage_delete",
        "do_storage_set_alarm",
    ]);
    let d1_read = month(&["d1_rows_read"]);
    let d1_written = month(&["d1_rows_written"]);
    let queue_ops = month(&["queue_sends"]) * QUEUE_OPS_PER_MESSAGE;
    let subrequests = month(&["fetch_wappi", "fetch_telegram"]);
    let lines = [
        ("Workers paid plan", String::new(), BASE_PER_MONTH),
        (
            "Worker requests (webhooks, queue batches, Cron)",
            format!("{:.2} M", worker_requests / 1e6),
            over(
                worker_requests,
                WORKER_REQUESTS_INCLUDED,
                WORKER_REQUESTS_PER_M,
            ),
        ),
        (
            "Worker CPU (engine steps)",
            format!("{:.2} M ms", cpu_ms / 1e6),
            over(cpu_ms, WORKER_CPU_MS_INCLUDED, WORKER_CPU_PER_M_MS),
        ),
        (
            "DO requests + alarms",
            format!("{:.2} M", do_requests / 1e6),
            over(do_requests, DO_REQUESTS_INCLUDED, DO_REQUESTS_PER_M),
        ),
        (
            "DO duration",
            format!("{:.2} M GB-s", gb_s / 1e6),
            over(gb_s, DO_GB_S_INCLUDED, DO_PER_M_GB_S),
        ),
        (
            "DO storage rows read",
            format!("{:.2} M", do_read / 1e6),
            over(do_read, ROWS_READ_INCLUDED, ROWS_READ_PER_M),
        ),
        (
            "DO storage rows written",
            format!("{:.2} M", do_written / 1e6),
            over(do_written, ROWS_WRITTEN_INCLUDED, ROWS_WRITTEN_PER_M),
        ),
        (
            "D1 rows read",
            format!("{:.2} M", d1_read / 1e6),
            over(d1_read, ROWS_READ_INCLUDED, ROWS_READ_PER_M),
        ),
        (
            "D1 rows written",
            format!("{:.2} M", d1_written / 1e6),
            over(d1_written, ROWS_WRITTEN_INCLUDED, ROWS_WRITTEN_PER_M),
        ),
        (
            "Queue operations",
            format!("{:.2} M", queue_ops / 1e6),
            over(queue_ops, QUEUE_OPS_INCLUDED, QUEUE_OPS_PER_M),
        ),
        (
            "subrequests (not billed)",
            format!("{:.2} M", subrequests / 1e6),
            0.0,
        ),
    ];
    println!(
        "worker monthly cost, Workers paid plan: accounts={} mailings_per_day={} groups={} \
         days={} run_minutes={} -> {:.2} M mailings, {:.2} M posts a month",
        plan.accounts,
        plan.mailings_per_day,
        plan.groups,
        plan.days,
        plan.run_minutes,
        mailings / 1e6,
        posts / 1e6
    );
    println!(
        "  assumptions: CPU per post step_us={} x wasm_factor={} (the step runs in the runner DO, \
         which is billed by duration, not CPU: counted as Worker CPU too, an upper bound); DO \
         duration = 128 MB x the runner's wall time, per request or alarm wake_ms={} plus each \
         call it waits on: wappi_ms={} telegram_ms={} d1_ms={} (not billed while it sleeps \
         between alarms); get/getAlarm = 1 row read, put/delete/setAlarm = 1 row written; \
         3 queue operations a message; Cron every minute, poking each running mailing \
         (run_minutes pokes a mailing); storage (GB-month) not counted",
        plan.step_us, plan.wasm_factor, plan.wake_ms, plan.wappi_ms, plan.telegram_ms, plan.d1_ms
    );
    let mut total = 0.0;
    for (label, units, usd) in &lines {
        total += usd;
        println!("  {label:<48} {units:>16} {usd:>10.2} USD");
    }
    println!(
        "  {:<48} {:>16} {total:>10.2} USD a month ({:.4} USD per account)",
        "total",
        "",
        total / plan.accounts
    );
    println!(
        "  prices (looked up 2026-12-05): Workers $5/month, 10 M requests then $0.30/M, 30 M CPU \
         ms then $0.02/M (developers.cloudflare.com/workers/platform/pricing); DO 1 M requests \
         then $0.15/M, 400k GB-s then $12.50/M, rows read 25 B then $0.001/M, rows written 50 M \
         then $1.00/M (developers.cloudflare.com/durable-objects/platform/pricing); D1 the same \
         row prices (developers.cloudflare.com/d1/platform/pricing); Queues 1 M operations then \
         $0.40/M (developers.cloudflare.com/queues/platform/pricing)"
    );
}
