//! The gate's decision engine: a pure, deterministic state machine over per-case trial outcomes.
//!
//! The caller owns all I/O. It asks [`next_requests`] what to run, runs those trials (trial `i`
//! of a case uses seed `i` on both arms, so outcomes are paired by seed), appends the outcomes to
//! [`CaseTrials`], and asks again until the list is empty; then [`decide`] gives the verdict and
//! every number behind it. Both functions are cheap to call (sub-millisecond for a few dozen
//! cases), so a runner with fewer workers than requests should re-ask as each trial finishes and
//! drop requests that are no longer listed: that is what makes a broken candidate fail fast.
//!
//! # Rules as implemented
//!
//! Every case gets `k` trials per arm first. After that, trials are added `step` at a time (both
//! arms, keeping seeds paired) and only to cases or groups whose verdict is *uncertain*, up to
//! `k_max`. A component (a suite case, the flaky-suite pool, the target pool, the holdout pool)
//! is *settled* when its verdict is final: either it has `k_max` trials, or the posterior
//! predictive probability that completing it to `k_max` would flip its verdict is at most
//! `flip_tolerance` (Jeffreys Beta(½, ½) priors on each arm's pass rate). The strict
//! best-case/worst-case version ([`crate::stats::fisher_lower_can_flip`]) is useless as a stopping
//! rule — seven failures in a row can always still arrive — so "cannot change" is read as
//! "changes with probability ≤ `flip_tolerance`"; with 0 the engine stops early only where no
//! outcome of the remaining trials can change the verdict. [`next_requests`] is empty as soon as
//! any rejecting component is settled (nothing can turn a confirmed failure into a pass) or every
//! component is settled. Arms may be ragged (e.g. a baseline with cached history beyond `k_max`):
//! per-case tests use every trial, pooled tests the seed-paired prefix.
//!
//! 1. **Suite regressions, per case.** Each active-suite case gets a one-sided Fisher exact test
//!    (candidate pass rate lower than baseline's) on all its trials. A case regresses when
//!    p ≤ α/K, where K is **Tarone's** count of testable hypotheses: the smallest K such that at
//!    most K hypotheses can reach p ≤ α/K given their margins. Fisher's test conditions on the
//!    margins, so a case where every trial on both arms passed (or the baseline never passes) can
//!    never produce a false rejection and does not dilute α; this is exactly Bonferroni over the
//!    cases that matter and keeps family-wise error ≤ α while being far less conservative than
//!    α/12 on a 12-case suite. Any K larger than Tarone's is also valid, and the engine uses the
//!    larger of K on today's margins and K on the margins projected to `k_max` at today's pass
//!    rates, so an early look (where only suspicious cases have been topped up) never gets a
//!    laxer level than the full design. Holm's step-down would only add rejections after the
//!    first, and one rejection already fails the gate, so the single-step form loses nothing.
//!    Fisher (conditional) rather than an unconditional test such as Boschloo's is deliberate:
//!    conditioning on the margins is what lets Tarone drop cases that cannot fail, which is
//!    worth more here than Boschloo's extra power per test.
//!    - A case is judged by the same test whatever its baseline class. A 3/3 baseline case with a
//!      candidate failure is *not* a regression yet: it is always topped up at least once (this
//!      also keeps the evidence from resting only on the trials that made the case look
//!      suspicious). A case significant at α/K is confirmed only after a top-up *and* when the
//!      predictive probability that it stops being significant by `k_max` is ≤ `flip_tolerance`.
//!      Cases whose candidate never failed are settled without more trials.
//!    - **Flaky** baseline cases (mixed outcomes) are never rejected for "a candidate failure":
//!      they need the same significant per-case drop, which a truly large drop on one flaky case
//!      reaches (a pooled test dilutes it among the other flaky cases). In addition, a pooled
//!      one-sided exact sign test over the seed-paired discordant trials of all flaky suite cases
//!      catches drops spread thinly over several of them (`FlakyRegression`). It is one more
//!      hypothesis in the same Tarone family, so the suite's family-wise error stays ≤ α.
//!    - Stable-fail baseline cases cannot regress (their Fisher test cannot reach any threshold).
//! 2. **Target improvement** (only when `require_improvement`): a one-sided exact sign test on the
//!    discordant (case, seed) pairs pooled over the target cases (McNemar's exact test on the
//!    paired table) at α, **and** a mean per-case pass-rate gain ≥ `min_effect`. Pooling pairs is
//!    what gives power with 3–5 target cases; the effect floor stops a significant but useless
//!    change from passing. Otherwise `NoImprovement`. Target cases are not run at all when
//!    improvement is not required: no outcome of theirs could change the decision.
//! 3. **Holdout** only vetoes: a one-sided exact sign test for a drop on the pooled seed-paired
//!    discordant holdout trials at `holdout_alpha` gives `HoldoutDrop`. It is never used to choose
//!    or to pass a candidate, and like a regression it is only confirmed after a top-up.
//! 4. Precedence of the reported rule: a settled failure first (Regression, FlakyRegression,
//!    HoldoutDrop, NoImprovement in that order), else the same order on the current data.
//!
//! Error budget: a candidate identical to the baseline is rejected by the suite with probability
//! ≤ α (Tarone–Bonferroni) plus ≤ `holdout_alpha`, before the small inflation from looking again
//! after each top-up (interim confirmation needs a top-up and predicted survival to `k_max`,
//! which keeps the inflation small; `benches/gate_sim.rs` measures it). Regressions are found
//! with the power the trial budget allows: "no evidence of a regression" is a pass, so a drop
//! too small to detect in `k_max` trials is accepted — the report's Wilson intervals show how
//! small a drop the evidence rules out. The binding case is a flaky case breaking: with ten
//! trials of a baseline that passes 50–80% of the time, even a test that knew the baseline rate
//! would miss 0.5 → 0.05 about one time in ten at α/K; `k_max = 20`, or cached baseline history
//! (which the engine uses when present), is what closes that gap.
//!
//! # Sequential allocation (`sequential`, opt-in)
//!
//! A suite case whose history is not flaky (`prior_fail_rate` ≤ 0.05) starts on the candidate
//! alone: a candidate that passes every trial cannot show a drop whatever the baseline does (its
//! one-sided Fisher p is 1), so the baseline is run only once the candidate fails, and from then
//! on the case is judged by the rules above (`k` trials of both arms, top-ups). A suite case with
//! a warm baseline (`CaseTrials::history`: at least `k_max` trials recorded before the gate, the
//! first `k_max / 2` of them at most 5% failures) is *screened*: `screen_trials` candidate trials
//! (`k` by default) and no fresh baseline; a case that breaks to pass rate q passes its screen
//! with probability q^n. Holdout and target cases always run both arms: the holdout's pooled drop
//! test needs the pairs of every holdout case, the target's gain both arms. A real gate's warm
//! baseline is the case's recorded trials of the same baseline hash, case and environment
//! (`session::warm_baseline`). Leaving baselines out only ever removes flips to pass from the
//! pooled sign tests, so it can make them reject more, never less.
//!
//! The screened cases form one more pooled hypothesis: a one-sided Fisher test of their first
//! `screen_trials` candidate trials against `m` baseline trials of each taken after the first
//! `k_max / 2` (whether a case is screened is read on those only, never on the prior, so the
//! trials that chose the members are not the ones they are tested on; `m` is chosen from trial
//! counts alone). It is what catches a drop spread thinly over many stable cases
//! (`StableRegression`). It is not counted in the suite's Tarone K: it is tested at the family's
//! slack, (K − c)·α/K with c the hypotheses that can reach α/K on today's margins, so Bonferroni
//! over everything still sums to at most α. Counted in K it made K one larger on nearly every
//! warm gate (its margins always allow significance), which settled broken flaky cases as passes
//! (docs/gate.md).
//!
//! # Request order
//!
//! Top-ups of suite cases that already show a suspicious candidate failure come first (smallest
//! p first: closest to confirming a regression), then first trials and pool top-ups of suite and
//! target cases by risk (candidate failure rate shrunk towards `prior_fail_rate`), holdout last
//! (it rarely decides). Within a case the candidate's trials come before the baseline's, whose
//! results are often cached.
//!
//! # Bounded work
//!
//! Predictions look at most [`LOOKAHEAD`] trials ahead per case (all of `k_max` with the
//! defaults), and a pool with many cases shortens its look-ahead so the convolution stays
//! bounded; `k_max` is capped at [`MAX_TRIALS`]. Malformed input (NaN rates, `k > k_max`, ragged
//! arms) is sanitised, never a panic.

use serde::{Deserialize, Serialize};

use crate::stats::{self, Counts};

/// Highest `k_max` the engine accepts; more is a benchmark, not a gate.
pub const MAX_TRIALS: u32 = 100;

/// Furthest ahead (trials per case) a prediction looks.
pub const LOOKAHEAD: u32 = 20;

/// Work budget (cell updates) for one pooled prediction.
const POOL_BUDGET: f64 = 2e7;

/// Where a case comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Active regression suite: must not regress.
    Suite,
    /// The targeted cluster's cases: must improve when improvement is required.
    Target,
    /// Sealed holdout: may only veto.
    Holdout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    Baseline,
    Candidate,
}

/// Gate parameters. Out-of-range values are clamped (see [`GateConfig::default`] for defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GateConfig {
    /// Trials per case per arm before anything else (3).
    pub k: u32,
    /// Most trials per case per arm (10, at most [`MAX_TRIALS`]).
    pub k_max: u32,
    /// Trials added per arm to an uncertain case in one round (2). Smaller spends fewer trials,
    /// larger needs fewer rounds.
    pub step: u32,
    /// Family-wise level of the suite's regression tests and level of the target test (0.05).
    pub alpha: f64,
    /// Smallest mean per-case gain on the target cases that counts as an improvement (0.05,
    /// absolute): the one-sided 1 − α lower confidence bound of the gain must reach it, so a
    /// tiny real gain that looks large in one draw does not pass.
    pub min_effect: f64,
    /// Whether the candidate must improve the target cases (`run`: yes; a pre-merge `gate`
    /// of a human change usually only guards against regressions). Default false.
    pub require_improvement: bool,
    /// Level of the holdout's drop test (0.05).
    pub holdout_alpha: f64,
    /// Stop sampling a component once more trials would flip its verdict with a posterior
    /// predictive probability of at most this (0.05). 0 = stop early only where nothing can flip
    /// it (a suite case whose candidate never failed still needs no top-up).
    pub flip_tolerance: f64,
    /// Most trials per target case per arm (20): showing a gain with a confidence bound needs
    /// more pairs than ruling out a regression, and the target pool stops as soon as it is settled.
    pub target_k_max: u32,
    /// Sequential allocation (see "Sequential allocation" in the module doc). Default false:
    /// every case gets `k` trials on both arms first.
    pub sequential: bool,
    /// Sequential only: candidate trials a screened case (warm history, see "Sequential
    /// allocation") gets before it is judged, at most `k`. A case that breaks to pass rate q
    /// slips through with probability q^n. `k` (3) by default: with 2, one stable case broken to
    /// a 50% pass rate slipped through 25% of the time against adaptive's 12.5%, and the gate
    /// accepted it +1.8 points more often (`gate_sim`, "half broken").
    pub screen_trials: u32,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            k: 3,
            k_max: 10,
            step: 2,
            alpha: 0.05,
            min_effect: 0.05,
            require_improvement: false,
            holdout_alpha: 0.05,
            flip_tolerance: 0.05,
            target_k_max: 20,
            sequential: false,
            screen_trials: 3,
        }
    }
}

