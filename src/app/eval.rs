//! `autoharness eval`: run the eval suite on the current harness.

use std::time::Instant;

use super::cli::EvalArgs;
use crate::config::Settings;
use crate::evals::case::{self, Case};
use crate::exit::{self, ExitCode, hinted};
use crate::harness::manifest::{self, Manifest};
use crate::harness::space::TrialSpace;
use crate::report::Output;
use crate::report::eval as render;
use crate::store::{Store, runtime};
use crate::trial::summary::summarize;
use crate::trial::{Runner, Trial, Version, run_check};

pub fn eval(settings: &Settings, out: &Output, args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let manifest = select_harness(settings, args.harness.as_deref())?;
    let split = args.split.as_str();
    if !matches!(split, "train" | "holdout" | "all") {
        return Err(hinted(format!("--split `{split}`"), "use train, holdout or all"));
    }
    let partition = args.partition.as_deref().map(super::gate::parse_partition).transpose()?;
    let (cases, cluster) = load_cases(settings, out, &manifest, args.cluster.as_deref())?;
    let cases: Vec<Case> = cases
        .into_iter()
        .filter(|c| split == "all" || c.file.split == *split)
        // Retired cases are out of the suite but never lost: `--all` runs them too.
        .filter(|c| args.all || c.file.status != "retired")
        .filter(|c| cluster.as_deref().is_none_or(|k| c.file.cluster.starts_with(k)))
        .filter(|c| partition.is_none_or(|p| p.contains(c.id())))
        .collect();
    if cases.is_empty()
        && let Some(p) = partition
    {
        // A shard can be empty when there are fewer cases than shards: nothing to do is no error.
        out.note(&format!("shard {p} holds none of the {split} cases"));
    } else if cases.is_empty() {
        return Err(hinted(
            format!("no {split} cases to run for harness `{}`", manifest.name),
            "check --cluster / --split, or run `autoharness mine` to write cases",
        ));
    }
    let k = args.trials.max(1);
    let trials: Vec<Trial> =
        (0..cases.len()).flat_map(|c| (0..k as u64).map(move |seed| Trial { case: c, seed })).collect();
    let version = Version::new(manifest.clone(), manifest.root.clone())?;
    let bar = out.progress(trials.len() as u64, "trials");
    let started = Instant::now();
    // Trial copies in a folder no other process touches (a gate or run may share the store).
    let space = TrialSpace::claim(&settings.trials_root())?;
    let rt = runtime()?;
    let records = rt.block_on(async {
        let store = Store::open_settings(settings).await?;
        let mut runner =
            Runner::new(Some(std::sync::Arc::new(store.clone())), settings.jobs, space.path().join("trials"));
        runner.use_cache = !args.no_cache;
        if let Some(Err(why)) = run_check(&version, &space.path().join("check"), runner.isolation).await? {
            return Err(hinted(
                format!("the harness check failed: {why}"),
                format!("fix it, or remove `check` from `{}`", manifest.path.display()),
            ));
        }
        let tick = |_: &crate::trial::TrialRecord| bar.inc(1);
        let records = tokio::select! {
            r = runner.run(&version, &cases, &trials, &tick) => r?,
            _ = tokio::signal::ctrl_c() => {
                return Err(anyhow::anyhow!("interrupted: trials stopped; finished trials are recorded in the store"));
            }
        };
        store.close().await;
        Ok(records)
    })?;
    bar.finish_and_clear();
    space.finish();
    let isolation = crate::sandbox::probe().summary();
    let report =
        summarize(&manifest.name, &version.hash, k, &cases, &records, started.elapsed().as_millis() as u64, isolation);
    if let Some(path) = &args.junit {
        std::fs::write(path, render::junit(&report))
            .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
        out.note(&format!("JUnit written to `{}`", path.display()));
    }
    if out.json {
        out.print_json(&report)?;
    } else {
        out.print(&render::table(out, &report));
    }
    Ok(exit::SUCCESS)
}

/// The harness named by `--harness`, the config, or the only one under harnesses/.
pub fn select_harness(settings: &Settings, name: Option<&str>) -> anyhow::Result<Manifest> {
    let name = name.map(str::to_string).or_else(|| settings.config.harness.clone());
    manifest::select(&settings.project_root, name.as_deref())
}

/// The harness's cases under evals/ (an invalid case file is an error before any trial),
/// and the cluster a person named (`--cluster`, `--target`). Cluster ids from before a
/// change of the signature rules resolve to the clusters they became, in the argument and in
/// case files a person edited (they keep the id they had).
pub fn load_cases(
    settings: &Settings,
    out: &Output,
    manifest: &Manifest,
    cluster: Option<&str>,
) -> anyhow::Result<(Vec<Case>, Option<String>)> {
    let mut cases = case::load_checked(&settings.project_root.join("evals"), &manifest.name)?;
    let aliases = runtime()?.block_on(async {
        let store = Store::open_settings_for_reading(settings).await?;
        let aliases = store.aliases().await;
        store.close().await;
        aliases
    })?;
    for c in &mut cases {
        c.file.cluster = aliases.resolve(&c.file.cluster);
    }
    let named = cluster.map(|k| aliases.given(k, cases.iter().map(|c| c.file.cluster.as_str())));
    if let Some(n) = &named
        && let Some(old) = &n.was
    {
        out.note(&format!("`{old}` is now `{}` (the signature rules changed; `clusters {old}` says why)", n.id));
    }
    Ok((cases, named.map(|n| n.id)))
}
