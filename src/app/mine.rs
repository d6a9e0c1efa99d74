//! `autoharness mine`, `autoharness clusters`, `autoharness cases`.

use std::sync::atomic::{AtomicU64, Ordering};

use super::cli::MineArgs;
use crate::config::Settings;
use crate::exit::{self, ExitCode};
use crate::flow::mine::mine as run_mine;
use crate::mine::MineOptions;
use crate::report::Output;
use crate::report::mine as render;
use crate::store::{Store, runtime};

pub fn mine(settings: &Settings, out: &Output, args: &MineArgs) -> anyhow::Result<ExitCode> {
    let since = match &args.since {
        Some(d) => Some(parse_since(d)?),
        None => None,
    };
    let harness = match args.harness.clone().or_else(|| settings.config.harness.clone()) {
        Some(h) => h,
        // The cases are for the project's harness: the only one under harnesses/, so that
        // the `eval` the summary suggests finds them.
        None => match crate::harness::manifest::discover(&settings.project_root) {
            Ok(all) if all.len() == 1 => all[0].name.clone(),
            Ok(all) if all.len() > 1 => {
                let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
                out.warn(&format!(
                    "several harnesses ({}): cases go to evals/default/; pass --harness NAME (or set `harness` in autoharness.toml)",
                    names.join(", ")
                ));
                "default".into()
            }
            _ => "default".into(),
        },
    };
    let opts = MineOptions {
        paths: args.paths.clone(),
        harness,
        since,
        max_cases_per_cluster: args.max_cases_per_cluster,
        assume_failed: args.assume_failed,
        jobs: settings.jobs,
        join_threshold: args.join_threshold.unwrap_or(settings.config.mine.join_threshold),
        holdout_share: settings.config.mine.holdout_share,
        evals_dir: settings.project_root.join("evals"),
        write_cases: !args.no_cases,
        summarize: if args.summarize { Some(summary_provider(settings)?) } else { None },
        judge: if args.judge {
            Some(crate::mine::JudgeOptions {
                provider: judge_provider(settings)?,
                budget_usd: args.budget_usd,
                rubric: settings
                    .config
                    .judge
                    .rubric
                    .as_ref()
                    .map(|r| crate::mine::judge::Rubric::new(r.criteria.clone(), r.version.clone())),
            })
        } else {
            None
        },
        feedback: crate::trace::scan::FeedbackOptions {
            files: args.feedback.clone(),
            config: settings.config.feedback.clone(),
        },
    };
    // A file named with --feedback that is not feedback is a mistake to stop at, not to skip.
    crate::trace::scan::named_feedback(&opts.feedback)
        .map_err(|e| exit::hinted(format!("--feedback: {e:#}"), "see docs/outcomes.md for the feedback formats"))?;
    crate::paths::safe_name(&opts.evals_dir, &opts.harness).map_err(|e| {
        exit::hinted(format!("harness name: {e:#}"), "a harness name is letters, digits, `-`, `_` or `.`")
    })?;
    for p in &opts.paths {
        crate::paths::check_input(p).map_err(|e| exit::hinted(e, "pass trace files or folders"))?;
    }
    let n_files = crate::trace::walk::walk(&opts.paths).0.len() as u64;
    let bar = out.progress(n_files, "mining");
    let done = AtomicU64::new(0);
    let tick = |_: &str| bar.set_position(done.fetch_add(1, Ordering::Relaxed) + 1);
    let rt = runtime()?;
    let result = rt.block_on(async {
        let store = Store::open_settings(settings).await?;
        let r = run_mine(&store, &opts, &tick).await;
        store.close().await;
        r
    })?;
    bar.finish_and_clear();
    if out.verbose > 0 {
        for e in &result.errors {
            out.warn(e);
        }
    } else if !result.errors.is_empty() {
        out.warn(&format!("{} file(s) could not be read completely (-v lists them)", result.errors.len()));
    }
    for w in &result.warnings {
        out.warn(w);
    }
    for path in &result.summary.cases_kept_edited {
        out.note(&format!("kept `{path}`: edited by hand, not overwritten"));
    }
    if let Some(report) = &args.report {
        let text = match report.extension().and_then(|e| e.to_str()) {
            Some("html" | "htm") => render::html(&result),
            _ => render::markdown(&result),
        };
        std::fs::write(report, text)
            .map_err(|e| anyhow::anyhow!("cannot write the report `{}`: {e}", report.display()))?;
        out.note(&format!("report written to `{}`", report.display()));
    }
    if out.json {
        out.print_json(&render::json_doc(&result))?;
    } else {
        out.print(&render::table(out, &result));
    }
    Ok(exit::SUCCESS)
}

