//! Gate decisions on the bundled example with REAL trials: the counterpart of `gate_sim.rs`, whose
//! worlds are synthetic. How often each gating method accepts patches to `harnesses/support-bot`
//! whose true effect is known, and what it spends.
//!
//! 1. **Versions.** Each harness version is a `config.toml` variant (the bundled file with some
//!    knobs set, or with a comment added) written into a private copy of the harness root. "best"
//!    is the README's best combination: temperature 0.0, max_steps 12, retry_attempts 5,
//!    verify_identity "refunds".
//! 2. **Recording.** Every case of `evals/support-bot` runs once per seed `0..S` on every version
//!    through the real trial runner (sandbox, private copy, the case's checks; no store, no
//!    cache). This gives an outcome matrix per (version, case): the only source of outcomes below.
//! 3. **Scenarios** pair a baseline and a candidate version, with a target cluster or none (as
//!    `autoharness gate --target`, which requires an improvement). Roles follow the gate: target
//!    = the cluster's train cases, holdout = holdout cases, suite = the other train cases that
//!    pass on the baseline in at least half of the recorded seeds (the "passes k-of-n" rule for
//!    entering the active suite; never-passing cases such as the gift-card refunds cannot
//!    regress anyway).
//! 4. **Truth** is read off the recorded matrices, not assumed: a patch should be rejected when
//!    some suite or holdout case loses at least `DROP` of its pass rate over the S seeds, or,
//!    when targeted, when the target's mean per-case gain is below the gate's `min_effect`. The
//!    resampled world below draws only from those S seeds, so these rates are its exact truth.
//!    The table also shows the effect each scenario was built to have, and flags a mismatch.
//! 5. **Resampled gates.** Each repetition draws a random permutation π of the S seeds; trial t of
//!    every case on both arms reads the outcome recorded for seed π(t), so arms stay paired by
//!    seed exactly as in a real gate, and the adaptive gate's trials are a prefix of the fixed
//!    design's. Methods: (a) the adaptive engine (`next_requests` loop, then `decide`), (b) the
//!    same rules on `k_max` trials of every case, (c) a single-run gate like the peers' (one trial
//!    per case and arm; accept if the candidate's suite + holdout passes ≥ the baseline's and,
//!    when targeted, its target passes are strictly higher).
//! 6. **Sequential (issue 21).** Then today's adaptive gate beside `[gate] sequential = true` on
//!    the same permutations, each cold and with a warm baseline (all S recorded baseline trials
//!    of every suite and holdout case, as a real sequential gate takes them from the trial
//!    cache; not counted as spent), and per regressing scenario the paired difference in false
//!    accepts with a 95% interval.
//!
//! `cargo bench --bench gate_example [-- --seeds S --reps R --jobs J --outcomes FILE --eps X --step N
//! --kmax N]` (defaults: 30 recorded seeds, 400 repetitions per scenario, 2 jobs, the engine's
//! defaults). Recording dominates the run time: versions × cases × S trials (10 × 23 × 30 = 6900,
//! about 7.5 minutes on an idle two-core machine at ~65 ms per trial, more when it is busy); the
//! resampled gates take under a second.
//! `--outcomes FILE` keeps the recorded outcomes keyed by (version hash, case hash), so a rerun
//! with other engine settings records only what changed.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use autoharness::evals::case::{self, Case};
use autoharness::gate::engine::{Arm, CaseTrials, Decision, GateConfig, Role};
use autoharness::harness::manifest::Manifest;
use autoharness::harness::workspace;
use autoharness::propose::edits::set_toml;
use autoharness::trial::{Runner, Trial, Version};

#[path = "gate_common.rs"]
mod common;
use common::{Run, Table, Tally, splitmix64};

/// A suite or holdout case losing this much pass rate (absolute, over the recorded seeds) is a
/// regression the gate should reject.
const DROP: f64 = 0.2;

