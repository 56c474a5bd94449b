//! The collage in wasm: the same ten photos built by the Cloudflare Worker (the release build of
//! `crates/worker` made by `scripts/worker-setup`) inside workerd, under `wrangler dev`, through
//! its test route `POST /__test/collage?n=N` (on with `GROUPCAST_TEST_HOOKS=1`).
//!
//! Time is taken from outside, because inside Workers `Date.now()` stands still during pure
//! computation: each round times the round trip of `?n=0` (the body sent and read, no build)
//! and of `?n=K`, and one build costs the difference divided by K. The figure is the median over
//! [`ROUNDS`] rounds, after one warm-up call. Native is measured in the same rounds (one child
//! process of the native benchmark after each wasm round, so both meet the same background
//! load), and the ratio wasm/native is given against its target (≤ 2.5).
//!
//! With `GROUPCAST_COLLAGE_WORKER_URL=http://127.0.0.1:PORT` it measures a Worker already running
//! there instead (e.g. another build; it must have `GROUPCAST_TEST_HOOKS=1` and the harness's
//! webhook secret).
//!
//! Memory is the Worker's wasm linear memory, which never shrinks: its size after the last
//! call is the module's peak (target ≤ 64 MB; the Workers limit is 128 MB per isolate).

use super::{median, Measured, RUNS_PER_PROCESS};
use groupcast_e2e::fake_telegram::FakeTelegram;
use groupcast_e2e::harness::WEBHOOK_SECRET;
use groupcast_e2e::worker_harness::{repo_root, Worker};
use serde::Deserialize;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Timed rounds (each: one `n=0` and one `n=K` call, then one native child process).
const ROUNDS: usize = 7;
/// Builds per timed call.
const BUILDS_PER_CALL: u32 = 3;
const TARGET_RATIO: f64 = 2.5;
const TARGET_PEAK_MB: f64 = 64.0;
const MB: f64 = 1024.0 * 1024.0;

/// What `POST /__test/collage` answers.
#[derive(Deserialize)]
struct Answer {
    width: Option<u32>,
    height: Option<u32>,
    bytes: Option<usize>,
    memory_before_bytes: u64,
    memory_after_bytes: u64,
}

/// The files the wasm run needs; the first one missing, if any.
pub fn missing_piece() -> Option<&'static str> {
    let root = repo_root();
    [
        "node_modules/.bin/node",
        "node_modules/wrangler/bin/wrangler.js",
        "crates/worker/build/index.js",
        "crates/worker/build/index_bg.wasm",
    ]
    .into_iter()
    .find(|p| !root.join(p).exists())
}

/// The line printed instead of figures when the Worker is not built.
pub fn not_built_line(missing: &str) -> String {
    format!(
        "collage wasm: not measured: {missing} is missing; build the Worker with \
         scripts/worker-setup (release build, crates/worker/build/)"
    )
}

/// Runs the wasm benchmark on the photos `photos` (also in `dir`, for the native children).
pub fn bench(dir: &Path, photos: &[Vec<u8>]) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(dir, photos))
}

async fn run(dir: &Path, photos: &[Vec<u8>]) -> anyhow::Result<()> {
    if let Ok(url) = std::env::var("GROUPCAST_COLLAGE_WORKER_URL") {
        let what = format!("the Worker at {url}");
        return measure(&url, &what, dir, photos).await;
    }
    let tg = FakeTelegram::start().await;
    let state = tempfile::tempdir()?;
    // Wappi is never called by this route: a closed loopback port will do.
    let mut vars = Worker::vars(&tg.url(), "http://127.0.0.1:9");
    vars.insert("GROUPCAST_TEST_HOOKS".into(), "1".into());
    let mut worker = Worker::start(vars, state.path(), &tg).await;
    let what = "crates/worker/build, under wrangler dev";
    let result = measure(&worker.url(), what, dir, photos).await;
    worker.stop().await;
    result
}

