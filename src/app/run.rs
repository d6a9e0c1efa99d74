//! `autoharness run`: the nightly loop, and `autoharness report`: a past run's summary.

use super::cli::{ReportArgs, RunArgs};
use super::eval::select_harness;
use crate::config::Settings;
use crate::exit::{self, ExitCode, hinted};
use crate::flow::run::{RunContext, RunOptions, lock, run as run_loop};
use crate::gate::engine::GateConfig;
use crate::harness::manifest::parse_duration;
use crate::harness::space::TrialSpace;
use crate::propose::ProposerKind;
use crate::report::Output;
use crate::report::run as render;
use crate::store::{Store, runtime};

pub fn run(settings: &Settings, out: &Output, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let manifest = select_harness(settings, args.harness.as_deref())?;
    let partition = args.partition.as_deref().map(super::gate::parse_partition).transpose()?;
    let shard_wait = duration_arg("--shard-wait", &args.shard_wait)?;
    if let Some(p) = partition.filter(|p| p.index > 1) {
        return follow(settings, out, &manifest, p, shard_wait);
    }
    let time_limit = args.time_limit.as_deref().map(|t| duration_arg("--time-limit", t)).transpose()?;
    if args.apply && args.branch.is_some() {
        return Err(hinted("--apply and --branch both given", "--branch applies and commits; pass one of them"));
    }
    if let Some(branch) = &args.branch {
        crate::flow::run::branch_preflight(&settings.project_root, &manifest)?;
        crate::flow::run::branch_is_new(&settings.project_root, branch)?;
    }
    if let Some(t) = &args.traces
        && !t.exists()
    {
        return Err(hinted(
            format!("`{}` does not exist", t.display()),
            "pass the folder of trace files with --traces",
        ));
    }
    let mut proposer = settings.config.proposer.clone();
    if let Some(p) = &args.proposer {
        proposer.provider = ProposerKind::parse(p)
            .ok_or_else(|| hinted(format!("unknown proposer `{p}`"), "use knobs, openai, anthropic or command"))?;
    }
    if let Some(m) = &args.model {
        proposer.model = Some(m.clone());
    }
    if let Some(u) = &args.base_url {
        proposer.base_url = Some(u.clone());
    }
    if proposer.provider.is_llm() {
        proposer.llm()?;
    }
    if proposer.provider == ProposerKind::Command && proposer.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
        return Err(hinted(
            "the `command` proposer needs a command",
            "set [proposer] command = \"...\" in autoharness.toml (it reads the brief on stdin)",
        ));
    }
    if parse_duration(&proposer.timeout).is_none() {
        return Err(hinted(
            format!("[proposer] timeout = `{}` is not a duration of at most 366 days", proposer.timeout.escape_debug()),
            crate::harness::manifest::DURATION_HINT,
        ));
    }
    let opts = RunOptions {
        traces: args.traces.clone(),
        max_iterations: args.max_iterations,
        candidates: args.candidates.max(1),
        budget_usd: args.budget_usd,
        time_limit,
        apply: args.apply,
        branch: args.branch.clone(),
        resume: args.resume,
        gate: GateConfig::default(),
        cost_tolerance: settings.config.gate.cost_tolerance,
        join_threshold: settings.config.mine.join_threshold,
        holdout_share: settings.config.mine.holdout_share,
        proposer,
        target: args.target.clone(),
        no_cache: args.no_cache,
        partition,
        shard_wait: Some(shard_wait),
    };
    let _lock = lock(&settings.db_path)?;
    let emit = |e: crate::flow::run::RunEvent| {
        if !out.json
            && let Some(line) = render::event(out, &e)
        {
            out.note(&line);
        }
    };
    let interrupted = (
        "interrupted: the run stopped; everything finished so far is recorded",
        "continue it with `autoharness run --resume`",
    );
    let summary = session(settings, &emit, interrupted, async |ctx| {
        // Runners on other machines sharing a Postgres store see no lock file of ours.
        let _shared_lock = ctx.store.run_lock().await?;
        run_loop(ctx, &manifest, &opts).await
    })?;
    if out.json {
        out.print_json(&summary)?;
    } else {
        out.print(&render::terminal(out, &summary));
    }
    Ok(exit::SUCCESS)
}

