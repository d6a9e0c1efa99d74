//! `--partition K/N`: which share of the cases this process runs when trials are spread over
//! several machines (a CI matrix, a Kubernetes Indexed Job, GitLab or Buildkite parallel jobs).
//!
//! A case belongs to shard `hash(case id) mod N`, as cargo-nextest's `--partition hash:K/N`:
//! both arms and every seed of a case land on the same shard, so its trials stay paired, and
//! the assignment depends only on the id (adding a case never moves the others).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Shard `index` (1-based) of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub index: u32,
    pub total: u32,
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.total)
    }
}

/// Most shards: more machines than this for one gate is a misconfiguration, not a plan.
pub const MAX_SHARDS: u32 = 1024;

impl Partition {
    pub fn new(index: u32, total: u32) -> Result<Partition, String> {
        if total == 0 || total > MAX_SHARDS {
            return Err(format!("the number of shards must be 1 to {MAX_SHARDS}, not {total}"));
        }
        if index == 0 || index > total {
            return Err(format!("shard {index} of {total} does not exist: shards are numbered 1 to {total}"));
        }
        Ok(Partition { index, total })
    }

    /// The shard (1-based) a case id belongs to among `total`.
    pub fn shard_of(case_id: &str, total: u32) -> u32 {
        let h = blake3::hash(case_id.as_bytes());
        let first = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        (first % u64::from(total.max(1))) as u32 + 1
    }

    pub fn contains(&self, case_id: &str) -> bool {
        Self::shard_of(case_id, self.total) == self.index
    }
}

/// Where the shard came from, for errors that say which variable to fix.
fn number(name: &str, value: &str) -> Result<u32, String> {
    value.trim().parse::<u32>().map_err(|_| format!("{name} is `{value}`, not a whole number"))
}