/// One harness version: the bundled `config.toml` with these knobs.
struct VersionSpec {
    name: &'static str,
    temperature: &'static str,
    max_steps: u32,
    retry_attempts: u32,
    verify_identity: &'static str,
    /// A comment line appended to the file (changes the content hash, not the behaviour).
    comment: Option<&'static str>,
}

const fn best(name: &'static str) -> VersionSpec {
    VersionSpec {
        name,
        temperature: "0.0",
        max_steps: 12,
        retry_attempts: 5,
        verify_identity: "refunds",
        comment: None,
    }
}

const VERSIONS: &[VersionSpec] = &[
    best("best"),
    VersionSpec { comment: Some("# Reviewed 2026-12: settings unchanged."), ..best("best+comment") },
    VersionSpec { retry_attempts: 1, ..best("retry1") },
    VersionSpec { retry_attempts: 2, ..best("retry2") },
    VersionSpec { max_steps: 4, ..best("steps4") },
    VersionSpec { temperature: "0.3", ..best("temp0.3") },
    VersionSpec { max_steps: 8, verify_identity: "never", ..best("never/steps8") },
    VersionSpec { max_steps: 8, verify_identity: "always", ..best("always/steps8") },
    VersionSpec { verify_identity: "never", ..best("never") },
    VersionSpec { verify_identity: "always", ..best("always") },
];

fn version_index(name: &str) -> usize {
    VERSIONS.iter().position(|v| v.name == name).unwrap_or_else(|| panic!("no version `{name}`"))
}

/// What a scenario was built to do (the measured truth is checked against it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Accept,
    /// Breaks suite or holdout cases.
    Regress,
    /// Improves the target by less than `min_effect`, or not at all.
    NoGain,
    /// Decided by the measured rates.
    Measure,
}

struct Scenario {
    name: &'static str,
    baseline: &'static str,
    candidate: &'static str,
    target: Option<&'static str>,
    expect: Expect,
}

const TIMEOUTS: &str = "k-2b933bfd";
const REFUNDS: &str = "k-77a207b7";
const TYPOS: &str = "k-bc86aec9";

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "clear fix (retry 1 -> 5)",
        baseline: "retry1",
        candidate: "best",
        target: Some(TIMEOUTS),
        expect: Expect::Accept,
    },
    Scenario {
        name: "clear regression (max_steps 4)",
        baseline: "best",
        candidate: "steps4",
        target: None,
        expect: Expect::Regress,
    },
    Scenario {
        name: "fix breaks suite (verify always, steps 8)",
        baseline: "never/steps8",
        candidate: "always/steps8",
        target: Some(REFUNDS),
        expect: Expect::Regress,
    },
    Scenario {
        name: "fix breaks suite (verify always)",
        baseline: "never",
        candidate: "always",
        target: Some(REFUNDS),
        expect: Expect::Regress,
    },
    Scenario {
        name: "neutral (comment, pre-merge)",
        baseline: "best",
        candidate: "best+comment",
        target: None,
        expect: Expect::Accept,
    },
    Scenario {
        name: "neutral, targeted (no gain)",
        baseline: "best",
        candidate: "best+comment",
        target: Some(TIMEOUTS),
        expect: Expect::NoGain,
    },
    Scenario {
        name: "noise only (temperature 0.3)",
        baseline: "best",
        candidate: "temp0.3",
        target: None,
        expect: Expect::Measure,
    },
    Scenario {
        name: "tiny real effect (temperature 0.3 -> 0)",
        baseline: "temp0.3",
        candidate: "best",
        target: Some(TYPOS),
        expect: Expect::NoGain,
    },
    Scenario {
        name: "moderate regression (retry 5 -> 2)",
        baseline: "best",
        candidate: "retry2",
        target: None,
        expect: Expect::Regress,
    },
];