/// Outcomes so far of one case on both arms; index = trial = seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseTrials {
    pub id: String,
    pub role: Role,
    pub baseline: Vec<bool>,
    pub candidate: Vec<bool>,
    /// How likely the case is to fail a candidate, 0..1 (history); only orders requests.
    pub prior_fail_rate: f64,
    /// Target cases of a targeted gate: full passes (every check), seed-paired with
    /// `baseline`/`candidate` (which say whether the cluster's own failure is gone). A target
    /// case whose full-pass rate drops is a regression like any suite case's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline_full: Vec<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidate_full: Vec<bool>,
    /// How many of the first `baseline` trials were recorded before this gate (its warm history,
    /// same baseline hash, case and environment). Sequential allocation screens a case on these
    /// alone: trials the gate itself ran were chosen by what the candidate showed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub history: u32,
}

/// For `skip_serializing_if`: a count that is 0 is left out of the JSON.
pub(crate) fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl CaseTrials {
    pub fn new(id: impl Into<String>, role: Role) -> Self {
        CaseTrials {
            id: id.into(),
            role,
            baseline: Vec::new(),
            candidate: Vec::new(),
            prior_fail_rate: 0.0,
            baseline_full: Vec::new(),
            candidate_full: Vec::new(),
            history: 0,
        }
    }

    pub fn trials(&self, arm: Arm) -> &[bool] {
        match arm {
            Arm::Baseline => &self.baseline,
            Arm::Candidate => &self.candidate,
        }
    }

    /// Append outcomes of the trials a [`Request`] asked for, in seed order.
    pub fn push(&mut self, arm: Arm, outcomes: impl IntoIterator<Item = bool>) {
        match arm {
            Arm::Baseline => self.baseline.extend(outcomes),
            Arm::Candidate => self.candidate.extend(outcomes),
        }
    }

    /// Append a target case's trials: whether the cluster's own failure is gone, and whether
    /// the trial passed every check.
    pub fn push_target(&mut self, arm: Arm, fixed: bool, full: bool) {
        match arm {
            Arm::Baseline => {
                self.baseline.push(fixed);
                self.baseline_full.push(full);
            }
            Arm::Candidate => {
                self.candidate.push(fixed);
                self.candidate_full.push(full);
            }
        }
    }
}

/// Run `trials` trials of `cases[case]` on `arm`, with trial indices (and seeds)
/// `first_trial .. first_trial + trials`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub case: usize,
    pub arm: Arm,
    pub first_trial: u32,
    pub trials: u32,
}

crate::schema::text_enum! {
    pub enum Verdict ("gate verdict") {
        Pass = "pass",
        Fail = "fail",
    }
}

/// Why the verdict is what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    Passed,
    /// A suite case's pass rate dropped significantly (per-case test, Tarone-corrected).
    Regression {
        case: String,
    },
    /// The flaky suite cases dropped significantly taken together.
    FlakyRegression,
    /// The screened stable suite cases dropped significantly taken together (sequential only).
    StableRegression,
    /// The target cases did not improve significantly by at least `min_effect`.
    NoImprovement,
    /// The holdout dropped significantly.
    HoldoutDrop,
    /// One holdout case dropped significantly on its own (same per-case test as the suite).
    HoldoutRegression {
        case: String,
    },
}

/// A case's behaviour on the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    StablePass,
    StableFail,
    Flaky,
    /// No baseline trials yet.
    Untested,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseOutcome {
    /// Suite: significant drop (the rule). Target/holdout: one-sided Fisher p ≤ α (descriptive).
    Regressed,
    /// One-sided Fisher p ≤ α for a higher candidate pass rate (descriptive, uncorrected).
    Improved,
    Unchanged,
    /// The engine wanted more trials for this case.
    Uncertain,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseVerdict {
    pub id: String,
    pub role: Role,
    pub class_baseline: Class,
    pub outcome: CaseOutcome,
    pub baseline_passes: u32,
    pub baseline_n: u32,
    pub candidate_passes: u32,
    pub candidate_n: u32,
    /// Seed-paired trials where the baseline passed and the candidate failed.
    pub flips_to_fail: u32,
    /// Seed-paired trials where the baseline failed and the candidate passed.
    pub flips_to_pass: u32,
    /// One-sided Fisher exact p in the direction that matters for the role: candidate lower for
    /// suite and holdout, candidate higher for target. None without trials on both arms.
    pub p_value: Option<f64>,
    /// 95% Wilson intervals of the pass rates.
    pub wilson_baseline: (f64, f64),
    pub wilson_candidate: (f64, f64),
    /// Sequential allocation: how the case started (absent = `k` trials on both arms).
    #[serde(skip_serializing_if = "Start::is_both")]
    pub start: Start,
    /// Sequential allocation: the candidate failed, so the case got its baseline and was judged
    /// on `k` or more trials of both arms.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub escalated: bool,
}

/// Pooled seed-paired evidence over a group of cases.
#[derive(Debug, Clone, Serialize)]
pub struct PairedStats {
    pub cases: u32,
    /// Seed-paired trials (the first `min(baseline_n, candidate_n)` of each case).
    pub pairs: u32,
    pub flips_to_fail: u32,
    pub flips_to_pass: u32,
    pub baseline_passes: u32,
    pub baseline_n: u32,
    pub candidate_passes: u32,
    pub candidate_n: u32,
    pub wilson_baseline: (f64, f64),
    pub wilson_candidate: (f64, f64),
    /// Mean over cases of (candidate − baseline) pass rate on the paired trials.
    pub effect: f64,
    /// One-sided exact sign test on the flips, in the direction the rule looks for.
    pub p_value: f64,
    /// Target pool: the one-sided 1 − α lower confidence bound of the mean gain, which
    /// `min_effect` is judged against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gain_lower_bound: Option<f64>,
    /// The level `p_value` is compared with.
    pub alpha: f64,
    pub significant: bool,
    /// False when the engine wanted more trials for this group.
    pub settled: bool,
}

/// The suite's multiplicity control.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteStats {
    pub cases: u32,
    /// Tarone's K: hypotheses that can still reach significance given their margins.
    pub testable_hypotheses: u32,
    /// α / K, the level each per-case test (and the flaky pool) is held to.
    pub per_case_alpha: f64,
    /// Pooled drop test over the flaky-baseline suite cases, if any.
    pub flaky: Option<PairedStats>,
    /// Sequential only: pooled drop test over the screened suite cases (their first
    /// `screen_trials` candidate trials against an equal share of each one's baseline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable: Option<PairedStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetStats {
    #[serde(flatten)]
    pub paired: PairedStats,
    pub min_effect: f64,
    /// Significant and at least `min_effect`.
    pub improved: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct HoldoutStats {
    #[serde(flatten)]
    pub paired: PairedStats,
    pub dropped: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub rule: Rule,
    /// True when no further trial was wanted ([`next_requests`] is empty). A decision taken
    /// early (budget, interruption) applies the rules to the evidence so far.
    pub complete: bool,
    pub cases: Vec<CaseVerdict>,
    pub suite: SuiteStats,
    pub target: Option<TargetStats>,
    pub holdout: Option<HoldoutStats>,
    pub trials_baseline: u32,
    pub trials_candidate: u32,
    pub summary: String,
}

/// What to run next, most decisive first; empty = the decision is final.
pub fn next_requests(cfg: &GateConfig, cases: &[CaseTrials]) -> Vec<Request> {
    analyze(cfg, cases).requests
}

/// The verdict on the evidence so far, with every number behind it.
pub fn decide(cfg: &GateConfig, cases: &[CaseTrials]) -> Decision {
    analyze(cfg, cases).decision
}

// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Missing some of the first `k` trials.
    Pending,
    Uncertain,
    /// Settled, not rejecting.
    Pass,
    /// Settled, rejecting.
    Fail,
}

impl Status {
    fn settled(self) -> bool {
        matches!(self, Status::Pass | Status::Fail)
    }
}

struct Cfg {
    k: u32,
    k_max: u32,
    target_k_max: u32,
    step: u32,
    alpha: f64,
    holdout_alpha: f64,
    min_effect: f64,
    require_improvement: bool,
    eps: f64,
    sequential: bool,
    screen: u32,
}

fn level(x: f64, default: f64) -> f64 {
    if x > 0.0 && x <= 1.0 { x } else { default }
}

fn sanitize(cfg: &GateConfig) -> Cfg {
    let k_max = cfg.k_max.clamp(1, MAX_TRIALS);
    Cfg {
        k: cfg.k.clamp(1, k_max),
        k_max,
        target_k_max: cfg.target_k_max.clamp(k_max, MAX_TRIALS),
        step: cfg.step.max(1),
        alpha: level(cfg.alpha, 0.05),
        holdout_alpha: level(cfg.holdout_alpha, 0.05),
        min_effect: if cfg.min_effect.is_finite() { cfg.min_effect.clamp(0.0, 1.0) } else { 0.0 },
        require_improvement: cfg.require_improvement,
        eps: if cfg.flip_tolerance.is_finite() { cfg.flip_tolerance.clamp(0.0, 1.0) } else { 0.05 },
        sequential: cfg.sequential,
        screen: cfg.screen_trials.clamp(1, cfg.k.clamp(1, k_max)),
    }
}

struct CaseData {
    base: Counts,
    cand: Counts,
    pairs: u32,
    to_fail: u32,
    to_pass: u32,
    class: Class,
    pending: bool,
    at_max: bool,
    risk: f64,
    /// Most trials per arm for this case (`k_max`, or `target_k_max` for target cases).
    kmax: u32,
    /// Trials per arm the case needs before it is judged: `k`, fewer on the candidate of a
    /// screened case, none on the baseline of a sequential case whose candidate never failed.
    first: Start,
    /// How the case started, before any candidate trial (the report's "why this many trials").
    plan: Start,
}

/// Why a case starts with the trials it does (sequential allocation; shown in the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// `k` trials on both arms (today's rule, target cases, and any case whose candidate failed).
    Both,
    /// Sequential: the candidate first; the baseline only if the candidate fails.
    CandidateFirst,
    /// Sequential, warm stable baseline: `screen_trials` candidate trials, no fresh baseline.
    Screened,
}

impl Start {
    fn is_both(&self) -> bool {
        *self == Start::Both
    }
}

