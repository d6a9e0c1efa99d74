//! `harnesses/<name>/harness.toml`: what a harness is made of, how one trial runs, and
//! what the offline proposer may try. Validated once, with errors that name the file, the
//! key and what is allowed, so a typo never turns into a silently different trial.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::exit::hinted;
use crate::harness::workspace::Filter;
use crate::sandbox::{Limits, Network};

/// The manifest's name inside a harness folder.
pub const MANIFEST_FILE: &str = "harness.toml";
/// Where harness folders live, relative to the project root.
pub const HARNESSES_DIR: &str = "harnesses";

/// The keys a manifest may have, for error hints.
const ALLOWED_KEYS: &str = "name, root, editable, exclude, include, read, run, batch, timeout, network, env, check, [limits] memory/cpu/file_size/open_files/processes/output/disk, [[knobs]] file/key/values";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    #[serde(default = "default_root")]
    root: String,
    #[serde(default)]
    editable: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    read: Vec<String>,
    run: Option<String>,
    batch: Option<String>,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default = "default_network")]
    network: String,
    #[serde(default)]
    env: Vec<String>,
    check: Option<String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    knobs: Vec<Knob>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory: Option<String>,
    cpu: Option<String>,
    file_size: Option<String>,
    open_files: Option<u64>,
    processes: Option<u64>,
    output: Option<String>,
    disk: Option<String>,
}

fn default_root() -> String {
    ".".into()
}
fn default_timeout() -> String {
    "120s".into()
}
fn default_network() -> String {
    "none".into()
}

/// One knob the offline proposer may turn: a key in a TOML or JSON file of the harness
/// and the values it may take.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Knob {
    pub file: String,
    /// Dotted path, e.g. `retry.max_attempts`.
    pub key: String,
    pub values: Vec<toml::Value>,
}

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    /// The manifest file itself.
    pub path: PathBuf,
    /// The folder under optimization (absolute).
    pub root: PathBuf,
    pub editable: Vec<String>,
    editable_set: GlobSet,
    /// What of `root` is the harness (hashed, copied): `exclude` / `include` globs over
    /// the built-in skips.
    pub filter: Filter,
    /// Host paths trials may read (absolute, existing): the manifest's `read`.
    pub read: Vec<PathBuf>,
    /// One trial of one case, run with `/bin/sh -c` in a private copy of `root`.
    pub run: Option<String>,
    /// One command for a batch of cases that prints `{case_id: reward}` (auto-harness style).
    pub batch: Option<String>,
    pub timeout: Duration,
    pub network: Network,
    /// Host variables passed through; all others are scrubbed.
    pub env: Vec<String>,
    pub check: Option<String>,
    pub limits: Limits,
    pub knobs: Vec<Knob>,
}

