//! The host environment a harness's trials need and may read: its virtualenvs, the
//! interpreters they link to, the manifest's `read` paths, and what makes a bare
//! `python3` find the user's packages. Found without configuration from the manifest and
//! the root, so that `run = ".venv/bin/python agent.py"`, `~/venvs/x/bin/python`, a
//! pyenv / uv / conda interpreter or `python3` with `~/.local` packages work in a trial.
//!
//! Everything here is granted read-only by the sandbox, never copied and never part of
//! the harness hash; [`HostEnv::fingerprint`] puts it into the trial cache key instead,
//! so installing or upgrading a package is a new environment.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::harness::manifest::Manifest;
use crate::harness::workspace;

/// One host path a trial may read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub path: PathBuf,
    pub why: String,
}

/// What a harness's trials get from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostEnv {
    pub grants: Vec<Grant>,
    /// Variables set for the trial: `PATH` and `VIRTUAL_ENV` of an activated virtualenv,
    /// `PYTHONUSERBASE` for `~/.local` packages.
    pub env: Vec<(String, String)>,
    /// Links made in the trial's private home (`~/x` → the real `~/x`), for commands that
    /// name paths under `~` (the trial's `HOME` is not the user's).
    pub home_links: Vec<(PathBuf, PathBuf)>,
}

impl HostEnv {
    /// The granted paths.
    pub fn readable(&self) -> Vec<PathBuf> {
        self.grants.iter().map(|g| g.path.clone()).collect()
    }

    /// What identifies this environment for the trial cache: the paths and variables, and
    /// the packages installed in each virtualenv (names with versions, from
    /// `site-packages`), so that an upgrade is a new environment.
    pub fn fingerprint(&self) -> String {
        let mut h = blake3::Hasher::new();
        for grant in &self.grants {
            h.update(grant.path.as_os_str().as_encoded_bytes());
            h.update(b"\0");
            if grant.path.join("pyvenv.cfg").is_file() {
                for name in site_packages_listing(&grant.path) {
                    h.update(name.as_bytes());
                    h.update(b"\n");
                }
            }
        }
        for (k, v) in &self.env {
            h.update(format!("{k}={v}\0").as_bytes());
        }
        for (link, target) in &self.home_links {
            h.update(format!("{}>{}\0", link.display(), target.display()).as_bytes());
        }
        h.finalize().to_hex()[..16].to_string()
    }

    fn grant(&mut self, path: PathBuf, why: impl Into<String>) {
        if is_system(&path) || self.grants.iter().any(|g| path.starts_with(&g.path)) {
            return;
        }
        // A new grant that covers earlier ones replaces them.
        self.grants.retain(|g| !g.path.starts_with(&path));
        self.grants.push(Grant { path, why: why.into() });
    }

    /// A virtualenv and the interpreter installation it was made from.
    fn grant_virtualenv(&mut self, venv: &Path, why: &str) {
        self.grant(venv.to_path_buf(), why.to_string());
        if let Some(prefix) = interpreter_prefix(venv) {
            self.grant(prefix, format!("the interpreter of {}", venv.display()));
        }
    }
}

/// Finds what the trials of `manifest` need from the host, for the tree at `root` (the
/// user's root, or a private copy of it).
pub fn detect(manifest: &Manifest, root: &Path) -> HostEnv {
    let mut env = HostEnv::default();
    for path in &manifest.read {
        env.grant(path.clone(), "`read` in harness.toml");
    }
    let venvs = workspace::virtualenvs(root, &manifest.filter).unwrap_or_default();
    for venv in &venvs {
        env.grant_virtualenv(venv, "virtualenv in the harness root (linked into each copy)");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_absolute() && h != Path::new("/"));
    let commands = [&manifest.run, &manifest.batch, &manifest.check];
    let mut bare_python = false;
    for command in commands.into_iter().flatten() {
        for (index, word) in words(command).into_iter().enumerate() {
            if index == 0 && is_bare_python(&word) {
                bare_python = true;
            }
            let host_path = match (word.strip_prefix("~/"), &home) {
                (Some(rest), Some(home)) => {
                    let first = rest.split('/').next().unwrap_or(rest);
                    if let Ok(real) = home.join(first).canonicalize() {
                        let link = (PathBuf::from(first), real);
                        if !env.home_links.contains(&link) {
                            env.home_links.push(link);
                        }
                    }
                    home.join(rest)
                }
                _ if word.starts_with('/') => PathBuf::from(&word),
                _ => continue,
            };
            grant_program(&mut env, &host_path, &word);
        }
    }
    if bare_python {
        // `python3` in a trial is the first on the trial's PATH: a virtualenv of the root or
        // beside it is activated, as the user's shell would have it.
        // Searched from the manifest's folder, not from `root`: a gate's or run's version
        // has its root in a copy under .autoharness/, and must find the same virtualenv.
        let manifest_dir = manifest.path.parent().and_then(|d| d.canonicalize().ok());
        let beside = venvs.first().cloned().or_else(|| manifest_dir.as_deref().and_then(nearby_virtualenv));
        match beside {
            Some(venv) => {
                env.grant_virtualenv(&venv, "virtualenv beside the harness, activated for `python`");
                let bin = venv.join("bin");
                env.env.push(("PATH".into(), format!("{}:{}", bin.display(), crate::sandbox::TRIAL_PATH)));
                env.env.push(("VIRTUAL_ENV".into(), venv.display().to_string()));
            }
            None => {
                if let Some(user_base) = home.as_ref().map(|h| h.join(".local")) {
                    let lib = user_base.join("lib");
                    let has_packages = std::fs::read_dir(&lib)
                        .is_ok_and(|listing| listing.flatten().any(|e| e.path().join("site-packages").is_dir()));
                    if has_packages {
                        env.grant(lib, "`~/.local` packages of a bare `python3`");
                        env.env.push(("PYTHONUSERBASE".into(), user_base.display().to_string()));
                    }
                }
            }
        }
    }
    env.grants.sort_by(|a, b| a.path.cmp(&b.path));
    env
}