impl CaseData {
    fn new(cfg: &Cfg, c: &CaseTrials) -> Self {
        let kmax = if c.role == Role::Target { cfg.target_k_max } else { cfg.k_max };
        // History says the case is flaky: its baseline is needed for the flaky pool whatever the
        // candidate does (leaving out the cases whose candidate happened to pass would bias the
        // pool towards drops).
        let stable_history = c.prior_fail_rate.is_finite() && c.prior_fail_rate <= 0.05;
        // A warm history whose first trials are clean may be screened whatever the prior says:
        // the prior is read over the case's recent trials, these included, so requiring it would
        // make the stable pool's members depend on the trials it tests them on.
        let warm = (c.history as usize).min(c.baseline.len());
        let screen = warm >= cfg.k_max as usize && clean_head(cfg, &c.baseline[..warm]);
        // Only suite cases start lazily: the holdout's pooled drop test needs the pairs of every
        // holdout case, including those whose candidate passed its first trials (without them a
        // drop spread over the holdout went unseen: +8.5 points of false accepts on the bundled
        // example's moderate regression), and target cases need both arms to show a gain.
        let plan = match (cfg.sequential && c.role == Role::Suite, screen, stable_history) {
            (true, true, _) => Start::Screened,
            (true, false, true) => Start::CandidateFirst,
            _ => Start::Both,
        };
        Self::of(cfg, &c.baseline, &c.candidate, c.prior_fail_rate, kmax, plan)
    }

    /// `plan`: how the case starts before any candidate trial (see [`Start`]).
    fn of(cfg: &Cfg, baseline: &[bool], candidate: &[bool], prior_fail_rate: f64, kmax: u32, plan: Start) -> Self {
        let base = Counts::from_outcomes(baseline);
        let cand = Counts::from_outcomes(candidate);
        let (mut pairs, mut to_fail, mut to_pass) = (0u32, 0u32, 0u32);
        for (&b, &k) in baseline.iter().zip(candidate) {
            pairs = pairs.saturating_add(1);
            to_fail = to_fail.saturating_add(u32::from(b && !k));
            to_pass = to_pass.saturating_add(u32::from(!b && k));
        }
        let class = match (base.trials, base.passes) {
            (0, _) => Class::Untested,
            (n, p) if p == n => Class::StablePass,
            (_, 0) => Class::StableFail,
            _ => Class::Flaky,
        };
        let prior = if prior_fail_rate.is_finite() { prior_fail_rate.clamp(0.0, 1.0) } else { 0.0 };
        // Observed candidate failure rate shrunk towards the prior with the weight of two trials.
        let risk = (f64::from(cand.failures()) + 2.0 * prior) / (f64::from(cand.trials) + 2.0);
        // A candidate that passed every trial cannot show a drop whatever the baseline does (the
        // one-sided Fisher p is 1), so its baseline is not needed; once the candidate fails the
        // case is judged like any other, on `k` trials of both arms.
        let first = if cand.failures() > 0 { Start::Both } else { plan };
        let (need_cand, need_base) = match first {
            Start::Both => (cfg.k, cfg.k),
            Start::CandidateFirst => (cfg.k, 0),
            Start::Screened => (cfg.screen, 0),
        };
        CaseData {
            base,
            cand,
            pairs,
            to_fail,
            to_pass,
            class,
            pending: base.trials < need_base || cand.trials < need_cand,
            at_max: base.trials >= kmax && cand.trials >= kmax,
            risk,
            kmax,
            first,
            plan,
        }
    }

    /// Sequential: its warm history made this case one the candidate is screened on, whatever
    /// the candidate has shown since.
    fn screenable(&self) -> bool {
        self.plan == Start::Screened
    }

    /// Trials per arm a pending case is brought to (the plan has one count for both arms; an
    /// arm that has more already gets nothing).
    fn first_trials(&self, cfg: &Cfg) -> u32 {
        if self.first == Start::Screened { cfg.screen } else { cfg.k }
    }

    fn min_trials(&self) -> u32 {
        self.base.trials.min(self.cand.trials)
    }

    /// Per-arm trial count after one more round.
    fn top_up(&self, cfg: &Cfg) -> u32 {
        self.min_trials().saturating_add(cfg.step).min(self.kmax)
    }
}

/// Baseline trials whose outcomes decide whether a warm case is screened: the first half of
/// `k_max`. The stable pool tests its members on the trials after these, so the trials that chose
/// a member are never the ones it is tested on, and a history of exactly `k_max` trials (what one
/// earlier gate of the same baseline records) still leaves half for the test.
fn head_len(cfg: &Cfg) -> usize {
    (cfg.k_max as usize / 2).max(1)
}

/// Whether the screening trials (`head_len`) have at most 5% failures.
fn clean_head(cfg: &Cfg, baseline: &[bool]) -> bool {
    let head = Counts::from_outcomes(&baseline[..baseline.len().min(head_len(cfg))]);
    head.trials > 0 && head.failures().saturating_mul(20) <= head.trials
}

/// Trials a prediction adds to an arm: up to the case's `k_max`, at most [`LOOKAHEAD`].
fn horizon(d: &CaseData, arm: Counts) -> u32 {
    d.kmax.saturating_sub(arm.trials).min(LOOKAHEAD)
}

/// Smallest attainable Fisher p of a suite case if both arms had `k_max` trials at today's pass
/// rates (plain rates, so a case that never failed keeps its degenerate margins).
fn project(d: &CaseData) -> f64 {
    let arm = |c: Counts| {
        let n = c.trials.max(d.kmax);
        let extra = f64::from(n - c.trials) * c.rate();
        Counts::new(c.passes + extra.round() as u32, n)
    };
    if d.base.trials == 0 || d.cand.trials == 0 {
        return 1.0;
    }
    stats::fisher_lower_min_p(arm(d.cand), arm(d.base))
}

/// Tarone's modified Bonferroni: smallest K with at most K hypotheses able to reach α/K.
fn tarone(alpha: f64, min_ps: &[f64]) -> u32 {
    let m = u32::try_from(min_ps.len()).unwrap_or(u32::MAX);
    for k in 1..=m {
        let t = alpha / f64::from(k);
        if u32::try_from(min_ps.iter().filter(|&&p| p <= t).count()).unwrap_or(u32::MAX) <= k {
            return k;
        }
    }
    m.max(1)
}

/// Sign-test critical values for discordant totals `lo..lo + len`: the smallest number of flips in
/// the tested direction with one-sided p ≤ `alpha` (`d + 1` if none).
struct Critical {
    lo: u32,
    vals: Vec<u32>,
}

impl Critical {
    fn new(lo: u32, hi: u32, alpha: f64) -> Self {
        let vals = (lo..=hi)
            .map(|d| {
                let mut tail = 0.0;
                for w in (0..=d).rev() {
                    tail += stats::binomial_pmf(w, d, 0.5);
                    if tail > alpha * (1.0 + 1e-12) {
                        return w + 1;
                    }
                }
                0
            })
            .collect();
        Critical { lo, vals }
    }

    /// Whether `flips` out of `discordant` is significant; totals outside the table never are.
    fn significant(&self, flips: u32, discordant: u32) -> bool {
        discordant.checked_sub(self.lo).and_then(|i| self.vals.get(i as usize)).is_some_and(|&c| flips >= c)
    }
}

/// Posterior predictive distribution of the extra (to_fail, to_pass) flips of a pool of cases,
/// each topped up towards `k_max`: cell `(r, c)` of the `rows × cols` grid holds the probability of
/// `row0 + r` extra flips to fail and `col0 + c` to pass. Negligible margins are trimmed as the grid
/// grows, so a large pool costs a window a few standard deviations wide, not its full range.
struct PoolFuture {
    grid: Vec<f64>,
    rows: usize,
    cols: usize,
    row0: u32,
    col0: u32,
    /// The pool's paired trials after the look-ahead.
    final_pairs: u32,
}

/// Mass below which a margin row or column of the predictive grid is dropped.
const TRIM: f64 = 1e-13;

fn pool_future(data: &[CaseData], members: &[usize]) -> PoolFuture {
    let full: Vec<u32> = members.iter().map(|&i| data[i].kmax.saturating_sub(data[i].pairs).min(LOOKAHEAD)).collect();
    // Shorten the look-ahead for big pools so the convolution stays within budget.
    let mut cap = full.iter().copied().max().unwrap_or(0);
    while cap > 1 {
        let total: f64 = full.iter().map(|&h| f64::from(h.min(cap))).sum();
        let cost = members.len() as f64 * (total + 1.0).powi(2) * (f64::from(cap) + 1.0).powi(2);
        if cost <= POOL_BUDGET {
            break;
        }
        cap -= 1;
    }
    let mut f = PoolFuture { grid: vec![1.0], rows: 1, cols: 1, row0: 0, col0: 0, final_pairs: 0 };
    for (&i, &h) in members.iter().zip(&full) {
        let h = h.min(cap);
        let d = &data[i];
        f.final_pairs = f.final_pairs.saturating_add(d.pairs.saturating_add(h));
        if h == 0 {
            continue;
        }
        let case = stats::discordant_predictive(d.cand, d.base, h);
        let hs = h as usize + 1;
        let (rows, cols) = (f.rows + h as usize, f.cols + h as usize);
        let mut next = vec![0.0; rows * cols];
        for r0 in 0..f.rows {
            for c0 in 0..f.cols {
                let w = f.grid[r0 * f.cols + c0];
                if w < 1e-16 {
                    continue;
                }
                for r1 in 0..hs {
                    let from = &case[r1 * hs..(r1 + 1) * hs];
                    let at = (r0 + r1) * cols + c0;
                    for (o, &v) in next[at..at + hs].iter_mut().zip(from) {
                        *o += w * v;
                    }
                }
            }
        }
        f.trim(next, rows, cols);
    }
    f
}

impl PoolFuture {
    fn trim(&mut self, grid: Vec<f64>, rows: usize, cols: usize) {
        let row_mass = |r: usize| grid[r * cols..(r + 1) * cols].iter().sum::<f64>();
        let col_mass = |c: usize| (0..rows).map(|r| grid[r * cols + c]).sum::<f64>();
        let r_lo = (0..rows).find(|&r| row_mass(r) > TRIM).unwrap_or(0);
        let r_hi = (r_lo..rows).rev().find(|&r| row_mass(r) > TRIM).unwrap_or(r_lo);
        let c_lo = (0..cols).find(|&c| col_mass(c) > TRIM).unwrap_or(0);
        let c_hi = (c_lo..cols).rev().find(|&c| col_mass(c) > TRIM).unwrap_or(c_lo);
        let (new_rows, new_cols) = (r_hi - r_lo + 1, c_hi - c_lo + 1);
        self.grid = if (new_rows, new_cols) == (rows, cols) {
            grid
        } else {
            (r_lo..=r_hi).flat_map(|r| grid[r * cols + c_lo..=r * cols + c_hi].iter().copied()).collect()
        };
        self.row0 += u32::try_from(r_lo).unwrap_or(u32::MAX);
        self.col0 += u32::try_from(c_lo).unwrap_or(u32::MAX);
        (self.rows, self.cols) = (new_rows, new_cols);
    }

