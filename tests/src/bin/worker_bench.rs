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
//! Usage: `groupcast-worker-bench [size] [pacing] [press [groups]]` (default: all three).

use groupcast_e2e::fake_wappi::Pacing;
use groupcast_e2e::worker_harness::{assert_worker_available, repo_root, worker_world_with};
use std::process::{Command, Stdio};
use std::time::Duration;

/// One MiB, the upload target.
const TARGET_GZIP_KIB: f64 = 1024.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let want = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
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
