//! `init` (scaffold a project) and `doctor` (what this machine and project offer:
//! isolation, store, harnesses, provider). `app::setup` prints what these return.

use std::path::Path;

use serde::Serialize;

use crate::config::Settings;
use crate::exit;
use crate::harness::manifest::{self, HARNESSES_DIR, MANIFEST_FILE};
use crate::store::{Store, runtime};

const MANIFEST_TEMPLATE: &str = r#"# The harness autoharness may improve; every key: docs/harness.md.
name = "{name}"
root = "../.."                    # the files under optimization, relative to this file; the project's
                                  # evals/, traces/, .autoharness/, VCS folders, virtualenvs and caches
                                  # are left out of its hash and copies (add more with `exclude`)
editable = ["prompts/**"]         # globs a proposer or a gated patch may change
# exclude = ["data/raw/**"]       # more of the root that is not the harness
# include = ["vendor/node_modules/**"]   # keep something left out by default
run = "python3 agent.py"          # runs ONE trial of ONE case (AUTOHARNESS_* variables);
                                  # `.venv/bin/python agent.py` or a `.venv` beside the root just works
timeout = "120s"
network = "none"                  # "host" for agents that call model APIs
env = []                          # host variables passed through, e.g. ["OPENAI_API_KEY"]
# read = ["~/models"]             # more host paths trials may read (read-only)
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

/// Scaffold a project in `dir`: the config, a harness manifest and its evals folder, and
/// `.autoharness/` in `.gitignore`; files that exist are kept.
pub fn init(dir: &Path, name: Option<String>) -> anyhow::Result<InitResult> {
    if !dir.is_dir() {
        return Err(exit::hinted(
            format!("`{}` is not a folder", dir.display()),
            "run init inside your agent's repository",
        ));
    }
    let name = name.unwrap_or_else(|| default_name(dir));
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
    Ok(r)
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
    /// What a trial of this harness sees of the host, one line each.
    pub sees: Vec<String>,
    /// What the trial does not see, one line each.
    pub hidden: Vec<String>,
    /// The command run inside the sandbox as a trial would (`check`, else the interpreter
    /// of `run` with `--version`), and how it went.
    pub sandbox_check: Option<SandboxCheck>,
}

#[derive(Debug, Serialize)]
pub struct SandboxCheck {
    pub command: String,
    pub ok: bool,
    /// `filesystem` isolation used (bwrap, landlock, none).
    pub isolation: String,
    pub detail: String,
}

/// What this machine and project offer; `problems` lists what stands in the way of trials.
pub fn doctor(settings: &Settings) -> anyhow::Result<DoctorReport> {
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
        match Store::open_settings_for_reading(settings).await {
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
                StoreStatus { path: settings.store.display(), ok, detail }
            }
            Err(e) => StoreStatus { path: settings.store.display(), ok: false, detail: format!("{e:#}") },
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
                    let scratch = settings
                        .db_path
                        .parent()
                        .unwrap_or(Path::new("."))
                        .join(format!("doctor-{}", std::process::id()));
                    let (sees, hidden, sandbox_check) = rt.block_on(sandbox_view(&m, &scratch));
                    let _ = std::fs::remove_dir_all(&scratch);
                    let check_ok = sandbox_check.as_ref().is_none_or(|c| c.ok);
                    if let Some(c) = sandbox_check.as_ref().filter(|c| !c.ok) {
                        problems.push(format!("{}: `{}` in the sandbox: {}", m.name, c.command, c.detail));
                    }
                    HarnessStatus {
                        sees,
                        hidden,
                        sandbox_check,
                        path: p.display().to_string(),
                        name: Some(m.name.clone()),
                        ok: bad.is_empty() && check_ok,
                        detail: format!(
                            "{} cases{}, {} knobs, network {:?}",
                            cases.len(),
                            if bad.is_empty() { String::new() } else { format!(" ({} unreadable)", bad.len()) },
                            m.knobs.len(),
                            m.network
                        ),
                    }
                }
                Err(e) => HarnessStatus {
                    path: p.display().to_string(),
                    name: None,
                    ok: false,
                    detail: format!("{e:#}"),
                    sees: Vec::new(),
                    hidden: Vec::new(),
                    sandbox_check: None,
                },
            };
            if !status.ok && status.sandbox_check.as_ref().is_none_or(|c| c.ok) {
                problems.push(format!("{}: {}", status.path, status.detail));
            }
            harnesses.push(status);
        }
    }
    let report = DoctorReport {
        schema: crate::schema::DOCTOR,
        version: env!("CARGO_PKG_VERSION"),
        isolation_summary: isolation.summary(),
        isolation,
        store,
        harnesses,
        proposer: "knobs (built-in, offline; LLM providers arrive with `run`)".into(),
        problems,
    };
    Ok(report)
}

