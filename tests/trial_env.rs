//! What a trial sees of the host (#15, #16): its copy, the system folders, the user's
//! virtualenv and interpreter read-only — and nothing else: not the project's store or
//! holdout, not other repositories, not `/etc/shadow`. Checked with real processes under
//! each isolation this host offers, in folders outside `/tmp` and `$HOME` (the folders
//! the sandbox used to hide by name), and with real virtualenvs made by `python3 -m venv`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use autoharness::evals::case::{Case, read_case};
use autoharness::harness::manifest::Manifest;
use autoharness::harness::workspace::{Filter, content_hash, private_copy};
use autoharness::sandbox::{self, ExitStatus, IsolationChoice, Spec};
use autoharness::trial::{Runner, Trial, Version};

use crate::sandbox::{modes, skip};

/// The isolations that hide files: every mode the host offers but `None`.
fn fs_modes() -> Vec<IsolationChoice> {
    modes().into_iter().filter(|m| *m != IsolationChoice::None).collect()
}

/// A folder outside `/tmp` and `$HOME` (under `target/`), as a project in `/srv` or
/// `/work` would be.
fn outside_tmp_and_home() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn trial_env_sees_nothing_of_the_host_but_system_folders() {
    let project = outside_tmp_and_home();
    let secret = "store-secret-7f3a";
    write(&project.path().join(".autoharness/state.db"), secret);
    write(&project.path().join("evals/bot/k-1/c-holdout.json"), "holdout-secret-9e1c");
    let copy = project.path().join(".autoharness/trials/x/work");
    std::fs::create_dir_all(&copy).unwrap();
    // Another repository on the host: this one.
    let other_repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let shadow = std::fs::read_to_string("/etc/shadow").ok().filter(|s| !s.trim().is_empty());
    let command = format!(
        "cat {store} {holdout} {other} /etc/shadow 2>/dev/null; echo; cat /etc/passwd >/dev/null && echo passwd-ok; \
         python3 -c 'print(\"python-ok\")'; echo written > own.txt && cat own.txt",
        store = project.path().join(".autoharness/state.db").display(),
        holdout = project.path().join("evals/bot/k-1/c-holdout.json").display(),
        other = other_repo.display(),
    );
    for mode in fs_modes() {
        let mut spec = Spec::new(&command, &copy);
        spec.isolation = mode;
        spec.limits.timeout = Duration::from_secs(30);
        let outcome = sandbox::run(&spec).await;
        let out = outcome.stdout.text();
        assert!(!out.contains(secret), "{mode:?}: the trial read the store: {out}");
        assert!(!out.contains("holdout-secret"), "{mode:?}: the trial read a holdout case: {out}");
        assert!(!out.contains("[package]"), "{mode:?}: the trial read another repository: {out}");
        if let Some(shadow) = &shadow {
            let first = shadow.lines().next().unwrap();
            assert!(!out.contains(first), "{mode:?}: the trial read /etc/shadow: {out}");
        }
        for expected in ["passwd-ok", "python-ok", "written"] {
            assert!(
                out.contains(expected),
                "{mode:?}: `{expected}` missing; system folders or its copy unusable: {out}\n{}",
                outcome.stderr.text()
            );
        }
    }
}

/// A real virtualenv made without pip (fast), holding one module of ours.
fn make_venv(at: &Path) -> PathBuf {
    let status = std::process::Command::new("/usr/bin/python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(at)
        .status()
        .expect("run /usr/bin/python3 -m venv");
    assert!(status.success(), "python3 -m venv failed (apt-get install python3-venv)");
    let lib = std::fs::read_dir(at.join("lib")).unwrap().flatten().next().unwrap().path();
    write(&lib.join("site-packages/ahpkg.py"), "VALUE = 'from-the-venv-42'\n");
    at.to_path_buf()
}

fn case(dir: &Path) -> Case {
    let path = dir.join("c-1.json");
    write(
        &path,
        r#"{"schema": "autoharness.case/v1", "id": "c-1", "harness": "bot", "cluster": "k-1", "split": "train", "status": "active",
            "input": "hello", "checks": [{"kind": "output_contains", "value": "from-the-venv-42"}],
            "provenance": {"traces": [], "files": [], "signature": "", "mined_at": ""}}"#,
    );
    read_case(&path, None).unwrap()
}

const AGENT: &str = r##"import ahpkg, sys
print(ahpkg.VALUE)
try:
    open(ahpkg.__file__, "a").write("# changed by a trial\n")
    print("venv-writable")
except OSError:
    print("venv-read-only")
"##;