impl Manifest {
    /// Read and validate a manifest file.
    pub fn load(path: &Path) -> anyhow::Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the harness manifest `{}`", path.display()))?;
        let m = Manifest::parse(&text, path)?;
        // The values of the variables it passes through to trials are secrets wherever they
        // turn up (a proposer's answer, a trial's files), not only in trial records.
        crate::redact::pass_through(&m.env);
        Ok(m)
    }

    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Manifest> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let place = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            hinted(
                format!("`{}`{place}: {}", path.display(), e.message().trim()),
                format!("a harness manifest may have: {ALLOWED_KEYS}"),
            )
        })?;
        let bad =
            |key: &str, msg: String, allowed: &str| hinted(format!("`{}`: `{key}` {msg}", path.display()), allowed);

        // The name becomes a folder (evals/<name>/): `.`, `..` and hidden names would not be one.
        if raw.name.is_empty()
            || raw.name.starts_with('.')
            || !raw.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(bad(
                "name",
                format!("is `{}`", raw.name.escape_debug()),
                "a name of letters, digits, `-`, `_` or `.`, not starting with `.` (it names the evals/<name>/ folder)",
            ));
        }
        match (&raw.run, &raw.batch) {
            (None, None) => {
                return Err(bad(
                    "run",
                    "is missing".into(),
                    "set `run = \"<command for one trial>\"` (or `batch = \"<command for many cases>\"`)",
                ));
            }
            (Some(r), _) if r.trim().is_empty() => {
                return Err(bad("run", "is empty".into(), "the command that executes one trial"));
            }
            _ => {}
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let root = dir.join(&raw.root);
        let root = root.canonicalize().map_err(|e| {
            bad("root", format!("= `{}` cannot be opened: {e}", raw.root), "a folder relative to the manifest")
        })?;
        if !root.is_dir() {
            return Err(bad("root", format!("= `{}` is not a folder", raw.root), "a folder relative to the manifest"));
        }
        let editable_set = editable_globs(&raw, &bad)?;
        let filter = Filter::new(&raw.exclude, &raw.include)
            .map_err(|e| bad("exclude", format!("or `include` has a bad glob: {e}"), "globs like \"data/**\""))?;
        let read = read_paths(&raw.read, dir, &bad)?;
        let timeout = parse_duration(&raw.timeout).ok_or_else(|| {
            bad("timeout", format!("= `{}` is not a duration of at most 366 days", raw.timeout), DURATION_HINT)
        })?;
        let network = match raw.network.as_str() {
            "none" => Network::None,
            "host" => Network::Host,
            other => {
                return Err(bad(
                    "network",
                    format!("= `{other}`"),
                    "\"none\" (default) or \"host\" for agents that call model APIs",
                ));
            }
        };
        for v in &raw.env {
            if v.is_empty() || v.contains('=') || v.starts_with("AUTOHARNESS_") {
                return Err(bad(
                    "env",
                    format!("has `{v}`"),
                    "names of host variables to pass through (not AUTOHARNESS_*, which the protocol sets)",
                ));
            }
        }
        let limits = limits_of(&raw.limits, timeout, &bad)?;
        check_knobs(&raw.knobs, &editable_set, &bad)?;
        Ok(Manifest {
            name: raw.name,
            path: path.to_path_buf(),
            root,
            editable: raw.editable,
            editable_set,
            filter,
            read,
            run: raw.run,
            batch: raw.batch,
            timeout,
            network,
            env: raw.env,
            check: raw.check,
            limits,
            knobs: raw.knobs,
        })
    }

    /// Whether a path relative to the root may be changed by a patch or a proposer.
    pub fn is_editable(&self, relative: &str) -> bool {
        self.editable_set.is_match(relative)
    }

    pub fn editable_set(&self) -> &GlobSet {
        &self.editable_set
    }

    /// The root relative to `project_root`, as a PR's diff made at the repository root
    /// prefixes its paths (`harnesses/support-bot`).
    pub fn root_prefix(&self, project_root: &Path) -> Option<String> {
        let project = project_root.canonicalize().ok()?;
        let rel = self.root.strip_prefix(&project).ok()?;
        let s = rel.to_string_lossy().to_string();
        (!s.is_empty()).then_some(s)
    }
}

/// Makes "`path`: `key` msg" errors with a hint of what is allowed.
type Bad<'a> = dyn Fn(&str, String, &str) -> anyhow::Error + 'a;

/// The `editable` globs (relative to the root, never leaving it); `exclude` and `include`
/// are checked for the same.
fn editable_globs(raw: &RawManifest, bad: &Bad<'_>) -> anyhow::Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for g in &raw.editable {
        if g.starts_with('/') || g.split('/').any(|c| c == "..") {
            return Err(bad(
                "editable",
                format!("has `{g}`, which leaves the root"),
                "globs relative to `root`, e.g. \"prompts/**\"",
            ));
        }
        let glob = Glob::new(g)
            .map_err(|e| bad("editable", format!("has a bad glob `{g}`: {e}"), "globs like \"prompts/**\""))?;
        builder.add(glob);
    }
    for (key, globs) in [("exclude", &raw.exclude), ("include", &raw.include)] {
        if let Some(g) = globs.iter().find(|g| g.starts_with('/') || g.split('/').any(|c| c == "..")) {
            return Err(bad(
                key,
                format!("has `{g}`, which leaves the root"),
                "globs relative to `root`, e.g. \"data/raw/**\"",
            ));
        }
    }
    builder.build().context("cannot build the editable globs")
}

/// The host paths trials may read: absolute, `~/…`, or relative to the manifest's folder.
fn read_paths(entries: &[String], dir: &Path, bad: &Bad<'_>) -> anyhow::Result<Vec<PathBuf>> {
    let mut read = Vec::new();
    for entry in entries {
        let expanded = match entry.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(rest),
            None => dir.join(entry),
        };
        let path = expanded.canonicalize().map_err(|e| {
            bad(
                "read",
                format!("has `{entry}`, which cannot be opened: {e}"),
                "existing host paths trials may read: absolute, `~/…`, or relative to the manifest",
            )
        })?;
        if path == Path::new("/") {
            return Err(bad("read", format!("has `{entry}`, the whole host"), "name the folders trials need"));
        }
        read.push(path);
    }
    Ok(read)
}

