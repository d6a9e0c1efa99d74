//! End-to-end runs of the `autoharness` binary in a hermetic sandbox: a temp dir that is
//! the working directory and `HOME`, its own store (`--db <tmp>/state.db`), and a fixed
//! environment (no colors, no progress bars, 120 columns, 2 jobs) so output does not
//! depend on the machine or the person running the tests.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

use super::fixture;

pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox { dir: tempfile::Builder::new().prefix("autoharness-test-").tempdir().expect("temp dir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The store every command of this sandbox uses.
    pub fn db(&self) -> PathBuf {
        self.path().join("state.db")
    }

    /// `program` with the sandbox's environment (cleared, then the fixed variables) and
    /// working directory, for runs that need a wrapper such as `/usr/bin/time`.
    pub fn std_command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("NO_COLOR", "1")
            .env("CI", "1")
            .env("COLUMNS", "120")
            .env("AUTOHARNESS_JOBS", "2")
            .current_dir(self.path());
        cmd
    }

    /// The `--db <tmp>/state.db` arguments every autoharness run of the sandbox starts with.
    pub fn db_args(&self) -> [std::ffi::OsString; 2] {
        ["--db".into(), self.db().into_os_string()]
    }

    /// `autoharness --db <tmp>/state.db <args>` in the sandbox.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.std_command(bin());
        cmd.args(self.db_args()).args(args);
        Command::from_std(cmd)
    }

    /// Run a command to its end. Whatever the exit code, nothing may panic.
    pub fn run(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().expect("run autoharness");
        assert_no_panic(&output, args);
        output
    }

    /// Run a `--json` command that must succeed; its stdout parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let output = self.run(&with_json);
        assert!(output.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!("{args:?}: stdout is not JSON ({e}):\n{}", String::from_utf8_lossy(&output.stdout))
        })
    }

    /// Write a file (parents created) and return its path.
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create dir");
        std::fs::write(&path, bytes).expect("write file");
        path
    }

    /// Copy `tests/fixtures/<rel>` (a file or a folder, recursively) to `<tmp>/<rel>`, so
    /// commands can name it by a relative path that is the same on every machine.
    pub fn copy_fixture(&self, rel: &str) -> PathBuf {
        let to = self.path().join(rel);
        copy_tree(&fixture(rel), &to);
        to
    }
}

/// The autoharness binary cargo built for these tests.
/// `AUTOHARNESS_TEST_BIN` runs the suites against another build (e.g. an older one, to show
/// that a test fails without a fix).
pub fn bin() -> PathBuf {
    match std::env::var_os("AUTOHARNESS_TEST_BIN") {
        Some(p) => PathBuf::from(p),
        None => assert_cmd::cargo::cargo_bin("autoharness"),
    }
}

/// Copy a file or a folder (recursively).
pub fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("create dir");
        for entry in std::fs::read_dir(from).expect("read dir") {
            let entry = entry.expect("dir entry");
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().expect("parent")).expect("create dir");
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A panic is a bug whatever the input: the process must report problems, not crash.
pub fn assert_no_panic(output: &Output, args: &[&str]) {
    let err = stderr(output);
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    // 101 is the exit code of a Rust panic; a signal (no code) is a crash.
    assert!(matches!(output.status.code(), Some(code) if code != 101), "{args:?} crashed: {:?}\n{err}", output.status);
}

/// Exit code, stdout and stderr in one text, for snapshots (uv's `uv_snapshot!` layout).
pub fn transcript(output: &Output) -> String {
    format!(
        "success: {}\nexit_code: {}\n----- stdout -----\n{}\n----- stderr -----\n{}",
        output.status.success(),
        output.status.code().map_or("none".to_string(), |c| c.to_string()),
        stdout(output),
        stderr(output)
    )
}

/// The row of `traces ls --json` for the file whose path ends with `name`.
pub fn ls_row<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["path"].as_str().is_some_and(|p| p.ends_with(name)))
        .unwrap_or_else(|| panic!("no row for {name} in {doc:#}"))
}

/// Row counts of the store: (trace files, traces), read through the library's own store.
pub fn store_counts(db: &Path) -> (i64, i64) {
    let rt = autoharness::store::runtime().expect("tokio runtime");
    rt.block_on(async {
        let store = autoharness::store::Store::open(db).await.expect("open the store");
        let counts = store.count_traces().await.expect("count rows");
        store.close().await;
        counts
    })
}

/// A project with the deterministic `steady` harness (tests/fixtures/harnesses/steady).
pub fn steady() -> Sandbox {
    let sb = Sandbox::new();
    copy_tree(&super::fixture("harnesses/steady"), sb.path());
    sb
}

/// A unified diff of one file of the sandbox, as `git diff` at the project root writes it.
pub fn diff(sb: &Sandbox, rel: &str, new_text: &str) -> String {
    let old = std::fs::read_to_string(sb.path().join(rel)).unwrap();
    let d = similar::TextDiff::from_lines(old.as_str(), new_text);
    format!("diff --git a/{rel} b/{rel}\n{}", d.unified_diff().header(&format!("a/{rel}"), &format!("b/{rel}")))
}
