//! The suite-scale half of `gate_sim` (issue 21): suites of 30, 300 and 3,000 cases drawn from a
//! realistic pass-rate mix, the regression shapes of the small bench, and what each gating method
//! spends per decision and how often it accepts a regression. Included by `gate_sim.rs` with
//! `#[path = "gate_scale.rs"] mod scale;` (not a bench of its own).
//!
//! A suite of `n` cases has `max(4, n / 8)` holdout cases and the rest in the suite. Each case
//! draws a class: 80% stable (pass rate 0.97–1.0), 12% flaky (0.5–0.9), 5% near the edge
//! (0.85–0.95), 3% stable failures (0–0.03) — the mix of the bundled example's suite and of the
//! recorded SWE-bench runs, rounded. Shapes: neutral (the truth is accept: its column is the false
//! reject rate), one stable case broken (→ 0), two stable cases broken (→ 0.1), one stable case
//! half broken (→ 0.5: what a 2-trial screen misses one time in four), one flaky case
//! broken (→ 0.05), a spread-out drop (a third of the stable suite cases each lose 0.25) and a
//! holdout drop (two stable holdout cases → 0.2). "Warm" columns start every case with `--warm` (30) cached
//! baseline trials of the same harness (a `main` gated earlier that day); cached trials are not
//! counted as spent. The guarantee lines compare the new gate with today's adaptive gate run by
//! run (same worlds, same trial outcomes): the difference in false accepts with a 95% interval,
//! so "worse" is said only when the interval lies above zero. The neutral rows also list which
//! rule rejected (R case, F flaky pool, S stable pool, H holdout pool, h one holdout case).
#![allow(dead_code)]

use autoharness::gate::engine::{GateConfig, Role};

use super::common::{Run, Tally, pct, splitmix64};
use super::{Rng, World, adaptive, fixed, single_run};

/// Indices of the cases of each kind, so a shape can pick which to break.
pub struct Classes {
    stable_suite: Vec<usize>,
    flaky_suite: Vec<usize>,
    stable_holdout: Vec<usize>,
}

pub fn world(rng: &mut Rng, n: usize) -> (World, Classes) {
    let holdout = (n / 8).max(4);
    let mut w = World { roles: Vec::new(), base: Vec::new(), cand: Vec::new(), full_share: Vec::new() };
    let mut k = Classes { stable_suite: Vec::new(), flaky_suite: Vec::new(), stable_holdout: Vec::new() };
    for i in 0..n {
        let role = if i < n - holdout { Role::Suite } else { Role::Holdout };
        let u = rng.next_f64();
        let p = if u < 0.80 {
            if role == Role::Suite {
                k.stable_suite.push(i)
            } else {
                k.stable_holdout.push(i)
            }
            rng.uniform(0.97, 1.0)
        } else if u < 0.92 {
            if role == Role::Suite {
                k.flaky_suite.push(i);
            }
            rng.uniform(0.5, 0.9)
        } else if u < 0.97 {
            rng.uniform(0.85, 0.95)
        } else {
            rng.uniform(0.0, 0.03)
        };
        w.roles.push(role);
        w.base.push(p);
    }
    w.cand = w.base.clone();
    w.full_share = vec![1.0; n];
    (w, k)
}

pub struct Shape {
    pub name: &'static str,
    pub accept_is_right: bool,
    patch: fn(&mut World, &Classes, &mut Rng),
}

