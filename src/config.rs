//! Settings: command-line flags + `autoharness.toml` + environment, resolved once into a
//! plain struct the stages read. Every environment variable autoharness reads is listed
//! in [`ENV_VARS`].

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// Every environment variable autoharness reads, with what it does.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("AUTOHARNESS_CONFIG", "project config file (same as --config)"),
    ("AUTOHARNESS_DB", "the store: a SQLite file, or a postgres:// URL (same as --db)"),
    ("AUTOHARNESS_DB_POOL", "connections per process to a Postgres store (default 4)"),
    ("AUTOHARNESS_JOBS", "parallel jobs (same as --jobs)"),
    ("AUTOHARNESS_HARNESS", "default harness name"),
    ("AUTOHARNESS_LOG", "tracing filter for logs on stderr, e.g. `autoharness=debug`"),
    ("AUTOHARNESS_ISOLATION", "trials' filesystem isolation: auto (default), bwrap, landlock or none"),
    ("AUTOHARNESS_CRASH_AT", "tests: `<point>:<n>` kills the process the n-th time it passes a point (src/crash.rs)"),
    ("AUTOHARNESS_REQUIRE_ALL", "tests: 1 turns skips for missing dependencies into failures"),
    ("AUTOHARNESS_TEST_POSTGRES", "tests: a Postgres server's URL; store tests run on it too (scripts/postgres.sh)"),
    ("NO_COLOR", "disable colors"),
    ("FORCE_COLOR", "enable colors even when not a terminal"),
    ("CI", "set by CI systems: disables progress bars"),
];

/// `autoharness.toml`. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Default harness name.
    pub harness: Option<String>,
    /// Store location, relative to the config file.
    pub db: Option<PathBuf>,
    #[serde(default)]
    pub mine: MineConfig,
    #[serde(default)]
    pub gate: GateSettings,
    #[serde(default)]
    pub proposer: crate::propose::ProposerConfig,
    /// `mine --judge`: its LLM (same keys as `[proposer]`; absent: `[proposer]` judges) and
    /// `[judge.rubric]`.
    #[serde(default)]
    pub judge: JudgeSection,
    /// What is redacted from traces and trial output before anything is written.
    #[serde(default)]
    pub redact: crate::redact::RedactConfig,
    /// Which scores and feedback mean failed or passed (docs/outcomes.md).
    #[serde(default)]
    pub feedback: crate::trace::feedback::FeedbackConfig,
}

/// `[judge]`: the provider keys of `[proposer]` beside one table, `rubric`. Read by hand
/// because serde's `flatten` would let unknown provider keys through unnoticed.
#[derive(Debug, Clone, Default)]
pub struct JudgeSection {
    /// `None` when `[judge]` names no provider key: `[proposer]` judges.
    pub provider: Option<crate::propose::ProposerConfig>,
    pub rubric: Option<RubricConfig>,
}

/// `[judge.rubric]`: what a run whose outcome is unknown must do (docs/judge.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RubricConfig {
    pub criteria: String,
    /// The cache key of judgements under these criteria; absent: a hash of `criteria`.
    pub version: Option<String>,
}

impl<'de> Deserialize<'de> for JudgeSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let rubric = match table.remove("rubric") {
            Some(v) => {
                Some(RubricConfig::deserialize(v).map_err(|e| D::Error::custom(format!("[judge.rubric]: {e}")))?)
            }
            None => None,
        };
        if rubric.as_ref().is_some_and(|r| r.criteria.trim().is_empty()) {
            return Err(D::Error::custom("[judge.rubric]: `criteria` is empty; say what a run must do"));
        }
        let provider = if table.is_empty() {
            None
        } else {
            Some(crate::propose::ProposerConfig::deserialize(toml::Value::Table(table)).map_err(D::Error::custom)?)
        };
        Ok(JudgeSection { provider, rubric })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateSettings {
    /// Share by which a candidate's mean cost or tokens per trial may exceed the baseline's.
    pub cost_tolerance: f64,
    /// Sequential allocation (candidate first, warm stable cases screened, a pooled test over
    /// them): see `gate::engine`'s "Sequential allocation".
    pub sequential: bool,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings { cost_tolerance: 0.25, sequential: false }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MineConfig {
    /// Similarity above which a failure joins an existing cluster.
    pub join_threshold: f64,
    /// Share of cases held out (sealed) per cluster.
    pub holdout_share: f64,
}

impl Default for MineConfig {
    fn default() -> Self {
        MineConfig { join_threshold: 0.5, holdout_share: 0.2 }
    }
}

/// Where the store lives: a SQLite file, or a Postgres database shared by many runners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    File(PathBuf),
    /// A `postgres://` or `postgresql://` URL (credentials may be in it: never printed whole,
    /// see [`StoreLocation::display`]).
    Postgres(String),
}

impl StoreLocation {
    /// `--db`/`AUTOHARNESS_DB`/`db =`: a URL with a Postgres scheme, else a file path.
    pub fn parse(text: &str) -> StoreLocation {
        let lower = text.trim().to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            StoreLocation::Postgres(text.trim().to_string())
        } else {
            StoreLocation::File(PathBuf::from(text))
        }
    }

    /// For messages: the path, or the URL without its password.
    pub fn display(&self) -> String {
        match self {
            StoreLocation::File(p) => p.display().to_string(),
            StoreLocation::Postgres(url) => redact_url(url),
        }
    }
}