#[tokio::test]
async fn trial_env_uses_the_users_virtualenv_read_only() {
    if !Path::new("/usr/bin/python3").exists() {
        skip("virtualenv trials need /usr/bin/python3");
        return;
    }
    let base = outside_tmp_and_home();
    let venv = make_venv(&base.path().join("envs/agent"));
    let project = base.path().join("project");
    write(&project.join("autoharness.toml"), "harness = \"bot\"\n");
    // The project's virtualenv is a link to one elsewhere, as `uv venv` or a cache makes.
    std::os::unix::fs::symlink(&venv, project.join(".venv")).unwrap();
    let root = project.join("bot");
    write(&root.join("agent.py"), AGENT);
    let evals = base.path().join("cases");
    let cases = vec![case(&evals)];

    let hash_without_venv = content_hash(&root, &Filter::default()).unwrap();
    std::os::unix::fs::symlink(&venv, root.join(".venv")).unwrap();
    assert_eq!(content_hash(&root, &Filter::default()).unwrap(), hash_without_venv, "a virtualenv is never hashed");
    let copy = base.path().join("copy");
    let stats = private_copy(&root, &copy, &Filter::default()).unwrap();
    assert_eq!(stats.virtualenvs, 1, "{stats:?}");
    assert!(std::fs::symlink_metadata(copy.join(".venv")).unwrap().file_type().is_symlink());

    let runs = [
        (".venv/bin/python agent.py", true),
        // Bare `python3` with a `.venv` beside the root (the project's): activated.
        ("python3 agent.py", false),
        (&format!("{}/bin/python agent.py", venv.display()) as &str, false),
    ];
    for mode in fs_modes() {
        for (run, keep_root_venv) in runs {
            if !keep_root_venv {
                let _ = std::fs::remove_file(root.join(".venv"));
            } else if !root.join(".venv").exists() {
                std::os::unix::fs::symlink(&venv, root.join(".venv")).unwrap();
            }
            write(&root.join("harness.toml"), &format!("name = \"bot\"\nrun = \"{run}\"\ntimeout = \"30s\"\n"));
            let manifest = Manifest::load(&root.join("harness.toml")).unwrap();
            let version = Version::new(manifest, root.clone()).unwrap();
            let trials_dir = base.path().join("trials");
            let mut runner = Runner::new(None, 1, trials_dir);
            runner.use_cache = false;
            runner.isolation = mode;
            let records = runner.run(&version, &cases, &[Trial { case: 0, seed: 0 }], &|_| {}).await.unwrap();
            let rec = &records[0];
            assert!(rec.passed, "{mode:?} `{run}`: {:?} {}\n{}", rec.reason, rec.output, rec.stderr_tail);
            assert!(
                rec.output.contains("venv-read-only"),
                "{mode:?} `{run}`: the trial wrote into the venv: {}",
                rec.output
            );
        }
    }
    let lib = std::fs::read_dir(venv.join("lib")).unwrap().flatten().next().unwrap().path();
    let module = std::fs::read_to_string(lib.join("site-packages/ahpkg.py")).unwrap();
    assert!(!module.contains("changed by a trial"));
}

#[tokio::test]
async fn trial_env_a_missing_interpreter_is_failed_to_start() {
    let base = outside_tmp_and_home();
    let root = base.path().join("bot");
    write(&root.join("agent.py"), "print('never')\n");
    write(&root.join("harness.toml"), "name = \"bot\"\nrun = \".venv/bin/python agent.py\"\ntimeout = \"30s\"\n");
    let manifest = Manifest::load(&root.join("harness.toml")).unwrap();
    let version = Version::new(manifest, root.clone()).unwrap();
    let cases = vec![case(&base.path().join("cases"))];
    let mut runner = Runner::new(None, 1, base.path().join("trials"));
    runner.use_cache = false;
    runner.infra_retries = 0;
    // A trial that cannot start is no verdict: the run of trials is an error naming why.
    let err = runner.run(&version, &cases, &[Trial { case: 0, seed: 0 }], &|_| {}).await.unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("could not start: `.venv/bin/python` not found"), "{message}");

    // Straight through the sandbox too.
    let mut spec = Spec::new("./no-such-program --flag", &root);
    spec.limits.timeout = Duration::from_secs(10);
    let outcome = sandbox::run(&spec).await;
    assert!(matches!(outcome.status, ExitStatus::FailedToStart { .. }), "{outcome:?}");
}

#[tokio::test]
async fn trial_env_disk_use_is_capped() {
    let base = outside_tmp_and_home();
    let copy = base.path().join("work");
    std::fs::create_dir_all(&copy).unwrap();
    // Many files under the per-file limit, in the copy and in $TMPDIR: only a total cap stops them.
    let flood = "i=0; while [ $i -lt 40 ]; do head -c 8388608 /dev/zero > f$i || exit 3; \
                 head -c 8388608 /dev/zero > \"$TMPDIR/t$i\" || exit 3; i=$((i+1)); sleep 0.05; done; echo wrote-all";
    let mut modes = fs_modes();
    modes.push(IsolationChoice::None);
    for mode in modes {
        for entry in std::fs::read_dir(&copy).unwrap().flatten() {
            std::fs::remove_file(entry.path()).unwrap();
        }
        let mut spec = Spec::new(flood, &copy);
        spec.isolation = mode;
        spec.limits.timeout = Duration::from_secs(60);
        spec.limits.disk_bytes = Some(64 << 20);
        let outcome = sandbox::run(&spec).await;
        assert_eq!(
            outcome.status,
            ExitStatus::KilledForLimit { limit: sandbox::Limit::Disk },
            "{mode:?}: {:?} {}",
            outcome.reason,
            outcome.stdout.text()
        );
        assert!(outcome.reason.as_deref().unwrap_or("").contains("disk limit 64 MiB"), "{:?}", outcome.reason);
        // Stopped close to the cap: 500 ms of writing at most past it.
        let left: u64 = std::fs::read_dir(&copy).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum();
        assert!(left < 400 << 20, "{mode:?}: {left} bytes written");

        // Under the cap, the same writes finish.
        let mut spec = Spec::new("head -c 8388608 /dev/zero > small && echo done", &copy);
        spec.isolation = mode;
        spec.limits.disk_bytes = Some(64 << 20);
        let outcome = sandbox::run(&spec).await;
        assert!(outcome.status.success(), "{mode:?}: {:?}", outcome.reason);
    }
}
