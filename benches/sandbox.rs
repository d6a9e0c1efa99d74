//! Sandbox overhead per trial against running the same command bare, measured side by
//! side in one run (only the differences are meaningful on a noisy machine), with each
//! isolation this host offers; then the trial runner's throughput on the bundled example
//! harness with 1 and 2 jobs.
//!
//! Then the cost of the harness root's size: trials of `true` on a tiny root and on a 50 MB
//! root (2,000 files of 25 KB, like vendored packages), side by side. Each trial gets a
//! private view of the version's shared copy (an overlay where the host allows);
//! `AUTOHARNESS_NO_OVERLAY=1` measures the copy fallback instead.
//!
//! `cargo bench --bench sandbox [-- N] [root]` (default 100 trials per row; `root` runs only
//! the root-size rows).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use autoharness::evals::case;
use autoharness::harness::manifest::Manifest;
use autoharness::sandbox::{self, IsolationChoice, Spec};
use autoharness::trial::{Runner, Trial, Version};

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if std::env::args().any(|a| a == "root") {
        root_size(&rt, n.min(30));
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    let probe = sandbox::probe();
    println!("host: {}", probe.summary());
    println!("\n{n} trials of `/bin/sh -c true`, one at a time:\n");
    println!("{:<28} {:>12} {:>14}", "how", "per trial", "overhead");

    // Warm up the probe, the page cache and the cgroup pool.
    rt.block_on(async {
        for _ in 0..5 {
            sandbox::run(&Spec::new("true", cwd.path())).await;
        }
    });
    let bare = {
        let t = Instant::now();
        for _ in 0..n {
            let s = std::process::Command::new("/bin/sh").args(["-c", "true"]).current_dir(cwd.path()).status();
            assert!(s.is_ok_and(|s| s.success()));
        }
        t.elapsed() / n as u32
    };
    println!("{:<28} {:>12} {:>14}", "bare (std::process)", ms(bare), "-");
    let mut choices = vec![("sandbox, no fs isolation", IsolationChoice::None)];
    if probe.landlock_abi.is_some() {
        choices.push(("sandbox + landlock", IsolationChoice::Landlock));
    }
    if probe.bwrap.is_some() {
        choices.push(("sandbox + bubblewrap", IsolationChoice::Bwrap));
    }
    for (label, choice) in choices {
        let per = rt.block_on(async {
            let mut spec = Spec::new("true", cwd.path());
            spec.isolation = choice;
            let t = Instant::now();
            for _ in 0..n {
                let o = sandbox::run(&spec).await;
                assert!(o.status.success(), "{label}: {:?}", o.reason);
            }
            t.elapsed() / n as u32
        });
        let over = per.saturating_sub(bare);
        let verdict = if over <= Duration::from_millis(20) { "ok (≤ 20 ms)" } else { "OVER 20 ms" };
        println!("{label:<28} {:>12} {:>9} {verdict}", ms(per), ms(over));
    }

    // Throughput of real trials on the bundled example (private copy + python agent + checks).
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let manifest_path = root.join("harnesses/support-bot/harness.toml");
    let Ok(manifest) = Manifest::load(&manifest_path) else {
        println!("\n(no bundled example at {}; throughput skipped)", manifest_path.display());
        return;
    };
    let (cases, _) = case::load(&root.join("evals"), &manifest.name);
    if cases.is_empty() {
        println!("\n(no cases for the example; throughput skipped)");
        return;
    }
    let trials: Vec<Trial> = (0..cases.len()).map(|c| Trial { case: c, seed: 0 }).collect();
    println!("\n{} example trials (support-bot, private copy + checks, no cache):\n", trials.len());
    let mut base = None;
    for jobs in [1usize, 2] {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = Runner::new(None, jobs, dir.path().to_path_buf());
        runner.use_cache = false;
        let version = Version::new(manifest.clone(), manifest.root.clone()).unwrap();
        let t = Instant::now();
        let recs = rt.block_on(runner.run(&version, &cases, &trials, &|_| {})).unwrap();
        let wall = t.elapsed();
        let rate = recs.len() as f64 / wall.as_secs_f64();
        let speedup = base.map(|b: f64| format!("{:.2}× jobs 1", rate / b)).unwrap_or_default();
        base.get_or_insert(rate);
        println!("--jobs {jobs}: {:>6.1} trials/s ({} in {:.2}s) {speedup}", rate, recs.len(), wall.as_secs_f64());
    }
}

/// Per-trial time of a full trial (private copy, sandbox, checks) on a tiny root and on a
/// 50 MB one: the difference is what the root's size costs each trial.
fn root_size(rt: &tokio::runtime::Runtime, n: usize) {
    let view = if rt.block_on(sandbox::overlay_usable(IsolationChoice::Auto)) { "overlay" } else { "copy" };
    println!(
        "\n{n} trials of `true` through the trial runner (private view: {view}; sandbox; checks), one at a time:\n"
    );
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let evals = base.path().join("cases");
    std::fs::create_dir_all(&evals).unwrap();
    let case_path = evals.join("c-1.json");
    std::fs::write(
        &case_path,
        r#"{"schema": "autoharness.case/v1", "id": "c-1", "harness": "h", "cluster": "k-1", "split": "train",
            "status": "active", "input": "x", "checks": [{"kind": "no_error"}],
            "provenance": {"traces": [], "files": [], "signature": "", "mined_at": ""}}"#,
    )
    .unwrap();
    let case = case::read_case(&case_path, None).unwrap();
    let mut rows = Vec::new();
    for (label, files) in [("tiny root (1 file)", 1usize), ("50 MB root (2000 × 25 KB)", 2000)] {
        let root = base.path().join(format!("root-{files}"));
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        let blob = vec![b'x'; 25_000];
        for i in 0..files {
            std::fs::write(root.join("pkg").join(format!("m{i}.py")), &blob).unwrap();
        }
        std::fs::write(root.join("harness.toml"), "name = \"h\"\nrun = \"true\"\n").unwrap();
        let manifest = Manifest::load(&root.join("harness.toml")).unwrap();
        let version = Version::new(manifest, root.clone()).unwrap();
        let mut runner = Runner::new(None, 1, base.path().join("trials"));
        runner.use_cache = false;
        let cases = vec![case.clone()];
        // One warm-up trial (page cache, probe, cgroup pool).
        rt.block_on(runner.run(&version, &cases, &[Trial { case: 0, seed: 0 }], &|_| {})).unwrap();
        let t = Instant::now();
        for seed in 0..n as u64 {
            let recs = rt.block_on(runner.run(&version, &cases, &[Trial { case: 0, seed }], &|_| {})).unwrap();
            assert!(recs[0].passed, "{label}: {:?}", recs[0].reason);
        }
        let per = t.elapsed() / n as u32;
        rows.push(per);
        println!("{label:<28} {:>12}", ms(per));
    }
    let (tiny, big) = (rows[0], rows[1]);
    println!(
        "\nthe 50 MB root costs {} per trial ({:.1}× the tiny root's trial)",
        ms(big.saturating_sub(tiny)),
        big.as_secs_f64() / tiny.as_secs_f64()
    );
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
