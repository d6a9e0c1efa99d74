//! What `eval` reports: pass rates per case and per cluster with Wilson intervals, flaky
//! cases (outcomes differ across trials), the slowest and the costliest cases.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::evals::case::Case;
use crate::stats::wilson;
use crate::trial::TrialRecord;

/// 95% normal quantile for the intervals shown.
pub const Z95: f64 = 1.959_963_984_540_054;

#[derive(Debug, Clone, Serialize)]
pub struct CaseSummary {
    pub id: String,
    pub cluster: String,
    pub split: String,
    pub status: String,
    pub passes: u32,
    pub trials: u32,
    pub pass_rate: f64,
    pub wilson: (f64, f64),
    /// Outcomes differ across trials.
    pub flaky: bool,
    pub mean_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Distinct reasons its failed trials gave.
    pub failures: Vec<String>,
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterSummary {
    pub id: String,
    pub cases: u32,
    pub passes: u32,
    pub trials: u32,
    pub pass_rate: f64,
    pub wilson: (f64, f64),
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub schema: &'static str,
    pub harness: String,
    pub harness_hash: String,
    pub trials_per_case: u32,
    pub cases: Vec<CaseSummary>,
    pub clusters: Vec<ClusterSummary>,
    pub passes: u32,
    pub trials: u32,
    pub pass_rate: f64,
    pub wilson: (f64, f64),
    pub flaky: Vec<String>,
    pub slowest: Vec<String>,
    pub costliest: Vec<String>,
    pub cached_trials: u32,
    pub total_cost_usd: f64,
    pub wall_ms: u64,
    /// The isolation trials ran with, one line.
    pub isolation: String,
}

fn rate(p: u32, n: u32) -> f64 {
    if n == 0 { 0.0 } else { p as f64 / n as f64 }
}

pub fn summarize(
    harness: &str,
    harness_hash: &str,
    k: u32,
    cases: &[Case],
    records: &[TrialRecord],
    wall_ms: u64,
    isolation: String,
) -> EvalReport {
    let mut by_case: BTreeMap<&str, Vec<&TrialRecord>> = BTreeMap::new();
    for r in records {
        by_case.entry(r.case_id.as_str()).or_default().push(r);
    }
    let mut out_cases = Vec::new();
    for c in cases {
        let rs = by_case.get(c.id()).cloned().unwrap_or_default();
        let n = rs.len() as u32;
        let passes = rs.iter().filter(|r| r.passed).count() as u32;
        let mut failures: Vec<String> = rs.iter().filter_map(|r| r.reason.clone()).collect();
        failures.sort();
        failures.dedup();
        let costs: Vec<f64> = rs.iter().filter_map(|r| r.cost_usd).collect();
        let toks: Vec<u64> = rs.iter().filter_map(|r| r.tokens).collect();
        out_cases.push(CaseSummary {
            id: c.id().to_string(),
            cluster: c.file.cluster.clone(),
            split: c.file.split.to_string(),
            status: c.file.status.to_string(),
            passes,
            trials: n,
            pass_rate: rate(passes, n),
            wilson: wilson(passes, n, Z95),
            flaky: passes > 0 && passes < n,
            mean_ms: if n == 0 { 0 } else { rs.iter().map(|r| r.duration_ms).sum::<u64>() / n as u64 },
            cost_usd: (!costs.is_empty()).then(|| costs.iter().sum::<f64>() / costs.len() as f64),
            tokens: (!toks.is_empty()).then(|| toks.iter().sum::<u64>() / toks.len() as u64),
            failures,
            path: c.path.display().to_string(),
        });
    }
    let mut clusters: BTreeMap<&str, (u32, u32, u32)> = BTreeMap::new();
    for c in &out_cases {
        let e = clusters.entry(c.cluster.as_str()).or_default();
        e.0 += 1;
        e.1 += c.passes;
        e.2 += c.trials;
    }
    let clusters: Vec<ClusterSummary> = clusters
        .into_iter()
        .map(|(id, (cases, p, n))| ClusterSummary {
            id: id.to_string(),
            cases,
            passes: p,
            trials: n,
            pass_rate: rate(p, n),
            wilson: wilson(p, n, Z95),
        })
        .collect();
    let passes: u32 = out_cases.iter().map(|c| c.passes).sum();
    let trials: u32 = out_cases.iter().map(|c| c.trials).sum();
    let flaky = out_cases.iter().filter(|c| c.flaky).map(|c| c.id.clone()).collect();
    let mut by_time: Vec<&CaseSummary> = out_cases.iter().collect();
    by_time.sort_by(|a, b| b.mean_ms.cmp(&a.mean_ms).then(a.id.cmp(&b.id)));
    let slowest = by_time.iter().take(3).map(|c| c.id.clone()).collect();
    let mut by_cost: Vec<&CaseSummary> = out_cases.iter().filter(|c| c.cost_usd.is_some()).collect();
    by_cost.sort_by(|a, b| b.cost_usd.unwrap_or(0.0).total_cmp(&a.cost_usd.unwrap_or(0.0)).then(a.id.cmp(&b.id)));
    let costliest = by_cost.iter().take(3).map(|c| c.id.clone()).collect();
    EvalReport {
        schema: crate::schema::EVAL,
        harness: harness.to_string(),
        harness_hash: harness_hash.to_string(),
        trials_per_case: k,
        clusters,
        passes,
        trials,
        pass_rate: rate(passes, trials),
        wilson: wilson(passes, trials, Z95),
        flaky,
        slowest,
        costliest,
        cached_trials: records.iter().filter(|r| r.cached).count() as u32,
        // An empty f64 sum is -0.0, which prints as "$-0.0000".
        total_cost_usd: records.iter().filter_map(|r| r.cost_usd).sum::<f64>() + 0.0,
        wall_ms,
        isolation,
        cases: out_cases,
    }
}
