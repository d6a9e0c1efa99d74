//! Crash injection: `mine`, `gate` and `run` killed with SIGKILL at moments taken from a
//! seeded list (`AUTOHARNESS_CRASH_AT=<point>:<n>`, src/crash.rs; the seed is
//! `AUTOHARNESS_CRASH_SEED`, default 15, printed on failure), never at sleeps tuned to a
//! machine. After each kill the store passes `PRAGMA integrity_check`, nothing the killed
//! process started is still running, and going on (mining again, gating again,
//! `run --resume`) ends exactly where an uninterrupted run with the same seeds ends.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::cli::{Sandbox, bin, copy_tree, stderr};
use crate::concurrency::rows;

/// A small deterministic generator (xorshift64*), so the moments are the same on every
/// machine for a given seed.
struct Moments {
    state: u64,
    seed: u64,
}

impl Moments {
    fn new() -> Moments {
        let seed = std::env::var("AUTOHARNESS_CRASH_SEED").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(15);
        Moments { state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, seed }
    }

    /// A number in `1..=max`.
    fn pick(&mut self, max: u64) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        1 + self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) % max.max(1)
    }
}

fn crash_run(sb: &Sandbox, args: &[&str], point: &str) -> Output {
    let mut cmd = sb.std_command(bin());
    cmd.args(sb.db_args()).args(args);
    if !point.is_empty() {
        cmd.env("AUTOHARNESS_CRASH_AT", point);
    }
    cmd.output().expect("run autoharness")
}

fn killed(o: &Output) -> bool {
    o.status.signal() == Some(libc::SIGKILL)
}

fn integrity_ok(db: &Path) {
    let r = rows(db, "SELECT json_array(integrity_check) AS j FROM pragma_integrity_check");
    assert_eq!(r, vec![serde_json::json!(["ok"])], "PRAGMA integrity_check of {}", db.display());
}