/// A random permutation of `0..n` (Fisher–Yates on splitmix64).
fn permutation(n: usize, key: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    let mut state = splitmix64(key ^ 0x5EED_F00D_6A7E);
    for i in (1..n).rev() {
        state = splitmix64(state);
        let j = ((state >> 11) as f64 / (1u64 << 53) as f64 * (i + 1) as f64) as usize;
        p.swap(i, j.min(i));
    }
    p
}

fn config_text(original: &str, v: &VersionSpec) -> String {
    let temperature: f64 = v.temperature.parse().expect("a temperature");
    let mut text = original.to_string();
    for (key, value) in [
        ("model.temperature", toml::Value::Float(temperature)),
        ("agent.max_steps", toml::Value::Integer(v.max_steps.into())),
        ("tools.retry_attempts", toml::Value::Integer(v.retry_attempts.into())),
        ("policy.verify_identity", toml::Value::String(v.verify_identity.into())),
    ] {
        text = set_toml(&text, key, &value).unwrap_or_else(|e| panic!("config.toml: {key}: {e}"));
    }
    if let Some(c) = v.comment {
        text.push_str(c);
        text.push('\n');
    }
    text
}

/// A private copy of the harness with `config.toml` replaced.
fn make_version(manifest: &Manifest, original: &str, spec: &VersionSpec, dir: &Path) -> Version {
    let root = dir.join(spec.name.replace(['/', '+'], "_"));
    workspace::private_copy(&manifest.root, &root, &manifest.filter).expect("private copy of the harness");
    std::fs::write(root.join("config.toml"), config_text(original, spec)).expect("write config.toml");
    let mut m = manifest.clone();
    m.root = root.clone();
    Version::new(m, root).expect("hash the version")
}

/// `outcomes[version][case][seed]`: every case of every version on seeds `0..seeds`, run for real.
/// With `saved`, outcomes recorded earlier for the same (version hash, case hash, seed) are reused
/// and the file is rewritten with everything.
fn record(
    rt: &tokio::runtime::Runtime,
    manifest: &Manifest,
    cases: &[Case],
    seeds: usize,
    jobs: usize,
    saved: Option<&Path>,
) -> (Vec<Vec<Vec<bool>>>, usize) {
    let original = std::fs::read_to_string(manifest.root.join("config.toml")).expect("read config.toml");
    // Trial folders are written and deleted thousands of times: keep them in memory when we can.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("tempdir");
    // (version hash, case hash) -> outcomes by seed, from the saved file.
    let mut known: BTreeMap<(String, String), Vec<bool>> = BTreeMap::new();
    if let Some(text) = saved.and_then(|p| std::fs::read_to_string(p).ok()) {
        for line in text.lines() {
            if let [v, c, bits] = line.split('\t').collect::<Vec<_>>()[..] {
                known.insert((v.to_string(), c.to_string()), bits.bytes().map(|b| b == b'1').collect());
            }
        }
    }
    let mut all = Vec::new();
    let mut run = 0;
    let mut lines = Vec::new();
    let mut hashes: Vec<String> = Vec::new();
    for spec in VERSIONS {
        let version = make_version(manifest, &original, spec, dir.path());
        assert!(!hashes.contains(&version.hash), "two versions with the same content: {}", spec.name);
        hashes.push(version.hash.clone());
        let reuse = |c: &Case| known.get(&(version.hash.clone(), c.hash.clone())).filter(|o| o.len() >= seeds);
        let trials: Vec<Trial> = (0..cases.len())
            .filter(|&c| reuse(&cases[c]).is_none())
            .flat_map(|c| (0..seeds as u64).map(move |seed| Trial { case: c, seed }))
            .collect();
        let trials_dir = dir.path().join("trials");
        let mut runner = Runner::new(None, jobs, trials_dir.clone());
        runner.use_cache = false;
        let started = Instant::now();
        let recs = rt.block_on(runner.run(&version, cases, &trials, &|_| {})).expect("trials run");
        let mut m: Vec<Vec<bool>> =
            cases.iter().map(|c| reuse(c).map(|o| o[..seeds].to_vec()).unwrap_or_else(|| vec![false; seeds])).collect();
        run += recs.len();
        let mut abnormal = BTreeMap::<String, u32>::new();
        for (t, r) in trials.iter().zip(&recs) {
            m[t.case][t.seed as usize] = r.passed;
            if r.status != "exited" {
                *abnormal.entry(r.status.to_string()).or_default() += 1;
            }
        }
        let reused = cases.len() - trials.len() / seeds;
        eprintln!(
            "  {:<14} {:4} trials in {:5.1} s{}{}",
            spec.name,
            recs.len(),
            started.elapsed().as_secs_f64(),
            if reused > 0 { format!(" ({reused} cases reused from --outcomes)") } else { String::new() },
            if abnormal.is_empty() { String::new() } else { format!(", abnormal ends: {abnormal:?}") }
        );
        let _ = std::fs::remove_dir_all(&trials_dir);
        for (c, o) in cases.iter().zip(&m) {
            let bits: String = o.iter().map(|&p| if p { '1' } else { '0' }).collect();
            lines.push(format!("{}\t{}\t{bits}", version.hash, c.hash));
        }
        all.push(m);
    }
    if let Some(p) = saved {
        std::fs::write(p, lines.join("\n") + "\n").expect("write the outcome file");
    }
    (all, run)
}

