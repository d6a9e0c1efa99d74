//! Gate decisions under known truth: how often each gating method accepts patches whose true
//! effect we set, and what it spends.
//!
//! Each run draws a synthetic world from a seeded PRNG — 12 suite cases (8 stable at 0.95–1.0,
//! 3 flaky at 0.5–0.8, 1 broken at 0–0.03), 4 target cases (0–0.3) and 4 holdout cases (3 stable,
//! 1 flaky) — then a candidate whose per-case pass probabilities a scenario changes. Every trial
//! outcome is a fixed function of (run, case, arm, trial), so all methods see the same trials and
//! the adaptive engine's trials are a prefix of the fixed design's: their disagreements come from
//! stopping early, not from luck. Arms draw independently (seeds do not make an agent
//! deterministic), the pessimistic case for paired tests. The last two scenarios start with 30
//! cached baseline trials per case, as a baseline reused across gates would have; cached trials
//! are not counted as spent.
//!
//! Methods: (a) the adaptive engine (`next_requests` loop, then `decide`), (b) the same rules
//! with `k_max` trials of every case (`decide` on the full data), (c) a single-run gate like the
//! peers' (one trial per case and arm; accept if the candidate's suite + holdout passes ≥ the
//! baseline's and, when improvement is required, its target passes are strictly higher).
//!
//! `cargo bench --bench gate_sim [-- --seeds N --eps X --step N --kmax N]` (defaults: 1000 seeds,
//! the engine's default config). Prints the table, the rejections by rule, and whether the
//! targets are met: adaptive agrees with fixed-k_max on ≥ 95% of decisions using ≤ 50% of its
//! trials, and accepts < 5% of the patches that break a case. Ends with the cost of one engine
//! call on a 500-case gate, then the suite-scale table of `gate_scale.rs` (`--sizes 30,300,3000
//! --scale-seeds N --warm N`: runs per shape on 30 cases, proportionally fewer on larger suites;
//! cached baseline trials per case in the warm columns, 30 by default, 10 = what one earlier gate
//! of the same baseline records; `--scale-only` skips the rest).
#![allow(clippy::print_stdout)]

use std::time::Instant;

use autoharness::gate::engine::{Arm, CaseTrials, Decision, GateConfig, Role, decide, next_requests};

#[path = "gate_common.rs"]
mod common;
#[path = "gate_scale.rs"]
mod scale;
use common::{Run, Table, Tally, splitmix64};

struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = splitmix64(self.0);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.next_f64() * n as f64) as usize).min(n - 1)
    }
}

const SUITE: usize = 12;
const TARGET: usize = 4;
const HOLDOUT: usize = 4;
const STABLE: std::ops::Range<usize> = 0..8;
const FLAKY: std::ops::Range<usize> = 8..11;
const HOLDOUT_STABLE: std::ops::Range<usize> = 16..19;

struct World {
    roles: Vec<Role>,
    base: Vec<f64>,
    cand: Vec<f64>,
    /// Target cases: the chance that a candidate trial whose cluster failure is gone also
    /// passes every check (1 = a fix is a full pass; lower = the failure mode changed).
    full_share: Vec<f64>,
}

fn base_world(rng: &mut Rng) -> World {
    let mut roles = Vec::new();
    let mut base = Vec::new();
    for i in 0..SUITE {
        roles.push(Role::Suite);
        base.push(match i {
            _ if STABLE.contains(&i) => rng.uniform(0.95, 1.0),
            _ if FLAKY.contains(&i) => rng.uniform(0.5, 0.8),
            _ => rng.uniform(0.0, 0.03),
        });
    }
    for _ in 0..TARGET {
        roles.push(Role::Target);
        base.push(rng.uniform(0.0, 0.3));
    }
    for i in 0..HOLDOUT {
        roles.push(Role::Holdout);
        base.push(if i < 3 { rng.uniform(0.9, 1.0) } else { rng.uniform(0.5, 0.8) });
    }
    let cand = base.clone();
    let full_share = vec![1.0; base.len()];
    World { roles, base, cand, full_share }
}

struct Scenario {
    name: &'static str,
    accept_is_right: bool,
    require_improvement: bool,
    /// Baseline trials already in the cache from earlier gates (free; not counted as spent).
    cached_baseline: u32,
    /// The patch drops some suite or holdout case a lot (the "< 5% false accepts" target).
    breaks_case: bool,
    patch: fn(&mut World, &mut Rng),
}

/// One flaky case (pass rate 0.5–0.8) drops to 0.05.
fn break_flaky(w: &mut World, rng: &mut Rng) {
    let i = FLAKY.start + rng.below(FLAKY.len());
    w.cand[i] = 0.05;
}

