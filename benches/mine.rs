//! `mine` end to end against a bare `serde_json` parse of the same bytes and against the
//! Python baseline, all measured side by side in one run (machines here are noisy, so only
//! the ratios are meaningful), plus peak memory.
//!
//! `cargo bench --bench mine [-- DIR]` (default: ../shared/datasets).
//!
//! Per round: (a) bare parse, (b) `mine` into a fresh store without cases, then into another
//! fresh store with cases, (c) `mine` again over the unchanged folder with the store of (b),
//! (d) the Python baseline as a subprocess. Nothing here asserts a timing.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use autoharness::flow::mine::mine;
use autoharness::mine::{MineOptions, MineResult};
use autoharness::store::{Store, runtime};
use autoharness::trace::walk::walk;

// The allocator of the `autoharness` binary (src/main.rs), so `mine` here runs as it does
// for users; the bare parse gets the same allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 5;
const PYTHON: &str = "/tmp/benchvenv/bin/python";
const BASELINE: &str = "/work/shared/bench/mining/baseline_mine.py";

fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// One measured phase: wall time and the process's peak RSS during it.
#[derive(Clone, Copy, Default)]
struct Phase {
    secs: f64,
    peak_kb: u64,
}

fn measure<T>(f: impl FnOnce() -> T) -> (T, Phase) {
    reset_peak_rss();
    let t = Instant::now();
    let out = f();
    let secs = t.elapsed().as_secs_f64();
    (out, Phase { secs, peak_kb: peak_rss_kb().unwrap_or(0) })
}

fn bare_parse(files: &[PathBuf], jobs: usize) -> usize {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs).build().expect("rayon pool");
    pool.install(|| {
        use rayon::prelude::*;
        files
            .par_iter()
            .map(|p| {
                let bytes = std::fs::read(p).unwrap_or_default();
                serde_json::Deserializer::from_slice(&bytes)
                    .into_iter::<serde_json::Value>()
                    .take_while(Result::is_ok)
                    .count()
            })
            .sum()
    })
}

fn options(dir: &Path, work: &Path, jobs: usize, write_cases: bool) -> MineOptions {
    MineOptions {
        paths: vec![dir.to_path_buf()],
        harness: "bench".into(),
        since: None,
        max_cases_per_cluster: 5,
        assume_failed: false,
        jobs,
        join_threshold: 0.5,
        holdout_share: 0.2,
        evals_dir: work.join("evals"),
        write_cases,
        summarize: None,
        judge: None,
        feedback: Default::default(),
    }
}

/// Mine `opts` into the store at `db` (created when missing).
fn run_mine(rt: &tokio::runtime::Runtime, db: &Path, opts: &MineOptions) -> MineResult {
    rt.block_on(async {
        let store = Store::open(db).await.expect("open store");
        let r = mine(&store, opts, &|_: &str| {}).await.expect("mine");
        store.close().await;
        r
    })
}

/// Run the Python baseline; wall time and the child's own peak RSS (from `wait4`).
fn run_baseline(dir: &Path, out: &Path) -> Result<Phase, String> {
    let t = Instant::now();
    let child = Command::new(PYTHON)
        .arg(BASELINE)
        .arg(dir)
        .arg("-o")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {PYTHON}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; the pointers are valid for the call.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = t.elapsed().as_secs_f64();
    if rc != pid {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        return Err(format!("baseline failed (status {status}): {}", err.trim()));
    }
    // ru_maxrss is in KiB on Linux.
    Ok(Phase { secs, peak_kb: usage.ru_maxrss as u64 })
}

struct Round {
    bare: Phase,
    values: usize,
    first: Phase,
    cases: Phase,
    remine: Phase,
    baseline: Option<Phase>,
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
    let dir = dir.canonicalize().unwrap_or(dir);
    let (walked, _) = walk(std::slice::from_ref(&dir));
    let files: Vec<PathBuf> = walked.iter().map(|f| f.path.clone()).collect();
    let total_bytes: u64 = files.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let python = Path::new(PYTHON).exists() && Path::new(BASELINE).exists();
    if !python {
        eprintln!("\n*** BASELINE SKIPPED: {PYTHON} or {BASELINE} is missing ***");
        eprintln!(
            "*** set it up: python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install scikit-learn numpy ***\n"
        );
    }
    let rt = runtime().expect("runtime");

    // Warm the page cache so every side reads from memory.
    for p in &files {
        let _ = std::fs::read(p);
    }