    /// Critical values for every discordant total the pool can reach.
    fn critical(&self, to_fail: u32, to_pass: u32, alpha: f64) -> Critical {
        let lo = to_fail + to_pass + self.row0 + self.col0;
        let span = u32::try_from(self.rows + self.cols).unwrap_or(u32::MAX);
        Critical::new(lo, lo.saturating_add(span), alpha)
    }

    /// Probability that `verdict(total to_fail, total to_pass)` differs from `now`.
    fn flip(&self, to_fail: u32, to_pass: u32, now: bool, verdict: impl Fn(u32, u32) -> bool) -> f64 {
        let mut p = 0.0;
        for (r, row) in (0u32..).zip(self.grid.chunks(self.cols)) {
            for (c, &w) in (0u32..).zip(row) {
                if w > 0.0 && verdict(to_fail + self.row0 + r, to_pass + self.col0 + c) != now {
                    p += w;
                }
            }
        }
        p.min(1.0)
    }
}

struct Pool {
    stats: PairedStats,
    status: Status,
}

fn paired_stats(data: &[CaseData], members: &[usize]) -> PairedStats {
    let mut s = PairedStats {
        cases: u32::try_from(members.len()).unwrap_or(u32::MAX),
        pairs: 0,
        flips_to_fail: 0,
        flips_to_pass: 0,
        baseline_passes: 0,
        baseline_n: 0,
        candidate_passes: 0,
        candidate_n: 0,
        wilson_baseline: (0.0, 1.0),
        wilson_candidate: (0.0, 1.0),
        effect: 0.0,
        p_value: 1.0,
        gain_lower_bound: None,
        alpha: 0.0,
        significant: false,
        settled: false,
    };
    let (mut base, mut cand) = (Counts::default(), Counts::default());
    let (mut effect_sum, mut effect_cases) = (0.0, 0u32);
    for &i in members {
        let d = &data[i];
        s.pairs += d.pairs;
        s.flips_to_fail += d.to_fail;
        s.flips_to_pass += d.to_pass;
        base = base + d.base;
        cand = cand + d.cand;
        if d.pairs > 0 {
            // On paired trials, candidate passes − baseline passes = flips to pass − flips to fail.
            effect_sum += (f64::from(d.to_pass) - f64::from(d.to_fail)) / f64::from(d.pairs);
            effect_cases += 1;
        }
    }
    s.baseline_passes = base.passes;
    s.baseline_n = base.trials;
    s.candidate_passes = cand.passes;
    s.candidate_n = cand.trials;
    s.wilson_baseline = stats::wilson_confidence(base, 0.95);
    s.wilson_candidate = stats::wilson_confidence(cand, 0.95);
    s.effect = if effect_cases == 0 { 0.0 } else { effect_sum / f64::from(effect_cases) };
    s
}

/// Status of a pooled *drop* test (flaky suite cases, holdout): significant drops are confirmed
/// only after a top-up and when predicted to survive; non-significant ones settle when a flip to
/// significance is unlikely.
fn drop_status(cfg: &Cfg, data: &[CaseData], members: &[usize], s: &PairedStats, threshold: f64) -> Status {
    if members.iter().any(|&i| data[i].pending) {
        return Status::Pending;
    }
    let sig = s.p_value <= s.alpha;
    let at_max = members.iter().all(|&i| data[i].at_max);
    if at_max || (!sig && s.flips_to_fail == 0) {
        return if sig { Status::Fail } else { Status::Pass };
    }
    if sig && members.iter().map(|&i| data[i].min_trials()).min().unwrap_or(0) <= cfg.k {
        return Status::Uncertain;
    }
    let future = pool_future(data, members);
    let crit = future.critical(s.flips_to_fail, s.flips_to_pass, threshold);
    let flip = future.flip(s.flips_to_fail, s.flips_to_pass, sig, |b, c| crit.significant(b, b + c));
    match (flip <= cfg.eps, sig) {
        (true, true) => Status::Fail,
        (true, false) => Status::Pass,
        (false, _) => Status::Uncertain,
    }
}

/// The suite's regression family: per-case Fisher tests plus the flaky pool, one Tarone family.
struct SuiteEval {
    /// One-sided Fisher p (candidate lower) of every case, whatever its role.
    p_lower: Vec<f64>,
    /// Tarone's K and the per-hypothesis level α/K.
    k: u32,
    t: f64,
    /// Per case; only suite cases are meaningful.
    status: Vec<Status>,
    flaky: Vec<usize>,
    flaky_pool: Option<Pool>,
    stable_pool: Option<Pool>,
}

/// The screened suite cases' pooled evidence: the first `screen` candidate trials of each, and
/// `m` baseline trials of each taken *after* its first `head_len` (the trials that decided it is
/// screened), so every case weighs the same on both arms and the baseline side is not the sample
/// that chose the members. Reading both from the same trials biased the pooled baseline rate
/// upwards (members are the cases that happened to fail at most 5%), which a level near α turned
/// into 16% false rejects at 300 cases (docs/gate.md). Members are the screened cases with at
/// least `m` such trials, `m` chosen from trial counts alone to make the most baseline evidence;
/// the candidate counts are trials every member gets whatever it shows, so the test has its
/// nominal level: it catches a drop spread thinly over many stable cases that each show it once
/// or not at all.
fn stable_counts(cfg: &Cfg, cases: &[CaseTrials], data: &[CaseData], suite: &[usize]) -> Option<(Counts, Counts, u32)> {
    let head = head_len(cfg);
    let tail = |i: usize| (cases[i].history as usize).min(cases[i].baseline.len()).saturating_sub(head);
    let screened: Vec<usize> = suite.iter().copied().filter(|&i| data[i].screenable() && tail(i) > 0).collect();
    let m = screened
        .iter()
        .map(|&i| tail(i))
        .max_by_key(|&m| (m * screened.iter().filter(|&&j| tail(j) >= m).count(), m))?;
    let members: Vec<usize> = screened.into_iter().filter(|&i| tail(i) >= m).collect();
    if members.len() < 2 {
        return None;
    }
    let (mut cand, mut base) = (Counts::default(), Counts::default());
    for &i in &members {
        let c = &cases[i];
        cand = cand + Counts::from_outcomes(&c.candidate[..c.candidate.len().min(cfg.screen as usize)]);
        base = base + Counts::from_outcomes(&c.baseline[head..head + m]);
    }
    Some((cand, base, u32::try_from(members.len()).unwrap_or(u32::MAX)))
}

/// `suite` are the per-case hypotheses (suite cases, holdout cases, target guards);
/// `pooled` the cases whose flaky members form the pooled drop test (the suite's).
fn eval_suite(
    cfg: &Cfg,
    data: &[CaseData],
    suite: &[usize],
    pooled: &[usize],
    stable: Option<(Counts, Counts, u32)>,
) -> SuiteEval {
    let p_lower: Vec<f64> = data.iter().map(|d| stats::fisher_lower(d.cand, d.base)).collect();
    let flaky: Vec<usize> =
        pooled.iter().copied().filter(|&i| data[i].class == Class::Flaky && !data[i].pending).collect();
    let mut flaky_stats = (!flaky.is_empty()).then(|| paired_stats(data, &flaky));
    if let Some(s) = flaky_stats.as_mut() {
        s.p_value = stats::sign_test(s.flips_to_fail, s.flips_to_pass);
    }
    let mut min_ps: Vec<f64> = suite.iter().map(|&i| stats::fisher_lower_min_p(data[i].cand, data[i].base)).collect();
    // Tarone's K from today's margins is valid, but after a few looks only the suspicious cases
    // have been topped up, so it is small and the first look at a case would get a lenient level
    // the fixed-k_max design never grants. Any larger K is also valid (fewer hypotheses can reach
    // the lower level), so take the larger of today's K and the K the margins would have at k_max
    // at today's pass rates.
    let mut projected: Vec<f64> = suite.iter().map(|&i| project(&data[i])).collect();
    let mut pool_min_p = 1.0;
    if let Some(s) = &flaky_stats {
        pool_min_p = stats::sign_test_min_p(s.flips_to_fail + s.flips_to_pass);
        min_ps.push(pool_min_p);
        let pairs: u32 = flaky.iter().map(|&i| data[i].pairs.max(cfg.k_max)).sum();
        let share = f64::from(s.flips_to_fail + s.flips_to_pass) / f64::from(s.pairs.max(1));
        projected.push(stats::sign_test_min_p((share * f64::from(pairs)).round() as u32));
    }
    let k = tarone(cfg.alpha, &min_ps).max(tarone(cfg.alpha, &projected));
    let t = cfg.alpha / f64::from(k);
    // The stable pool is not a member of the family: it gets only the family's slack, the
    // α/K shares of the K no hypothesis can use on today's margins (Bonferroni over the testable
    // ones still sums to at most α). As a member it made K one larger on nearly every warm gate
    // (its margins hold the screened cases' baseline failures, so it can always reach a level),
    // and a broken flaky case whose best p at `k_max` lay between α/(K + 1) and α/K was then
    // settled as a pass after 3 trials (issue 21, docs/gate.md).
    let testable = u32::try_from(min_ps.iter().filter(|&&p| p <= t).count()).unwrap_or(u32::MAX);
    let pool_level = t * f64::from(k.saturating_sub(testable));
    // Predictions use the level a hypothesis would get; one not yet counted joins the family
    // if it becomes significant.
    let t_for = |min_p: f64| if min_p <= t { t } else { cfg.alpha / f64::from(k + 1) };

    let mut status = vec![Status::Pass; data.len()];
    for (&i, &min_p) in suite.iter().zip(&min_ps) {
        let d = &data[i];
        let sig = p_lower[i] <= t;
        let flip = || {
            let (hc, hb) = (horizon(d, d.cand), horizon(d, d.base));
            stats::fisher_lower_flip_probability(d.cand, d.base, hc, hb, t_for(min_p))
        };
        status[i] = if d.pending {
            Status::Pending
        } else if d.at_max {
            if sig { Status::Fail } else { Status::Pass }
        } else if sig {
            // Confirm only after a top-up, and only if more trials would very likely agree.
            if d.min_trials() <= cfg.k || flip() > cfg.eps { Status::Uncertain } else { Status::Fail }
        } else if d.cand.failures() == 0 {
            Status::Pass
        } else if (d.class == Class::StablePass && d.min_trials() <= cfg.k) || flip() > cfg.eps {
            // A stable case's first candidate failure always earns a top-up (DESIGN "The gate" 2).
            Status::Uncertain
        } else {
            Status::Pass
        }
    }
    let flaky_pool = flaky_stats.map(|mut s| {
        s.alpha = t;
        s.significant = s.p_value <= t;
        let status = drop_status(cfg, data, &flaky, &s, t_for(pool_min_p));
        s.settled = status.settled();
        Pool { stats: s, status }
    });
    let stable_pool = stable.map(|(cand, base, cases)| stable_pool(cfg, data, pooled, cand, base, cases, pool_level));
    SuiteEval { p_lower, k, t, status, flaky, flaky_pool, stable_pool }
}