fn pick(rng: &mut Rng, from: &[usize], n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    while out.len() < n.min(from.len()) {
        let i = from[rng.below(from.len())];
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

pub const SHAPES: &[Shape] = &[
    Shape { name: "neutral", accept_is_right: true, patch: |_, _, _| {} },
    Shape {
        name: "clear (1 stable -> 0)",
        accept_is_right: false,
        patch: |w, k, rng| pick(rng, &k.stable_suite, 1).into_iter().for_each(|i| w.cand[i] = 0.0),
    },
    Shape {
        name: "two broken (2 stable -> 0.1)",
        accept_is_right: false,
        patch: |w, k, rng| pick(rng, &k.stable_suite, 2).into_iter().for_each(|i| w.cand[i] = 0.1),
    },
    Shape {
        name: "half broken (1 stable -> 0.5)",
        accept_is_right: false,
        patch: |w, k, rng| pick(rng, &k.stable_suite, 1).into_iter().for_each(|i| w.cand[i] = 0.5),
    },
    Shape {
        name: "flaky broken (1 flaky -> 0.05)",
        accept_is_right: false,
        patch: |w, k, rng| pick(rng, &k.flaky_suite, 1).into_iter().for_each(|i| w.cand[i] = 0.05),
    },
    Shape {
        name: "spread-out (1/3 stable -0.25)",
        accept_is_right: false,
        patch: |w, k, rng| {
            let n = k.stable_suite.len().div_ceil(3);
            pick(rng, &k.stable_suite, n).into_iter().for_each(|i| w.cand[i] = (w.base[i] - 0.25).max(0.0));
        },
    },
    Shape {
        name: "holdout drop (2 stable -> 0.2)",
        accept_is_right: false,
        patch: |w, k, rng| pick(rng, &k.stable_holdout, 2).into_iter().for_each(|i| w.cand[i] = 0.2),
    },
];

/// How a method gates one world (the run number seeds its trials).
type Gate = Box<dyn Fn(u64, &World) -> Run + Sync>;

/// A gating method of the scale table: a name and how it runs on one world.
pub struct Method {
    pub name: &'static str,
    run: Gate,
}

/// The methods compared: fixed k_max, single run, today's adaptive gate cold and warm, and the
/// gate under test (`new`) cold and warm.
pub fn methods(today: &GateConfig, new: &GateConfig, warm: u32) -> Vec<Method> {
    let (t1, t2, t3, t4) = (today.clone(), today.clone(), today.clone(), today.clone());
    let (n1, n2) = (new.clone(), new.clone());
    vec![
        Method { name: "fixed k_max", run: Box::new(move |r, w| fixed(&t1, r, w, 0)) },
        Method { name: "single run", run: Box::new(move |r, w| single_run(&t2, r, w)) },
        Method { name: "adaptive", run: Box::new(move |r, w| adaptive(&t3, r, w, 0)) },
        Method { name: "adaptive warm", run: Box::new(move |r, w| adaptive(&t4, r, w, warm)) },
        Method { name: "new", run: Box::new(move |r, w| adaptive(&n1, r, w, 0)) },
        Method { name: "new warm", run: Box::new(move |r, w| adaptive(&n2, r, w, warm)) },
    ]
}

/// Runs per shape for a suite of `n` cases: fewer for big suites (each run costs ∝ n).
fn runs(seeds: u32, n: usize) -> u32 {
    (seeds as usize * 30 / n).max(8) as u32
}

/// Mean trials per decision per (size, shape, method), for the growth lines.
type Means = Vec<Vec<Vec<f64>>>;

/// Whether each method accepted, per run of one (size, shape): `accepts[method][run]`.
type Accepts = Vec<Vec<bool>>;

/// Print one table per suite size and the growth and guarantee lines. `seeds` runs per shape on
/// the 30-case suite, proportionally fewer on the larger ones. Runs are spread over threads
/// (each run is independent and seeded by its number, so the figures do not depend on them).
pub fn bench(today: &GateConfig, new: &GateConfig, sizes: &[usize], seeds: u32, warm: u32) {
    use rayon::prelude::*;
    let methods = methods(today, new, warm);
    println!("\n## Suite scale (issue 21): wrong = % false accepts (regressions) or false rejects (neutral)\n");
    println!("warm = {warm} cached baseline trials per case (`--warm N`)\n");
    let mut means: Means = Vec::new();
    let mut accepts: Vec<Vec<Accepts>> = Vec::new();
    let mut rejected = Vec::new();
    for &n in sizes {
        let reps = runs(seeds, n);
        println!("### {n} cases ({reps} runs per shape)\n");
        let head: Vec<String> = methods.iter().map(|m| format!("{} wrong | trials", m.name)).collect();
        println!("| shape | truth | {} |", head.join(" | "));
        println!("|---|---|{}", "---|---|".repeat(methods.len()));
        let (mut m_size, mut a_size) = (Vec::new(), Vec::new());
        for (s, shape) in SHAPES.iter().enumerate() {
            let per_run: Vec<Vec<Run>> = (0..reps)
                .into_par_iter()
                .map(|seed| {
                    let run = (0x5CA1E << 40) | ((n as u64) << 20) | ((s as u64) << 16) | u64::from(seed);
                    let mut rng = Rng(splitmix64(run ^ 0xC0FFEE));
                    let (mut w, k) = world(&mut rng, n);
                    (shape.patch)(&mut w, &k, &mut rng);
                    methods.iter().map(|m| (m.run)(run, &w)).collect()
                })
                .collect();
            let mut tallies: Vec<Tally> = methods.iter().map(|_| Tally::default()).collect();
            for runs in &per_run {
                runs.iter().zip(&mut tallies).for_each(|(r, t)| t.add(r));
            }
            let cells: Vec<(f64, f64)> = tallies
                .iter()
                .map(|t| {
                    let bad = if shape.accept_is_right { reps - t.accepts } else { t.accepts };
                    (pct(bad, reps), t.trials as f64 / f64::from(reps))
                })
                .collect();
            let row: Vec<String> = cells.iter().map(|(w, t)| format!("{w:5.1} | {t:7.1}")).collect();
            let truth = if shape.accept_is_right { "accept" } else { "reject" };
            println!("| {} | {truth} | {} |", shape.name, row.join(" | "));
            if shape.accept_is_right {
                // What rejected a neutral patch (R case, F flaky pool, S stable pool, H holdout
                // pool, h one holdout case): where the false rejects come from.
                let rules: Vec<String> =
                    methods.iter().zip(&tallies).map(|(m, t)| format!("{} {}", m.name, t.rules())).collect();
                rejected.push(format!("{n} cases, neutral rejected by rule: {}", rules.join("; ")));
            }
            m_size.push(cells.iter().map(|c| c.1).collect());
            a_size.push((0..methods.len()).map(|m| per_run.iter().map(|r| r[m].accept).collect()).collect());
        }
        println!();
        means.push(m_size);
        accepts.push(a_size);
    }
    rejected.iter().for_each(|r| println!("{r}"));
    growth(&methods, sizes, &means);
    guarantee(&methods, sizes, &accepts);
}

/// Trials per decision (mean over shapes) per size, and the ratio per 10× growth of the suite.
fn growth(methods: &[Method], sizes: &[usize], means: &Means) {
    println!("mean trials per decision over the shapes (ratio to the previous size; target <= 2x per 10x):");
    for (m, method) in methods.iter().enumerate() {
        let per_size: Vec<f64> =
            means.iter().map(|s| s.iter().map(|shape| shape[m]).sum::<f64>() / s.len() as f64).collect();
        let cells: Vec<String> = per_size
            .iter()
            .zip(sizes)
            .enumerate()
            .map(
                |(i, (t, n))| {
                    if i == 0 { format!("{n}: {t:.0}") } else { format!("{n}: {t:.0} ({:.1}x)", t / per_size[i - 1]) }
                },
            )
            .collect();
        println!("  {:<14} {}", method.name, cells.join("  "));
    }
}

/// The guarantee: the new gate's false-accept rate is at most today's adaptive gate's on every
/// regression shape (cold against cold, warm against warm), at every size. Both gate the same
/// worlds with the same trial outcomes, so the difference is read from the runs where they
/// disagree (b: only the new gate accepted, c: only today's did): difference (b − c) / n with a
/// 95% normal interval for paired proportions. "worse" = the interval lies above 0, "better" =
/// below 0, "tied" = it holds 0 (then its upper end is how much worse the new gate may be).
fn guarantee(methods: &[Method], sizes: &[usize], accepts: &[Vec<Accepts>]) {
    let col = |name: &str| methods.iter().position(|m| m.name == name).unwrap_or(0);
    let pairs = [(col("new"), col("adaptive")), (col("new warm"), col("adaptive warm"))];
    println!("\nfalse accepts, new gate minus today's adaptive gate (paired runs; points, 95% interval):");
    let mut worse = Vec::new();
    for (size, n) in accepts.iter().zip(sizes) {
        for (s, shape) in SHAPES.iter().enumerate().filter(|(_, s)| !s.accept_is_right) {
            for &(new, today) in &pairs {
                let (a, b) = (&size[s][new], &size[s][today]);
                let only_new = a.iter().zip(b).filter(|(x, y)| **x && !**y).count() as f64;
                let only_today = a.iter().zip(b).filter(|(x, y)| !**x && **y).count() as f64;
                let runs = a.len() as f64;
                let d = (only_new - only_today) / runs;
                let var = ((only_new + only_today) / runs - d * d) / runs;
                let half = 1.96 * var.max(0.0).sqrt();
                let (lo, hi) = (100.0 * (d - half), 100.0 * (d + half));
                let verdict = if lo > 0.0 {
                    "WORSE"
                } else if hi < 0.0 {
                    "better"
                } else {
                    "tied"
                };
                println!(
                    "  {n:>5} {:<32} {:<9} {:+5.1} [{lo:+5.1}, {hi:+5.1}] ({} only new, {} only today, {} runs) {verdict}",
                    shape.name,
                    methods[new].name,
                    100.0 * d,
                    only_new,
                    only_today,
                    a.len()
                );
                if verdict == "WORSE" {
                    worse.push(format!("{n} {} {}", shape.name, methods[new].name));
                }
            }
        }
    }
    if worse.is_empty() {
        println!("new gate significantly worse than today's adaptive gate on no shape and size");
    } else {
        println!("new gate significantly WORSE on: {}", worse.join("; "));
    }
}

/// `--diagnose RUNS`: the "flaky broken" shape with a warm baseline on `n` cases, today's gate
/// against the new one on the same worlds; for every run where they disagree, the broken case's
/// trials, its p, Tarone's K and level, and both pools (how docs/gate.md's cause was found).
pub fn diagnose(today: &GateConfig, new: &GateConfig, n: usize, reps: u32) {
    use super::{initial_cases, outcome};
    let s = 3usize;
    let shape = &SHAPES[s];
    let (mut only_new, mut only_today) = (0, 0);
    for seed in 0..reps {
        let run = (0x5CA1E << 40) | ((n as u64) << 20) | ((s as u64) << 16) | u64::from(seed);
        let mut rng = Rng(splitmix64(run ^ 0xC0FFEE));
        let (mut w, k) = world(&mut rng, n);
        (shape.patch)(&mut w, &k, &mut rng);
        let Some(broken) = (0..w.cand.len()).find(|&i| w.cand[i] != w.base[i]) else { continue };
        let go = |cfg: &GateConfig| {
            let cases = initial_cases(run, &w, 30);
            super::common::adaptive_full(cfg, cases, &|i, arm, t| outcome(run, &w, i, arm, t), &|i, arm, t| {
                outcome(run, &w, i, arm, t)
            })
            .0
        };
        let (a, b) = (go(today), go(new));
        let (pa, pb) = (
            a.verdict == autoharness::gate::engine::Verdict::Pass,
            b.verdict == autoharness::gate::engine::Verdict::Pass,
        );
        if pa == pb {
            continue;
        }
        if pb {
            only_new += 1
        } else {
            only_today += 1
        }
        let show = |d: &autoharness::gate::engine::Decision| {
            let c = &d.cases[broken];
            format!(
                "complete={} outcome={:?} K={} t={:.4} case {}/{} vs {}/{} p={:?} flaky={:?} stable={:?} rule={:?}",
                d.complete,
                d.cases[broken].outcome,
                d.suite.testable_hypotheses,
                d.suite.per_case_alpha,
                c.candidate_passes,
                c.candidate_n,
                c.baseline_passes,
                c.baseline_n,
                c.p_value,
                d.suite.flaky.as_ref().map(|f| (
                    f.flips_to_fail,
                    f.flips_to_pass,
                    f.cases,
                    format!("{:.4}", f.p_value)
                )),
                d.suite.stable.as_ref().map(|f| format!("{:.4}", f.p_value)),
                d.rule
            )
        };
        println!(
            "seed {seed} base={:.2} only_{}\n  today: {}\n  new:   {}",
            w.base[broken],
            if pb { "new" } else { "today" },
            show(&a),
            show(&b)
        );
    }
    println!("only new {only_new}, only today {only_today}");
}