/// The LLM `--summarize` asks: the `[proposer]` one, which must speak HTTP.
fn summary_provider(settings: &Settings) -> anyhow::Result<crate::llm::ProviderConfig> {
    http_provider("--summarize", "[proposer]", &settings.config.proposer, "[proposer]")
}

/// The LLM `--judge` asks: `[judge]`, else `[proposer]`; either must speak HTTP.
fn judge_provider(settings: &Settings) -> anyhow::Result<crate::llm::ProviderConfig> {
    match &settings.config.judge.provider {
        Some(j) => http_provider("--judge", "[judge]", j, "[judge]"),
        None => http_provider("--judge", "[proposer]", &settings.config.proposer, "[judge]"),
    }
}

/// `cfg` (read from `section`) as the LLM `flag` asks; an error that says which section to
/// set (`to_set`) when its provider does not speak HTTP.
fn http_provider(
    flag: &str,
    section: &str,
    cfg: &crate::propose::ProposerConfig,
    to_set: &str,
) -> anyhow::Result<crate::llm::ProviderConfig> {
    if !cfg.provider.is_llm() {
        return Err(exit::hinted(
            format!("{flag} needs an LLM, and the {section} provider is `{}`", cfg.provider),
            format!(
                "set {to_set} provider = \"openai\" (with base_url and model) or \"anthropic\" in autoharness.toml"
            ),
        ));
    }
    cfg.llm()
}

fn parse_since(date: &str) -> anyhow::Result<i128> {
    let value = if date.len() == 10 { format!("{date}T00:00:00Z") } else { date.to_string() };
    crate::trace::json::parse_time(&serde_json::Value::String(value))
        .ok_or_else(|| exit::hinted(format!("`{date}` is not a date"), "use YYYY-MM-DD or an RFC 3339 time"))
}

pub fn clusters(settings: &Settings, out: &Output, id: Option<&str>) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let (clusters, failures, cases, alias) = rt.block_on(async {
        let store = Store::open_settings_for_reading(settings).await?;
        // An id from before a change of the signature rules names the cluster it became.
        let aliases = store.aliases().await?;
        let mut clusters = store.clusters().await?;
        // An alias's row stays (its label, state and history) but it has no members: the
        // cluster it became is the one listed.
        clusters.retain(|c| aliases.resolve(&c.cluster.id) == c.cluster.id);
        let named = id.map(|id| aliases.given(id, clusters.iter().map(|c| c.cluster.id.as_str())));
        let alias = match named.and_then(|n| Some((n.was?, n.id))) {
            Some((old, new)) => {
                let reason = store.cluster_alias_reason(&old).await?;
                Some((old, new, reason))
            }
            None => None,
        };
        let full = match (&alias, id) {
            (Some((_, new, _)), _) => Some(new.clone()),
            (None, Some(id)) => clusters
                .iter()
                .find(|c| c.cluster.id == id || c.cluster.id.trim_start_matches("k-") == id)
                .map(|c| c.cluster.id.clone()),
            (None, None) => None,
        };
        let r = (clusters, store.failures(false).await?, store.cases(full.as_deref()).await?, alias);
        store.close().await;
        anyhow::Ok(r)
    })?;
    let resolved = alias.as_ref().map(|(old, new, reason)| {
        out.note(&format!("`{old}` is now `{new}` ({})", reason.as_deref().unwrap_or("signature rules changed")));
        new.as_str()
    });
    let id = resolved.or(id);
    match id {
        None => {
            if out.json {
                out.print_json(&render::clusters_doc(&clusters, &failures))?;
            } else {
                out.print(&render::clusters_table(out, &clusters, &failures));
            }
        }
        Some(id) => {
            let Some(cluster) =
                clusters.iter().find(|c| c.cluster.id == id || c.cluster.id.trim_start_matches("k-") == id)
            else {
                return Err(exit::hinted(
                    format!("no cluster `{id}` in the store"),
                    "`autoharness clusters` lists them",
                ));
            };
            let members: Vec<_> =
                failures.iter().filter(|f| f.cluster_id.as_deref() == Some(&cluster.cluster.id)).collect();
            if out.json {
                out.print_json(&render::cluster_detail_doc(cluster, &members, &cases))?;
            } else {
                out.print(&render::cluster_detail(out, cluster, &members, &cases));
            }
        }
    }
    Ok(exit::SUCCESS)
}