/// Measures the Worker at `worker_url`; `what` names it in the report.
async fn measure(
    worker_url: &str,
    what: &str,
    dir: &Path,
    photos: &[Vec<u8>],
) -> anyhow::Result<()> {
    let body = framed(photos);
    let url = format!("{worker_url}/__test/collage");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let call = |n: u32, body: Vec<u8>| {
        let req = http
            .post(format!("{url}?n={n}"))
            .header("x-telegram-bot-api-secret-token", WEBHOOK_SECRET)
            .body(body);
        async move {
            let start = Instant::now();
            let resp = req.send().await?;
            let status = resp.status();
            let text = resp.text().await?;
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            if status == reqwest::StatusCode::NOT_FOUND {
                anyhow::bail!(
                    "the Worker answered 404 to /__test/collage: its build predates the route; \
                     rebuild it with scripts/worker-setup"
                );
            }
            anyhow::ensure!(
                status.is_success(),
                "/__test/collage?n={n}: {status} {text}"
            );
            let answer: Answer = serde_json::from_str(&text)?;
            anyhow::Ok((ms, answer))
        }
    };

    // The module's memory before it has seen any photo, then the warm-up build.
    let (_, start) = call(0, Vec::new()).await?;
    let (_, warm) = call(1, body.clone()).await?;
    let exe = std::env::current_exe()?;
    let mut native = Measured::default();
    let mut per_build_ms = Vec::new();
    let mut last = None;
    for _ in 0..ROUNDS {
        let (empty_ms, _) = call(0, body.clone()).await?;
        let (full_ms, answer) = call(BUILDS_PER_CALL, body.clone()).await?;
        per_build_ms.push((full_ms - empty_ms) / f64::from(BUILDS_PER_CALL));
        last = Some(answer);
        let mut cmd = Command::new(&exe);
        cmd.arg("--child")
            .arg(dir)
            .arg(RUNS_PER_PROCESS.to_string());
        native.add("native", cmd)?;
    }
    let last = last.expect("at least one round");

    let (wasm_ms, native_ms) = (median(&per_build_ms), median(&native.times_ms));
    let ratio = wasm_ms / native_ms;
    let peak_mb = last.memory_after_bytes as f64 / MB;
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!(
        "collage wasm (workerd {}, {what}): {} photos → {}×{} JPEG, {} KB",
        workerd_version(),
        photos.len(),
        warm.width.unwrap_or(0),
        warm.height.unwrap_or(0),
        warm.bytes.unwrap_or(0) / 1000,
    );
    println!(
        "  wasm   median {wasm_ms:>6.1} ms per build ({ROUNDS} rounds: round trip of n={BUILDS_PER_CALL} minus n=0, / {BUILDS_PER_CALL})"
    );
    println!(
        "  native median {native_ms:>6.1} ms per build ({} runs in {ROUNDS} processes, between the wasm rounds)",
        native.times_ms.len()
    );
    println!(
        "  ratio wasm/native: {ratio:.2} (target ≤ {TARGET_RATIO}) {}",
        verdict(ratio <= TARGET_RATIO)
    );
    println!(
        "  wasm linear memory peak {peak_mb:.1} MB (target ≤ {TARGET_PEAK_MB:.0} MB; Workers limit 128 MB) {}; \
         {:.1} MB at start, {:.1} MB with the photos read",
        verdict(peak_mb <= TARGET_PEAK_MB),
        start.memory_before_bytes as f64 / MB,
        warm.memory_before_bytes as f64 / MB,
    );
    Ok(())
}

/// The photos as the route takes them: each preceded by its length, `u32` little-endian.
fn framed(photos: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(photos.iter().map(|p| p.len() + 4).sum());
    for p in photos {
        let len = u32::try_from(p.len()).expect("a photo under 4 GB");
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(p);
    }
    body
}

/// `workerd --version` of the pinned wrangler (e.g. `2026-11-17`), or `?`.
fn workerd_version() -> String {
    let bin = repo_root().join("node_modules/@cloudflare/workerd-linux-64/bin/workerd");
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().last().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