/// The stable pool's status at level `t`: settled once every member has its screening trials.
fn stable_pool(cfg: &Cfg, data: &[CaseData], pooled: &[usize], cand: Counts, base: Counts, cases: u32, t: f64) -> Pool {
    let pending = pooled.iter().any(|&i| data[i].screenable() && data[i].cand.trials < cfg.screen);
    let p = stats::fisher_lower(cand, base);
    let status = match (pending, p <= t) {
        (true, _) => Status::Pending,
        (false, true) => Status::Fail,
        (false, false) => Status::Pass,
    };
    let stats = PairedStats {
        cases,
        pairs: 0,
        flips_to_fail: 0,
        flips_to_pass: 0,
        baseline_passes: base.passes,
        baseline_n: base.trials,
        candidate_passes: cand.passes,
        candidate_n: cand.trials,
        wilson_baseline: stats::wilson_confidence(base, 0.95),
        wilson_candidate: stats::wilson_confidence(cand, 0.95),
        effect: cand.rate() - base.rate(),
        p_value: p,
        gain_lower_bound: None,
        alpha: t,
        significant: p <= t,
        settled: status.settled(),
    };
    Pool { stats, status }
}

/// The target pool: significant flips towards passing and a large enough mean gain. Returns the
/// pool and whether the current evidence meets the rule.
fn eval_target(cfg: &Cfg, data: &[CaseData], target: &[usize]) -> (Pool, bool) {
    let mut s = paired_stats(data, target);
    s.p_value = stats::sign_test(s.flips_to_pass, s.flips_to_fail);
    s.alpha = cfg.alpha;
    s.significant = s.p_value <= cfg.alpha;
    let lower = stats::paired_gain_lower_bound(s.flips_to_pass, s.flips_to_fail, s.pairs, cfg.alpha);
    let met = s.significant && lower >= cfg.min_effect;
    let status = if target.is_empty() {
        Status::Fail
    } else if target.iter().any(|&i| data[i].pending) {
        Status::Pending
    } else if target.iter().all(|&i| data[i].at_max) {
        if met { Status::Pass } else { Status::Fail }
    } else {
        let future = pool_future(data, target);
        let crit = future.critical(s.flips_to_fail, s.flips_to_pass, cfg.alpha);
        let n = future.final_pairs.max(1);
        let verdict = |b: u32, c: u32| {
            crit.significant(c, b + c) && stats::paired_gain_lower_bound(c, b, n, cfg.alpha) >= cfg.min_effect
        };
        let flip = future.flip(s.flips_to_fail, s.flips_to_pass, met, verdict);
        match (flip <= cfg.eps, met) {
            (true, true) => Status::Pass,
            (true, false) => Status::Fail,
            (false, _) => Status::Uncertain,
        }
    };
    s.settled = status.settled();
    s.gain_lower_bound = Some(lower);
    (Pool { stats: s, status }, met)
}

/// The holdout pool: a significant drop vetoes.
fn eval_holdout(cfg: &Cfg, data: &[CaseData], holdout: &[usize]) -> Pool {
    let mut s = paired_stats(data, holdout);
    s.p_value = stats::sign_test(s.flips_to_fail, s.flips_to_pass);
    s.alpha = cfg.holdout_alpha;
    s.significant = s.p_value <= cfg.holdout_alpha;
    let status = drop_status(cfg, data, holdout, &s, cfg.holdout_alpha);
    s.settled = status.settled();
    Pool { stats: s, status }
}

/// Component statuses the request planner needs.
struct Plan<'a> {
    /// Per-case hypotheses (suite, holdout, target guards), as indices into the data.
    suite: &'a [usize],
    /// The case each data index runs (target guards are virtual copies of their case).
    real: &'a [usize],
    eval: &'a SuiteEval,
    /// Pools other than per-case suite tests: members, status, tier.
    pools: [(&'a [usize], Status, u8); 3],
}

fn plan_requests(cfg: &Cfg, data: &[CaseData], plan: &Plan) -> Vec<Request> {
    // Per case: wanted trials per arm, tier, sort key (ascending).
    let mut want: Vec<Option<(u32, u8, f64)>> = vec![None; data.len()];
    let mut bump = |i: usize, n: u32, tier: u8, key: f64| {
        let w = want[plan.real[i]].get_or_insert((n, tier, key));
        if (tier, key) < (w.1, w.2) {
            (w.1, w.2) = (tier, key);
        }
        w.0 = w.0.max(n);
    };
    for &i in plan.suite {
        match plan.eval.status[i] {
            Status::Pending => bump(i, data[i].first_trials(cfg), 1, 1.0 - data[i].risk),
            // Closest to confirming a regression first.
            Status::Uncertain => bump(i, data[i].top_up(cfg), 0, plan.eval.p_lower[i]),
            _ => {}
        }
    }
    for &(members, status, tier) in &plan.pools {
        for &i in members {
            let d = &data[i];
            match status {
                Status::Pending if d.pending => bump(i, d.first_trials(cfg), tier, 1.0 - d.risk),
                Status::Uncertain if !d.at_max => bump(i, d.top_up(cfg), tier, 1.0 - d.risk),
                _ => {}
            }
        }
    }
    let mut order: Vec<(usize, u32, u8, f64)> =
        want.iter().enumerate().filter_map(|(i, w)| w.map(|(n, tier, key)| (i, n, tier, key))).collect();
    order.sort_by(|a, b| a.2.cmp(&b.2).then(a.3.total_cmp(&b.3)).then(a.0.cmp(&b.0)));
    let mut requests = Vec::new();
    for (i, n, _, _) in order {
        // The candidate first: the baseline's results are often cached. A sequential case whose
        // candidate never failed needs no baseline trials (see `start`).
        let base_n = if data[i].first == Start::Both { n } else { 0 };
        for (arm, have, n) in [(Arm::Candidate, data[i].cand.trials, n), (Arm::Baseline, data[i].base.trials, base_n)] {
            if n > have {
                requests.push(Request { case: i, arm, first_trial: have, trials: n - have });
            }
        }
    }
    requests
}

struct Analysis {
    requests: Vec<Request>,
    decision: Decision,
}

fn analyze(config: &GateConfig, cases: &[CaseTrials]) -> Analysis {
    let cfg = sanitize(config);
    let mut data: Vec<CaseData> = cases.iter().map(|c| CaseData::new(&cfg, c)).collect();
    let of_role = |r: Role| -> Vec<usize> { (0..cases.len()).filter(|&i| cases[i].role == r).collect() };
    let (suite, target, holdout) = (of_role(Role::Suite), of_role(Role::Target), of_role(Role::Holdout));
    // Target guards: a target case's full passes, judged like a suite case's (a fix of the
    // cluster's failure must not make the case pass less often). Virtual data entries after the
    // real ones; `real` maps every entry to the case it runs.
    let mut real: Vec<usize> = (0..cases.len()).collect();
    if cfg.require_improvement {
        for &i in &target {
            let c = &cases[i];
            if !c.baseline_full.is_empty() || !c.candidate_full.is_empty() {
                let full = CaseData::of(
                    &cfg,
                    &c.baseline_full,
                    &c.candidate_full,
                    c.prior_fail_rate,
                    cfg.target_k_max,
                    Start::Both,
                );
                data.push(full);
                real.push(i);
            }
        }
    }
    // Per-case hypotheses, one Tarone family: suite cases, holdout cases (a lone holdout case
    // that drops is a regression with the same evidence a suite case needs), target guards.
    let per_case: Vec<usize> = suite.iter().chain(&holdout).copied().chain(cases.len()..data.len()).collect();

    let stable = if cfg.sequential { stable_counts(&cfg, cases, &data, &suite) } else { None };
    let eval = eval_suite(&cfg, &data, &per_case, &suite, stable);
    // Target cases are not run at all unless improvement is required: they cannot change the decision.
    let target_pool = cfg.require_improvement.then(|| eval_target(&cfg, &data, &target));
    let holdout_pool = (!holdout.is_empty()).then(|| eval_holdout(&cfg, &data, &holdout));

    // The decision is final once a rejection is settled or everything is.
    let pool_status = |p: Option<&Pool>| p.map_or(Status::Pass, |p| p.status);
    let flaky_st = pool_status(eval.flaky_pool.as_ref());
    let stable_st = pool_status(eval.stable_pool.as_ref());
    let target_st = pool_status(target_pool.as_ref().map(|(p, _)| p));
    let holdout_st = pool_status(holdout_pool.as_ref());
    let components: Vec<Status> =
        per_case.iter().map(|&i| eval.status[i]).chain([flaky_st, stable_st, target_st, holdout_st]).collect();
    let complete = components.contains(&Status::Fail) || components.iter().all(|s| s.settled());

    let requests = if complete {
        Vec::new()
    } else {
        let plan = Plan {
            suite: &per_case,
            real: &real,
            eval: &eval,
            pools: [(&eval.flaky, flaky_st, 1), (&target, target_st, 1), (&holdout, holdout_st, 2)],
        };
        plan_requests(&cfg, &data, &plan)
    };

    // Rule: settled failures first, then the current evidence.
    let most_significant = |filter: &dyn Fn(usize) -> bool| {
        per_case.iter().copied().filter(|&i| filter(i)).min_by(|&a, &b| eval.p_lower[a].total_cmp(&eval.p_lower[b]))
    };
    let regression = |i: usize| {
        let case = cases[real[i]].id.clone();
        if i < cases.len() && cases[i].role == Role::Holdout {
            Rule::HoldoutRegression { case }
        } else {
            Rule::Regression { case }
        }
    };
    let regressed_settled = most_significant(&|i| eval.status[i] == Status::Fail);
    let regressed_now = most_significant(&|i| eval.p_lower[i] <= eval.t);
    let target_met = target_pool.as_ref().is_none_or(|(_, met)| *met);
    let sig = |p: Option<&Pool>| p.is_some_and(|p| p.stats.significant);
    // Pools in order of precedence: status, significant now, the rule they give.
    let pools = [
        (flaky_st, sig(eval.flaky_pool.as_ref()), Rule::FlakyRegression),
        (stable_st, sig(eval.stable_pool.as_ref()), Rule::StableRegression),
        (holdout_st, sig(holdout_pool.as_ref()), Rule::HoldoutDrop),
        (target_st, !target_met, Rule::NoImprovement),
    ];
    let rule = regressed_settled
        .map(regression)
        .or_else(|| pools.iter().find(|p| p.0 == Status::Fail).map(|p| p.2.clone()))
        .or_else(|| regressed_now.map(regression))
        .or_else(|| pools.iter().find(|p| p.1).map(|p| p.2.clone()))
        .unwrap_or(Rule::Passed);
    let verdict = if rule == Rule::Passed { Verdict::Pass } else { Verdict::Fail };

    let cx = Verdicts { cfg: &cfg, eval: &eval, real: &real, complete, target_st, holdout_st };
    let case_verdicts = case_verdicts(&cx, cases, &data);
    let suite_stats = SuiteStats {
        cases: u32::try_from(suite.len()).unwrap_or(u32::MAX),
        testable_hypotheses: eval.k,
        per_case_alpha: eval.t,
        flaky: eval.flaky_pool.map(|p| p.stats),
        stable: eval.stable_pool.map(|p| p.stats),
    };
    let target_stats =
        target_pool.map(|(p, met)| TargetStats { paired: p.stats, min_effect: cfg.min_effect, improved: met });
    let holdout_stats = holdout_pool.map(|p| {
        let dropped = p.status == Status::Fail || (p.stats.significant && !complete);
        HoldoutStats { paired: p.stats, dropped }
    });
    let sum = |f: fn(&CaseData) -> u32| data.iter().fold(0u32, |a, d| a.saturating_add(f(d)));
    let mut decision = Decision {
        verdict,
        rule,
        complete,
        cases: case_verdicts,
        suite: suite_stats,
        target: target_stats,
        holdout: holdout_stats,
        trials_baseline: sum(|d| d.base.trials),
        trials_candidate: sum(|d| d.cand.trials),
        summary: String::new(),
    };
    decision.summary = summarize(&decision);
    Analysis { requests, decision }
}

/// One row per case: the rule's outcome for it and the numbers behind it.
fn case_verdicts(cx: &Verdicts, cases: &[CaseTrials], data: &[CaseData]) -> Vec<CaseVerdict> {
    let Verdicts { cfg, eval, real, complete, target_st, holdout_st } = *cx;
    cases
        .iter()
        .zip(data)
        .enumerate()
        .map(|(i, (c, d))| {
            let p_lower = eval.p_lower[i];
            let p_higher = stats::fisher_higher(d.cand, d.base);
            let descriptive = if p_higher <= cfg.alpha {
                CaseOutcome::Improved
            } else if p_lower <= cfg.alpha {
                CaseOutcome::Regressed
            } else {
                CaseOutcome::Unchanged
            };
            let pool_unsettled = match c.role {
                Role::Suite => false,
                Role::Target => cfg.require_improvement && !target_st.settled(),
                Role::Holdout => !holdout_st.settled(),
            };
            let guard_failed = (cases.len()..data.len()).any(|j| real[j] == i && eval.status[j] == Status::Fail);
            let outcome = match (c.role, eval.status[i]) {
                (Role::Suite | Role::Holdout, Status::Fail) => CaseOutcome::Regressed,
                (Role::Target, _) if guard_failed => CaseOutcome::Regressed,
                // An unconfirmed significant drop is what the rule says on the evidence so far.
                (Role::Suite, Status::Pending | Status::Uncertain) if p_lower <= eval.t && !complete => {
                    CaseOutcome::Regressed
                }
                (Role::Suite, Status::Pending | Status::Uncertain) => CaseOutcome::Uncertain,
                (Role::Suite, Status::Pass) if p_higher <= cfg.alpha => CaseOutcome::Improved,
                (Role::Suite, Status::Pass) => CaseOutcome::Unchanged,
                _ if pool_unsettled && !d.at_max => CaseOutcome::Uncertain,
                _ => descriptive,
            };
            let tested = d.base.trials > 0 && d.cand.trials > 0;
            CaseVerdict {
                id: c.id.clone(),
                role: c.role,
                class_baseline: d.class,
                outcome,
                baseline_passes: d.base.passes,
                baseline_n: d.base.trials,
                candidate_passes: d.cand.passes,
                candidate_n: d.cand.trials,
                flips_to_fail: d.to_fail,
                flips_to_pass: d.to_pass,
                p_value: tested.then_some(if c.role == Role::Target { p_higher } else { p_lower }),
                wilson_baseline: stats::wilson_confidence(d.base, 0.95),
                wilson_candidate: stats::wilson_confidence(d.cand, 0.95),
                start: d.plan,
                escalated: d.plan != Start::Both && d.first == Start::Both,
            }
        })
        .collect()
}

/// What [`case_verdicts`] needs of the analysis.
#[derive(Clone, Copy)]
struct Verdicts<'a> {
    cfg: &'a Cfg,
    eval: &'a SuiteEval,
    real: &'a [usize],
    complete: bool,
    target_st: Status,
    holdout_st: Status,
}

