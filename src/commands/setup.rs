//! `autoharness init` (scaffold a project) and `autoharness doctor` (what this machine
//! and project offer: isolation, store, harnesses, provider).

use std::path::Path;

use serde::Serialize;
use serde_json::json;

use crate::cli::InitArgs;
use crate::config::Settings;
use crate::exit::{self, ExitCode};
use crate::harness::manifest::{self, HARNESSES_DIR, MANIFEST_FILE};
use crate::report::Output;
use crate::report::setup as render;
use crate::store::{Store, runtime};

const MANIFEST_TEMPLATE: &str = r#"# The harness autoharness may improve: see DESIGN.md "harness.toml".
name = "{name}"
root = "../.."                    # the files under optimization, relative to this file
editable = ["prompts/**"]         # globs a proposer or a gated patch may change
run = "python3 agent.py"          # runs ONE trial of ONE case (AUTOHARNESS_* variables)
timeout = "120s"
network = "none"                  # "host" for agents that call model APIs
env = []                          # host variables passed through, e.g. ["OPENAI_API_KEY"]
# check = "python3 -m py_compile agent.py"   # must pass before any trial runs

# [[knobs]]                       # what the offline proposer may try
# file = "config.toml"
# key = "retry.max_attempts"
# values = [1, 2, 3, 5]
"#;

#[derive(Debug, Serialize)]
pub struct InitResult {
    pub created: Vec<String>,
    pub kept: Vec<String>,
    pub harness: String,
}

pub fn init(out: &Output, args: &InitArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    if !dir.is_dir() {
        return Err(exit::hinted(
            format!("`{}` is not a folder", dir.display()),
            "run init inside your agent's repository",
        ));
    }
    let name = args.name.clone().unwrap_or_else(|| default_name(dir));
    let mut r = InitResult { created: Vec::new(), kept: Vec::new(), harness: name.clone() };
    let files = [
        (
            dir.join("autoharness.toml"),
            format!(
                "# autoharness project config; every key is optional.\nharness = \"{name}\"\n\n[mine]\njoin_threshold = 0.5\nholdout_share = 0.2\n"
            ),
        ),
        (dir.join(HARNESSES_DIR).join(&name).join(MANIFEST_FILE), MANIFEST_TEMPLATE.replace("{name}", &name)),
        (dir.join("evals").join(&name).join(".gitkeep"), String::new()),
    ];
    for (path, text) in files {
        let shown = path.strip_prefix(dir).unwrap_or(&path).display().to_string();
        if path.exists() {
            r.kept.push(shown);
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
        r.created.push(shown);
    }
    let gitignore = dir.join(".gitignore");
    let ignored = std::fs::read_to_string(&gitignore).unwrap_or_default();
    if !ignored.lines().any(|l| l.trim().trim_end_matches('/') == ".autoharness") {
        let sep = if ignored.is_empty() || ignored.ends_with('\n') { "" } else { "\n" };
        std::fs::write(&gitignore, format!("{ignored}{sep}.autoharness/\n"))?;
        r.created.push(".gitignore: .autoharness/".into());
    }
    if out.json {
        out.print_json(&json!({"schema": "autoharness.init/v1", "result": r}))?;
    } else {
        out.print(&render::init(out, &r));
    }
    Ok(exit::SUCCESS)
}

fn default_name(dir: &Path) -> String {
    let base = dir.canonicalize().ok().and_then(|d| d.file_name().map(|n| n.to_string_lossy().to_string()));
    let cleaned: String = base
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    if cleaned.trim_matches('-').is_empty() { "agent".into() } else { cleaned.trim_matches('-').to_string() }
}

#[derive(Debug, Serialize)]
pub struct DoctorReport {
    pub schema: &'static str,
    pub version: &'static str,
    pub isolation: crate::sandbox::IsolationReport,
    pub isolation_summary: String,
    pub store: StoreStatus,
    pub harnesses: Vec<HarnessStatus>,
    pub proposer: String,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct StoreStatus {
    pub path: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct HarnessStatus {
    pub path: String,
    pub name: Option<String>,
    pub ok: bool,
    pub detail: String,
}

pub fn doctor(settings: &Settings, out: &Output) -> anyhow::Result<ExitCode> {
    let isolation = crate::sandbox::probe().clone();
    let mut problems = Vec::new();
    if isolation.bwrap.is_none() && isolation.landlock_abi.is_none() {
        problems.push("no filesystem isolation: install bubblewrap (apt-get install bubblewrap)".to_string());
    }
    if !isolation.can_isolate_network() {
        problems.push("trials with network = \"none\" cannot be cut off from the network here".to_string());
    }
    let rt = runtime()?;
    let store = rt.block_on(async {
        match Store::open_for_reading(&settings.db_path).await {
            Ok(s) => {
                // Opening reads only the header and schema: a torn or overwritten file shows in a check.
                let (ok, detail) = match (s.quick_check().await, s.count_traces().await) {
                    (Ok(Err(problems)), _) => (
                        false,
                        format!(
                            "damaged (PRAGMA quick_check: {}); restore it from a copy or delete it and mine again",
                            crate::trace::json::clip(&problems, 300)
                        ),
                    ),
                    (Err(e), _) => (false, format!("damaged: {e:#}")),
                    (Ok(Ok(())), Ok((files, traces))) => (true, format!("{files} trace files, {traces} traces")),
                    (Ok(Ok(())), Err(e)) => (false, format!("opened, but cannot count: {e}")),
                };
                s.close().await;
                StoreStatus { path: settings.db_path.display().to_string(), ok, detail }
            }
            Err(e) => StoreStatus { path: settings.db_path.display().to_string(), ok: false, detail: format!("{e:#}") },
        }
    });
    if !store.ok {
        problems.push(format!("store: {}", store.detail));
    }
    let mut harnesses = Vec::new();
    if let Ok(listing) = std::fs::read_dir(settings.project_root.join(HARNESSES_DIR)) {
        let mut paths: Vec<_> =
            listing.flatten().map(|e| e.path().join(MANIFEST_FILE)).filter(|p| p.is_file()).collect();
        paths.sort();
        for p in paths {
            let status = match manifest::Manifest::load(&p) {
                Ok(m) => {
                    let (cases, bad) = crate::evals::case::load(&settings.project_root.join("evals"), &m.name);
                    HarnessStatus {
                        path: p.display().to_string(),
                        name: Some(m.name.clone()),
                        ok: bad.is_empty(),
                        detail: format!(
                            "{} cases{}, {} knobs, network {:?}",
                            cases.len(),
                            if bad.is_empty() { String::new() } else { format!(" ({} unreadable)", bad.len()) },
                            m.knobs.len(),
                            m.network
                        ),
                    }
                }
                Err(e) => {
                    HarnessStatus { path: p.display().to_string(), name: None, ok: false, detail: format!("{e:#}") }
                }
            };
            if !status.ok {
                problems.push(format!("{}: {}", status.path, status.detail));
            }
            harnesses.push(status);
        }
    }
    let report = DoctorReport {
        schema: "autoharness.doctor/v1",
        version: env!("CARGO_PKG_VERSION"),
        isolation_summary: isolation.summary(),
        isolation,
        store,
        harnesses,
        proposer: "knobs (built-in, offline; LLM providers arrive with `run`)".into(),
        problems,
    };
    if out.json {
        out.print_json(&report)?;
    } else {
        out.print(&render::doctor(out, &report));
    }
    Ok(if report.problems.is_empty() { exit::SUCCESS } else { exit::FAILURE })
}