/// An absolute program or file named by a command: the virtualenv it lies in, else the
/// installation whose `bin/` holds it, else itself.
fn grant_program(env: &mut HostEnv, path: &Path, word: &str) {
    let Ok(real) = path.canonicalize() else { return };
    if let Some(venv) = path.ancestors().skip(1).find_map(workspace::virtualenv_at) {
        env.grant_virtualenv(&venv, &format!("virtualenv of `{word}`"));
        return;
    }
    for candidate in [path, real.as_path()] {
        if let Some(bin) = candidate.parent().filter(|p| p.file_name().is_some_and(|n| n == "bin"))
            && let Some(prefix) = bin.parent()
            && let Ok(prefix) = prefix.canonicalize()
        {
            env.grant(prefix, format!("installation of `{word}`"));
            return;
        }
    }
    env.grant(real, format!("named by the command (`{word}`)"));
}

/// The installation a virtualenv was made from: where its `python` really is (pyenv, uv,
/// conda and system interpreters alike), up from `bin/`.
fn interpreter_prefix(venv: &Path) -> Option<PathBuf> {
    let exe = ["python", "python3"].iter().find_map(|name| venv.join("bin").join(name).canonicalize().ok());
    let from_exe = exe.as_ref().and_then(|e| e.parent()?.parent().map(Path::to_path_buf));
    let from_cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).ok().and_then(|cfg| {
        cfg.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "home").then(|| PathBuf::from(value.trim()))
        })
    });
    let from_cfg = from_cfg.and_then(|home| home.canonicalize().ok()?.parent().map(Path::to_path_buf));
    from_exe.or(from_cfg).filter(|p| p != Path::new("/"))
}

/// `.venv` in the manifest's folder or the folders above it, up to the project (the
/// folder holding `autoharness.toml` or `.git`).
fn nearby_virtualenv(manifest_dir: &Path) -> Option<PathBuf> {
    for dir in manifest_dir.ancestors() {
        if let Some(venv) = workspace::virtualenv_at(&dir.join(".venv")) {
            return Some(venv);
        }
        if dir.join("autoharness.toml").is_file() || dir.join(".git").exists() {
            break;
        }
    }
    None
}

fn is_bare_python(word: &str) -> bool {
    let rest = word.strip_prefix("python").unwrap_or("-");
    rest.is_empty() || rest.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// The words of a shell command, split on blanks and operators; quotes removed. Enough to
/// find paths, not a shell parser: a word made by expansion is not seen.
fn words(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    for c in command.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, c) if c.is_whitespace() || ";|&()<>".contains(c) => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            (None, c) => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    // Variable assignments before a command (`FOO=1 python x.py`) are not programs.
    out.into_iter().skip_while(|w| w.contains('=') && !w.starts_with('/')).collect()
}

fn is_system(path: &Path) -> bool {
    ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"].iter().any(|sys| path.starts_with(sys))
}

/// Names in a virtualenv's `site-packages` (`openai-1.2.3.dist-info`, …), sorted.
fn site_packages_listing(venv: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(pythons) = std::fs::read_dir(venv.join(lib)) else { continue };
        for python in pythons.flatten() {
            let Ok(listing) = std::fs::read_dir(python.path().join("site-packages")) else { continue };
            names.extend(listing.flatten().map(|e| e.file_name().to_string_lossy().into_owned()));
        }
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostenv_words_and_pythons() {
        assert_eq!(
            words("FOO=1 .venv/bin/python agent.py --x 'a b' && ~/bin/y"),
            [".venv/bin/python", "agent.py", "--x", "a b", "~/bin/y"]
        );
        assert!(is_bare_python("python3") && is_bare_python("python3.11") && is_bare_python("python"));
        assert!(!is_bare_python("python-config") && !is_bare_python("./python3"));
    }
}