fn fix_targets(w: &mut World, rng: &mut Rng) {
    for i in SUITE..SUITE + TARGET {
        w.cand[i] = rng.uniform(0.8, 0.95);
    }
}

fn break_stable(w: &mut World, rng: &mut Rng, n: usize) {
    let first = rng.below(STABLE.len());
    for j in 0..n {
        w.cand[STABLE.start + (first + j) % STABLE.len()] = 0.1;
    }
}

fn target_gain(w: &mut World, rng: &mut Rng, lo: f64, hi: f64) {
    let d = rng.uniform(lo, hi);
    for i in SUITE..SUITE + TARGET {
        w.cand[i] = (w.base[i] + d).min(1.0);
    }
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "clear fix",
        accept_is_right: true,
        require_improvement: true,
        cached_baseline: 0,
        breaks_case: false,
        patch: fix_targets,
    },
    Scenario {
        name: "clear regression (1-2 cases -> 0.1)",
        accept_is_right: false,
        require_improvement: false,
        cached_baseline: 0,
        breaks_case: true,
        patch: |w, rng| {
            let n = 1 + rng.below(2);
            break_stable(w, rng, n);
        },
    },
    Scenario {
        name: "fix that breaks 2 suite cases",
        accept_is_right: false,
        require_improvement: true,
        cached_baseline: 0,
        breaks_case: true,
        patch: |w, rng| {
            fix_targets(w, rng);
            break_stable(w, rng, 2);
        },
    },
    Scenario {
        name: "neutral (pre-merge)",
        accept_is_right: true,
        require_improvement: false,
        cached_baseline: 0,
        breaks_case: false,
        patch: |_, _| {},
    },
    Scenario {
        name: "tiny real effect (target +0.1)",
        accept_is_right: false,
        require_improvement: true,
        cached_baseline: 0,
        breaks_case: false,
        patch: |w, _| {
            for i in SUITE..SUITE + TARGET {
                w.cand[i] = (w.base[i] + 0.1).min(1.0);
            }
        },
    },
    Scenario {
        name: "tiny true effect (target +0.03)",
        accept_is_right: false,
        require_improvement: true,
        cached_baseline: 0,
        breaks_case: false,
        patch: |w, rng| target_gain(w, rng, 0.03, 0.03),
    },
    Scenario {
        name: "moderate true fix (target +0.25..0.35)",
        accept_is_right: true,
        require_improvement: true,
        cached_baseline: 0,
        breaks_case: false,
        patch: |w, rng| target_gain(w, rng, 0.25, 0.35),
    },
    Scenario {
        name: "fix that changes the failure mode",
        accept_is_right: true,
        require_improvement: true,
        cached_baseline: 0,
        breaks_case: false,
        // The cluster's failure is gone on 80–95% of trials, but the case now fails a later
        // check as often as it failed before: full passes stay at the baseline's rate.
        patch: |w, rng| {
            fix_targets(w, rng);
            for i in SUITE..SUITE + TARGET {
                w.full_share[i] = w.base[i] / w.cand[i];
            }
        },
    },
    Scenario {
        name: "lone holdout case regresses (-> 0)",
        accept_is_right: false,
        require_improvement: false,
        cached_baseline: 0,
        breaks_case: true,
        patch: |w, rng| {
            let i = HOLDOUT_STABLE.start + rng.below(HOLDOUT_STABLE.len());
            w.cand[i] = 0.0;
        },
    },
    Scenario {
        name: "mined case breaks, 1 hand-written active",
        accept_is_right: false,
        require_improvement: false,
        cached_baseline: 0,
        breaks_case: true,
        // Every train case is a suite case whatever its status (the gate's `roles`); a gate
        // that guarded only `active` cases would not have run the broken one at all.
        patch: |w, rng| break_stable(w, rng, 1),
    },
    Scenario {
        name: "noise only (±0.05 everywhere)",
        accept_is_right: false,
        require_improvement: true,
        cached_baseline: 0,
        breaks_case: false,
        patch: |w, rng| {
            for i in 0..w.cand.len() {
                w.cand[i] = (w.base[i] + rng.uniform(-0.05, 0.05)).clamp(0.0, 1.0);
            }
        },
    },
    Scenario {
        name: "flaky case breaks (-> 0.05)",
        accept_is_right: false,
        require_improvement: false,
        cached_baseline: 0,
        breaks_case: true,
        patch: break_flaky,
    },
    Scenario {
        name: "fix, holdout drops (2 -> 0.2)",
        accept_is_right: false,
        require_improvement: true,
        cached_baseline: 0,
        breaks_case: true,
        patch: |w, rng| {
            fix_targets(w, rng);
            let first = rng.below(HOLDOUT_STABLE.len());
            for j in 0..2 {
                w.cand[HOLDOUT_STABLE.start + (first + j) % HOLDOUT_STABLE.len()] = 0.2;
            }
        },
    },
    Scenario {
        name: "neutral, 30 cached baseline trials",
        accept_is_right: true,
        require_improvement: false,
        cached_baseline: 30,
        breaks_case: false,
        patch: |_, _| {},
    },
    Scenario {
        name: "flaky breaks, 30 cached baseline",
        accept_is_right: false,
        require_improvement: false,
        cached_baseline: 30,
        breaks_case: true,
        patch: break_flaky,
    },
];