/// The `[limits]` table on top of the defaults.
fn limits_of(raw: &RawLimits, timeout: Duration, bad: &Bad<'_>) -> anyhow::Result<Limits> {
    let mut limits = Limits { timeout, ..Limits::default() };
    let size = |key: &str, v: &Option<String>| -> anyhow::Result<Option<u64>> {
        match v {
            None => Ok(None),
            Some(s) => parse_size(s)
                .map(Some)
                .ok_or_else(|| bad(key, format!("= `{s}` is not a size"), "e.g. \"512MiB\", \"2GiB\"")),
        }
    };
    if let Some(m) = size("limits.memory", &raw.memory)? {
        limits.memory_bytes = Some(m);
    }
    if let Some(f) = size("limits.file_size", &raw.file_size)? {
        limits.file_size_bytes = Some(f);
    }
    if let Some(d) = size("limits.disk", &raw.disk)? {
        limits.disk_bytes = Some(d);
    }
    if let Some(o) = size("limits.output", &raw.output)? {
        limits.output_bytes = o as usize;
    }
    if let Some(c) = &raw.cpu {
        let d = parse_duration(c).ok_or_else(|| {
            bad("limits.cpu", format!("= `{c}` is not a duration of at most 366 days"), DURATION_HINT)
        })?;
        limits.cpu_seconds = Some(d.as_secs().max(1));
    }
    if let Some(n) = raw.open_files {
        limits.open_files = Some(n);
    }
    if let Some(n) = raw.processes {
        limits.processes = Some(n);
    }
    Ok(limits)
}

/// Each knob names values, an editable file and a dotted key.
fn check_knobs(knobs: &[Knob], editable_set: &GlobSet, bad: &Bad<'_>) -> anyhow::Result<()> {
    for (i, k) in knobs.iter().enumerate() {
        let key = format!("knobs[{i}]");
        if k.values.is_empty() {
            return Err(bad(&key, "has no values".into(), "values = [1, 2, 3]"));
        }
        if !editable_set.is_match(&k.file) {
            return Err(bad(
                &key,
                format!("names `{}`, which is not editable", k.file),
                "a knob's file must match one of the `editable` globs",
            ));
        }
        if k.key.is_empty() || k.key.split('.').any(str::is_empty) {
            return Err(bad(&key, format!("has key `{}`", k.key), "a dotted key such as \"retry.max_attempts\""));
        }
    }
    Ok(())
}

/// Every manifest under `<project>/harnesses/*/harness.toml`, sorted by name.
pub fn discover(project_root: &Path) -> anyhow::Result<Vec<Manifest>> {
    let dir = project_root.join(HARNESSES_DIR);
    let mut out = Vec::new();
    let Ok(listing) = std::fs::read_dir(&dir) else { return Ok(out) };
    let mut paths: Vec<PathBuf> =
        listing.filter_map(|e| e.ok()).map(|e| e.path().join(MANIFEST_FILE)).filter(|p| p.is_file()).collect();
    paths.sort();
    for p in paths {
        out.push(Manifest::load(&p)?);
    }
    Ok(out)
}

