//! The command line: clap definitions, converted at once into plain settings, and the one
//! dispatch `match` over the subcommands. Clap types never leave this file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::{self, ExitCode};
use crate::report::output::{ColorChoice, Output};

/// Turn an agent's production failures into a better harness, safely.
///
/// Mine trace files for failures, cluster them by root cause, emit eval cases, and gate
/// harness changes with paired, repeated trials.
#[derive(Debug, Parser)]
#[command(name = "autoharness", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Project config file [default: ./autoharness.toml when present]
    #[arg(long, global = true, env = "AUTOHARNESS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The store: a SQLite file, or a postgres:// URL shared by many runners [default: .autoharness/state.db]
    #[arg(long, global = true, env = "AUTOHARNESS_DB", value_name = "FILE|URL")]
    pub db: Option<PathBuf>,
    /// Print machine-readable JSON on stdout (schemas in docs/json.md)
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail on stderr (repeat for debug logs)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr; no progress bars
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to use colors (also honours NO_COLOR and FORCE_COLOR)
    #[arg(long, global = true, value_enum, default_value_t = ColorArg::Auto, value_name = "WHEN")]
    pub color: ColorArg,
    /// Parallel jobs for parsing and trials [default: number of cores]
    #[arg(short, long, global = true, env = "AUTOHARNESS_JOBS", value_name = "N")]
    pub jobs: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mine trace files: find failures, cluster them by root cause, write eval cases
    Mine(MineArgs),
    /// Gate a harness diff: paired, repeated trials of baseline vs candidate (exit 0 pass, 1 fail, 2 error)
    Gate(GateArgs),
    /// The nightly loop: mine, propose harness diffs, gate them, keep the accepted one
    Run(RunArgs),
    /// Run the eval suite on the current harness
    Eval(EvalArgs),
    /// Inspect trace files: how each file was understood
    #[command(subcommand)]
    Traces(TracesCommand),
    /// List failure clusters, or show one in detail
    Clusters(ClustersArgs),
    /// List eval cases with their status
    Cases(CasesArgs),
    /// Render the report of a past run
    Report(ReportArgs),
    /// Scaffold autoharness.toml, a harness manifest and an evals/ folder
    Init(InitArgs),
    /// Check the environment: sandbox isolation, store, provider configuration
    Doctor,
    /// Print shell completions
    Completions {
        /// The shell to generate completions for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum TracesCommand {
    /// Show how one file was understood: format and why, traces, step tree, outcome with evidence
    Show {
        /// The trace file
        file: PathBuf,
        /// Show every step (default: the tree is shortened around failures on long traces)
        #[arg(long)]
        all: bool,
    },
    /// One row per file: format, traces, passed / failed / unknown, or why it is not a trace
    Ls {
        /// Files or folders to read
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// List the supported formats and how each is detected
    Formats,
}

#[derive(Debug, Args)]
pub struct MineArgs {
    /// Files or folders of traces
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Harness the cases are for (folder name under evals/)
    #[arg(long, env = "AUTOHARNESS_HARNESS")]
    pub harness: Option<String>,
    /// Only failures that happened on or after this date (YYYY-MM-DD)
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Cases to write per cluster
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_cases_per_cluster: usize,
    /// Also write a report (.html or .md by extension)
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Treat traces with an unknown outcome as failures (a folder of traces already flagged)
    #[arg(long)]
    pub assume_failed: bool,
    /// Cosine similarity a failure needs to join an existing cluster [default: 0.5, or [mine] join_threshold]
    #[arg(long, value_name = "SIM")]
    pub join_threshold: Option<f64>,
    /// Analyse and cluster, but write no case files
    #[arg(long)]
    pub no_cases: bool,
    /// Ask the [proposer] LLM for a one-line root cause of each cluster that has none yet
    /// (optional: mining is offline without it; a failed request only warns)
    #[arg(long)]
    pub summarize: bool,
    /// Ask the [judge] LLM (else [proposer]) for the root cause of each verdict-only failure
    /// in AgentRx's taxonomy, with the decisive step and a quote checked against the trace;
    /// judgements are cached in the store (docs/judge.md)
    #[arg(long)]
    pub judge: bool,
    /// With --judge: stop asking once the judge has cost this many dollars this mine
    #[arg(long, value_name = "USD", value_parser = dollars, requires = "judge")]
    pub budget_usd: Option<f64>,
    /// Scores or feedback to join to the traces as outcome evidence (Langfuse scores,
    /// LangSmith feedback, OTel evaluation events, a trace_id,score|label CSV/JSONL);
    /// repeatable. Feedback files among the traces are found without it (docs/outcomes.md)
    #[arg(long, value_name = "FILE")]
    pub feedback: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GateArgs {
    /// The unified diff to gate (`git diff` or `diff -u` output; `-` reads stdin)
    pub patch: String,
    /// Harness the patch is for [default: the config's, or the one whose folder the patch touches]
    #[arg(long, env = "AUTOHARNESS_HARNESS")]
    pub harness: Option<String>,
    /// Cluster whose cases must improve significantly (id or prefix)
    #[arg(long, value_name = "CLUSTER")]
    pub target: Option<String>,
    /// Trials per case and arm to start with
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), default_value_t = 3, value_name = "K")]
    pub trials: u32,
    /// Most trials per case and arm; more are added only where a verdict is uncertain
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_trials: u32,
    /// Significance level of the regression and improvement tests
    #[arg(long, default_value_t = 0.05, value_name = "A", value_parser = alpha)]
    pub alpha: f64,
    /// Smallest target pass-rate gain that counts as an improvement [default: 0.2]
    #[arg(long, value_name = "GAIN", value_parser = share)]
    pub min_effect: Option<f64>,
    /// Share by which the candidate's mean cost or tokens per trial may exceed the baseline's [default: 0.25, or [gate] cost_tolerance]
    #[arg(long, value_name = "SHARE")]
    pub cost_tolerance: Option<f64>,
    /// Write the evidence as Markdown (for a PR comment; also appended to $GITHUB_STEP_SUMMARY)
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write JUnit XML (one testcase per case)
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a self-contained HTML page
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Run every trial even when it ran before with the same harness, case, seed and environment
    #[arg(long)]
    pub no_cache: bool,
    /// Run the gate on one shard's cases and record their trials for `--merge`: K/N (1-based, e.g. a
    /// GitHub Actions matrix), `auto` (GitLab, Buildkite, Kubernetes index variables) or auto/N
    #[arg(long, value_name = "K/N", conflicts_with = "merge")]
    pub partition: Option<String>,
    /// Decide from the shards' stores (the shared store when none is named): every shard must
    /// have finished this gate's first round
    #[arg(long, value_name = "SHARD_DB", num_args = 0..)]
    pub merge: Option<Vec<PathBuf>>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Folder of new trace files to mine first (unchanged files are skipped)
    #[arg(long, value_name = "DIR")]
    pub traces: Option<PathBuf>,
    /// Harness to improve [default: the config's, or the only one]
    #[arg(long, env = "AUTOHARNESS_HARNESS")]
    pub harness: Option<String>,
    /// Most iterations (one target cluster and at most one accepted patch each)
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub max_iterations: u32,
    /// Candidates gated per iteration
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), default_value_t = 2, value_name = "C")]
    pub candidates: u32,
    /// Stop once trials and proposer calls have cost this many dollars
    #[arg(long, value_name = "USD", value_parser = dollars)]
    pub budget_usd: Option<f64>,
    /// Stop after this long (e.g. 30m)
    #[arg(long, value_name = "DURATION")]
    pub time_limit: Option<String>,
    /// Apply the accepted patches to your working tree at the end
    #[arg(long)]
    pub apply: bool,
    /// Commit the accepted patches on a new git branch (for a PR)
    #[arg(long, value_name = "NAME", value_parser = branch_name)]
    pub branch: Option<String>,
    /// Continue the newest unfinished run (after a crash or a kill) with the options it started with; --max-iterations, --budget-usd and --time-limit may only lower them
    #[arg(long)]
    pub resume: bool,
    /// Work on this cluster only (id or prefix), whatever its past attempts: how to retry a
    /// cluster `run` gave up on
    #[arg(long, value_name = "CLUSTER")]
    pub target: Option<String>,
    /// Run every trial again instead of reusing cached results
    #[arg(long)]
    pub no_cache: bool,
    /// Where diffs come from: knobs (offline, default), openai, anthropic, command [default: [proposer] provider]
    #[arg(long, value_name = "NAME")]
    pub proposer: Option<String>,
    /// Model for openai / anthropic [default: [proposer] model]
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Endpoint for openai-compatible servers, e.g. http://127.0.0.1:8080/v1 [default: [proposer] base_url]
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Spread each gate's trials over N runners sharing one store (Postgres): shard 1 leads (mines, proposes, decides, applies); shards 2..N only run their share of each gate until the run ends. K/N, `auto` or auto/N as for `gate`
    #[arg(long, value_name = "K/N")]
    pub partition: Option<String>,
    /// With --partition: how long the leader waits for a shard nobody started, or whose runner stopped reporting, before it runs that shard itself; a follower waits this long for the leader's run to appear
    #[arg(long, value_name = "DURATION", default_value = "2m")]
    pub shard_wait: String,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Harness to run (folder name under harnesses/) [default: the config's, or the only one]
    #[arg(long, env = "AUTOHARNESS_HARNESS")]
    pub harness: Option<String>,
    /// Only cases of this cluster (an id or its prefix)
    #[arg(long, value_name = "ID")]
    pub cluster: Option<String>,
    /// Which cases: train, holdout or all
    #[arg(long, default_value = "train", value_name = "SPLIT")]
    pub split: String,
    /// Trials per case (seeds 0..k); more than one shows flaky cases
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), default_value_t = 3, value_name = "K")]
    pub trials: u32,
    /// Also write JUnit XML (one testcase per case)
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Run every trial even when the same harness, case, seed and environment ran before
    #[arg(long)]
    pub no_cache: bool,
    /// Run only the cases of shard K of N (by a hash of the case id): K/N, `auto` or auto/N as for `gate`
    #[arg(long, value_name = "K/N")]
    pub partition: Option<String>,
    /// Also run retired cases (left out of gates and of a plain `eval`; quarantined ones always run here)
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ClustersArgs {
    /// A cluster id to show in detail
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct CasesArgs {
    /// Only cases of this cluster
    #[arg(long, value_name = "ID")]
    pub cluster: Option<String>,
    /// First retire the active suite cases that passed every trial on both arms in each of
    /// their last GATES recorded gates (at least 2); each gets a case_events record of why, and
    /// `eval --all` still runs it
    #[arg(long, value_name = "GATES", value_parser = clap::value_parser!(u32).range(2..))]
    pub retire_idle: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run id (default: the latest)
    pub run: Option<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to scaffold in (your agent's repository)
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Harness name [default: the folder's name]
    #[arg(long)]
    pub name: Option<String>,
}

// Values checked when parsed, so a run never does its work before finding a flag unusable.

fn number(text: &str) -> Result<f64, String> {
    let v: f64 = text.trim().parse().map_err(|_| format!("`{}` is not a number", text.escape_debug()))?;
    if !v.is_finite() { Err(format!("`{text}` is not a finite number")) } else { Ok(v) }
}

/// A significance level: strictly between 0 and 1 (0 never rejects, 1 always does).
fn alpha(text: &str) -> Result<f64, String> {
    let v = number(text)?;
    if v > 0.0 && v < 1.0 { Ok(v) } else { Err(format!("{v} is not strictly between 0 and 1 (e.g. 0.05)")) }
}

/// A share of a pass rate, in [0, 1].
fn share(text: &str) -> Result<f64, String> {
    let v = number(text)?;
    if (0.0..=1.0).contains(&v) { Ok(v) } else { Err(format!("{v} is not between 0 and 1 (e.g. 0.2)")) }
}

/// A dollar amount: finite and not negative (NaN would mean no budget at all).
fn dollars(text: &str) -> Result<f64, String> {
    let v = number(text)?;
    if v >= 0.0 { Ok(v) } else { Err(format!("{v} is negative; a budget is 0 or more dollars")) }
}

/// A new branch name, by `git check-ref-format --branch` rules, checked before the run
/// does its work rather than by git at the end of it.
pub fn branch_name(name: &str) -> Result<String, String> {
    let why = if name.is_empty() {
        Some("is empty")
    } else if name.starts_with('-') {
        Some("starts with `-`")
    } else if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        Some("has an empty component (a leading, trailing or double `/`)")
    } else if name.contains("..") {
        Some("contains `..`")
    } else if name.contains("@{") || name == "@" {
        Some("contains `@{` or is `@`")
    } else if name.ends_with(".lock") || name.split('/').any(|c| c.starts_with('.') || c.ends_with(".lock")) {
        Some("has a component starting with `.` or ending with `.lock`")
    } else if name.ends_with('.') {
        Some("ends with `.`")
    } else if name.chars().any(|c| c.is_control() || " ~^:?*[\\".contains(c)) {
        Some("contains a space, a control character or one of ~ ^ : ? * [ \\")
    } else {
        None
    };
    match why {
        Some(w) => Err(format!("`{}` is not a valid git branch name: it {w}", name.escape_debug())),
        None => Ok(name.to_string()),
    }
}

/// Parse the process arguments and run; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with exit 0 and usage errors with exit 2.
            let code = if e.use_stderr() { exit::ERROR } else { exit::SUCCESS };
            let _ = e.print();
            return code.0;
        }
    };
    let out = Output::new(
        match cli.global.color {
            ColorArg::Auto => ColorChoice::Auto,
            ColorArg::Always => ColorChoice::Always,
            ColorArg::Never => ColorChoice::Never,
        },
        cli.global.json,
        cli.global.quiet,
        cli.global.verbose,
    );
    crate::report::output::init_logging(&out);
    let overrides = crate::config::Overrides {
        config: cli.global.config.clone(),
        db: cli.global.db.clone(),
        jobs: cli.global.jobs,
    };
    let settings = crate::config::Settings::resolve(&overrides);
    // Idle trial cgroups are removed when the command ends, however it ends.
    let _sandbox = crate::sandbox::Session::start();
    let result = match settings {
        Ok(settings) => dispatch(cli.command, &settings, &out).map_err(|e| exit::on_store(e, &settings.db_path)),
        Err(e) => Err(e),
    };
    match result {
        Ok(code) => code.0,
        Err(e) => {
            out.error(&e);
            exit::code_for_error(&e).0
        }
    }
}

