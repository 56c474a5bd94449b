//! `groupcast-collage-bench`: the collage benchmark (run by `scripts/bench`). Builds a collage of
//! ten 1280×960 JPEGs (synthetic, with detail; every third one EXIF-rotated to portrait) with
//! groupcast's builder and, in the same run, with Python Pillow (`scripts/collage_reference.py`)
//! given exactly the same layout, quality and chroma subsampling, and prints the median wall
//! time of each, the ratio ours/Pillow (target ≤ 1.0) and each one's peak memory.
//!
//! Each side runs in fresh processes ([`PROCESSES`] of them, each doing one untimed warm-up and
//! [`RUNS_PER_PROCESS`] timed builds from photo bytes already in memory to JPEG bytes). Peak
//! memory is the process's VmHWM (peak resident set, from /proc) at the end; the figure "over
//! start" subtracts the resident set measured just before the first build.
//!
//! The same collage in wasm, built by the Cloudflare Worker under `wrangler dev`, is the `wasm`
//! part (module `wasm`): wasm/native time (target ≤ 2.5) and the wasm memory peak (target
//! ≤ 64 MB).
//!
//! Usage: `groupcast-collage-bench [collage] [wasm]` — no arguments run both (the wasm part only
//! when the Worker is built, otherwise a line says how to build it); any other argument list
//! without these names skips them (so `scripts/bench pacing` runs only the pacing figures). With
//! `GROUPCAST_COLLAGE_DIR=DIR` the photos, `layout.json`, `ours.jpg` and `pillow.jpg` are kept
//! in DIR to look at. `--child DIR RUNS` is the measured child process.

use anyhow::{bail, Context};
use groupcast_core::collage::{build_collage, fixtures, CollageOptions};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[path = "collage_bench/wasm.rs"]
mod wasm;

const PHOTOS: u32 = 10;
const PROCESSES: usize = 7;
const RUNS_PER_PROCESS: usize = 3;
/// The chroma subsampling of our JPEG encoder; Pillow is told to use the same.
const SUBSAMPLING: &str = "4:2:0";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let dir = PathBuf::from(args.get(1).context("--child DIR RUNS")?);
        let runs = args.get(2).context("--child DIR RUNS")?.parse()?;
        return child(&dir, runs);
    }
    let asked = |name: &str| args.iter().any(|a| a == name);
    let (native, wasm) = (args.is_empty() || asked("collage"), asked("wasm"));
    if !native && !wasm && !args.is_empty() {
        return Ok(());
    }
    let temp = tempfile::tempdir()?;
    let dir = match std::env::var_os("GROUPCAST_COLLAGE_DIR") {
        Some(kept) => PathBuf::from(kept),
        None => temp.path().to_path_buf(),
    };
    std::fs::create_dir_all(&dir)?;
    let photos = write_photos(&dir)?;
    if native {
        bench(&dir, &photos)?;
    }
    match wasm::missing_piece() {
        // Asked for by name: a missing Worker is an error, not a skipped figure.
        Some(missing) if wasm => bail!("{}", wasm::not_built_line(missing)),
        Some(missing) if args.is_empty() => println!("{}", wasm::not_built_line(missing)),
        None if wasm || args.is_empty() => wasm::bench(&dir, &read_all(&photos)?)?,
        _ => {}
    }
    Ok(())
}

fn bench(dir: &Path, photos: &[PathBuf]) -> anyhow::Result<()> {
    let input_bytes: usize = photos
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len() as usize).unwrap_or(0))
        .sum();

    // One build here fixes the layout and quality that both sides then reproduce.
    let blobs = read_all(photos)?;
    let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    let opts = CollageOptions::default();
    let collage = build_collage(&refs, &opts)?;
    let layout = json!({
        "photos": photos,
        "width": collage.width,
        "height": collage.height,
        "quality": collage.quality,
        "subsampling": SUBSAMPLING,
        "background": opts.background,
        "cells": collage.cells.iter().map(|c| json!({
            "photo": c.photo, "x": c.x, "y": c.y, "width": c.width, "height": c.height,
        })).collect::<Vec<_>>(),
    });
    let layout_path = dir.join("layout.json");
    std::fs::write(&layout_path, serde_json::to_vec_pretty(&layout)?)?;

    ensure_pillow()?;
    let exe = std::env::current_exe()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/collage_reference.py");
    let (mut ours, mut pillow) = (Measured::default(), Measured::default());
    // Alternate the two sides so that both meet the same background load.
    for _ in 0..PROCESSES {
        let mut cmd = Command::new(&exe);
        cmd.arg("--child")
            .arg(dir)
            .arg(RUNS_PER_PROCESS.to_string());
        ours.add("ours", cmd)?;
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg(&layout_path)
            .arg(RUNS_PER_PROCESS.to_string())
            .arg(dir.join("pillow.jpg"));
        pillow.add("Pillow", cmd)?;
    }

    println!(
        "collage: {PHOTOS} JPEGs of 1280×960 ({} KB in; {} rotated by EXIF) → {}×{} JPEG, quality {}, {SUBSAMPLING}",
        input_bytes / 1000,
        (0..PHOTOS).filter(|i| orientation(*i) != 1).count(),
        collage.width,
        collage.height,
        collage.quality,
    );
    let runs = PROCESSES * RUNS_PER_PROCESS;
    for (name, m) in [
        ("ours (Rust)", &ours),
        (pillow_label(&pillow).as_str(), &pillow),
    ] {
        println!(
            "  {name:<15} median {:>6.1} ms wall, {:>6.1} ms CPU, over {runs} runs in {PROCESSES} processes; output {} KB; peak RSS {:.1} MB ({:.1} MB over start)",
            median(&m.times_ms),
            median(&m.cpu_ms),
            m.output_bytes / 1000,
            m.peak_kib as f64 / 1024.0,
            (m.peak_kib - m.base_kib) as f64 / 1024.0,
        );
    }
    println!(
        "  ratio ours/Pillow: {:.2} wall, {:.2} CPU (target ≤ 1.0)",
        median(&ours.times_ms) / median(&pillow.times_ms),
        median(&ours.cpu_ms) / median(&pillow.cpu_ms),
    );
    Ok(())
}