/// Parse `--partition`: `K/N` (1-based, as a GitHub Actions matrix writes it), `auto` (the
/// index and total from the CI engine's variables), or `auto/N` (the index from the engine,
/// the total given: a Kubernetes Indexed Job tells a pod its index only). `env` looks a
/// variable up (std::env::var in the binary, a map in tests).
pub fn parse(spec: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Partition, String> {
    let spec = spec.trim().strip_prefix("hash:").unwrap_or(spec.trim());
    let (k, n) = match spec.split_once('/') {
        Some((k, n)) => (k.trim(), Some(n.trim())),
        None => (spec, None),
    };
    if k == "auto" {
        let total = n.map(|n| number("the total after `auto/`", n)).transpose()?;
        return from_env(env, total);
    }
    let Some(n) = n else {
        return Err(format!("`{spec}` is not K/N (e.g. 2/4 for the second of four shards) or `auto`"));
    };
    Partition::new(number("the shard index", k)?, number("the number of shards", n)?)
}

/// The shard the CI engine says this job is: GitLab (`CI_NODE_INDEX`/`CI_NODE_TOTAL`, 1-based),
/// Buildkite (`BUILDKITE_PARALLEL_JOB`/`BUILDKITE_PARALLEL_JOB_COUNT`, 0-based), Kubernetes
/// Indexed Jobs (`JOB_COMPLETION_INDEX`, 0-based, with the total from `auto/N` or
/// `AUTOHARNESS_PARTITION_TOTAL`). GitHub Actions sets no such variable: its matrix passes K/N.
pub fn from_env(env: &dyn Fn(&str) -> Option<String>, total: Option<u32>) -> Result<Partition, String> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let given_total = match total {
        Some(n) => Some(n),
        None => var("AUTOHARNESS_PARTITION_TOTAL").map(|v| number("AUTOHARNESS_PARTITION_TOTAL", &v)).transpose()?,
    };
    if let Some(i) = var("CI_NODE_INDEX") {
        let n = match given_total {
            Some(n) => n,
            None => number("CI_NODE_TOTAL", &var("CI_NODE_TOTAL").unwrap_or_default())?,
        };
        return Partition::new(number("CI_NODE_INDEX", &i)?, n);
    }
    if let Some(i) = var("BUILDKITE_PARALLEL_JOB") {
        let n = match given_total {
            Some(n) => n,
            None => number("BUILDKITE_PARALLEL_JOB_COUNT", &var("BUILDKITE_PARALLEL_JOB_COUNT").unwrap_or_default())?,
        };
        return Partition::new(number("BUILDKITE_PARALLEL_JOB", &i)? + 1, n);
    }
    if let Some(i) = var("JOB_COMPLETION_INDEX") {
        let Some(n) = given_total else {
            return Err("JOB_COMPLETION_INDEX is set but not the number of shards: pass --partition auto/N \
                 (N = the Job's completions) or set AUTOHARNESS_PARTITION_TOTAL"
                .into());
        };
        return Partition::new(number("JOB_COMPLETION_INDEX", &i)? + 1, n);
    }
    Err("--partition auto found no shard index: none of CI_NODE_INDEX (GitLab), BUILDKITE_PARALLEL_JOB \
         (Buildkite) or JOB_COMPLETION_INDEX (Kubernetes Indexed Job) is set; pass K/N (a GitHub Actions \
         matrix: --partition ${{ matrix.shard }}/N)"
        .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn explicit_and_engine_specs() {
        let none = env_of(&[]);
        assert_eq!(parse("2/4", &none), Ok(Partition { index: 2, total: 4 }));
        assert_eq!(parse("hash:1/3", &none), Ok(Partition { index: 1, total: 3 }));
        assert!(parse("0/4", &none).unwrap_err().contains("numbered 1 to 4"));
        assert!(parse("5/4", &none).is_err());
        assert!(parse("2", &none).unwrap_err().contains("K/N"));
        assert!(parse("auto", &none).unwrap_err().contains("JOB_COMPLETION_INDEX"));
        let gitlab = env_of(&[("CI_NODE_INDEX", "3"), ("CI_NODE_TOTAL", "5")]);
        assert_eq!(parse("auto", &gitlab), Ok(Partition { index: 3, total: 5 }));
        let buildkite = env_of(&[("BUILDKITE_PARALLEL_JOB", "0"), ("BUILDKITE_PARALLEL_JOB_COUNT", "2")]);
        assert_eq!(parse("auto", &buildkite), Ok(Partition { index: 1, total: 2 }));
        let k8s = env_of(&[("JOB_COMPLETION_INDEX", "7")]);
        assert_eq!(parse("auto/8", &k8s), Ok(Partition { index: 8, total: 8 }));
        assert!(parse("auto", &k8s).unwrap_err().contains("auto/N"));
        let k8s_env = env_of(&[("JOB_COMPLETION_INDEX", "0"), ("AUTOHARNESS_PARTITION_TOTAL", "3")]);
        assert_eq!(parse("auto", &k8s_env), Ok(Partition { index: 1, total: 3 }));
        let bad = env_of(&[("CI_NODE_INDEX", "x"), ("CI_NODE_TOTAL", "2")]);
        assert!(parse("auto", &bad).unwrap_err().contains("CI_NODE_INDEX is `x`"));
    }

    #[test]
    fn every_case_lands_on_exactly_one_shard_and_shards_share_the_work() {
        let ids: Vec<String> = (0..400).map(|i| format!("c-{i:04x}")).collect();
        for total in [1u32, 2, 3, 8] {
            let mut sizes = vec![0usize; total as usize];
            for id in &ids {
                let owners: Vec<u32> =
                    (1..=total).filter(|&k| Partition::new(k, total).unwrap().contains(id)).collect();
                assert_eq!(owners.len(), 1, "{id} on {owners:?} of {total}");
                sizes[owners[0] as usize - 1] += 1;
            }
            let fair = ids.len() / total as usize;
            assert!(sizes.iter().all(|&s| s > fair / 2), "{total} shards: {sizes:?}");
        }
        // The assignment is a function of the id alone: the same on every machine and release.
        assert_eq!(Partition::shard_of("c-s1", 4), Partition::shard_of("c-s1", 4));
    }
}