/// What a trial of `m` sees, and its `check` (or the interpreter of `run`) run in the
/// sandbox in a private copy under `scratch`, exactly as a trial would run.
async fn sandbox_view(m: &manifest::Manifest, scratch: &Path) -> (Vec<String>, Vec<String>, Option<SandboxCheck>) {
    use crate::sandbox::{self, Spec};
    let host = crate::harness::hostenv::detect(m, &m.root);
    let mut sees = vec![
        "system folders read-only: /usr /bin /sbin /lib* /etc (without shadow, gshadow, ssh host keys, ssl private keys) /sys /proc /dev"
            .to_string(),
        format!("a private writable copy of {} (evals/, traces/, .autoharness/, VCS, virtualenvs and caches left out)", m.root.display()),
        "its own empty HOME and TMPDIR".to_string(),
    ];
    for grant in &host.grants {
        sees.push(format!("read-only: {} ({})", grant.path.display(), grant.why));
    }
    for (k, v) in &host.env {
        sees.push(format!("{k}={v}"));
    }
    sees.push(match m.network {
        sandbox::Network::None => "no network (network = \"none\")".to_string(),
        sandbox::Network::Host => "the host's network (network = \"host\")".to_string(),
    });
    let home = std::env::var("HOME").unwrap_or_else(|_| "~".into());
    let hidden = vec![
        format!("your home ({home}), /tmp, /root, /work, /srv, /opt, /home and every other host folder not listed"),
        "the project's store (.autoharness/), its evals/ (holdout included) and other repositories".to_string(),
        format!("host variables not in `env` ({} passed)", m.env.len()),
    ];
    let command = match (&m.check, &m.run) {
        (Some(check), _) => check.clone(),
        (None, Some(run)) => match run.split_whitespace().find(|w| !w.contains('=')) {
            Some(program) => format!("{program} --version"),
            None => return (sees, hidden, None),
        },
        (None, None) => return (sees, hidden, None),
    };
    let work = scratch.join("work");
    if let Err(e) = crate::harness::workspace::private_copy(&m.root, &work, &m.filter) {
        let detail = format!("cannot copy the root: {e:#}");
        return (sees, hidden, Some(SandboxCheck { command, ok: false, isolation: "none".into(), detail }));
    }
    let mut spec = Spec::new(&command, &work);
    spec.env = host.env.clone();
    spec.env.extend(m.env.iter().filter_map(|n| std::env::var(n).ok().map(|v| (n.clone(), v))));
    spec.readable = host.readable();
    spec.home_links = host.home_links.clone();
    spec.network = m.network;
    spec.limits = m.limits.clone();
    let outcome = sandbox::run(&spec).await;
    let isolation = serde_json::to_value(outcome.isolation.filesystem)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let ok = outcome.status.success();
    let text = if ok { outcome.stdout.text() + &outcome.stderr.text() } else { outcome.stderr.text() };
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    let detail = match (&outcome.reason, ok) {
        (_, true) if last.is_empty() => "ok".to_string(),
        (_, true) => format!("ok: {last}"),
        (Some(reason), false) => format!("{reason}: {last}"),
        (None, false) => format!("{:?}: {last}", outcome.status),
    };
    (sees, hidden, Some(SandboxCheck { command, ok, isolation, detail: crate::trace::json::clip(&detail, 400) }))
}
