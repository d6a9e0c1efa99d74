//! `autoharness gate PATCH`: exit 0 pass, 1 fail, 2 error.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::cli::GateArgs;
use super::eval::load_cases;
use crate::config::Settings;
use crate::exit::{self, ExitCode, hinted};
use crate::gate::engine::GateConfig;
use crate::gate::merge::{self, ShardReport};
use crate::gate::partition::{self, Partition};
use crate::gate::session::{self, GateOptions, Progress};
use crate::harness::manifest;
use crate::harness::space::TrialSpace;
use crate::report::Output;
use crate::report::gate as render;
use crate::store::shards::ShardStart;
use crate::store::{Store, runtime};
use crate::trial::{Runner, TrialRecord};

/// Patches bigger than this are refused before parsing: no harness diff is this large.
const MAX_PATCH_BYTES: u64 = 64 << 20;

pub fn gate(settings: &Settings, out: &Output, args: &GateArgs) -> anyhow::Result<ExitCode> {
    let text = read_patch(&args.patch)?;
    let manifest = match args.harness.clone().or_else(|| settings.config.harness.clone()) {
        Some(name) => manifest::select(&settings.project_root, Some(&name))?,
        None => {
            let all = manifest::discover(&settings.project_root)?;
            if all.is_empty() {
                return Err(hinted("no harness found under harnesses/", "run `autoharness init`, or pass --harness"));
            }
            session::harness_for_patch(&text, &all, &settings.project_root)?.clone()
        }
    };
    let patch = session::prepare_patch(&text, &manifest, &settings.project_root)?;
    let (cases, target) = load_cases(settings, out, &manifest, args.target.as_deref())?;
    let mut cfg = GateConfig {
        k: args.trials.max(1),
        k_max: args.max_trials.max(args.trials.max(1)),
        alpha: args.alpha,
        sequential: settings.config.gate.sequential,
        ..GateConfig::default()
    };
    if let Some(m) = args.min_effect {
        cfg.min_effect = m;
    }
    // Candidate copy, check runs and trials: in a folder no other process touches.
    let space = TrialSpace::claim(&settings.trials_root())?;
    let work_dir = space.path().join("gate");
    let partition = args.partition.as_deref().map(parse_partition).transpose()?;
    let patch_hash = blake3::hash(text.as_bytes()).to_hex().to_string();
    let mut opts = GateOptions {
        cfg,
        target,
        cost_tolerance: args.cost_tolerance.unwrap_or(settings.config.gate.cost_tolerance),
        work_dir: work_dir.clone(),
        partition,
        merge: None,
    };
    let bar = out.progress(0, "gate");
    let done = AtomicU32::new(0);
    struct Bar<'a> {
        bar: &'a indicatif::ProgressBar,
        done: &'a AtomicU32,
    }
    impl Progress for Bar<'_> {
        fn round(&self, round: u32, trials: usize) {
            self.bar.inc_length(trials as u64);
            self.bar.set_message(format!("gate round {round}"));
        }
        fn trial(&self, _rec: &TrialRecord) {
            self.done.fetch_add(1, Ordering::Relaxed);
            self.bar.inc(1);
        }
    }
    let progress = Bar { bar: &bar, done: &done };
    let rt = runtime()?;
    let result = rt.block_on(async {
        let store = Store::open_settings(settings).await?;
        if let Some(files) = &args.merge {
            opts.merge = Some(Arc::new(merge_sources(&store, files, &patch_hash).await?));
        }
        let shard_id = match partition {
            Some(p) => Some(start_shard(&store, &manifest.name, &patch_hash, p, &opts).await?),
            None => None,
        };
        let mut runner = Runner::new(Some(Arc::new(store.clone())), settings.jobs, space.path().join("trials"));
        runner.use_cache = !args.no_cache;
        let report = tokio::select! {
            r = session::run(&manifest, &patch, &cases, &runner, &opts, &progress) => r,
            _ = tokio::signal::ctrl_c() => Err(hinted(
                format!("interrupted after {} trials: no verdict", done.load(Ordering::Relaxed)),
                "finished trials are recorded in the store and cached; run the gate again to resume from them",
            )),
        };
        match (&report, shard_id) {
            (Ok(r), Some(id)) => store.finish_shard(id, r).await?,
            (Ok(r), None) => {
                store.record_gate(r, &patch_hash).await?;
            }
            (Err(_), _) => {}
        }
        store.close().await;
        report
    });
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&work_dir);
    let report = result?;
    space.finish();
    if let Some(p) = partition {
        return print_shard(out, &ShardReport::of(&report, p));
    }
    if let Some(path) = &args.markdown {
        write(path, &render::markdown(&render::for_file(&report, path)))?;
    }
    if let Ok(summary) = std::env::var("GITHUB_STEP_SUMMARY")
        && !summary.is_empty()
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&summary)?;
        f.write_all(render::markdown(&report).as_bytes())?;
    }
    if let Some(path) = &args.junit {
        write(path, &render::junit(&render::for_file(&report, path)))?;
    }
    if let Some(path) = &args.html {
        write(path, &render::html(&render::for_file(&report, path)))?;
    }
    if out.json {
        out.print_json(&report)?;
    } else {
        out.print(&render::terminal(out, &report));
    }
    Ok(if report.passed() { exit::SUCCESS } else { exit::FAILURE })
}