pub fn cases(
    settings: &Settings,
    out: &Output,
    cluster: Option<&str>,
    retire_idle: Option<u32>,
) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    // The case files are the truth for status (a CI runner starts with an empty store); the
    // store adds each case's history and trial record.
    let harness = super::eval::select_harness(settings, None).ok();
    let mut invalid = Vec::new();
    let retired = match retire_idle {
        Some(gates) => {
            let m = super::eval::select_harness(settings, None)?;
            rt.block_on(async {
                let store = Store::open_settings(settings).await?;
                let retired = crate::flow::retire::retire_idle(&store, &settings.project_root, &m.name, gates).await;
                store.close().await;
                retired
            })?
        }
        None => Vec::new(),
    };
    for r in &retired {
        out.note(&format!("retired {}: {}", r.case, r.reason));
    }
    let cases = rt.block_on(async {
        let store = Store::open_settings_for_reading(settings).await?;
        // Old cluster ids (from before a change of the signature rules) resolve to new ones,
        // in the argument and in case files a person edited (they keep the id they had).
        let aliases = store.aliases().await?;
        let live: Vec<String> =
            store.clusters().await?.into_iter().map(|c| c.cluster.id).filter(|id| aliases.resolve(id) == *id).collect();
        let resolved = cluster.map(|k| aliases.given(k, live.iter().map(String::as_str)).id);
        let cluster = resolved.as_deref();
        let mut rows = store.cases(cluster).await?;
        if let Some(m) = &harness {
            let (files, problems) = crate::evals::case::load(&settings.project_root.join("evals"), &m.name);
            invalid = problems;
            for c in files.iter().filter(|c| cluster.is_none_or(|k| aliases.resolve(&c.file.cluster).starts_with(k))) {
                let path = c.path.display().to_string();
                match rows.iter_mut().find(|r| r.id == c.file.id) {
                    Some(r) => {
                        r.status = c.file.status;
                        r.split = c.file.split;
                    }
                    None => rows.push(crate::store::mine::StoredCase {
                        id: c.file.id.clone(),
                        cluster_id: aliases.resolve(&c.file.cluster),
                        harness: c.file.harness.clone(),
                        split: c.file.split,
                        status: c.file.status,
                        path,
                        content_hash: String::new(),
                    }),
                }
            }
        }
        rows.sort_by(|a, b| (a.cluster_id.as_str(), a.id.as_str()).cmp(&(b.cluster_id.as_str(), b.id.as_str())));
        let mut out = Vec::new();
        for r in rows {
            let history = store.case_events(&r.id).await?.into_iter().map(|e| (e.status, e.reason, e.at)).collect();
            let trials = store.trials_of_case(&r.id).await?;
            let passed = trials.iter().filter(|t| t.passed).count();
            out.push(render::CaseRow { case: r, history, trials_passed: passed, trials_total: trials.len() });
        }
        store.close().await;
        anyhow::Ok(out)
    })?;
    if out.json {
        let mut doc = serde_json::json!({"schema": crate::schema::CASES, "cases": cases, "invalid": invalid});
        if retire_idle.is_some() {
            doc["retired"] = serde_json::to_value(&retired)?;
        }
        out.print_json(&doc)?;
    } else {
        out.print(&render::cases_table(out, &cases, &invalid));
    }
    // Invalid case files make `cases` a lint: eval, gate and run refuse to start with them.
    Ok(if invalid.is_empty() { exit::SUCCESS } else { exit::FAILURE })
}