fn fmt_p(p: f64) -> String {
    if p < 1e-3 { format!("{p:.1e}") } else { format!("{p:.3}") }
}

/// One case's own drop, with the numbers behind it.
fn case_regressed(d: &Decision, role: &str, case: &str) -> String {
    match d.cases.iter().find(|c| c.id == case) {
        Some(c) => format!(
            "FAIL: {role} case {case} regressed: {}/{} on baseline, {}/{} on candidate, one-sided Fisher p = {} ≤ {} \
             (α/{} Tarone)",
            c.baseline_passes,
            c.baseline_n,
            c.candidate_passes,
            c.candidate_n,
            fmt_p(c.p_value.unwrap_or(1.0)),
            fmt_p(d.suite.per_case_alpha),
            d.suite.testable_hypotheses
        ),
        None => format!("FAIL: {role} case {case} regressed"),
    }
}

fn summarize(d: &Decision) -> String {
    let head = match &d.rule {
        Rule::Passed => {
            let mut parts = vec![format!("no regression on {} suite cases", d.suite.cases)];
            if let Some(t) = &d.target {
                parts.push(format!("target {:+.2} (p = {})", t.paired.effect, fmt_p(t.paired.p_value)));
            }
            if let Some(h) = &d.holdout {
                parts.push(format!("holdout {:+.2} (drop p = {})", h.paired.effect, fmt_p(h.paired.p_value)));
            }
            format!("PASS: {}", parts.join(", "))
        }
        Rule::Regression { case } => case_regressed(d, "suite", case),
        Rule::HoldoutRegression { case } => case_regressed(d, "holdout", case),
        Rule::FlakyRegression => match &d.suite.flaky {
            Some(f) => format!(
                "FAIL: flaky suite cases dropped together: {} flips to fail vs {} to pass, sign test p = {} ≤ {}",
                f.flips_to_fail,
                f.flips_to_pass,
                fmt_p(f.p_value),
                fmt_p(f.alpha)
            ),
            None => "FAIL: flaky suite cases dropped together".to_owned(),
        },
        Rule::StableRegression => match &d.suite.stable {
            Some(f) => format!(
                "FAIL: {} screened stable suite cases dropped together: candidate {}/{} vs baseline {}/{}, Fisher p = {} ≤ {}",
                f.cases,
                f.candidate_passes,
                f.candidate_n,
                f.baseline_passes,
                f.baseline_n,
                fmt_p(f.p_value),
                fmt_p(f.alpha)
            ),
            None => "FAIL: screened stable suite cases dropped together".to_owned(),
        },
        Rule::HoldoutDrop => match &d.holdout {
            Some(h) => format!(
                "FAIL: holdout dropped: {} flips to fail vs {} to pass, sign test p = {} ≤ {}",
                h.paired.flips_to_fail,
                h.paired.flips_to_pass,
                fmt_p(h.paired.p_value),
                fmt_p(h.paired.alpha)
            ),
            None => "FAIL: holdout dropped".to_owned(),
        },
        Rule::NoImprovement => match &d.target {
            Some(t) if t.paired.cases > 0 => format!(
                "FAIL: no significant improvement on target: gain {:+.2}, lower bound {:+.2} (need ≥ {:.2}), {} flips to \
                 pass vs {} to fail, sign test p = {} (need ≤ {})",
                t.paired.effect,
                t.paired.gain_lower_bound.unwrap_or(-1.0),
                t.min_effect,
                t.paired.flips_to_pass,
                t.paired.flips_to_fail,
                fmt_p(t.paired.p_value),
                fmt_p(t.paired.alpha)
            ),
            _ => "FAIL: improvement required but there are no target cases".to_owned(),
        },
    };
    let tail = if d.complete { "" } else { " (incomplete: more trials were wanted)" };
    format!("{head}; {} baseline + {} candidate trials{tail}", d.trials_baseline, d.trials_candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn case(id: &str, role: Role, baseline: &[bool], candidate: &[bool]) -> CaseTrials {
        CaseTrials { baseline: baseline.to_vec(), candidate: candidate.to_vec(), ..CaseTrials::new(id, role) }
    }

    /// A suite case whose baseline trials were all recorded before the gate.
    fn warm_case(id: &str, baseline: &[bool]) -> CaseTrials {
        CaseTrials { history: u32::try_from(baseline.len()).unwrap(), ..case(id, Role::Suite, baseline, &[]) }
    }

    const P3: [bool; 3] = [true; 3];
    const F3: [bool; 3] = [false; 3];

    fn suite_with(special: CaseTrials) -> Vec<CaseTrials> {
        let mut cases: Vec<CaseTrials> = (0..11).map(|i| case(&format!("s{i}"), Role::Suite, &P3, &P3)).collect();
        cases.push(special);
        cases
    }

    /// Runs the request loop with outcomes given by `outcome(case, arm, trial)`.
    fn run(cfg: &GateConfig, cases: &mut [CaseTrials], outcome: impl Fn(usize, Arm, u32) -> bool) -> Decision {
        for _ in 0..1000 {
            let reqs = next_requests(cfg, cases);
            if reqs.is_empty() {
                break;
            }
            for r in reqs {
                let have = u32::try_from(cases[r.case].trials(r.arm).len()).unwrap();
                assert_eq!(r.first_trial, have, "requests must continue the seed sequence");
                let outs: Vec<bool> =
                    (r.first_trial..r.first_trial + r.trials).map(|t| outcome(r.case, r.arm, t)).collect();
                cases[r.case].push(r.arm, outs);
            }
        }
        assert!(next_requests(cfg, cases).is_empty());
        decide(cfg, cases)
    }

    fn sequential() -> GateConfig {
        GateConfig { sequential: true, ..GateConfig::default() }
    }

    #[test]
    fn sequential_runs_the_candidate_first_and_the_baseline_only_where_it_failed() {
        let cfg = sequential();
        let mut cases: Vec<CaseTrials> = (0..6).map(|i| CaseTrials::new(format!("s{i}"), Role::Suite)).collect();
        let first = next_requests(&cfg, &cases);
        assert_eq!(first.len(), 6, "{first:?}");
        assert!(first.iter().all(|r| r.arm == Arm::Candidate && r.trials == cfg.k), "{first:?}");
        // Case 2's candidate fails its first trial: only case 2 gets baseline trials.
        let d = run(&cfg, &mut cases, |c, arm, t| !(c == 2 && arm == Arm::Candidate && t == 0));
        assert_eq!(d.verdict, Verdict::Pass, "{}", d.summary);
        assert!(cases.iter().enumerate().all(|(i, c)| c.baseline.is_empty() == (i != 2)));
        assert_eq!(d.cases[0].start, Start::CandidateFirst);
        assert!(d.cases[2].escalated && !d.cases[0].escalated);
        // The same failure, repeated on every trial, is still a regression.
        let mut cases: Vec<CaseTrials> = (0..6).map(|i| CaseTrials::new(format!("s{i}"), Role::Suite)).collect();
        let d = run(&cfg, &mut cases, |c, arm, _| !(c == 2 && arm == Arm::Candidate));
        assert_eq!(d.rule, Rule::Regression { case: "s2".into() }, "{}", d.summary);
    }

    #[test]
    fn warm_stable_cases_are_screened_and_escalate_on_a_failure() {
        // Fewer screening trials than k, so the screen is visible in the counts.
        let cfg = GateConfig { screen_trials: 2, ..sequential() };
        let warm = [true; 30];
        let mut cases: Vec<CaseTrials> = (0..8).map(|i| warm_case(&format!("s{i}"), &warm)).collect();
        let first = next_requests(&cfg, &cases);
        assert!(first.iter().all(|r| r.arm == Arm::Candidate && r.trials == cfg.screen_trials), "{first:?}");
        let d = run(&cfg, &mut cases, |c, _, t| !(c == 5 && t == 1));
        assert_eq!(d.verdict, Verdict::Pass, "{}", d.summary);
        assert!(d.cases.iter().all(|c| c.start == Start::Screened));
        assert_eq!(d.cases[0].candidate_n, cfg.screen_trials, "a clean screen settles the case");
        assert!(d.cases[5].escalated && d.cases[5].candidate_n > cfg.k, "a failure earns a top-up");
        assert!(d.trials_candidate < 8 * cfg.k);
        let stable = d.suite.stable.as_ref().expect("stable pool");
        assert_eq!((stable.cases, stable.candidate_n), (8, 8 * cfg.screen_trials));
    }

    #[test]
    fn a_drop_spread_over_screened_cases_fails_the_stable_pool() {
        // 14 of 40 warm stable cases fail one screening trial each (and pass their top-ups): no
        // case is significant on its own, the screened cases taken together are.
        let cfg = sequential();
        let warm = [true; 30];
        let fresh = || -> Vec<CaseTrials> { (0..40).map(|i| warm_case(&format!("s{i}"), &warm)).collect() };
        let mut cases = fresh();
        let d = run(&cfg, &mut cases, |c, arm, t| !(c < 14 && arm == Arm::Candidate && t == 0));
        assert!(d.cases.iter().all(|c| c.outcome != CaseOutcome::Regressed), "{}", d.summary);
        assert_eq!(d.rule, Rule::StableRegression, "{}", d.summary);
        // One such failure is noise.
        let mut cases = fresh();
        let d = run(&cfg, &mut cases, |c, arm, t| !(c == 0 && arm == Arm::Candidate && t == 0));
        assert_eq!(d.verdict, Verdict::Pass, "{}", d.summary);
    }

    #[test]
    fn the_stable_pool_is_tested_on_trials_that_did_not_choose_it_at_the_family_slack() {
        let cfg = sequential();
        // s0..s7: the first k_max / 2 baseline trials pass, one later trial fails: screened.
        let mut clean_head = [true; 30];
        clean_head[15] = false;
        // s8: 29 of 30 pass like the others, but its failure is among the first k_max / 2: not
        // screened.
        let mut failing_head = [true; 30];
        failing_head[2] = false;
        // s9: a case with a flaky history that can reach significance once topped up to k_max.
        let flaky: Vec<bool> = (0..30).map(|t| t % 2 == 0).collect();
        let mut cases: Vec<CaseTrials> = (0..8).map(|i| warm_case(&format!("s{i}"), &clean_head)).collect();
        cases.push(warm_case("s8", &failing_head));
        cases.push(CaseTrials { prior_fail_rate: 0.5, ..warm_case("s9", &flaky) });
        let d = run(&cfg, &mut cases, |_, _, _| true);
        assert_eq!(d.verdict, Verdict::Pass, "{}", d.summary);
        assert!(d.cases[..8].iter().all(|c| c.start == Start::Screened));
        assert_eq!(d.cases[8].start, Start::CandidateFirst, "a failure in the first k_max / 2 trials");
        let stable = d.suite.stable.as_ref().expect("stable pool");
        // The pool's baseline is the 25 trials after the first k_max / 2 of each member.
        assert_eq!((stable.cases, stable.baseline_n, stable.baseline_passes), (8, 200, 192));
        // s9 and the flaky pool (s9 alone) can reach α/2 at k_max, nothing can on today's
        // margins: K = 2 without the stable pool, which takes the whole slack, 2 · α/2. Counted
        // in K, it made K = 3 and its own level α/3.
        assert_eq!(d.suite.testable_hypotheses, 2, "{}", d.summary);
        assert!((stable.alpha - cfg.alpha).abs() < 1e-12, "pool level {}", stable.alpha);
    }

    #[test]
    fn total_breakage_is_a_regression_after_top_up() {
        let cfg = GateConfig::default();
        let mut cases = suite_with(case("broken", Role::Suite, &P3, &F3));
        let first = next_requests(&cfg, &cases);
        assert!(!first.is_empty(), "0/3 after 3/3 is not yet a regression");
        assert_eq!(first[0].case, 11, "the suspicious case is topped up first");
        assert!(first.iter().all(|r| r.case == 11), "clean cases need nothing: {first:?}");
        assert!(!decide(&cfg, &cases).complete);
        let d = run(&cfg, &mut cases, |c, arm, _| c != 11 || arm == Arm::Baseline);
        assert_eq!(d.verdict, Verdict::Fail);
        assert_eq!(d.rule, Rule::Regression { case: "broken".into() });
        assert!(d.complete);
        let v = &d.cases[11];
        assert_eq!(v.outcome, CaseOutcome::Regressed);
        assert!(v.candidate_n > 3 && v.candidate_n < cfg.k_max, "confirmed after a top-up, before k_max: {v:?}");
        assert!(v.p_value.unwrap() <= d.suite.per_case_alpha);
        assert_eq!(d.trials_candidate, 11 * 3 + v.candidate_n);
    }

    #[test]
    fn a_blip_asks_for_more_trials_and_then_passes() {
        let cfg = GateConfig::default();
        let mut cases = suite_with(case("blip", Role::Suite, &P3, &[true, false, true]));
        let reqs = next_requests(&cfg, &cases);
        assert_eq!(reqs.len(), 2, "{reqs:?}");
        assert!(reqs.iter().all(|r| r.case == 11 && r.first_trial == 3 && r.trials == cfg.step));
        let d = decide(&cfg, &cases);
        assert!(!d.complete);
        assert_eq!(d.rule, Rule::Passed, "no evidence of a regression yet");
        assert_eq!(d.cases[11].outcome, CaseOutcome::Uncertain);
        let d = run(&cfg, &mut cases, |_, _, _| true);
        assert_eq!(d.verdict, Verdict::Pass);
        assert!(d.cases[11].candidate_n > 3);
    }

    #[test]
    fn fixed_kmax_data_decides_without_requests() {
        let cfg = GateConfig::default();
        let mut cases = suite_with(case("broken", Role::Suite, &[true; 10], &[false; 10]));
        assert!(next_requests(&cfg, &cases).is_empty());
        assert_eq!(decide(&cfg, &cases).rule, Rule::Regression { case: "broken".into() });
        cases[11].candidate = vec![true; 10];
        for c in &mut cases[..11] {
            c.baseline = vec![true; 10];
            c.candidate = vec![true; 10];
        }
        assert!(next_requests(&cfg, &cases).is_empty());
        assert_eq!(decide(&cfg, &cases).verdict, Verdict::Pass);
    }

    #[test]
    fn confirmed_regression_stops_everything() {
        let cfg = GateConfig { require_improvement: true, ..GateConfig::default() };
        let mut cases = suite_with(case("broken", Role::Suite, &[true; 5], &[false; 5]));
        cases.push(CaseTrials::new("t0", Role::Target));
        cases.push(CaseTrials::new("h0", Role::Holdout));
        assert!(next_requests(&cfg, &cases).is_empty(), "target and holdout cannot rescue the candidate");
        let d = decide(&cfg, &cases);
        assert!(d.complete);
        assert_eq!(d.rule, Rule::Regression { case: "broken".into() });
    }

    #[test]
    fn flaky_candidate_failures_are_not_a_hard_rule() {
        let cfg = GateConfig::default();
        let flaky = [true, false, true, true, false, true, true, false, true, true];
        let mut cases = suite_with(case(
            "flaky",
            Role::Suite,
            &flaky,
            &[false, true, true, false, true, true, false, true, true, false],
        ));
        assert_eq!(decide(&cfg, &cases).verdict, Verdict::Pass);
        assert_eq!(decide(&cfg, &cases).cases[11].class_baseline, Class::Flaky);
        // A large drop on the same flaky case is a regression.
        cases[11].candidate = vec![false; 10];
        let d = decide(&cfg, &cases);
        assert_eq!(d.rule, Rule::Regression { case: "flaky".into() }, "{}", d.summary);
    }

    #[test]
    fn diffuse_drop_over_flaky_cases_is_caught_by_the_pool() {
        let cfg = GateConfig::default();
        let base = [true, false, true, false, true, true, false, true, false, true];
        // Each flaky case loses three of its six passes: not significant alone, clear together.
        let cand = [false, false, false, false, true, false, false, true, false, true];
        let mut cases: Vec<CaseTrials> =
            (0..8).map(|i| case(&format!("s{i}"), Role::Suite, &[true; 10], &[true; 10])).collect();
        cases.extend((0..4).map(|i| case(&format!("f{i}"), Role::Suite, &base, &cand)));
        let d = decide(&cfg, &cases);
        assert!(d.cases.iter().all(|c| c.outcome != CaseOutcome::Regressed), "{}", d.summary);
        assert_eq!(d.rule, Rule::FlakyRegression, "{}", d.summary);
        let pool = d.suite.flaky.as_ref().unwrap();
        assert_eq!((pool.cases, pool.flips_to_fail, pool.flips_to_pass), (4, 12, 0));
        assert_eq!(d.suite.testable_hypotheses, 5, "four flaky cases and the pool can reach α/K");
    }

    #[test]
    fn clean_suite_gets_full_alpha_and_stable_failures_never_regress() {
        let cfg = GateConfig::default();
        let mut cases: Vec<CaseTrials> =
            (0..11).map(|i| case(&format!("s{i}"), Role::Suite, &[true; 10], &[true; 10])).collect();
        cases.push(case("dead", Role::Suite, &[false; 10], &[false; 10]));
        let d = decide(&cfg, &cases);
        assert_eq!((d.suite.testable_hypotheses, d.suite.per_case_alpha), (1, 0.05));
        assert_eq!(d.cases[11].class_baseline, Class::StableFail);
        assert_eq!(d.verdict, Verdict::Pass);
    }

    #[test]
    fn clear_fix_passes_and_no_fix_fails() {
        let cfg = GateConfig { require_improvement: true, ..GateConfig::default() };
        let mut cases: Vec<CaseTrials> = (0..6).map(|i| CaseTrials::new(format!("s{i}"), Role::Suite)).collect();
        cases.extend((0..4).map(|i| CaseTrials::new(format!("t{i}"), Role::Target)));
        cases.extend((0..4).map(|i| CaseTrials::new(format!("h{i}"), Role::Holdout)));
        let first = next_requests(&cfg, &cases);
        assert_eq!(first.len(), 28);
        assert!(first.iter().all(|r| r.first_trial == 0 && r.trials == 3));
        assert!(first[first.len() - 8..].iter().all(|r| cases[r.case].role == Role::Holdout), "holdout runs last");
        let mut fixed = cases.clone();
        let d = run(&cfg, &mut fixed, |c, arm, _| !(6..10).contains(&c) || arm == Arm::Candidate);
        assert_eq!(d.verdict, Verdict::Pass, "{}", d.summary);
        let t = d.target.as_ref().unwrap();
        assert!(t.improved && t.paired.effect > 0.9 && t.paired.p_value < 0.01);
        assert_eq!(d.trials_candidate, 14 * 3, "a clear decision costs k trials per case");
        let mut unfixed = cases;
        let d = run(&cfg, &mut unfixed, |c, _, _| !(6..10).contains(&c));
        assert_eq!(d.rule, Rule::NoImprovement);
    }

    #[test]
    fn improvement_without_target_cases_fails() {
        let cfg = GateConfig { require_improvement: true, ..GateConfig::default() };
        let cases = vec![case("s", Role::Suite, &P3, &P3)];
        assert!(next_requests(&cfg, &cases).is_empty());
        assert_eq!(decide(&cfg, &cases).rule, Rule::NoImprovement);
    }

    #[test]
    fn holdout_drop_vetoes() {
        let cfg = GateConfig::default();
        let mut cases: Vec<CaseTrials> = (0..4).map(|i| CaseTrials::new(format!("s{i}"), Role::Suite)).collect();
        cases.extend((0..4).map(|i| CaseTrials::new(format!("h{i}"), Role::Holdout)));
        let d = run(&cfg, &mut cases, |c, arm, _| c < 4 || arm == Arm::Baseline);
        // Every holdout case broke: the first confirmed per-case regression decides.
        assert!(matches!(d.rule, Rule::HoldoutRegression { .. }), "{}", d.summary);
        assert_eq!(d.verdict, Verdict::Fail);
    }

    #[test]
    fn a_lone_holdout_case_regresses_on_its_own() {
        // One holdout case of two goes from ~6/7 to 0/7: the pooled drop over two cases is not
        // significant, the case's own test is (as it would be for a suite case).
        let cfg = GateConfig::default();
        let mut cases: Vec<CaseTrials> = (0..4).map(|i| CaseTrials::new(format!("s{i}"), Role::Suite)).collect();
        cases.push(CaseTrials::new("h-broken", Role::Holdout));
        cases.push(CaseTrials::new("h-flaky", Role::Holdout));
        let d = run(&cfg, &mut cases, |c, arm, t| match c {
            4 => arm == Arm::Baseline && t % 7 != 3,
            5 => t % 2 == 0,
            _ => true,
        });
        assert_eq!(d.rule, Rule::HoldoutRegression { case: "h-broken".into() }, "{}", d.summary);
        let row = d.cases.iter().find(|c| c.id == "h-broken").unwrap();
        assert_eq!(row.outcome, CaseOutcome::Regressed);
    }

    #[test]
    fn a_target_case_whose_full_passes_drop_is_a_regression() {
        // The cluster's own failure goes away (fixed 0 → all), but the case used to pass fully
        // 9 times in 10 and now never does: the fix broke what worked.
        let cfg = GateConfig { require_improvement: true, ..GateConfig::default() };
        let mut cases: Vec<CaseTrials> = (0..4).map(|i| CaseTrials::new(format!("s{i}"), Role::Suite)).collect();
        for i in 0..3 {
            cases.push(CaseTrials::new(format!("t{i}"), Role::Target));
        }
        let mut n = [[0usize; 2]; 7];
        for _ in 0..40 {
            let reqs = next_requests(&cfg, &cases);
            if reqs.is_empty() {
                break;
            }
            for r in reqs {
                for t in r.first_trial..r.first_trial + r.trials {
                    let c = &mut cases[r.case];
                    if c.role == Role::Target {
                        let base = r.arm == Arm::Baseline;
                        // Baseline: the cluster's failure shows on odd trials only; full pass otherwise.
                        let fixed = !base || t % 2 == 0;
                        let full = if r.case == 4 { base && t % 10 != 9 } else { base && t % 2 == 0 };
                        c.push_target(r.arm, fixed, full);
                    } else {
                        c.push(r.arm, [true]);
                    }
                    n[r.case][usize::from(r.arm == Arm::Candidate)] += 1;
                }
            }
        }
        let d = decide(&cfg, &cases);
        assert_eq!(d.verdict, Verdict::Fail, "{}", d.summary);
        assert!(matches!(d.rule, Rule::Regression { ref case } if case.starts_with('t')), "{}", d.summary);
    }

    #[test]
    fn the_minimum_effect_is_judged_against_a_lower_bound() {
        // 12 flips to pass, 2 to fail in 40 pairs: significant, observed gain +0.25 — but with
        // min_effect 0.2 the lower confidence bound (~+0.12) does not reach it.
        let cfg = GateConfig { require_improvement: true, min_effect: 0.2, ..GateConfig::default() };
        let mut t: Vec<CaseTrials> = Vec::new();
        for i in 0..4 {
            let base: Vec<bool> = (0..10).map(|j| j < 2).collect();
            let cand: Vec<bool> = (0..10).map(|j| (j < 2 && !(i < 2 && j == 0)) || (2..5).contains(&j)).collect();
            t.push(case(&format!("t{i}"), Role::Target, &base, &cand));
        }
        let d = decide(&cfg, &t);
        let ts = d.target.as_ref().unwrap();
        assert!(ts.paired.significant && ts.paired.effect >= 0.2, "{:?}", ts.paired);
        assert!(ts.paired.gain_lower_bound.unwrap() < 0.2);
        assert!(!ts.improved);
        let lenient = GateConfig { min_effect: 0.05, ..cfg };
        assert!(decide(&lenient, &t).target.unwrap().improved);
    }

    #[test]
    fn report_serializes() {
        let cfg = GateConfig { require_improvement: true, ..GateConfig::default() };
        let mut cases = suite_with(case("broken", Role::Suite, &[true; 10], &[false; 10]));
        cases.push(case("t", Role::Target, &F3, &P3));
        let json = serde_json::to_value(decide(&cfg, &cases)).unwrap();
        assert_eq!(json["verdict"], "fail");
        assert_eq!(json["rule"]["kind"], "regression");
        assert_eq!(json["rule"]["case"], "broken");
        assert_eq!(json["cases"][11]["class_baseline"], "stable_pass");
        assert_eq!(json["target"]["min_effect"], 0.05);
        assert!(json["target"]["gain_lower_bound"].is_f64());
        assert!(json["target"]["flips_to_pass"].is_u64());
    }

    fn arb_case() -> impl Strategy<Value = CaseTrials> {
        let trials = || prop::collection::vec(any::<bool>(), 0..14);
        (0..3u8, trials(), trials(), any::<f64>(), 0..20u32).prop_map(|(r, baseline, candidate, prior, history)| {
            CaseTrials {
                id: "c".into(),
                role: [Role::Suite, Role::Target, Role::Holdout][usize::from(r)],
                // Full passes imply the cluster's failure is gone; ragged on purpose sometimes.
                baseline_full: if r == 1 { baseline.iter().map(|&b| b && prior > 0.5).collect() } else { Vec::new() },
                candidate_full: if r == 1 {
                    candidate.iter().skip(usize::from(prior > 0.9)).copied().collect()
                } else {
                    Vec::new()
                },
                baseline,
                candidate,
                prior_fail_rate: prior,
                // At times more than `baseline` holds: the engine must clamp it.
                history,
            }
        })
    }

    fn arb_cfg() -> impl Strategy<Value = GateConfig> {
        (0..6u32, 0..13u32, 0..4u32, any::<bool>(), prop_oneof![Just(0.05), any::<f64>()], 0.0..0.3f64).prop_map(
            |(k, k_max, step, require_improvement, alpha, eps)| GateConfig {
                k,
                k_max,
                step,
                alpha,
                require_improvement,
                flip_tolerance: eps,
                ..GateConfig::default()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn requests_stay_within_k_max(cfg in arb_cfg(), cases in prop::collection::vec(arb_case(), 0..12)) {
            let k_max = cfg.k_max.clamp(1, MAX_TRIALS);
            let d = decide(&cfg, &cases);
            let reqs = next_requests(&cfg, &cases);
            prop_assert_eq!(reqs.is_empty(), d.complete);
            for r in &reqs {
                let have = u32::try_from(cases[r.case].trials(r.arm).len()).unwrap();
                prop_assert_eq!(r.first_trial, have);
                let max = if cases[r.case].role == Role::Target { cfg.target_k_max.clamp(k_max, MAX_TRIALS) } else { k_max };
                prop_assert!(r.trials >= 1 && have + r.trials <= max, "{:?} with {} trials", r, have);
            }
            for c in &d.cases {
                if let Some(p) = c.p_value {
                    prop_assert!((0.0..=1.0).contains(&p));
                }
            }
        }

        #[test]
        fn loop_terminates_and_is_deterministic(
            cfg in arb_cfg(),
            roles in prop::collection::vec(0..3u8, 1..10),
            bits in prop::collection::vec(any::<u64>(), 20),
        ) {
            let mut cases: Vec<CaseTrials> = roles
                .iter()
                .enumerate()
                .map(|(i, &r)| CaseTrials::new(format!("c{i}"), [Role::Suite, Role::Target, Role::Holdout][usize::from(r)]))
                .collect();
            let outcome = |c: usize, arm: Arm, t: u32| {
                let w = bits[(2 * c + usize::from(arm == Arm::Candidate)) % bits.len()];
                (w >> (t % 64)) & 1 == 1
            };
            let mut rounds = 0;
            loop {
                let reqs = next_requests(&cfg, &cases);
                if reqs.is_empty() {
                    break;
                }
                rounds += 1;
                prop_assert!(rounds <= 2 * MAX_TRIALS, "no progress");
                for r in reqs {
                    let outs: Vec<bool> = (r.first_trial..r.first_trial + r.trials).map(|t| outcome(r.case, r.arm, t)).collect();
                    cases[r.case].push(r.arm, outs);
                }
            }
            let a = serde_json::to_string(&decide(&cfg, &cases)).unwrap();
            let b = serde_json::to_string(&decide(&cfg, &cases)).unwrap();
            prop_assert_eq!(a, b);
        }
    }
}
