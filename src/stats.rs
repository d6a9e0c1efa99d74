//! Exact small-sample statistics for the gate.
//!
//! The gate works with a handful of pass/fail trials per case (3 to 10), where normal
//! approximations are badly wrong, so every test here is exact: binomial and hypergeometric
//! tails are summed term by term from log-factorials. Nothing here allocates per call except
//! the predictive distributions, and nothing depends on a crate beyond `std`.
//!
//! Conventions: [`Counts`] is `passes` out of `trials` for one arm of one case. One-sided
//! tests are named after the alternative they look for ("candidate lower" = regression).
//! P-values are clamped to `[0, 1]`; an empty sample gives p = 1 (no evidence), never NaN.

use std::sync::OnceLock;

use serde::Serialize;

/// Passes out of trials for one arm (baseline or candidate) of one case or of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    pub passes: u32,
    pub trials: u32,
}

/// Pooling two samples (saturating, so absurd inputs cannot overflow).
impl std::ops::Add for Counts {
    type Output = Counts;

    fn add(self, other: Counts) -> Counts {
        Counts::new(self.passes.saturating_add(other.passes), self.trials.saturating_add(other.trials))
    }
}

impl Counts {
    /// `passes` is capped at `trials` so that a malformed pair can never produce a negative failure count.
    pub fn new(passes: u32, trials: u32) -> Self {
        Counts { passes: passes.min(trials), trials }
    }

    pub fn from_outcomes(outcomes: &[bool]) -> Self {
        let trials = u32::try_from(outcomes.len()).unwrap_or(u32::MAX);
        let passes = u32::try_from(outcomes.iter().filter(|&&p| p).count()).unwrap_or(u32::MAX);
        Counts::new(passes, trials)
    }

    pub fn failures(self) -> u32 {
        self.trials - self.passes
    }

    /// Pass rate, 0 for an empty sample (callers show the Wilson interval (0, 1) alongside it).
    pub fn rate(self) -> f64 {
        if self.trials == 0 { 0.0 } else { f64::from(self.passes) / f64::from(self.trials) }
    }
}

// ---------------------------------------------------------------------------------------------
// Special functions

/// Lanczos approximation (g = 7, n = 9): ~15 significant digits for x > 0, enough that
/// p-values summed from hundreds of terms stay accurate far below any alpha we use.
const LANCZOS: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

/// `ln |Γ(x)|`; `+∞` at the poles (0, -1, -2, …).
pub fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 && x.fract() == 0.0 {
        return f64::INFINITY;
    }
    if x < 0.5 {
        // Reflection keeps the series in its accurate range.
        let s = (std::f64::consts::PI * x).sin().abs();
        return std::f64::consts::PI.ln() - s.ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let mut a = LANCZOS[0];
    for (i, c) in LANCZOS.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

const LN_FACT_TABLE_LEN: usize = 2048;

fn ln_fact_table() -> &'static [f64] {
    static TABLE: OnceLock<Vec<f64>> = OnceLock::new();
    TABLE.get_or_init(|| (0..LN_FACT_TABLE_LEN).map(|n| ln_gamma(n as f64 + 1.0)).collect())
}

/// `ln n!`, from a table for the small arguments the gate uses all the time.
pub fn ln_factorial(n: u64) -> f64 {
    match usize::try_from(n) {
        Ok(i) if i < LN_FACT_TABLE_LEN => ln_fact_table()[i],
        _ => ln_gamma(n as f64 + 1.0),
    }
}