/// The harness to work on: by name, else the configured default, else the only one.
pub fn select(project_root: &Path, name: Option<&str>) -> anyhow::Result<Manifest> {
    if let Some(n) = name {
        let direct = Path::new(n);
        if n.ends_with(".toml") && direct.is_file() {
            return Manifest::load(direct);
        }
        let path = project_root.join(HARNESSES_DIR).join(n).join(MANIFEST_FILE);
        if path.is_file() {
            return Manifest::load(&path);
        }
        let known: Vec<String> = discover(project_root).unwrap_or_default().into_iter().map(|m| m.name).collect();
        return Err(hinted(
            format!("no harness `{n}`: `{}` does not exist", path.display()),
            if known.is_empty() {
                "run `autoharness init` to scaffold one".to_string()
            } else {
                format!("known harnesses: {}", known.join(", "))
            },
        ));
    }
    let mut all = discover(project_root)?;
    match all.len() {
        0 => Err(hinted(
            format!("no harness found under `{}`", project_root.join(HARNESSES_DIR).display()),
            "run `autoharness init`, or pass --harness NAME / --config",
        )),
        1 => Ok(all.remove(0)),
        _ => Err(hinted(
            "several harnesses here; say which".to_string(),
            format!(
                "pass --harness with one of: {}",
                all.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// `500ms`, `30s`, `2m`, `1h`, `1m30s`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    // Seconds as f64 overflow `Duration` (a panic) far above this, and `Instant + d` too.
    let checked = |secs: f64| (secs.is_finite() && (0.0..=MAX_DURATION_SECS).contains(&secs)).then_some(secs);
    if let Ok(secs) = s.parse::<f64>() {
        return checked(secs).map(Duration::from_secs_f64);
    }
    let mut total = 0.0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = rest[..unit_end].trim();
        rest = &rest[unit_end..];
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" | "sec" | "secs" => n,
            "m" | "min" | "mins" => n * 60.0,
            "h" | "hr" | "hrs" => n * 3600.0,
            _ => return None,
        };
        total = checked(total + secs)?;
    }
    Some(Duration::from_secs_f64(total))
}

/// The longest duration accepted anywhere (timeouts, `--time-limit`): a year.
pub const MAX_DURATION_SECS: f64 = 366.0 * 24.0 * 3600.0;

/// What a duration setting takes, for error hints.
pub const DURATION_HINT: &str = "e.g. \"500ms\", \"30s\", \"2m\", \"1h30m\" (at most 366 days)";

/// `512MiB`, `2GiB`, `100MB`, `64k`, or bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let n: f64 = s[..split].parse().ok()?;
    let mult: f64 = match s[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v = n * mult;
    (v.is_finite() && v >= 0.0).then_some(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Manifest> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("harness.toml");
        std::fs::write(&path, text).unwrap();
        Manifest::load(&path)
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("120s"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        for huge in ["99999999999999999999s", "99999999999999999999", "1e300", "400d", "9000h", "1e20ms", "inf", "NaN"]
        {
            assert_eq!(parse_duration(huge), None, "{huge}");
        }
        assert_eq!(parse_duration("fast"), None);
        assert_eq!(parse_duration("3 weeks"), None);
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn a_full_manifest_validates() {
        let m = parse(
            r#"name = "bot"
editable = ["prompts/**", "config.toml"]
run = "python3 agent.py"
timeout = "20s"
network = "host"
env = ["OPENAI_API_KEY"]
[limits]
memory = "512MiB"
processes = 64
[[knobs]]
file = "config.toml"
key = "retry.max_attempts"
values = [1, 2, 3]
"#,
        )
        .unwrap();
        assert_eq!(m.name, "bot");
        assert_eq!(m.timeout, Duration::from_secs(20));
        assert_eq!(m.network, Network::Host);
        assert_eq!(m.limits.memory_bytes, Some(512 << 20));
        assert_eq!(m.limits.processes, Some(64));
        assert!(m.is_editable("prompts/system.md"));
        assert!(!m.is_editable("agent.py"));
        assert_eq!(m.knobs.len(), 1);
    }

    #[test]
    fn errors_name_the_key_and_what_is_allowed() {
        let e = parse("name = \"x\"\nrun = \"true\"\nnetwrok = \"none\"\n").unwrap_err();
        let h = e.downcast_ref::<crate::exit::Hinted>().unwrap();
        assert!(h.message.contains("netwrok"), "{}", h.message);
        assert!(h.message.contains("line 3"), "{}", h.message);
        assert!(h.hint.contains("network"));

        let e = parse("name = \"x\"\nrun = \"true\"\nnetwork = \"internet\"\n").unwrap_err();
        assert!(e.to_string().contains("`network` = `internet`"), "{e}");

        let e = parse("name = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("`run` is missing"), "{e}");

        let e = parse("name = \"x\"\nrun = \"true\"\ntimeout = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("timeout"), "{e}");

        let e = parse("name = \"x\"\nrun = \"true\"\neditable = [\"../secrets\"]\n").unwrap_err();
        assert!(e.to_string().contains("leaves the root"), "{e}");

        let e = parse(
            "name = \"x\"\nrun = \"true\"\neditable = [\"a.toml\"]\n[[knobs]]\nfile = \"b.toml\"\nkey = \"k\"\nvalues = [1]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not editable"), "{e}");

        for name in ["..", ".", ".git"] {
            let e = parse(&format!("name = \"{name}\"\nrun = \"true\"\n")).unwrap_err();
            assert!(e.to_string().contains("`name`"), "{e}");
        }
        let e = parse("name = \"x y\"\nrun = \"true\"\n").unwrap_err();
        assert!(e.to_string().contains("`name`"), "{e}");

        let e = parse("name = \"x\"\nrun = \"true\"\nread = [\"/no/such/folder\"]\n").unwrap_err();
        assert!(e.to_string().contains("`read` has `/no/such/folder`, which cannot be opened"), "{e}");
        let e = parse("name = \"x\"\nrun = \"true\"\nread = [\"/\"]\n").unwrap_err();
        assert!(e.to_string().contains("the whole host"), "{e}");
        let e = parse("name = \"x\"\nrun = \"true\"\nexclude = [\"../up\"]\n").unwrap_err();
        assert!(e.to_string().contains("`exclude` has `../up`, which leaves the root"), "{e}");
        let e = parse("name = \"x\"\nrun = \"true\"\n[limits]\ndisk = \"lots\"\n").unwrap_err();
        assert!(e.to_string().contains("limits.disk"), "{e}");
    }

    #[test]
    fn read_paths_are_resolved() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("models")).unwrap();
        let path = dir.path().join("harness.toml");
        std::fs::write(&path, "name = \"x\"\nrun = \"true\"\nread = [\"models\"]\n[limits]\ndisk = \"2GiB\"\n")
            .unwrap();
        let m = Manifest::load(&path).unwrap();
        assert_eq!(m.read, [dir.path().join("models").canonicalize().unwrap()]);
        assert_eq!(m.limits.disk_bytes, Some(2 << 30));
    }
}