fn rate(outcomes: &[bool]) -> f64 {
    outcomes.iter().filter(|&&p| p).count() as f64 / outcomes.len().max(1) as f64
}

/// A scenario made concrete: roles, data and truth.
struct Setup<'a> {
    /// (case index, role)
    roles: Vec<(usize, Role)>,
    base: &'a [Vec<bool>],
    cand: &'a [Vec<bool>],
    cfg: GateConfig,
    accept_is_right: bool,
    /// Truth is reject because a suite or holdout case drops by at least `DROP`.
    regresses: bool,
    /// Largest pass-rate drop of a suite or holdout case (≥ 0).
    worst_drop: f64,
    why: String,
}

fn setup<'a>(sc: &Scenario, cases: &[Case], outcomes: &'a [Vec<Vec<bool>>], cfg: &GateConfig) -> Setup<'a> {
    let base = &outcomes[version_index(sc.baseline)];
    let cand = &outcomes[version_index(sc.candidate)];
    let mut roles = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let f = &c.file;
        let role = if f.split == "holdout" {
            Role::Holdout
        } else if sc.target.is_some_and(|t| f.cluster.starts_with(t)) {
            Role::Target
        } else if rate(&base[i]) >= 0.5 {
            Role::Suite
        } else {
            continue;
        };
        roles.push((i, role));
    }
    let mut worst: Option<(f64, usize)> = None;
    for &(i, role) in &roles {
        if role != Role::Target {
            let d = rate(&cand[i]) - rate(&base[i]);
            if worst.is_none_or(|(w, _)| d < w) {
                worst = Some((d, i));
            }
        }
    }
    let breaking: Vec<&str> = roles
        .iter()
        .filter(|&&(i, role)| role != Role::Target && rate(&cand[i]) <= rate(&base[i]) - DROP + 1e-9)
        .map(|&(i, _)| cases[i].id())
        .collect();
    let target: Vec<usize> = roles.iter().filter(|(_, r)| *r == Role::Target).map(|(i, _)| *i).collect();
    let gain = (!target.is_empty())
        .then(|| target.iter().map(|&i| rate(&cand[i]) - rate(&base[i])).sum::<f64>() / target.len() as f64);
    let cfg = GateConfig { require_improvement: sc.target.is_some(), ..cfg.clone() };
    let regresses = !breaking.is_empty();
    let no_gain = sc.target.is_some() && gain.unwrap_or(0.0) < cfg.min_effect;
    let mut why = match worst {
        Some((d, i)) => format!("worst suite/holdout change {d:+.2} ({})", cases[i].id()),
        None => "no suite/holdout cases".into(),
    };
    if !breaking.is_empty() {
        why.push_str(&format!(", {} case(s) drop ≥ {DROP}: {}", breaking.len(), breaking.join(" ")));
    }
    if let Some(g) = gain {
        why.push_str(&format!(", target gain {g:+.2} (min_effect {})", cfg.min_effect));
    }
    let worst_drop = worst.map_or(0.0, |(d, _)| (-d).max(0.0));
    Setup { roles, base, cand, cfg, accept_is_right: !regresses && !no_gain, regresses, worst_drop, why }
}

