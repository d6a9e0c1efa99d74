//! What `gate_sim` (synthetic worlds) and `gate_example` (real recorded trials) share: the
//! three gating methods driven over an outcome function, their tallies, and the side-by-side
//! table with the agreement target. Each bench only says where trial outcomes come from.
//! Included by both with `#[path = "gate_common.rs"] mod common;` (not a bench of its own).
#![allow(dead_code)]

use std::collections::BTreeMap;

use autoharness::gate::engine::{Arm, CaseTrials, Decision, GateConfig, Role, Rule, Verdict, decide, next_requests};
use autoharness::stats::{Counts, wilson_confidence};

pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One gate decision by one method.
pub struct Run {
    pub accept: bool,
    pub rule: char,
    pub trials: u32,
    pub rounds: u32,
}

impl Run {
    /// `trials` is what the decision spent (callers subtract cached trials).
    pub fn of(d: &Decision, trials: u32, rounds: u32) -> Run {
        Run { accept: d.verdict == Verdict::Pass, rule: rule_letter(&d.rule), trials, rounds }
    }
}

/// R = regression, F = flaky pool, H = holdout drop, N = no improvement, '-' = passed.
fn rule_letter(rule: &Rule) -> char {
    match rule {
        Rule::Passed => '-',
        Rule::Regression { .. } => 'R',
        Rule::FlakyRegression => 'F',
        Rule::StableRegression => 'S',
        Rule::HoldoutDrop => 'H',
        Rule::NoImprovement => 'N',
        Rule::HoldoutRegression { .. } => 'h',
    }
}

/// (a) The adaptive engine: `next_requests` rounds until empty, then `decide`. `outcome(case,
/// arm, trial)` is trial `trial`'s result. Returns the decision and the rounds it took.
pub fn adaptive(
    cfg: &GateConfig,
    cases: Vec<CaseTrials>,
    outcome: impl Fn(usize, Arm, u32) -> bool,
) -> (Decision, u32) {
    adaptive_full(cfg, cases, &outcome, &outcome)
}

/// A trial's outcome appended as the gate does: target cases of a targeted gate record
/// whether the cluster's failure is gone (`outcome`) and whether every check passed (`full`).
fn push(
    cfg: &GateConfig,
    c: &mut CaseTrials,
    i: usize,
    arm: Arm,
    t: u32,
    outcome: &dyn Fn(usize, Arm, u32) -> bool,
    full: &dyn Fn(usize, Arm, u32) -> bool,
) {
    if c.role == Role::Target && cfg.require_improvement {
        c.push_target(arm, outcome(i, arm, t), full(i, arm, t));
    } else {
        c.push(arm, [outcome(i, arm, t)]);
    }
}

/// [`adaptive`] with target cases whose full passes differ from "the failure is gone".
pub fn adaptive_full(
    cfg: &GateConfig,
    mut cases: Vec<CaseTrials>,
    outcome: &dyn Fn(usize, Arm, u32) -> bool,
    full: &dyn Fn(usize, Arm, u32) -> bool,
) -> (Decision, u32) {
    let mut rounds = 0;
    loop {
        let reqs = next_requests(cfg, &cases);
        if reqs.is_empty() {
            break;
        }
        rounds += 1;
        for r in reqs {
            for t in r.first_trial..r.first_trial + r.trials {
                push(cfg, &mut cases[r.case], r.case, r.arm, t, outcome, full);
            }
        }
    }
    (decide(cfg, &cases), rounds)
}

/// (b) The same rules on `k_max` trials of every case and arm (each arm topped up from what it
/// already has). Target cases are not run when improvement is not required: the rules ignore
/// them, running them would only inflate the count.
pub fn fixed(cfg: &GateConfig, cases: Vec<CaseTrials>, outcome: impl Fn(usize, Arm, u32) -> bool) -> Decision {
    fixed_full(cfg, cases, &outcome, &outcome)
}

/// [`fixed`] with separate full passes for target cases (see [`adaptive_full`]); target cases
/// get `target_k_max` trials, as many as the adaptive gate may give them.
pub fn fixed_full(
    cfg: &GateConfig,
    mut cases: Vec<CaseTrials>,
    outcome: &dyn Fn(usize, Arm, u32) -> bool,
    full: &dyn Fn(usize, Arm, u32) -> bool,
) -> Decision {
    for (i, c) in cases.iter_mut().enumerate() {
        if c.role == Role::Target && !cfg.require_improvement {
            continue;
        }
        let n = if c.role == Role::Target { cfg.target_k_max.max(cfg.k_max) } else { cfg.k_max };
        for arm in [Arm::Baseline, Arm::Candidate] {
            let have = c.trials(arm).len() as u32;
            for t in have..n {
                push(cfg, c, i, arm, t, outcome, full);
            }
        }
    }
    decide(cfg, &cases)
}

/// (c) A single-run gate like the peers': one trial per case and arm; accept if the candidate's
/// suite + holdout passes are ≥ the baseline's and, when improvement is required, its target
/// passes are strictly higher.
pub fn single_run(cfg: &GateConfig, roles: &[Role], outcome: impl Fn(usize, Arm, u32) -> bool) -> Run {
    single_run_full(cfg, roles, &outcome, &outcome)
}

