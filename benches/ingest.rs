//! Ingestion throughput against a bare `serde_json` parse of the same bytes, measured in
//! one run (machines here are noisy, so only the ratio is meaningful), plus peak memory.
//!
//! `cargo bench --bench ingest [-- DIR]` (default: ../shared/datasets).
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::type_complexity)]

use std::path::PathBuf;
use std::time::Instant;

// The allocator of the `autoharness` binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use autoharness::trace::scan::scan;
use autoharness::trace::walk::walk;

fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"));
    if !dir.exists() {
        eprintln!("SKIPPED: {} not found", dir.display());
        return;
    }
    let (files, _) = walk(std::slice::from_ref(&dir));
    let total_bytes: u64 = files.iter().filter_map(|f| std::fs::metadata(&f.path).ok()).map(|m| m.len()).sum();
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);

    // Warm the page cache so both sides read from memory.
    for f in &files {
        let _ = std::fs::read(&f.path);
    }

    let mut rows = Vec::new();
    for round in 0..3 {
        // Bare parse: read + serde_json::from_slice::<Value> (streamed for JSONL), one thread per core.
        let t = Instant::now();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs).build().unwrap();
        let parsed: usize = pool.install(|| {
            use rayon::prelude::*;
            files
                .par_iter()
                .map(|f| {
                    let bytes = std::fs::read(&f.path).unwrap_or_default();
                    serde_json::Deserializer::from_slice(&bytes)
                        .into_iter::<serde_json::Value>()
                        .take_while(Result::is_ok)
                        .count()
                })
                .sum()
        });
        let bare = t.elapsed().as_secs_f64();

        reset_peak_rss();
        let before = peak_rss_kb().unwrap_or(0);
        let t = Instant::now();
        let result = scan(std::slice::from_ref(&dir), jobs, |_, _, _| false, |_| None::<()>, &|_| {});
        let ingest = t.elapsed().as_secs_f64();
        let peak = peak_rss_kb().unwrap_or(0);
        let traces: usize = result.files.iter().map(|f| f.counts.traces).sum();
        rows.push((round, bare, ingest, parsed, traces, before, peak));
    }
    let mb = total_bytes as f64 / 1e6;
    println!("ingest benchmark: {} files, {:.1} MB, {} threads", files.len(), mb, jobs);
    println!(
        "{:>5} {:>12} {:>12} {:>8} {:>10} {:>8} {:>12}",
        "round", "bare MB/s", "ingest MB/s", "ratio", "values", "traces", "peak RSS MB"
    );
    for (round, bare, ingest, parsed, traces, _before, peak) in &rows {
        println!(
            "{:>5} {:>12.0} {:>12.0} {:>8.2} {:>10} {:>8} {:>12.0}",
            round,
            mb / bare,
            mb / ingest,
            ingest / bare,
            parsed,
            traces,
            *peak as f64 / 1024.0
        );
    }
    let best = |f: fn(&(i32, f64, f64, usize, usize, u64, u64)) -> f64| rows.iter().map(f).fold(f64::MAX, f64::min);
    let bare = best(|r| r.1);
    let ingest = best(|r| r.2);
    println!(
        "best of 3: bare {:.0} MB/s, ingest {:.0} MB/s, ingest/bare time ratio {:.2} (target ≤ 3.0)",
        mb / bare,
        mb / ingest,
        ingest / bare
    );
}