/// A shard is recorded as started before its first trial: a merge reads one that never
/// finished (killed, failed) as such, and names it.
async fn start_shard(
    store: &Store,
    harness: &str,
    patch_hash: &str,
    partition: Partition,
    opts: &GateOptions,
) -> anyhow::Result<i64> {
    let start = ShardStart {
        harness,
        patch_hash,
        partition,
        trials_k: opts.cfg.k,
        target: opts.target.as_deref(),
        request: None,
    };
    store.start_shard(&start).await
}

/// A shard's report; its exit code is 0 once its trials are recorded (the merge decides).
fn print_shard(out: &Output, shard: &ShardReport) -> anyhow::Result<ExitCode> {
    if out.json {
        out.print_json(shard)?;
    } else {
        out.print(&render::shard(out, shard));
    }
    Ok(exit::SUCCESS)
}

/// `--partition`, with the CI engine's variables for `auto`.
pub(super) fn parse_partition(spec: &str) -> anyhow::Result<Partition> {
    partition::parse(spec, &|name| std::env::var(name).ok())
        .map_err(|e| hinted(format!("--partition {spec}: {e}"), "pass K/N (e.g. --partition 2/4), `auto` or auto/N"))
}

/// The stores a merge reads shards from: the files named (each must exist: a missing shard
/// file is a missing shard), or the command's own store when none is named (a shared store).
async fn merge_sources(store: &Store, files: &[PathBuf], patch_hash: &str) -> anyhow::Result<merge::Sources> {
    let mut stores: Vec<(String, Arc<dyn merge::ShardLog>)> = Vec::new();
    if files.is_empty() {
        stores.push((format!("the store `{}`", store.describe()), Arc::new(store.clone())));
    }
    for f in files {
        if !f.is_file() {
            return Err(hinted(
                format!("the shard store `{}` does not exist", f.display()),
                "pass the store each shard wrote (its --db), e.g. --merge shard-*.db",
            ));
        }
        let shard = Store::open(f).await?;
        stores.push((format!("`{}`", f.display()), Arc::new(shard)));
    }
    Ok(merge::Sources { patch_hash: patch_hash.to_string(), stores })
}

fn write(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))
}

fn read_patch(arg: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if arg == "-" {
        std::io::stdin().take(MAX_PATCH_BYTES + 1).read_to_end(&mut bytes)?;
    } else {
        let path = std::path::Path::new(arg);
        let hint = "pass a diff file, or `-` for stdin";
        let why = |e: std::io::Error| hinted(format!("the patch: {}", crate::paths::describe_io(path, &e)), hint);
        let meta = std::fs::metadata(path).map_err(why)?;
        if meta.is_dir() {
            return Err(hinted(format!("the patch `{arg}` is a directory, not a diff file"), hint));
        }
        if let Some(kind) = crate::paths::special_kind(meta.file_type()) {
            return Err(hinted(format!("the patch `{arg}` {}", crate::paths::special_reason(kind)), hint));
        }
        let f = std::fs::File::open(path).map_err(why)?;
        f.take(MAX_PATCH_BYTES + 1).read_to_end(&mut bytes).map_err(why)?;
    }
    if bytes.len() as u64 > MAX_PATCH_BYTES {
        return Err(hinted(
            format!("the patch `{arg}` is over {} MiB", MAX_PATCH_BYTES >> 20),
            "gate a harness diff, not a whole repository",
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        hinted(
            format!("the patch `{arg}` is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            "binary patches are refused",
        )
    })
}