fn empty_cases(s: &Setup, cases: &[Case]) -> Vec<CaseTrials> {
    s.roles.iter().map(|&(i, role)| CaseTrials::new(cases[i].id(), role)).collect()
}

/// Outcome of trial `t` of setup case `j` on `arm` under the seed permutation `perm`.
fn outcome(s: &Setup, perm: &[usize], j: usize, arm: Arm, t: u32) -> bool {
    let i = s.roles[j].0;
    let seed = perm[t as usize % perm.len()];
    match arm {
        Arm::Baseline => s.base[i][seed],
        Arm::Candidate => s.cand[i][seed],
    }
}

fn spent(d: &Decision) -> u32 {
    d.trials_baseline + d.trials_candidate
}

/// The three methods on one seed permutation of the recorded outcomes.
fn adaptive(s: &Setup, cases: &[Case], perm: &[usize]) -> Run {
    let (d, rounds) = common::adaptive(&s.cfg, empty_cases(s, cases), |j, arm, t| outcome(s, perm, j, arm, t));
    Run::of(&d, spent(&d), rounds)
}

fn fixed(s: &Setup, cases: &[Case], perm: &[usize]) -> Run {
    let d = common::fixed(&s.cfg, empty_cases(s, cases), |j, arm, t| outcome(s, perm, j, arm, t));
    Run::of(&d, spent(&d), 1)
}

/// Issue 21's comparison: `cfg` (today's gate or the sequential one) with a warm baseline of
/// `warm` recorded trials per suite and holdout case (what a real sequential gate takes from the
/// trial cache) or none. Every case's `prior_fail_rate` is its baseline's recorded failure rate,
/// as the store's history gives it. Warm trials are not counted as spent.
fn with_history(s: &Setup, cases: &[Case], perm: &[usize], cfg: &GateConfig, warm: u32) -> Run {
    let mut cs = empty_cases(s, cases);
    let mut cached = 0;
    for (j, c) in cs.iter_mut().enumerate() {
        c.prior_fail_rate = 1.0 - rate(&s.base[s.roles[j].0]);
        if c.role != Role::Target {
            c.push(Arm::Baseline, (0..warm).map(|t| outcome(s, perm, j, Arm::Baseline, t)));
            c.history = warm;
            cached += warm;
        }
    }
    let (d, rounds) = common::adaptive(cfg, cs, |j, arm, t| outcome(s, perm, j, arm, t));
    Run::of(&d, spent(&d) - cached, rounds)
}