    let mut rows: Vec<Round> = Vec::new();
    let mut last: Option<(MineResult, MineResult, MineResult)> = None;
    for _ in 0..ROUNDS {
        let work = tempfile::tempdir().expect("tempdir");
        let (values, bare) = measure(|| bare_parse(&files, jobs));

        let plain = options(&dir, &work.path().join("plain"), jobs, false);
        let (r_first, first) = measure(|| run_mine(&rt, &work.path().join("plain/state.db"), &plain));

        let with_cases = options(&dir, &work.path().join("cases"), jobs, true);
        let db = work.path().join("cases/state.db");
        let (r_cases, cases) = measure(|| run_mine(&rt, &db, &with_cases));
        let (r_remine, remine) = measure(|| run_mine(&rt, &db, &with_cases));

        let baseline = if python {
            match run_baseline(&dir, &work.path().join("baseline.json")) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("*** BASELINE FAILED: {e} ***");
                    None
                }
            }
        } else {
            None
        };
        rows.push(Round { bare, values, first, cases, remine, baseline });
        last = Some((r_first, r_cases, r_remine));
    }

    let mb_total = total_bytes as f64 / 1e6;
    println!("mine benchmark: {} files, {:.1} MB, {} threads, {}", files.len(), mb_total, jobs, dir.display());
    if let Some((first, cases, remine)) = &last {
        let s = &first.summary;
        println!(
            "  first mine: {} trace files, {} traces ({} failed), {} failures, {} clusters, {} file errors",
            s.trace_files, s.counts.traces, s.counts.failed, s.failures_total, s.clusters_total, s.file_errors
        );
        println!(
            "  with cases: {} cases written; re-mine: {} of {} files skipped unchanged, {} new failures, {} new clusters, \
             {} cases written, {} unchanged",
            cases.summary.cases_written,
            remine.summary.skipped_unchanged,
            remine.summary.files,
            remine.summary.new_failures,
            remine.summary.new_clusters,
            remine.summary.cases_written,
            remine.summary.cases_unchanged
        );
    }
    println!();
    println!(
        "{:>5} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} | {:>8} {:>9} {:>10} | {:>7} {:>7} {:>7} {:>7} {:>7}",
        "round",
        "bare s",
        "mine s",
        "+cases s",
        "remine s",
        "python s",
        "mine MB/s",
        "mine/bare",
        "py/mine",
        "remine/1st",
        "bare MB",
        "mine MB",
        "cases MB",
        "remn MB",
        "py MB"
    );
    for (i, r) in rows.iter().enumerate() {
        let py = r.baseline.map(|p| format!("{:.3}", p.secs)).unwrap_or_else(|| "-".into());
        let py_ratio = r.baseline.map(|p| format!("{:.1}", p.secs / r.first.secs)).unwrap_or_else(|| "-".into());
        let py_mb = r.baseline.map(|p| format!("{:.0}", mb(p.peak_kb))).unwrap_or_else(|| "-".into());
        println!(
            "{:>5} {:>8.3} {:>9.3} {:>9.3} {:>9.4} {:>9} {:>9.0} | {:>8.2} {:>9} {:>10.4} | {:>7.0} {:>7.0} {:>7.0} {:>7.0} {:>7}",
            i,
            r.bare.secs,
            r.first.secs,
            r.cases.secs,
            r.remine.secs,
            py,
            mb_total / r.first.secs,
            r.first.secs / r.bare.secs,
            py_ratio,
            r.remine.secs / r.first.secs,
            mb(r.bare.peak_kb),
            mb(r.first.peak_kb),
            mb(r.cases.peak_kb),
            mb(r.remine.peak_kb),
            py_mb
        );
    }
    let values: Vec<usize> = rows.iter().map(|r| r.values).collect();
    if values.windows(2).any(|w| w[0] != w[1]) {
        eprintln!("warning: the bare parse counted different values across rounds: {values:?}");
    }

    let best = |f: fn(&Round) -> Option<f64>| rows.iter().filter_map(f).fold(f64::INFINITY, f64::min);
    let bare = best(|r| Some(r.bare.secs));
    let first = best(|r| Some(r.first.secs));
    let cases = best(|r| Some(r.cases.secs));
    let remine = best(|r| Some(r.remine.secs));
    let baseline = best(|r| r.baseline.map(|p| p.secs));
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!();
    println!("best of {ROUNDS}:");
    println!(
        "  bare parse   {:>8.3} s {:>6.0} MB/s   ({} JSON values)",
        bare,
        mb_total / bare,
        values.first().copied().unwrap_or(0)
    );
    println!("  mine         {:>8.3} s {:>6.0} MB/s   (no cases, fresh store)", first, mb_total / first);
    println!("  mine + cases {:>8.3} s {:>6.0} MB/s   (fresh store)", cases, mb_total / cases);
    println!("  re-mine      {:>8.4} s               (unchanged folder, same store, cases on)", remine);
    if baseline.is_finite() {
        println!(
            "  python       {:>8.3} s {:>6.0} MB/s   (baseline_mine.py, subprocess)",
            baseline,
            mb_total / baseline
        );
    } else {
        println!("  python       SKIPPED");
    }
    println!("ratios (best times):");
    let r = first / bare;
    println!("  mine/bare        {:>7.2}  target ≤ 3      {}", r, verdict(r <= 3.0));
    let r = cases / bare;
    println!("  mine+cases/bare  {:>7.2}  (info)", r);
    if baseline.is_finite() {
        let r = baseline / first;
        println!("  baseline/mine    {:>7.1}  target ≥ 10     {}", r, verdict(r >= 10.0));
    } else {
        println!("  baseline/mine    SKIPPED (no Python venv)");
    }
    let r = remine / cases;
    println!("  remine/first     {:>7.4}  target ≤ 0.05   {}   (vs the first run with cases)", r, verdict(r <= 0.05));
    let max_peak = |f: fn(&Round) -> u64| rows.iter().map(f).max().unwrap_or(0);
    println!(
        "peak RSS (max over rounds): bare {:.0} MB, mine {:.0} MB, mine+cases {:.0} MB, re-mine {:.0} MB, python {}",
        mb(max_peak(|r| r.bare.peak_kb)),
        mb(max_peak(|r| r.first.peak_kb)),
        mb(max_peak(|r| r.cases.peak_kb)),
        mb(max_peak(|r| r.remine.peak_kb)),
        if python { format!("{:.0} MB", mb(max_peak(|r| r.baseline.map_or(0, |p| p.peak_kb)))) } else { "-".into() }
    );
}