/// [`single_run`] judging target cases on full passes, as a one-run gate does.
pub fn single_run_full(
    cfg: &GateConfig,
    roles: &[Role],
    outcome: &dyn Fn(usize, Arm, u32) -> bool,
    full: &dyn Fn(usize, Arm, u32) -> bool,
) -> Run {
    let (mut base, mut cand, mut base_t, mut cand_t, mut trials) = (0, 0, 0, 0, 0);
    for (i, &role) in roles.iter().enumerate() {
        if role == Role::Target && !cfg.require_improvement {
            continue;
        }
        let judge = if role == Role::Target { full } else { outcome };
        let b = u32::from(judge(i, Arm::Baseline, 0));
        let c = u32::from(judge(i, Arm::Candidate, 0));
        trials += 2;
        if role == Role::Target {
            (base_t, cand_t) = (base_t + b, cand_t + c);
        } else {
            (base, cand) = (base + b, cand + c);
        }
    }
    let accept = cand >= base && (!cfg.require_improvement || cand_t > base_t);
    Run { accept, rule: if accept { '-' } else { 'X' }, trials, rounds: 1 }
}

#[derive(Default)]
pub struct Tally {
    pub accepts: u32,
    rules: BTreeMap<char, u32>,
    pub trials: u64,
    rounds: u64,
}

impl Tally {
    pub fn add(&mut self, r: &Run) {
        self.accepts += u32::from(r.accept);
        *self.rules.entry(r.rule).or_default() += 1;
        self.trials += u64::from(r.trials);
        self.rounds += u64::from(r.rounds);
    }

    pub fn rules(&self) -> String {
        self.rules.iter().filter(|(k, _)| **k != '-').map(|(k, v)| format!("{k}{v}")).collect::<Vec<_>>().join(" ")
    }
}

pub fn pct(x: u32, n: u32) -> f64 {
    100.0 * f64::from(x) / f64::from(n)
}

/// The side-by-side table: one row per scenario, then the rejections by rule and the
/// adaptive-vs-fixed agreement against its target.
pub struct Table {
    /// Width of the scenario column.
    width: usize,
    agree: u32,
    n: u32,
    trials_a: u64,
    trials_b: u64,
    notes: Vec<String>,
}

impl Table {
    /// Print the legend and the header.
    pub fn new(width: usize) -> Table {
        println!("acc = % accepted; wrong = % false accepts if the truth is reject, % false rejects if it is accept;");
        println!(
            "trials = mean trials spent per decision (both arms); agree = % same verdict as fixed; a/b = trial ratio\n"
        );
        println!(
            "| {:<width$} | {:<6} | adaptive acc | wrong | trials | rounds | fixed acc | wrong | trials | single acc | \
             wrong | trials | agree | a/b |",
            "scenario", "truth"
        );
        let rule: Vec<String> =
            [width + 2, 8, 14, 7, 8, 8, 11, 7, 8, 12, 7, 8, 7, 5].iter().map(|&n| "-".repeat(n)).collect();
        println!("|{}|", rule.join("|"));
        Table { width, agree: 0, n: 0, trials_a: 0, trials_b: 0, notes: Vec::new() }
    }

    /// One scenario's row from `reps` decisions of each method; returns the wrong-verdict rates
    /// of (adaptive, single-run).
    #[allow(clippy::too_many_arguments)]
    pub fn row(
        &mut self,
        name: &str,
        accept_is_right: bool,
        a: &Tally,
        b: &Tally,
        c: &Tally,
        agree: u32,
        reps: u32,
    ) -> (f64, f64) {
        let wrong = |t: &Tally| if accept_is_right { pct(reps - t.accepts, reps) } else { pct(t.accepts, reps) };
        let mean = |x: u64| x as f64 / f64::from(reps);
        let width = self.width;
        println!(
            "| {:<width$} | {:<6} | {:>12.1} | {:>5.1} | {:>6.1} | {:>6.1} | {:>9.1} | {:>5.1} | {:>6.1} | {:>10.1} | \
             {:>5.1} | {:>6.1} | {:>5.1} | {:>2.0}% |",
            name,
            if accept_is_right { "accept" } else { "reject" },
            pct(a.accepts, reps),
            wrong(a),
            mean(a.trials),
            mean(a.rounds),
            pct(b.accepts, reps),
            wrong(b),
            mean(b.trials),
            pct(c.accepts, reps),
            wrong(c),
            mean(c.trials),
            pct(agree, reps),
            100.0 * a.trials as f64 / b.trials as f64
        );
        self.notes.push(format!("  {:<width$} adaptive {:<16} fixed {}", name, a.rules(), b.rules()));
        self.agree += agree;
        self.n += reps;
        self.trials_a += a.trials;
        self.trials_b += b.trials;
        (wrong(a), wrong(c))
    }

    /// The rejections by rule and the agreement line.
    pub fn finish(&self) {
        println!("\nrejections by rule (R regression, F flaky pool, H holdout drop, N no improvement):");
        for n in &self.notes {
            println!("{n}");
        }
        let agreement = pct(self.agree, self.n);
        let ratio = 100.0 * self.trials_a as f64 / self.trials_b as f64;
        let (lo, _) = wilson_confidence(Counts::new(self.agree, self.n), 0.95);
        println!();
        println!(
            "adaptive vs fixed k_max: agreement {agreement:.1}% (95% Wilson lower bound {:.1}%), trials {ratio:.1}% -> {}",
            100.0 * lo,
            if agreement >= 95.0 && ratio <= 50.0 {
                "target met"
            } else {
                "TARGET MISSED (>= 95% agreement, <= 50% trials)"
            }
        );
    }
}