/// Figures gathered from one side's child processes.
#[derive(Default)]
struct Measured {
    version: String,
    times_ms: Vec<f64>,
    /// CPU time of the measuring thread per run (from /proc/thread-self/schedstat).
    cpu_ms: Vec<f64>,
    /// The largest peak and start resident sets over the processes, KiB.
    peak_kib: u64,
    base_kib: u64,
    output_bytes: usize,
}

impl Measured {
    /// Runs one child and merges what it prints.
    fn add(&mut self, name: &str, mut command: Command) -> anyhow::Result<()> {
        let out = command
            .output()
            .with_context(|| format!("starting the {name} child"))?;
        if !out.status.success() {
            bail!(
                "{name} child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for line in String::from_utf8(out.stdout)?.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "version" => self.version = value.to_string(),
                "time_ms" => self.times_ms.push(value.parse()?),
                "cpu_ms" => self.cpu_ms.push(value.parse()?),
                "base_kib" => self.base_kib = self.base_kib.max(value.parse()?),
                "peak_kib" => self.peak_kib = self.peak_kib.max(value.parse()?),
                "bytes" => self.output_bytes = value.parse()?,
                _ => {}
            }
        }
        anyhow::ensure!(!self.times_ms.is_empty(), "{name} child printed no times");
        Ok(())
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn pillow_label(m: &Measured) -> String {
    format!("Pillow {}", m.version)
}

/// The measured child: builds the collage of DIR's photos once untimed, then `runs` times timed.
fn child(dir: &Path, runs: usize) -> anyhow::Result<()> {
    let blobs = read_all(&photo_paths(dir))?;
    let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    let opts = CollageOptions::default();
    println!("version {}", env!("CARGO_PKG_VERSION"));
    println!("base_kib {}", status_kib("VmRSS")?);
    let mut collage = build_collage(&refs, &opts)?;
    for _ in 0..runs {
        let (start, cpu_start) = (Instant::now(), cpu_ns()?);
        collage = build_collage(&refs, &opts)?;
        println!("time_ms {:.3}", start.elapsed().as_secs_f64() * 1000.0);
        println!("cpu_ms {:.3}", (cpu_ns()? - cpu_start) as f64 / 1e6);
    }
    println!("bytes {}", collage.jpeg.len());
    std::fs::write(dir.join("ours.jpg"), &collage.jpeg)?;
    println!("peak_kib {}", status_kib("VmHWM")?);
    Ok(())
}

fn orientation(i: u32) -> u8 {
    if i % 3 == 1 {
        6
    } else {
        1
    }
}

fn photo_paths(dir: &Path) -> Vec<PathBuf> {
    (0..PHOTOS)
        .map(|i| dir.join(format!("photo-{i}.jpg")))
        .collect()
}

fn write_photos(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let paths = photo_paths(dir);
    for (i, path) in (0..PHOTOS).zip(&paths) {
        std::fs::write(
            path,
            fixtures::synthetic_jpeg(1280, 960, i, 12, orientation(i)),
        )?;
    }
    Ok(paths)
}

fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Vec<u8>>> {
    paths
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .collect()
}

/// CPU time this thread has run, in ns (first field of /proc/thread-self/schedstat).
fn cpu_ns() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    Ok(stat
        .split_whitespace()
        .next()
        .context("empty schedstat")?
        .parse()?)
}

/// A memory figure of this process from /proc/self/status, in KiB.
fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .with_context(|| format!("{field} not in /proc/self/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("no value")?
        .parse()?)
}

/// Installs Pillow for the current user when `python3` cannot import it.
fn ensure_pillow() -> anyhow::Result<()> {
    let has = |cmd: &mut Command| cmd.output().map(|o| o.status.success()).unwrap_or(false);
    if has(Command::new("python3").args(["-c", "import PIL"])) {
        return Ok(());
    }
    eprintln!("installing Pillow: python3 -m pip install --user pillow");
    anyhow::ensure!(
        has(Command::new("python3").args(["-m", "pip", "install", "--user", "--quiet", "pillow"])),
        "could not install Pillow (python3 -m pip install --user pillow)"
    );
    Ok(())
}