/// Trial outcomes are a fixed function of (run, case, arm, trial); arms draw independently.
fn outcome(run: u64, world: &World, case: usize, arm: Arm, trial: u32) -> bool {
    let key = run
        .wrapping_mul(0x2545_F491_4F6C_DD1D)
        .wrapping_add((case as u64) << 40)
        .wrapping_add(u64::from(arm == Arm::Candidate) << 32)
        .wrapping_add(u64::from(trial));
    let u = (splitmix64(splitmix64(key)) >> 11) as f64 / (1u64 << 53) as f64;
    u < if arm == Arm::Candidate { world.cand[case] } else { world.base[case] }
}

/// Whether a trial passed every check: for target cases, the cluster's failure is gone and
/// (on the candidate) a second draw against `full_share`.
fn full(run: u64, world: &World, case: usize, arm: Arm, trial: u32) -> bool {
    if !outcome(run, world, case, arm, trial) {
        return false;
    }
    if arm == Arm::Baseline || world.full_share[case] >= 1.0 {
        return true;
    }
    let key = splitmix64(run ^ 0x5EED).wrapping_add((case as u64) << 40).wrapping_add(u64::from(trial));
    ((splitmix64(key) >> 11) as f64 / (1u64 << 53) as f64) < world.full_share[case]
}

/// Cases with only the cached baseline trials.
fn initial_cases(run: u64, world: &World, cached: u32) -> Vec<CaseTrials> {
    world
        .roles
        .iter()
        .enumerate()
        .map(|(i, &role)| {
            let mut c = CaseTrials::new(format!("c{i}"), role);
            c.prior_fail_rate = 1.0 - world.base[i];
            c.push(Arm::Baseline, (0..cached).map(|t| outcome(run, world, i, Arm::Baseline, t)));
            c.history = cached;
            c
        })
        .collect()
}

fn spent(d: &Decision, cases: usize, cached: u32) -> u32 {
    d.trials_baseline + d.trials_candidate - cached * u32::try_from(cases).unwrap_or(0)
}

/// The three methods on one world (trials of `run`), cached baseline trials not counted.
fn adaptive(cfg: &GateConfig, run: u64, world: &World, cached: u32) -> Run {
    let cases = initial_cases(run, world, cached);
    let n = cases.len();
    let (d, rounds) = common::adaptive_full(cfg, cases, &|i, arm, t| outcome(run, world, i, arm, t), &|i, arm, t| {
        full(run, world, i, arm, t)
    });
    Run::of(&d, spent(&d, n, cached), rounds)
}

fn fixed(cfg: &GateConfig, run: u64, world: &World, cached: u32) -> Run {
    let cases = initial_cases(run, world, cached);
    let n = cases.len();
    let d = common::fixed_full(cfg, cases, &|i, arm, t| outcome(run, world, i, arm, t), &|i, arm, t| {
        full(run, world, i, arm, t)
    });
    Run::of(&d, spent(&d, n, cached), 1)
}

fn single_run(cfg: &GateConfig, run: u64, world: &World) -> Run {
    common::single_run_full(cfg, &world.roles, &|i, arm, t| outcome(run, world, i, arm, t), &|i, arm, t| {
        full(run, world, i, arm, t)
    })
}