/// `ln C(n, k)`; `-∞` when `k > n` (the coefficient is 0).
pub fn ln_choose(n: u64, k: u64) -> f64 {
    if k > n {
        return f64::NEG_INFINITY;
    }
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// `ln B(a, b)` for a, b > 0.
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// Standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
/// Returns ±∞ at 0 and 1 and NaN outside `[0, 1]`.
pub fn normal_quantile(p: f64) -> f64 {
    if !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    const P_LOW: f64 = 0.024_25;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - P_LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Intervals

/// Wilson score interval for `passes` of `trials` at normal quantile `z` (1.96 for 95%). It stays
/// inside `[0, 1]` and is honest at 0/n and n/n, where the Wald interval collapses to a point —
/// exactly the cases (stable pass, stable fail) the gate sees most. An empty sample gives `(0, 1)`.
pub fn wilson(passes: u32, trials: u32, z: f64) -> (f64, f64) {
    let counts = Counts::new(passes, trials);
    if counts.trials == 0 || !z.is_finite() {
        return (0.0, 1.0);
    }
    let n = f64::from(counts.trials);
    let p = counts.rate();
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    // The formula is exact at the ends but rounding can leave 1e-17 outside; 0/n and n/n must
    // report a bound of exactly 0 / 1.
    let lo = if counts.passes == 0 { 0.0 } else { (centre - half).clamp(0.0, 1.0) };
    let hi = if counts.passes == counts.trials { 1.0 } else { (centre + half).clamp(0.0, 1.0) };
    (lo, hi)
}

/// Two-sided Wilson interval at `confidence` (e.g. 0.95).
pub fn wilson_confidence(counts: Counts, confidence: f64) -> (f64, f64) {
    if !(confidence > 0.0 && confidence < 1.0) {
        return (0.0, 1.0);
    }
    wilson(counts.passes, counts.trials, normal_quantile(1.0 - (1.0 - confidence) / 2.0))
}

// ---------------------------------------------------------------------------------------------
// Binomial and hypergeometric

/// `P(X = k)` for `X ~ Binomial(n, p)`.
pub fn binomial_pmf(k: u32, n: u32, p: f64) -> f64 {
    if k > n || !(0.0..=1.0).contains(&p) {
        return 0.0;
    }
    if p == 0.0 {
        return if k == 0 { 1.0 } else { 0.0 };
    }
    if p == 1.0 {
        return if k == n { 1.0 } else { 0.0 };
    }
    let (k64, n64) = (u64::from(k), u64::from(n));
    (ln_choose(n64, k64) + f64::from(k) * p.ln() + f64::from(n - k) * (-p).ln_1p()).exp()
}

/// `P(X ≤ k)` for `X ~ Binomial(n, p)`, summed exactly.
pub fn binomial_cdf(k: u32, n: u32, p: f64) -> f64 {
    if k >= n {
        return 1.0;
    }
    (0..=k).map(|i| binomial_pmf(i, n, p)).sum::<f64>().clamp(0.0, 1.0)
}

/// `P(X ≥ k)` for `X ~ Binomial(n, p)`, summed exactly (not `1 - cdf`, which loses the small
/// tail probabilities the gate compares against alpha/m).
pub fn binomial_sf(k: u32, n: u32, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    (k..=n).map(|i| binomial_pmf(i, n, p)).sum::<f64>().clamp(0.0, 1.0)
}

/// `P(X = x)` where X counts successes in `draws` draws without replacement from a population
/// of `population` holding `successes` successes.
pub fn hypergeom_pmf(x: u32, population: u32, successes: u32, draws: u32) -> f64 {
    let (n, k, d, x) = (u64::from(population), u64::from(successes), u64::from(draws), u64::from(x));
    if k > n || d > n || x > k || x > d || d - x > n - k {
        return 0.0;
    }
    // Log-space rounding can put a certain event a few ulps above 1.
    (ln_choose(k, x) + ln_choose(n - k, d - x) - ln_choose(n, d)).exp().min(1.0)
}

// ---------------------------------------------------------------------------------------------
// Paired tests on discordant counts

/// Exact one-sided sign test: `P(X ≥ wins)` for `X ~ Binomial(wins + losses, 1/2)`. Ties
/// (concordant pairs) carry no information about the direction and are left out by the caller.
/// 6 wins, 0 losses → 1/64.
pub fn sign_test(wins: u32, losses: u32) -> f64 {
    binomial_sf(wins, wins.saturating_add(losses), 0.5)
}

/// Exact McNemar test on the discordant pairs of a paired 2×2 table: `b` pairs where only the
/// first arm passed, `c` where only the second did. Conditional on `b + c` this is the sign test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct McNemar {
    /// Evidence that the first arm passes more often (b > c).
    pub first_better: f64,
    /// Evidence that the second arm passes more often (c > b).
    pub second_better: f64,
    /// `min(1, 2 · smaller one-sided p)`, the usual exact two-sided definition.
    pub two_sided: f64,
}

/// One-sided `1 − alpha` lower confidence bound of the mean paired gain
/// `(to_pass − to_fail) / pairs` (normal approximation on the paired trinomial; with few
/// discordant pairs it is wide, which is the point: a large gain in a small draw is not
/// enough). −1 without pairs.
pub fn paired_gain_lower_bound(to_pass: u32, to_fail: u32, pairs: u32, alpha: f64) -> f64 {
    if pairs == 0 {
        return -1.0;
    }
    let n = f64::from(pairs);
    let d = (f64::from(to_pass) - f64::from(to_fail)) / n;
    let var = ((f64::from(to_pass) + f64::from(to_fail)) / n - d * d).max(0.0) / n;
    d - normal_quantile(1.0 - alpha) * var.sqrt()
}

pub fn mcnemar_exact(b: u32, c: u32) -> McNemar {
    let first_better = sign_test(b, c);
    let second_better = sign_test(c, b);
    McNemar { first_better, second_better, two_sided: (2.0 * first_better.min(second_better)).min(1.0) }
}

/// Smallest p-value the one-sided sign test can reach with `discordant` informative pairs.
/// Used by Tarone's multiplicity correction.
pub fn sign_test_min_p(discordant: u32) -> f64 {
    0.5f64.powi(i32::try_from(discordant).unwrap_or(i32::MAX))
}

// ---------------------------------------------------------------------------------------------
// Fisher's exact test for two independent binomial samples

/// Hypergeometric null of Fisher's test: candidate passes given both margins.
struct FisherTable {
    population: u32,
    successes: u32,
    draws: u32,
    lo: u32,
    hi: u32,
}

fn fisher_table(candidate: Counts, baseline: Counts) -> Option<FisherTable> {
    if candidate.trials == 0 || baseline.trials == 0 {
        return None;
    }
    let population = candidate.trials.checked_add(baseline.trials)?;
    let successes = candidate.passes + baseline.passes;
    let draws = candidate.trials;
    let lo = successes.saturating_sub(baseline.trials);
    let hi = successes.min(draws);
    Some(FisherTable { population, successes, draws, lo, hi })
}

impl FisherTable {
    fn sum(&self, from: u32, to: u32) -> f64 {
        (from..=to).map(|x| hypergeom_pmf(x, self.population, self.successes, self.draws)).sum::<f64>().clamp(0.0, 1.0)
    }
}

/// One-sided Fisher exact p-value for "the candidate's pass rate is lower than the baseline's"
/// (a regression). 3/3 baseline vs 0/3 candidate → 0.05.
pub fn fisher_lower(candidate: Counts, baseline: Counts) -> f64 {
    match fisher_table(candidate, baseline) {
        Some(t) => t.sum(t.lo, candidate.passes.clamp(t.lo, t.hi)),
        None => 1.0,
    }
}

/// One-sided Fisher exact p-value for "the candidate's pass rate is higher than the baseline's".
pub fn fisher_higher(candidate: Counts, baseline: Counts) -> f64 {
    match fisher_table(candidate, baseline) {
        Some(t) => t.sum(candidate.passes.clamp(t.lo, t.hi), t.hi),
        None => 1.0,
    }
}

/// Smallest p-value [`fisher_lower`] could reach with these margins (total passes and trials per
/// arm). A case whose margins cannot reach the per-test threshold — e.g. every trial on both
/// arms passed — cannot produce a false rejection, which is what Tarone's correction exploits.
pub fn fisher_lower_min_p(candidate: Counts, baseline: Counts) -> f64 {
    match fisher_table(candidate, baseline) {
        Some(t) => hypergeom_pmf(t.lo, t.population, t.successes, t.draws),
        None => 1.0,
    }
}

// ---------------------------------------------------------------------------------------------
// Early stopping: could more trials change a conclusion?

/// Best-case/worst-case check: can adding exactly `extra_candidate` candidate trials and
/// `extra_baseline` baseline trials, with any outcomes, move [`fisher_lower`] across
/// `threshold` (significant ↔ not)? Every completion is enumerated, so no monotonicity of the
/// p-value is assumed. If false, the conclusion is final whatever the remaining trials do.
pub fn fisher_lower_can_flip(
    candidate: Counts,
    baseline: Counts,
    extra_candidate: u32,
    extra_baseline: u32,
    threshold: f64,
) -> bool {
    let now = fisher_lower(candidate, baseline) <= threshold;
    (0..=extra_baseline).any(|jb| {
        (0..=extra_candidate).any(|jc| {
            let c = Counts::new(candidate.passes + jc, candidate.trials + extra_candidate);
            let b = Counts::new(baseline.passes + jb, baseline.trials + extra_baseline);
            (fisher_lower(c, b) <= threshold) != now
        })
    })
}

/// Beta-binomial pmf: probability of `k` passes in `m` more trials when the pass rate has a
/// Beta(a, b) distribution.
pub fn beta_binomial_pmf(k: u32, m: u32, a: f64, b: f64) -> f64 {
    if k > m || !(a > 0.0 && b > 0.0) {
        return 0.0;
    }
    let (k, m) = (u64::from(k), u64::from(m));
    (ln_choose(m, k) + ln_beta(k as f64 + a, (m - k) as f64 + b) - ln_beta(a, b)).exp()
}

/// Jeffreys prior Beta(1/2, 1/2): uninformative, invariant, and it keeps 3/3 from being read as
/// "certainly passes" the way a plug-in rate of 1.0 would.
pub const JEFFREYS: f64 = 0.5;

/// Posterior predictive distribution of the number of passes in `extra` more trials, given
/// `counts` observed and a Jeffreys prior. Index = passes.
pub fn predictive_passes(counts: Counts, extra: u32) -> Vec<f64> {
    let a = f64::from(counts.passes) + JEFFREYS;
    let b = f64::from(counts.failures()) + JEFFREYS;
    (0..=extra).map(|k| beta_binomial_pmf(k, extra, a, b)).collect()
}

/// Bayesian version of [`fisher_lower_can_flip`]: the posterior predictive probability (Jeffreys
/// priors on each arm's pass rate, arms independent) that after `extra_*` more trials the
/// one-sided Fisher test lands on the other side of `threshold` than it does now. The gate stops
/// sampling a case when this is small; the worst-case check alone would never stop, since
/// enough failures can always still turn up.
pub fn fisher_lower_flip_probability(
    candidate: Counts,
    baseline: Counts,
    extra_candidate: u32,
    extra_baseline: u32,
    threshold: f64,
) -> f64 {
    let now = fisher_lower(candidate, baseline) <= threshold;
    let pc = predictive_passes(candidate, extra_candidate);
    let pb = predictive_passes(baseline, extra_baseline);
    let mut flip = 0.0;
    for (jb, &wb) in (0u32..).zip(&pb) {
        for (jc, &wc) in (0u32..).zip(&pc) {
            let c = Counts::new(candidate.passes + jc, candidate.trials + extra_candidate);
            let b = Counts::new(baseline.passes + jb, baseline.trials + extra_baseline);
            if (fisher_lower(c, b) <= threshold) != now {
                flip += wb * wc;
            }
        }
    }
    flip.clamp(0.0, 1.0)
}

/// Posterior predictive distribution of the discordant pairs among `extra` more seed-paired
/// trials of one case: entry `[worse * (extra + 1) + better]` is the probability that `worse`
/// pairs have the baseline pass and the candidate fail, and `better` pairs the reverse.
///
/// Model: each arm's pass rate has an independent Jeffreys posterior; given the rates, trials are
/// independent, so given x baseline and y candidate passes among the new pairs, the number of
/// pairs where both pass is hypergeometric (which seeds pass is exchangeable).
pub fn discordant_predictive(candidate: Counts, baseline: Counts, extra: u32) -> Vec<f64> {
    let side = extra as usize + 1;
    let mut out = vec![0.0; side * side];
    let pb = predictive_passes(baseline, extra);
    let pc = predictive_passes(candidate, extra);
    for (x, &wx) in (0u32..).zip(&pb) {
        if wx < 1e-15 {
            continue;
        }
        for (y, &wy) in (0u32..).zip(&pc) {
            let w = wx * wy;
            if w < 1e-15 {
                continue;
            }
            let both_lo = (x + y).saturating_sub(extra);
            for both in both_lo..=x.min(y) {
                let h = hypergeom_pmf(both, extra, x, y);
                let (worse, better) = ((x - both) as usize, (y - both) as usize);
                out[worse * side + better] += w * h;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn log_gamma_matches_known_values() {
        assert!(close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-13));
        assert!(close(ln_gamma(1.0), 0.0, 1e-14));
        assert!(close(ln_gamma(10.0), 362_880f64.ln(), 1e-12));
        assert!(close(ln_gamma(100.5), 361.435_540_467_777_6, 1e-9));
        assert!(close(ln_gamma(-0.5), (2.0 * std::f64::consts::PI.sqrt()).ln(), 1e-12));
        assert!(ln_gamma(0.0).is_infinite());
        assert!(close(ln_choose(20, 10), 184_756f64.ln(), 1e-11));
        assert_eq!(ln_choose(3, 4), f64::NEG_INFINITY);
        assert!(close(ln_factorial(3000), ln_gamma(3001.0), 1e-9));
    }

    #[test]
    fn normal_quantile_known_values() {
        assert!(close(normal_quantile(0.975), 1.959_963_984_540_054, 1e-8));
        assert!(close(normal_quantile(0.5), 0.0, 1e-12));
        assert!(close(normal_quantile(0.01), -2.326_347_874_040_841, 1e-8));
        assert!(normal_quantile(1.5).is_nan());
    }

    #[test]
    fn wilson_known_values() {
        let (lo, hi) = wilson_confidence(Counts::new(7, 10), 0.95);
        assert!(close(lo, 0.3968, 5e-5) && close(hi, 0.8922, 5e-5), "{lo} {hi}");
        let (lo, hi) = wilson(0, 10, 1.96);
        assert_eq!(lo, 0.0);
        assert!(close(hi, 0.2775, 5e-5), "{hi}");
        let (lo, hi) = wilson(3, 3, 1.959_964);
        assert!(close(lo, 0.4385, 5e-5) && hi == 1.0, "{lo}");
        assert_eq!(wilson(0, 0, 1.96), (0.0, 1.0));
        assert_eq!(wilson(5, 3, 1.96), wilson(3, 3, 1.96), "passes are capped at trials");
    }

    #[test]
    fn binomial_tails_known_values() {
        assert!(close(binomial_sf(6, 6, 0.5), 0.015_625, 1e-15));
        assert!(close(binomial_cdf(2, 10, 0.3), 0.382_782_786_4, 1e-9));
        assert!(close(binomial_sf(8, 10, 0.5), 56.0 / 1024.0, 1e-14));
        assert_eq!(binomial_cdf(10, 10, 0.3), 1.0);
        assert_eq!(binomial_sf(0, 10, 0.3), 1.0);
        assert_eq!(binomial_pmf(0, 5, 0.0), 1.0);
        assert_eq!(binomial_pmf(5, 5, 1.0), 1.0);
        // The upper tail must be summed, not taken as 1 - cdf: P(X ≥ 60 | 60, 1/2) = 2^-60.
        assert!(close(binomial_sf(60, 60, 0.5) / 2f64.powi(-60), 1.0, 1e-9));
    }

    #[test]
    fn sign_and_mcnemar_known_values() {
        assert!(close(sign_test(6, 0), 0.015_625, 1e-15));
        assert!(close(sign_test(0, 0), 1.0, 0.0));
        // 9 vs 1 discordant: P(X ≥ 9 | 10) = 11/1024.
        assert!(close(sign_test(9, 1), 11.0 / 1024.0, 1e-15));
        let m = mcnemar_exact(1, 9);
        assert!(close(m.second_better, 11.0 / 1024.0, 1e-15));
        assert!(close(m.two_sided, 22.0 / 1024.0, 1e-15));
        assert!(close(m.first_better, 1.0 - 1.0 / 1024.0, 1e-15));
        assert_eq!(mcnemar_exact(5, 5).two_sided, 1.0);
        assert!(close(sign_test_min_p(6), 0.015_625, 0.0));
    }

    #[test]
    fn fisher_known_values() {
        assert!(close(fisher_lower(Counts::new(0, 3), Counts::new(3, 3)), 0.05, 1e-14));
        assert!(close(fisher_higher(Counts::new(3, 3), Counts::new(0, 3)), 0.05, 1e-14));
        assert!(close(fisher_lower(Counts::new(0, 5), Counts::new(5, 5)), 1.0 / 252.0, 1e-14));
        // 10/10 vs 1/10: only x = 1 is as extreme: C(10,1)/C(20,11).
        assert!(close(fisher_lower(Counts::new(1, 10), Counts::new(10, 10)), 10.0 / 167_960.0, 1e-15));
        // Textbook (tea tasting): 3 of 4 right on each side → one-sided p = 17/70.
        assert!(close(fisher_higher(Counts::new(3, 4), Counts::new(1, 4)), 17.0 / 70.0, 1e-14));
        assert_eq!(fisher_lower(Counts::new(3, 3), Counts::new(3, 3)), 1.0);
        assert_eq!(fisher_lower(Counts::new(0, 0), Counts::new(3, 3)), 1.0);
        assert!(close(fisher_lower_min_p(Counts::new(2, 3), Counts::new(3, 3)), 0.5, 1e-14));
        assert_eq!(fisher_lower_min_p(Counts::new(3, 3), Counts::new(3, 3)), 1.0);
    }

    /// The engine relies on these directions when it reasons about which side more evidence
    /// pushes a case; checked exhaustively on every small table.
    #[test]
    fn fisher_monotone_in_each_cell() {
        for nb in 1..=10u32 {
            for nc in 1..=10u32 {
                for xb in 0..=nb {
                    for xc in 0..=nc {
                        let p = fisher_lower(Counts::new(xc, nc), Counts::new(xb, nb));
                        if xc < nc {
                            assert!(fisher_lower(Counts::new(xc + 1, nc), Counts::new(xb, nb)) >= p - 1e-12);
                        }
                        if xb < nb {
                            assert!(fisher_lower(Counts::new(xc, nc), Counts::new(xb + 1, nb)) <= p + 1e-12);
                        }
                        let lo = fisher_lower(Counts::new(xc, nc), Counts::new(xb, nb));
                        let hi = fisher_higher(Counts::new(xc, nc), Counts::new(xb, nb));
                        assert!(lo + hi >= 1.0 - 1e-12, "tails overlap at the observed table");
                    }
                }
            }
        }
    }

    #[test]
    fn flip_checks() {
        let t = 0.0125;
        // 3/3 vs 3/3 can always become a regression in the worst case…
        assert!(fisher_lower_can_flip(Counts::new(3, 3), Counts::new(3, 3), 7, 7, t));
        // …but with one more trial per arm it cannot.
        assert!(!fisher_lower_can_flip(Counts::new(3, 3), Counts::new(3, 3), 1, 1, t));
        // …and it is unlikely under the posterior.
        let p_clean = fisher_lower_flip_probability(Counts::new(3, 3), Counts::new(3, 3), 7, 7, t);
        let p_blip = fisher_lower_flip_probability(Counts::new(2, 3), Counts::new(3, 3), 7, 7, t);
        let p_broken = fisher_lower_flip_probability(Counts::new(0, 3), Counts::new(3, 3), 7, 7, t);
        assert!(p_clean < p_blip && p_blip < p_broken, "{p_clean} {p_blip} {p_broken}");
        // At the end of the road nothing can change.
        assert_eq!(fisher_lower_flip_probability(Counts::new(0, 10), Counts::new(10, 10), 0, 0, t), 0.0);
    }

    #[test]
    fn predictive_distributions_sum_to_one() {
        let p = predictive_passes(Counts::new(2, 3), 7);
        assert!(close(p.iter().sum::<f64>(), 1.0, 1e-12));
        // Beta-binomial with a = b = 1 is uniform.
        assert!(close(beta_binomial_pmf(3, 9, 1.0, 1.0), 0.1, 1e-12));
        let d = discordant_predictive(Counts::new(1, 3), Counts::new(3, 3), 7);
        assert!(close(d.iter().sum::<f64>(), 1.0, 1e-9));
        // Impossible cells (worse + better > extra) stay empty.
        assert_eq!(d[7 * 8 + 7], 0.0);
    }
}