/// A Postgres URL with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, tail) = rest.split_once('/').map_or((rest, None), |(a, t)| (a, Some(t)));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    match tail {
        Some(t) => format!("{scheme}://{authority}/{t}"),
        None => format!("{scheme}://{authority}"),
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The folder holding autoharness.toml (or the current directory).
    pub project_root: PathBuf,
    pub config: ProjectConfig,
    /// The SQLite store; for a Postgres store, the local file its locks and trial folders
    /// are named after (`.autoharness/state.db`, never created).
    pub db_path: PathBuf,
    /// Where the store is: the file `db_path`, or a Postgres database.
    pub store: StoreLocation,
    pub jobs: usize,
}

/// What the command line may set over the config file (`--config`, `--db`, `--jobs`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub db: Option<PathBuf>,
    pub jobs: Option<usize>,
}

impl Settings {
    pub fn resolve(global: &Overrides) -> anyhow::Result<Settings> {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let (config_path, explicit) = match &global.config {
            Some(p) => (p.clone(), true),
            None => (cwd.join("autoharness.toml"), false),
        };
        let config = if config_path.exists() {
            load_config(&config_path)?
        } else if explicit {
            return Err(crate::exit::hinted(
                format!("config file `{}` does not exist", config_path.display()),
                "run `autoharness init` to create one, or drop --config",
            ));
        } else {
            ProjectConfig::default()
        };
        crate::redact::install(&config.redact).map_err(|e| {
            crate::exit::hinted(
                format!("`{}`: {e}", config_path.display()),
                "fix or remove the pattern; patterns use Rust regex syntax (https://docs.rs/regex)",
            )
        })?;
        let project_root =
            config_path.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or(cwd.clone());
        // Absolute from here on: trial folders live beside the store and their paths are handed
        // to a harness running in another folder, where a relative path would not resolve.
        let project_root = std::path::absolute(&project_root).unwrap_or(project_root);
        let default_file = project_root.join(".autoharness/state.db");
        let store = match (&global.db, &config.db) {
            (Some(p), _) => match StoreLocation::parse(&p.to_string_lossy()) {
                StoreLocation::File(p) => StoreLocation::File(std::path::absolute(&p).unwrap_or(p)),
                url => url,
            },
            (None, Some(p)) => match StoreLocation::parse(&p.to_string_lossy()) {
                StoreLocation::File(p) => StoreLocation::File(project_root.join(p)),
                url => url,
            },
            (None, None) => StoreLocation::File(default_file.clone()),
        };
        let db_path = match &store {
            StoreLocation::File(p) => p.clone(),
            StoreLocation::Postgres(_) => default_file,
        };
        let jobs = global
            .jobs
            .filter(|&j| j > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
        Ok(Settings { project_root, config, db_path, store, jobs })
    }

    /// `.autoharness/`: the folder of the store, its locks, trial folders and run reports.
    pub fn state_dir(&self) -> PathBuf {
        self.db_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.project_root.join(".autoharness"))
    }

    /// `<store stem>.trials/` beside the store: where each process claims its private
    /// trial folder (`harness::space`). Named after the store, so two stores in one folder
    /// never share one.
    pub fn trials_root(&self) -> PathBuf {
        crate::lockfile::beside_store(&self.db_path, ".trials")
    }

    /// Settings for tests and library use: a store at `db_path`, defaults elsewhere.
    pub fn for_store(db_path: PathBuf) -> Settings {
        Settings {
            project_root: db_path.parent().map(Path::to_path_buf).unwrap_or_default(),
            config: ProjectConfig::default(),
            store: StoreLocation::File(db_path.clone()),
            db_path,
            jobs: 2,
        }
    }
}

pub fn load_config(path: &Path) -> anyhow::Result<ProjectConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        crate::exit::hinted(
            format!("`{}` is not a valid autoharness config: {}", path.display(), e.message()),
            "allowed keys: harness, db, [mine] join_threshold, holdout_share, [gate] cost_tolerance/sequential, [proposer] provider/base_url/model/api_key_env/command/timeout/max_tokens/temperature/input_per_mtok/output_per_mtok/context_tokens, [judge] (the same keys as [proposer]), [judge.rubric] criteria/version, [redact] patterns/fields/emails/entropy",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ProjectConfig, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn judge_takes_the_provider_keys_and_a_rubric_and_refuses_the_rest() {
        let c = parse("[judge.rubric]\ncriteria = \"answer the question\"\n").unwrap();
        assert!(c.judge.provider.is_none(), "a rubric alone leaves [proposer] judging");
        assert_eq!(c.judge.rubric.unwrap().criteria, "answer the question");
        let c = parse(
            "[judge]\nprovider = \"openai\"\nmodel = \"m\"\n[judge.rubric]\ncriteria = \"x\"\nversion = \"v1\"\n",
        )
        .unwrap();
        assert_eq!(c.judge.provider.unwrap().model.as_deref(), Some("m"));
        assert_eq!(c.judge.rubric.unwrap().version.as_deref(), Some("v1"));
        let no_criteria = parse("[judge.rubric]\nversion = \"v1\"\n").unwrap_err();
        assert!(no_criteria.contains("[judge.rubric]") && no_criteria.contains("criteria"), "{no_criteria}");
        let empty = parse("[judge.rubric]\ncriteria = \"  \"\n").unwrap_err();
        assert!(empty.contains("empty"), "{empty}");
        let unknown = parse("[judge]\nprovider = \"openai\"\nmodle = \"m\"\n").unwrap_err();
        assert!(unknown.contains("modle"), "{unknown}");
        let unknown = parse("[judge.rubric]\ncriteria = \"x\"\nweight = 2\n").unwrap_err();
        assert!(unknown.contains("weight"), "{unknown}");
    }
}
