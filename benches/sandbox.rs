//! Sandbox overhead per trial against running the same command bare, measured side by
//! side in one run (only the differences are meaningful on a noisy machine), with each
//! isolation this host offers; then the trial runner's throughput on the bundled example
//! harness with 1 and 2 jobs.
//!
//! `cargo bench --bench sandbox [-- N]` (default 100 trials per row).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use autoharness::evals::case;
use autoharness::gate::trials::{Runner, Trial, Version};
use autoharness::harness::manifest::Manifest;
use autoharness::sandbox::{self, IsolationChoice, Spec};

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
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

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