fn main() {
    let mut cfg = GateConfig::default();
    let mut seeds = 1000u32;
    let (mut scale_seeds, mut sizes, mut scale_only) = (200u32, vec![30usize, 300, 3000], false);
    let mut warm = 30u32;
    let mut screen = None;
    let args: Vec<String> = std::env::args().collect();
    for w in args.windows(2) {
        match w[0].as_str() {
            "--scale-seeds" => scale_seeds = w[1].parse().expect("--scale-seeds N"),
            "--warm" => warm = w[1].parse().expect("--warm N"),
            "--screen" => screen = Some(w[1].parse().expect("--screen N")),
            "--sizes" => sizes = w[1].split(',').map(|n| n.parse().expect("--sizes 30,300,3000")).collect(),
            "--seeds" => seeds = w[1].parse().expect("--seeds N"),
            "--eps" => cfg.flip_tolerance = w[1].parse().expect("--eps X"),
            "--step" => cfg.step = w[1].parse().expect("--step N"),
            "--kmax" => cfg.k_max = w[1].parse().expect("--kmax N"),
            _ => {}
        }
    }
    scale_only |= args.iter().any(|a| a == "--scale-only");
    if let Some(w) = args.windows(2).find(|w| w[0] == "--diagnose") {
        scale::diagnose(&cfg, &new_gate(&cfg, screen), 30, w[1].parse().expect("--diagnose RUNS"));
        return;
    }
    if scale_only {
        scale::bench(&cfg, &new_gate(&cfg, screen), &sizes, scale_seeds, warm);
        return;
    }
    println!(
        "gate_sim: {seeds} runs per scenario; k = {}, k_max = {}, step = {}, alpha = {}, holdout_alpha = {}, \
         min_effect = {}, flip_tolerance = {}",
        cfg.k, cfg.k_max, cfg.step, cfg.alpha, cfg.holdout_alpha, cfg.min_effect, cfg.flip_tolerance
    );
    let mut table = Table::new(36);
    let started = Instant::now();
    let mut breaking = Vec::new();
    for (s, sc) in SCENARIOS.iter().enumerate() {
        let cfg = GateConfig { require_improvement: sc.require_improvement, ..cfg.clone() };
        let (mut a, mut b, mut c) = (Tally::default(), Tally::default(), Tally::default());
        let mut agree = 0u32;
        for seed in 0..seeds {
            let run = (s as u64) << 32 | u64::from(seed);
            let mut rng = Rng(splitmix64(run ^ 0xA5A5_A5A5));
            let mut world = base_world(&mut rng);
            (sc.patch)(&mut world, &mut rng);
            let (ra, rb, rc) = (
                adaptive(&cfg, run, &world, sc.cached_baseline),
                fixed(&cfg, run, &world, sc.cached_baseline),
                single_run(&cfg, run, &world),
            );
            agree += u32::from(ra.accept == rb.accept);
            a.add(&ra);
            b.add(&rb);
            c.add(&rc);
        }
        let (wrong_a, _) = table.row(sc.name, sc.accept_is_right, &a, &b, &c, agree, seeds);
        if sc.breaks_case {
            breaking.push((sc.name, wrong_a));
        }
    }
    table.finish();
    println!("adaptive false accepts on patches that break a case (target < 5%):");
    for (name, fa) in breaking {
        println!("  {name:<36} {fa:5.1}% {}", if fa < 5.0 { "met" } else { "MISSED" });
    }
    println!("elapsed {:.1} s", started.elapsed().as_secs_f64());
    scale(&cfg);
    scale::bench(&cfg, &new_gate(&cfg, screen), &sizes, scale_seeds, warm);
}

/// The gate under test in the scale table's "new" columns.
fn new_gate(cfg: &GateConfig, screen: Option<u32>) -> GateConfig {
    let base = GateConfig { sequential: true, ..cfg.clone() };
    GateConfig { screen_trials: screen.unwrap_or(base.screen_trials), ..base }
}

/// One `next_requests` + `decide` on a large gate after the first round, where every case has
/// k noisy trials: the engine's per-call cost is what a runner pays between trial batches.
fn scale(cfg: &GateConfig) {
    let cfg = GateConfig { require_improvement: true, ..cfg.clone() };
    let mut rng = Rng(42);
    let roles = [(Role::Suite, 300), (Role::Target, 50), (Role::Holdout, 150)];
    let mut cases = Vec::new();
    for (role, n) in roles {
        for _ in 0..n {
            let p = rng.uniform(0.3, 1.0);
            let mut c = CaseTrials::new(format!("c{}", cases.len()), role);
            c.push(Arm::Baseline, (0..cfg.k).map(|_| rng.next_f64() < p));
            let q = if role == Role::Target { (p + 0.25).min(1.0) } else { p };
            c.push(Arm::Candidate, (0..cfg.k).map(|_| rng.next_f64() < q));
            cases.push(c);
        }
    }
    let started = Instant::now();
    let reqs = next_requests(&cfg, &cases);
    let d = decide(&cfg, &cases);
    println!(
        "scale: 300 suite + 50 target + 150 holdout cases at k trials: next_requests + decide in {:.1} ms ({} requests; {})",
        started.elapsed().as_secs_f64() * 1e3,
        reqs.len(),
        d.summary
    );
}