/// Today's adaptive gate beside the sequential one (`[gate] sequential = true`), cold and warm,
/// on the same permutations: % wrong and trials per decision, and per regressing scenario the
/// paired difference in false accepts (runs only one of the two accepted) with a 95% interval.
fn sequential_table(setups: &[Setup], cases: &[Case], seeds: usize, reps: u32) {
    let warm = seeds as u32;
    println!("\nsequential gate (issue 21) on the same permutations; warm = {warm} recorded baseline trials per case:");
    println!("| scenario | truth | adaptive | adaptive warm | sequential | sequential warm |");
    println!("|---|---|---|---|---|---|");
    let mut diffs = Vec::new();
    for (si, (sc, s)) in SCENARIOS.iter().zip(setups).enumerate() {
        let seq = GateConfig { sequential: true, ..s.cfg.clone() };
        let methods = [(&s.cfg, 0), (&s.cfg, warm), (&seq, 0), (&seq, warm)];
        let runs: Vec<Vec<Run>> = (0..reps)
            .map(|rep| {
                let perm = permutation(seeds, (si as u64) << 32 | u64::from(rep));
                methods.iter().map(|&(cfg, w)| with_history(s, cases, &perm, cfg, w)).collect()
            })
            .collect();
        let cells: Vec<String> = (0..methods.len())
            .map(|m| {
                let wrong = runs.iter().filter(|r| r[m].accept != s.accept_is_right).count() as u32;
                let trials: u64 = runs.iter().map(|r| u64::from(r[m].trials)).sum();
                format!("{:.1}% · {:.1}", common::pct(wrong, reps), trials as f64 / f64::from(reps))
            })
            .collect();
        let truth = if s.accept_is_right { "accept" } else { "reject" };
        println!("| {} | {truth} | {} |", sc.name, cells.join(" | "));
        if !s.accept_is_right {
            for (new, today, label) in [(2, 0, "cold"), (3, 1, "warm")] {
                let only_new = runs.iter().filter(|r| r[new].accept && !r[today].accept).count() as f64;
                let only_today = runs.iter().filter(|r| !r[new].accept && r[today].accept).count() as f64;
                let n = f64::from(reps);
                let d = (only_new - only_today) / n;
                let half = 1.96 * (((only_new + only_today) / n - d * d) / n).max(0.0).sqrt();
                diffs.push(format!(
                    "  {:<42} {label}: {:+5.1} points [{:+5.1}, {:+5.1}]",
                    sc.name,
                    100.0 * d,
                    100.0 * (d - half),
                    100.0 * (d + half)
                ));
            }
        }
    }
    println!(
        "false accepts, sequential minus adaptive (paired, 95% interval; above 0 = the sequential gate is worse):"
    );
    diffs.iter().for_each(|d| println!("{d}"));
}

fn single_run(s: &Setup, perm: &[usize]) -> Run {
    let roles: Vec<Role> = s.roles.iter().map(|&(_, r)| r).collect();
    common::single_run(&s.cfg, &roles, |j, arm, t| outcome(s, perm, j, arm, t))
}