/// Processes with a path of the sandbox in their environment: `pid: command line`.
fn left_running(sb: &Sandbox) -> Vec<String> {
    let needle = sb.path().to_string_lossy().into_owned();
    let mut alive = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else { continue };
        if env.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            alive.push(format!("{pid}: {}", String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    alive
}

/// No process (the killed one's trials, their children) still runs with a path of the
/// sandbox in its environment; waits up to 10 s for the kernel to finish killing them.
///
/// One residual is allowed, and must be gone after the next command: a kill that lands
/// while bubblewrap sets a trial up (its launcher dies of `--die-with-parent` before it
/// lets its child go on) leaves that child blocked for good, before it has set a death
/// signal of its own. It sits in the dead process's trial cgroup, which the next command's
/// sandbox probe empties (`cgroup::remove_stale`).
fn nothing_left_running(sb: &Sandbox) {
    let alive = wait_until_none_left(sb);
    if alive.is_empty() {
        return;
    }
    assert!(
        alive.iter().all(|p| p.split_once(": ").is_some_and(|(_, cmd)| cmd.starts_with("/usr/bin/bwrap "))),
        "left running after the kill: {alive:?}"
    );
    let out = sb.std_command(bin()).args(["--db", "unused-by-doctor.db", "doctor"]).output().unwrap();
    assert!(out.status.code().is_some(), "doctor ran: {}", stderr(&out));
    let alive = wait_until_none_left(sb);
    assert!(alive.is_empty(), "left running after the kill and the next command: {alive:?}");
}

fn wait_until_none_left(sb: &Sandbox) -> Vec<String> {
    let started = Instant::now();
    loop {
        let alive = left_running(sb);
        if alive.is_empty() || started.elapsed() > Duration::from_secs(10) {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

const MINE: [&str; 4] = ["mine", "traces", "--harness", "support-bot"];

/// What a mine leaves: clusters and counts, cases recorded, case files written (paths
/// relative to the sandbox).
fn mine_end(sb: &Sandbox) -> (Vec<Value>, String, Vec<String>) {
    let db = sb.db();
    let mut files = Vec::new();
    let evals = sb.path().join("evals/support-bot");
    for dir in std::fs::read_dir(&evals).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            files.push(f.path().strip_prefix(&evals).unwrap().display().to_string());
        }
    }
    files.sort();
    (
        rows(&db, "SELECT json_array(id, members) AS j FROM clusters ORDER BY id"),
        Value::Array(rows(&db, "SELECT json_array(id, cluster_id, split, status, path) AS j FROM cases ORDER BY id"))
            .to_string()
            .replace(&*sb.path().to_string_lossy(), "<sandbox>"),
        files,
    )
}

#[test]
fn a_mine_killed_at_seeded_moments_ends_where_one_mine_ends() {
    let with_traces = || {
        let sb = Sandbox::new();
        copy_tree(&repo("examples/support-bot/traces"), &sb.path().join("traces"));
        sb
    };
    let reference = with_traces();
    let out = crash_run(&reference, &MINE, "");
    assert!(out.status.success(), "{}", stderr(&out));
    let truth = mine_end(&reference);
    let cases = truth.2.len() as u64;
    assert!(cases > 3, "{truth:?}");
    let mut moments = Moments::new();
    let seed = moments.seed;
    let points = [
        "mine_stored:1".to_string(),
        format!("case_written:{}", moments.pick(cases)),
        format!("case_written:{}", moments.pick(cases)),
    ];
    for point in points {
        let sb = with_traces();
        let out = crash_run(&sb, &MINE, &point);
        assert!(killed(&out), "seed {seed}, {point}: not killed: {}", stderr(&out));
        integrity_ok(&sb.db());
        let out = crash_run(&sb, &MINE, "");
        assert!(out.status.success(), "seed {seed}, {point}: {}", stderr(&out));
        assert_eq!(mine_end(&sb), truth, "seed {seed}: a mine killed at {point}, mined again");
    }
}

/// `steady`, slowed, with a grandchild that outlives each trial's main process unless
/// something kills it.
fn sleepy() -> Sandbox {
    let sb = Sandbox::new();
    copy_tree(&crate::common::fixture("harnesses/steady"), sb.path());
    sb.write("harnesses/steady/run.sh", "# Prints the prompt, slowly.\n(sleep 30 &)\nsleep 0.3\ncat prompt.txt\n");
    sb
}

/// `change.patch`: the steady harness's prompt changed.
fn steady_patch(sb: &Sandbox) {
    let old = std::fs::read_to_string(sb.path().join("harnesses/steady/prompt.txt")).unwrap();
    sb.write(
        "change.patch",
        format!(
            "diff --git a/harnesses/steady/prompt.txt b/harnesses/steady/prompt.txt\n--- a/harnesses/steady/prompt.txt\n+++ b/harnesses/steady/prompt.txt\n@@ -1 +1 @@\n-{}\n+hello there\n",
            old.trim_end()
        ),
    );
}

#[test]
fn a_gate_killed_mid_trials_leaves_nothing_running_and_gates_again_to_the_same_verdict() {
    let patch = steady_patch;
    let gate = ["--json", "gate", "change.patch"];
    let reference = sleepy();
    patch(&reference);
    let out = crash_run(&reference, &gate, "");
    assert!(out.status.success(), "{}", stderr(&out));
    let truth: Value = serde_json::from_slice(&out.stdout).unwrap();
    let trials = truth["trials"]["baseline"].as_u64().unwrap() + truth["trials"]["candidate"].as_u64().unwrap();
    let mut moments = Moments::new();
    let seed = moments.seed;
    for n in [moments.pick(trials - 1), moments.pick(trials - 1)] {
        let sb = sleepy();
        patch(&sb);
        let point = format!("trial_recorded:{n}");
        let out = crash_run(&sb, &gate, &point);
        assert!(killed(&out), "seed {seed}, {point}: not killed: {}", stderr(&out));
        nothing_left_running(&sb);
        integrity_ok(&sb.db());
        let dead: Vec<PathBuf> = std::fs::read_dir(sb.path().join("state.trials"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            // `roots/` holds the shared copies of harness versions, no process's folder.
            .filter(|p| p.is_dir() && !p.ends_with("roots"))
            .collect();
        assert_eq!(dead.len(), 1, "{dead:?}");
        let out = crash_run(&sb, &gate, "");
        assert!(out.status.success(), "seed {seed}, {point}: {}", stderr(&out));
        let again: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(!dead[0].exists(), "the killed gate's trial folder is swept");
        assert!(again["trials"]["cached"].as_u64().unwrap() >= n, "{again:#}");
        for key in ["verdict", "rule", "cases"] {
            assert_eq!(
                without_trial_files(&again[key]),
                without_trial_files(&truth[key]),
                "seed {seed}, {point}: {key}"
            );
        }
    }
}

/// A gate's cases without each trial's file list: the same trials leave their files in
/// each process's own folder (and come from the cache the second time).
fn without_trial_files(v: &Value) -> Value {
    let mut v = v.clone();
    for case in v.as_array_mut().into_iter().flatten() {
        if let Some(o) = case.as_object_mut() {
            o.remove("trials");
        }
    }
    v
}

fn example() -> Sandbox {
    let sb = Sandbox::new();
    for rel in ["harnesses/support-bot", "evals/support-bot", "examples/support-bot/traces"] {
        copy_tree(&repo(rel), &sb.path().join(rel));
    }
    sb
}

/// Where a run ended: its proposals and verdicts, spend, clusters, suite, and the tree.
fn run_end(sb: &Sandbox) -> Vec<Value> {
    let db = sb.db();
    let mut end = vec![
        Value::Array(rows(
            &db,
            "SELECT json_array(iteration, cluster_id, diff_hash, verdict, rule, accepted) AS j FROM proposals ORDER BY iteration, diff_hash",
        )),
        Value::Array(rows(&db, "SELECT json_array(status, iteration, round(spent_usd, 6)) AS j FROM runs")),
        Value::Array(rows(&db, "SELECT json_array(id, state) AS j FROM clusters ORDER BY id")),
        Value::Array(rows(&db, "SELECT json_array(id, status) AS j FROM cases ORDER BY id")),
    ];
    end.push(Value::String(std::fs::read_to_string(sb.path().join("harnesses/support-bot/config.toml")).unwrap()));
    let report = sb.json(&["report"]);
    end.push(report["clusters_fixed"].clone());
    end.push(report["accepted"].clone());
    end
}

#[test]
fn a_run_killed_at_seeded_moments_resumes_to_where_an_uninterrupted_run_ends() {
    let start =
        ["run", "--traces", "examples/support-bot/traces", "--max-iterations", "2", "--candidates", "1", "--apply"];
    let reference = example();
    let out = crash_run(&reference, &start, "");
    assert!(out.status.success(), "{}", stderr(&out));
    let truth = run_end(&reference);
    assert!(truth[6].as_u64().unwrap() >= 1, "the reference run accepts a change: {truth:?}");
    let trials = rows(&reference.db(), "SELECT json_array(COUNT(*)) AS j FROM trials")[0][0].as_u64().unwrap();
    let mut moments = Moments::new();
    let seed = moments.seed;
    // One crash after another, each resume continuing (without any flag: the run's own
    // options, --max-iterations 2 and --apply, must hold) until one finishes.
    let points = [
        format!("trial_recorded:{}", moments.pick(trials / 3)),
        "proposal_recorded:1".to_string(),
        "gate_recorded:1".to_string(),
        "accepted:1".to_string(),
        format!("trial_recorded:{}", moments.pick(trials / 3)),
        "iteration_done:1".to_string(),
    ];
    let sb = example();
    let mut crashes = Vec::new();
    let mut finished = false;
    for (i, point) in points.iter().enumerate() {
        let args: &[&str] = if i == 0 { &start } else { &["run", "--resume"] };
        let out = crash_run(&sb, args, point);
        if out.status.success() {
            finished = true;
            break;
        }
        assert!(killed(&out), "seed {seed}, {point}: {}", stderr(&out));
        crashes.push(point.clone());
        nothing_left_running(&sb);
        integrity_ok(&sb.db());
    }
    if !finished {
        let out = crash_run(&sb, &["run", "--resume"], "");
        assert!(out.status.success(), "seed {seed}: {}", stderr(&out));
    }
    assert!(crashes.len() >= 3, "seed {seed}: the run was killed at {crashes:?} only");
    // Every trial this store holds ran for this run (a fresh store): what the run spent is
    // what they cost, the trials of gates a kill interrupted included.
    let spend = rows(
        &sb.db(),
        "SELECT json_array(round((SELECT spent_usd FROM runs), 6), round((SELECT SUM(cost_usd) FROM trials), 6)) AS j",
    );
    assert_eq!(spend[0][0], spend[0][1], "seed {seed}: spent vs the cost of every trial, killed at {crashes:?}");
    let end = run_end(&sb);
    let names = ["proposals", "run", "clusters", "cases", "config.toml (--apply)", "clusters_fixed", "accepted"];
    for ((name, got), want) in names.iter().zip(&end).zip(&truth) {
        assert_eq!(got, want, "seed {seed}: killed at {crashes:?}, resumed: {name} differ");
    }
}

#[test]
fn a_run_killed_after_a_model_s_answer_passed_resumes_with_that_answer() {
    // A stand-in for a model that never answers the same twice: each answer is numbered.
    let config = r#"[proposer]
provider = "command"
command = '''cat > /dev/null; n=$(cat "$HOME/asked" 2>/dev/null || echo 0); echo $((n+1)) > "$HOME/asked"; printf 'Verify the customer identity before any refund.\n' >> prompts/system.md; printf '# answer %s\n' "$n" >> config.toml'''
"#;
    let start = ["run", "--traces", "examples/support-bot/traces", "--max-iterations", "2", "--candidates", "1"];
    let reference = example();
    reference.write("autoharness.toml", config);
    let out = crash_run(&reference, &start, "");
    assert!(out.status.success(), "{}", stderr(&out));
    let truth = run_end(&reference);
    assert_eq!(truth[6], 1, "the reference run accepts the second answer: {truth:?}");
    let sb = example();
    sb.write("autoharness.toml", config);
    // Killed once the second answer's gate has passed, before it is accepted.
    let out = crash_run(&sb, &start, "gate_recorded:2");
    assert!(killed(&out), "{}", stderr(&out));
    integrity_ok(&sb.db());
    let out = crash_run(&sb, &["run", "--resume"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let end = run_end(&sb);
    assert_eq!(end, truth, "resumed after a passed gate: the same answer is accepted, none is asked again");
    assert_eq!(std::fs::read_to_string(sb.path().join("asked")).unwrap().trim(), "2", "two answers asked in all");
}

/// A git repository of the example (the sandbox is `HOME`, so its `.gitconfig` names the
/// committer), with the store and run folders ignored.
fn git_example() -> Sandbox {
    let sb = example();
    sb.write(".gitconfig", "[user]\n\tname = t\n\temail = t@t\n[init]\n\tdefaultBranch = main\n");
    sb.write(".gitignore", ".gitconfig\nstate.*\nruns/\n*.lock\n");
    git(&sb, &["init", "-q"]);
    git(&sb, &["add", "-A"]);
    git(&sb, &["commit", "-qm", "start"]);
    sb
}

fn git(sb: &Sandbox, args: &[&str]) -> String {
    let out = sb.std_command("git").args(args).output().expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where a `--branch` run left the repository: the branch checked out, its commits' subjects
/// (the run id aside) and the tree each holds, and whatever is left uncommitted.
fn repo_end(sb: &Sandbox) -> Vec<String> {
    let run_id = regex::Regex::new(r"\(run [^)]*\)").unwrap();
    vec![
        git(sb, &["rev-parse", "--abbrev-ref", "HEAD"]),
        run_id.replace_all(&git(sb, &["log", "--format=%s %T"]), "(run)").into_owned(),
        git(sb, &["status", "--porcelain"]),
    ]
}

/// `run --branch` killed inside its final apply, at each of its moments in turn (the branch
/// made, the apply plan recorded, the first file written, the commit made): every resume
/// goes on from where the last one died, and the end is the uninterrupted run's branch,
/// commit, tree and store. Before the apply was planned and resumable, the resume failed
/// (the branch existed; hunks already in the tree did not apply again).
#[test]
fn a_run_killed_while_applying_to_a_branch_resumes_to_the_same_commit() {
    let start = [
        "run",
        "--traces",
        "examples/support-bot/traces",
        "--max-iterations",
        "2",
        "--candidates",
        "1",
        "--branch",
        "autoharness-fix",
    ];
    let reference = git_example();
    let out = crash_run(&reference, &start, "");
    assert!(out.status.success(), "{}", stderr(&out));
    let truth = (run_end(&reference), repo_end(&reference));
    assert!(truth.0[6].as_u64().unwrap() >= 1, "the reference run accepts a change: {truth:?}");
    assert!(truth.1[1].lines().count() == 2, "one commit on the branch: {truth:?}");
    let sb = git_example();
    for (i, point) in ["apply_branch:1", "apply_planned:1", "apply_file:1", "apply_committed:1"].iter().enumerate() {
        let args: &[&str] = if i == 0 { &start } else { &["run", "--resume"] };
        let out = crash_run(&sb, args, point);
        assert!(killed(&out), "{point} is reached and kills: {}", stderr(&out));
        integrity_ok(&sb.db());
    }
    let out = crash_run(&sb, &["run", "--resume"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((run_end(&sb), repo_end(&sb)), truth, "killed at every moment of the apply, resumed");
}

/// Without bubblewrap (no pid namespace to die with), a gate killed with SIGKILL leaves the
/// processes its trials forked off behind: only the trial's first process gets the parent's
/// death signal. Their pids cgroup is the one list of them that survives, and the next
/// autoharness command that probes the sandbox kills what is left in the cgroups of dead
/// autoharness processes (`cgroup::remove_stale`). Forced with `AUTOHARNESS_ISOLATION=none`
/// so the test means the same on hosts with and without bubblewrap.
#[test]
fn without_bubblewrap_a_killed_gate_s_leftovers_are_killed_by_the_next_command() {
    let sb = sleepy();
    // A forked-off grandchild that would live five minutes, forked before the first output.
    sb.write("harnesses/steady/run.sh", "(sleep 300 &)\necho started\nsleep 5\ncat prompt.txt\n");
    steady_patch(&sb);
    let with_none = |args: &[&str], point: &str| {
        let mut cmd = sb.std_command(bin());
        cmd.args(sb.db_args()).args(args).env("AUTOHARNESS_ISOLATION", "none");
        if !point.is_empty() {
            cmd.env("AUTOHARNESS_CRASH_AT", point);
        }
        cmd.output().unwrap()
    };
    // Killed while a trial runs: it has printed, so its grandchild was forked.
    let out = with_none(&["--json", "gate", "change.patch"], "trial_output:1");
    assert!(killed(&out), "{}", stderr(&out));
    // The grandchild may be swept already: any autoharness process on the machine that
    // probes the sandbox (a test running in parallel) does the very cleanup under test.
    let out = with_none(&["--json", "doctor"], "");
    assert!(out.status.code().is_some(), "{}", stderr(&out));
    let started = Instant::now();
    while !left_running(&sb).is_empty() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = left_running(&sb);
    for line in &left {
        if let Some(pid) = line.split(':').next().and_then(|p| p.parse::<i32>().ok()) {
            // SAFETY: a signal to a process this test's gate left behind.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    assert_eq!(left, Vec::<String>::new(), "still running after the next command probed the sandbox");
}