/// One `run` process on the store: claims its trial folder, opens the store and runs `body`
/// with the run's context until it ends or ctrl-c stops it (`interrupted`: what happened, what
/// to do), then closes the store and releases the folder.
fn session<T>(
    settings: &Settings,
    emit: &(dyn Fn(crate::flow::run::RunEvent) + Sync),
    (what, next): (&str, &str),
    body: impl AsyncFnOnce(&RunContext<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let space = TrialSpace::claim(&settings.trials_root())?;
    let rt = runtime()?;
    let done = rt.block_on(async {
        let store = Store::open_settings(settings).await?;
        let (state_dir, trials_dir) = (settings.state_dir(), space.path().join("trials"));
        let ctx = context(settings, &store, &state_dir, &trials_dir, emit);
        let r = tokio::select! {
            r = body(&ctx) => r,
            _ = tokio::signal::ctrl_c() => Err(hinted(what, next)),
        };
        store.close().await;
        r
    })?;
    space.finish();
    Ok(done)
}

/// What the run's workflows see of this process: the store, its folders, how to report.
fn context<'a>(
    settings: &'a Settings,
    store: &'a Store,
    state_dir: &'a std::path::Path,
    trials_dir: &'a std::path::Path,
    emit: &'a (dyn Fn(crate::flow::run::RunEvent) + Sync),
) -> RunContext<'a> {
    RunContext {
        evidence: &render::Renderers,
        store,
        project_root: &settings.project_root,
        state_dir,
        trials_dir,
        jobs: settings.jobs,
        emit,
        feedback: &settings.config.feedback,
    }
}

/// `run --partition K/N` with K > 1: run this runner's share of the leading runner's gates.
/// The leader's other options (traces, budgets, --apply) are its own: a CI matrix passes one
/// command line to every job.
/// A duration flag's value, or an error naming the flag and the accepted forms.
fn duration_arg(flag: &str, value: &str) -> anyhow::Result<std::time::Duration> {
    parse_duration(value).ok_or_else(|| {
        hinted(
            format!("{flag} `{}` is not a duration of at most 366 days", value.escape_debug()),
            crate::harness::manifest::DURATION_HINT,
        )
    })
}

fn follow(
    settings: &Settings,
    out: &Output,
    manifest: &crate::harness::manifest::Manifest,
    partition: crate::gate::partition::Partition,
    wait: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    out.note(&format!("autoharness run: shard {partition}, following the run led by shard 1/{}", partition.total));
    let interrupted = (
        "interrupted: this shard stopped; the leading runner runs what it leaves",
        "nothing to do: finished trials are recorded",
    );
    let summary = session(settings, &|_| {}, interrupted, async |ctx| {
        crate::flow::partitioned::follow(ctx, &settings.db_path, manifest, partition, wait).await
    })?;
    if out.json {
        out.print_json(&summary)?;
    } else {
        out.print(&render::follower(out, &summary));
    }
    Ok(exit::SUCCESS)
}

pub fn report(settings: &Settings, out: &Output, args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let found = rt.block_on(async {
        let store = Store::open_settings_for_reading(settings).await?;
        let r = match &args.run {
            Some(id) => store.run_by_id(id).await?,
            None => {
                let harness = select_harness(settings, None).map(|m| m.name).unwrap_or_default();
                store.latest_run(&harness, false).await?
            }
        };
        store.close().await;
        anyhow::Ok(r)
    })?;
    let Some(run) = found else {
        return Err(hinted("no such run in the store", "`autoharness run` makes one; pass a run id to pick one"));
    };
    let Some(json) = run.summary else {
        return Err(hinted(
            format!("run {} has no summary yet (status {})", run.id, run.status),
            "an unfinished run continues with `autoharness run --resume`",
        ));
    };
    let summary: serde_json::Value = serde_json::from_str(&json)?;
    if out.json {
        out.print_json(&summary)?;
    } else {
        let dir = summary["run_dir"].as_str().unwrap_or("");
        let md = std::fs::read_to_string(std::path::Path::new(dir).join("summary.md")).unwrap_or(json);
        out.print(&md);
    }
    Ok(exit::SUCCESS)
}