fn dispatch(command: Command, settings: &crate::config::Settings, out: &Output) -> anyhow::Result<ExitCode> {
    use crate::app as commands;
    match command {
        Command::Traces(TracesCommand::Show { file, all }) => commands::traces::show(settings, out, &file, all),
        Command::Traces(TracesCommand::Ls { paths }) => commands::traces::ls(settings, out, &paths),
        Command::Traces(TracesCommand::Formats) => commands::traces::formats(out),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut stdout = std::io::stdout();
            clap_complete::generate(shell, &mut cmd, "autoharness", &mut stdout);
            Ok(exit::SUCCESS)
        }
        Command::Mine(args) => commands::mine::mine(settings, out, &args),
        Command::Clusters(args) => commands::mine::clusters(settings, out, args.id.as_deref()),
        Command::Cases(args) => commands::mine::cases(settings, out, args.cluster.as_deref(), args.retire_idle),
        Command::Eval(args) => commands::eval::eval(settings, out, &args),
        Command::Init(args) => commands::setup::init(out, &args),
        Command::Doctor => commands::setup::doctor(settings, out),
        Command::Gate(args) => commands::gate::gate(settings, out, &args),
        Command::Run(args) => commands::run::run(settings, out, &args),
        Command::Report(args) => commands::run::report(settings, out, &args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definitions_are_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