fn main() {
    let started = Instant::now();
    let mut cfg = GateConfig::default();
    let (mut seeds, mut reps, mut jobs, mut saved) = (30usize, 400u32, 2usize, None);
    let args: Vec<String> = std::env::args().collect();
    for w in args.windows(2) {
        match w[0].as_str() {
            "--seeds" => seeds = w[1].parse().expect("--seeds S"),
            "--reps" => reps = w[1].parse().expect("--reps R"),
            "--jobs" => jobs = w[1].parse().expect("--jobs J"),
            "--outcomes" => saved = Some(PathBuf::from(&w[1])),
            "--eps" => cfg.flip_tolerance = w[1].parse().expect("--eps X"),
            "--step" => cfg.step = w[1].parse().expect("--step N"),
            "--kmax" => cfg.k_max = w[1].parse().expect("--kmax N"),
            _ => {}
        }
    }
    assert!(seeds >= 1 && reps >= 1, "--seeds and --reps must be positive");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let manifest_path = root.join("harnesses/support-bot/harness.toml");
    let manifest = Manifest::load(&manifest_path).expect("the bundled example's manifest");
    let (cases, problems) = case::load(&root.join("evals"), &manifest.name);
    assert!(problems.is_empty(), "bad case files: {problems:?}");
    assert!(!cases.is_empty(), "no cases for the example");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");

    println!(
        "gate_example: {} versions × {} cases × {seeds} seeds of real support-bot trials ({jobs} jobs), then {reps} \
         resampled gates per scenario",
        VERSIONS.len(),
        cases.len()
    );
    let rec_started = Instant::now();
    let (outcomes, n_trials) = record(&rt, &manifest, &cases, seeds, jobs, saved.as_deref());
    let rec_secs = rec_started.elapsed().as_secs_f64();
    println!(
        "recording: {n_trials} trials in {rec_secs:.1} s ({:.1} ms wall per trial)\n",
        1e3 * rec_secs / n_trials.max(1) as f64
    );

    // The measured pass rates (% of the S seeds) behind every truth below.
    println!("pass rate (%) over the recorded seeds, per case and version:");
    print!("{:<11} {:<11} {:<5}", "case", "cluster", "split");
    for v in VERSIONS {
        print!(" {:>13}", v.name);
    }
    println!();
    for (i, c) in cases.iter().enumerate() {
        print!("{:<11} {:<11} {:<5}", c.id(), c.file.cluster, c.file.split.as_str());
        for m in &outcomes {
            print!(" {:>13.0}", 100.0 * rate(&m[i]));
        }
        println!();
    }

    println!(
        "\nk = {}, k_max = {}, step = {}, alpha = {}, holdout_alpha = {}, min_effect = {}, flip_tolerance = {}; truth: \
         reject iff a suite/holdout case drops ≥ {DROP} or a targeted patch gains < min_effect",
        cfg.k, cfg.k_max, cfg.step, cfg.alpha, cfg.holdout_alpha, cfg.min_effect, cfg.flip_tolerance
    );
    let setups: Vec<Setup> = SCENARIOS.iter().map(|sc| setup(sc, &cases, &outcomes, &cfg)).collect();
    for (sc, s) in SCENARIOS.iter().zip(&setups) {
        let count = |r: Role| s.roles.iter().filter(|(_, x)| *x == r).count();
        let built = match sc.expect {
            Expect::Accept => Some(true),
            Expect::Regress | Expect::NoGain => Some(false),
            Expect::Measure => None,
        };
        let mismatch = if built.is_some_and(|b| b != s.accept_is_right) { "  MISMATCH with construction" } else { "" };
        println!(
            "  {:<42} {} suite, {} target, {} holdout; {}{mismatch}",
            sc.name,
            count(Role::Suite),
            count(Role::Target),
            count(Role::Holdout),
            s.why
        );
    }

    println!();
    let mut table = Table::new(42);
    let sim_started = Instant::now();
    let mut regressing = Vec::new();
    for (si, (sc, s)) in SCENARIOS.iter().zip(&setups).enumerate() {
        let (mut a, mut b, mut c) = (Tally::default(), Tally::default(), Tally::default());
        let mut agree = 0u32;
        for rep in 0..reps {
            let perm = permutation(seeds, (si as u64) << 32 | u64::from(rep));
            let (ra, rb, rc) = (adaptive(s, &cases, &perm), fixed(s, &cases, &perm), single_run(s, &perm));
            agree += u32::from(ra.accept == rb.accept);
            a.add(&ra);
            b.add(&rb);
            c.add(&rc);
        }
        let (wrong_a, wrong_c) = table.row(sc.name, s.accept_is_right, &a, &b, &c, agree, reps);
        if s.regresses {
            regressing.push((sc.name, s.worst_drop, wrong_a, wrong_c));
        }
    }
    table.finish();
    println!("false accepts on patches that break a suite/holdout case (target: adaptive < 5%; single-run shown):");
    for (name, drop, fa, single) in regressing {
        println!(
            "  {name:<42} (worst case -{drop:.2}) adaptive {fa:5.1}% {:<6} single-run {single:5.1}%",
            if fa < 5.0 { "met" } else { "MISSED" }
        );
    }
    sequential_table(&setups, &cases, seeds, reps);
    println!(
        "elapsed: recording {rec_secs:.1} s, resampled gates {:.1} s, total {:.1} s",
        sim_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
