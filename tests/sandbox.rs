//! The sandbox against real processes: environment, timeouts, leftovers, fork bombs,
//! output floods, network, filesystem, signals. Each isolation mechanism this host offers
//! is tested; one it lacks is skipped loudly (a failure when AUTOHARNESS_REQUIRE_ALL=1).

// Skips must be loud, and what each mechanism did is worth seeing with --nocapture.
#![allow(clippy::print_stderr)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use autoharness::sandbox::{
    self, ExitStatus, FsIsolation, IsolationChoice, Limit, NetIsolation, Network, Outcome, ProcessLimit, Spec,
};

fn require_all() -> bool {
    std::env::var("AUTOHARNESS_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Says loudly that something is not tested here; fails when skipping is forbidden.
pub(crate) fn skip(what: &str) {
    let msg = format!("SKIPPED: {what} (probe: {})", sandbox::probe().summary());
    if require_all() {
        panic!("{msg} (AUTOHARNESS_REQUIRE_ALL=1 forbids skipping)");
    }
    eprintln!("{msg}");
}

/// The isolation mechanisms to test: all of them, minus (loudly) those this host lacks.
pub(crate) fn modes() -> Vec<IsolationChoice> {
    let report = sandbox::probe();
    let mut modes = vec![IsolationChoice::None];
    if report.bwrap.is_some() {
        modes.push(IsolationChoice::Bwrap);
    } else {
        skip("bubblewrap isolation (apt-get install bubblewrap)");
    }
    if report.landlock_abi.is_some() {
        modes.push(IsolationChoice::Landlock);
    } else {
        skip("landlock isolation (kernel without landlock)");
    }
    modes
}

/// A private copy stand-in: a fresh folder the trial runs in.
struct Trial {
    dir: tempfile::TempDir,
}

impl Trial {
    fn new() -> Trial {
        Trial { dir: tempfile::tempdir().unwrap() }
    }

    fn spec(&self, command: &str, isolation: IsolationChoice) -> Spec {
        let mut spec = Spec::new(command, self.dir.path());
        spec.isolation = isolation;
        spec.limits.timeout = Duration::from_secs(20);
        spec
    }
}

/// Processes whose command line holds `token`.
fn survivors(token: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(token) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// A number no other process on the machine has in its command line.
fn token(n: u32) -> String {
    format!("{}{:05}", 9_000_000 + n, std::process::id() % 100_000)
}

fn describe(outcome: &Outcome) -> String {
    format!(
        "status {:?}, reason {:?}, isolation {:?}, leftovers {}\nstdout: {}\nstderr: {}",
        outcome.status,
        outcome.reason,
        outcome.isolation,
        outcome.killed_leftovers,
        outcome.stdout.text(),
        outcome.stderr.text()
    )
}

fn expected_fs(mode: IsolationChoice) -> FsIsolation {
    match mode {
        IsolationChoice::Bwrap => FsIsolation::Bwrap,
        IsolationChoice::Landlock => FsIsolation::Landlock,
        _ => FsIsolation::None,
    }
}

#[tokio::test]
async fn sandbox_probe_reports_the_host() {
    let report = sandbox::probe();
    eprintln!("sandbox probe: {}", report.summary());
    if require_all() {
        assert!(report.bwrap.is_some(), "CI must have working bubblewrap: {}", report.summary());
    }
}

#[tokio::test]
async fn sandbox_environment_is_scrubbed() {
    // SAFETY: no other thread of this test binary reads this variable; it only has to be
    // in the environment that the sandbox must not pass on.
    unsafe { std::env::set_var("AUTOHARNESS_TEST_HOST_SECRET", "leaked") };
    let real_home = std::env::var("HOME").unwrap_or_default();
    for mode in modes() {
        let trial = Trial::new();
        let mut spec = trial.spec(r#"env; echo x > "$HOME/f" && cat "$HOME/f"; echo "tmp=$TMPDIR""#, mode);
        spec.env.push(("AUTOHARNESS_SEED".into(), "7".into()));
        let outcome = sandbox::run(&spec).await;
        let text = outcome.stdout.text();
        assert!(outcome.status.success(), "{mode:?}: {}", describe(&outcome));
        assert_eq!(outcome.isolation.filesystem, expected_fs(mode));
        assert!(!text.contains("AUTOHARNESS_TEST_HOST_SECRET"), "{mode:?}: host variable leaked:\n{text}");
        assert!(text.contains("AUTOHARNESS_SEED=7"), "{mode:?}: {text}");
        assert!(text.contains(&format!("PATH={}", sandbox::TRIAL_PATH)), "{mode:?}: {text}");
        assert!(text.contains("LANG=C.UTF-8"), "{mode:?}: {text}");
        assert!(!text.contains(&format!("HOME={real_home}\n")), "{mode:?}: real HOME passed on:\n{text}");
        assert!(text.contains("\nx\n"), "{mode:?}: private HOME not writable:\n{text}");
        assert!(text.contains("tmp=/"), "{mode:?}: {text}");
    }
}

#[tokio::test]
async fn sandbox_hides_secrets_in_the_real_home() {
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_dir() && h != Path::new("/")) else {
        skip("no real HOME to hide");
        return;
    };
    let mut secret = tempfile::Builder::new().prefix(".autoharness-test-secret-").tempfile_in(&home).unwrap();
    secret.write_all(b"hunter2").unwrap();
    let path = secret.path().display().to_string();
    for mode in modes().into_iter().filter(|m| *m != IsolationChoice::None) {
        let trial = Trial::new();
        let outcome = sandbox::run(&trial.spec(&format!("cat '{path}'"), mode)).await;
        assert!(!outcome.stdout.text().contains("hunter2"), "{mode:?}: read a secret: {}", describe(&outcome));
        assert!(!outcome.status.success(), "{mode:?}: {}", describe(&outcome));
    }
}

#[tokio::test]
async fn sandbox_writes_only_inside_the_copy() {
    for mode in modes().into_iter().filter(|m| *m != IsolationChoice::None) {
        let trial = Trial::new();
        let outside = tempfile::tempdir().unwrap();
        let allowed = tempfile::tempdir().unwrap();
        let target = outside.path().join("escaped");
        let command = format!(
            "echo in > inside && echo ok > '{}/trace.json' && echo out > '{}'; echo status=$?",
            allowed.path().display(),
            target.display()
        );
        let mut spec = trial.spec(&command, mode);
        spec.writable.push(allowed.path().to_path_buf());
        let outcome = sandbox::run(&spec).await;
        assert!(
            outcome.stdout.text().contains("status=") && !outcome.stdout.text().contains("status=0"),
            "{mode:?}: {}",
            describe(&outcome)
        );
        assert!(!target.exists(), "{mode:?}: wrote outside the copy: {}", describe(&outcome));
        assert!(trial.dir.path().join("inside").exists(), "{mode:?}: {}", describe(&outcome));
        assert!(allowed.path().join("trace.json").exists(), "{mode:?}: {}", describe(&outcome));
        // Writing elsewhere on the host is refused too.
        let outcome = sandbox::run(&trial.spec("touch /etc/autoharness-escape", mode)).await;
        assert!(!outcome.status.success(), "{mode:?}: {}", describe(&outcome));
        assert!(!Path::new("/etc/autoharness-escape").exists());
    }
}

#[tokio::test]
async fn sandbox_timeout_kills_the_whole_group() {
    for (i, mode) in modes().into_iter().enumerate() {
        let token = token(10 + i as u32);
        let trial = Trial::new();
        let mut spec = trial.spec(&format!("sleep {token} & sleep {token}"), mode);
        spec.limits.timeout = Duration::from_secs(1);
        let started = Instant::now();
        let outcome = sandbox::run(&spec).await;
        assert_eq!(outcome.status, ExitStatus::TimedOut, "{mode:?}: {}", describe(&outcome));
        assert_eq!(outcome.reason.as_deref().map(|r| r.starts_with("timed out after 1s")), Some(true));
        assert!(started.elapsed() < Duration::from_secs(5), "{mode:?}: took {:?}", started.elapsed());
        assert_eq!(survivors(&token), Vec::<String>::new(), "{mode:?}: survivors");
    }
}

#[tokio::test]
async fn sandbox_kills_leftover_daemons() {
    for (i, mode) in modes().into_iter().enumerate() {
        let token = token(20 + i as u32);
        let trial = Trial::new();
        // One background job, one double-forked daemon in its own session.
        let command = format!(
            "nohup sleep {token} >/dev/null 2>&1 & (setsid sleep {token} >/dev/null 2>&1 &); sleep 0.2; echo done"
        );
        let outcome = sandbox::run(&trial.spec(&command, mode)).await;
        assert!(outcome.status.success(), "{mode:?}: {}", describe(&outcome));
        assert!(outcome.killed_leftovers >= 2, "{mode:?}: {}", describe(&outcome));
        assert!(outcome.reason.as_deref().unwrap_or("").contains("leftover"), "{mode:?}: {}", describe(&outcome));
        assert_eq!(survivors(&token), Vec::<String>::new(), "{mode:?}: survivors");
    }
}

#[tokio::test]
async fn sandbox_cancelled_trial_leaves_nothing() {
    for (i, mode) in modes().into_iter().enumerate() {
        let token = token(50 + i as u32);
        let trial = Trial::new();
        let spec = trial.spec(&format!("(setsid sleep {token} &); sleep {token}"), mode);
        let cancelled = tokio::time::timeout(Duration::from_millis(300), sandbox::run(&spec)).await;
        assert!(cancelled.is_err(), "{mode:?}: the trial should still be running");
        // SIGKILL is delivered asynchronously; give the kernel a moment.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !survivors(&token).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let report = sandbox::probe();
        if mode == IsolationChoice::Bwrap || report.pids_cgroup.is_some() {
            assert_eq!(survivors(&token), Vec::<String>::new(), "{mode:?}: survivors");
        } else {
            // Without a cgroup or pid namespace a cancelled trial's setsid daemon escapes.
            for line in survivors(&token) {
                let pid: i32 = line.split(':').next().unwrap().parse().unwrap();
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

#[tokio::test]
async fn sandbox_contains_a_thousand_forks() {
    for (i, mode) in modes().into_iter().enumerate() {
        let token = token(30 + i as u32);
        let trial = Trial::new();
        let command = format!("i=0; while [ $i -lt 1000 ]; do sleep {token} & i=$((i+1)); done; echo spawned");
        let mut spec = trial.spec(&command, mode);
        spec.limits.processes = Some(64);
        spec.limits.timeout = Duration::from_secs(30);
        let started = Instant::now();
        let outcome = sandbox::run(&spec).await;
        let elapsed = started.elapsed();
        eprintln!("{mode:?}: 1000 forks: {:?} in {elapsed:?}: {}", outcome.isolation.processes, describe(&outcome));
        assert!(elapsed < Duration::from_secs(40), "{mode:?}: took {elapsed:?}");
        assert_eq!(survivors(&token), Vec::<String>::new(), "{mode:?}: survivors");
        match outcome.isolation.processes {
            ProcessLimit::PidsCgroup => {
                let reason = outcome.reason.clone().unwrap_or_default();
                assert!(reason.contains("forks refused"), "{mode:?}: {}", describe(&outcome));
                assert!(outcome.killed_leftovers <= 64, "{mode:?}: {}", describe(&outcome));
            }
            // RLIMIT_NPROC counts all of the user's tasks, which other tests start and end
            // meanwhile: the bound is loose, but it binds.
            ProcessLimit::Rlimit => assert!(outcome.killed_leftovers < 1000, "{mode:?}: {}", describe(&outcome)),
            ProcessLimit::NotEnforced => skip("a process limit for root (no writable pids cgroup)"),
            ProcessLimit::Unlimited => unreachable!("a limit was set"),
        }
    }
}

#[tokio::test]
async fn sandbox_contains_a_real_fork_bomb() {
    let report = sandbox::probe();
    // Only where a process limit binds: a fork bomb without one would hurt the host.
    if report.pids_cgroup.is_none() && report.root {
        skip("fork bomb: no process limit binds root here");
        return;
    }
    for (i, mode) in modes().into_iter().enumerate() {
        let token = token(40 + i as u32);
        let trial = Trial::new();
        // Every fork keeps the shell's command line, so the token finds them all.
        let mut spec = trial.spec(&format!("b() {{ b | b & }}; b; sleep {token}"), mode);
        spec.limits.processes = Some(64);
        spec.limits.timeout = Duration::from_secs(3);
        let started = Instant::now();
        let outcome = sandbox::run(&spec).await;
        eprintln!("{mode:?}: fork bomb in {:?}: {}", started.elapsed(), describe(&outcome));
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(survivors(&token), Vec::<String>::new(), "{mode:?}: survivors");
        if outcome.isolation.processes == ProcessLimit::PidsCgroup {
            assert!(outcome.reason.as_deref().unwrap_or("").contains("forks refused"), "{}", describe(&outcome));
        }
    }
}

#[tokio::test]
async fn sandbox_caps_a_gigabyte_of_output() {
    for mode in modes() {
        let trial = Trial::new();
        let started = Instant::now();
        let outcome = sandbox::run(&trial.spec("head -c 1073741824 /dev/zero", mode)).await;
        let elapsed = started.elapsed();
        let cap = sandbox::Limits::default().output_bytes;
        assert_eq!(
            outcome.status,
            ExitStatus::KilledForLimit { limit: Limit::Output },
            "{mode:?}: {}",
            describe(&outcome)
        );
        assert!(outcome.stdout.truncated);
        assert!(outcome.stdout.head.len() + outcome.stdout.tail.len() <= cap);
        assert!(outcome.stdout.total_bytes > cap as u64);
        assert!(outcome.reason.as_deref().unwrap_or("").contains("output over 1 MiB cut"), "{:?}", outcome.reason);
        assert!(elapsed < Duration::from_secs(10), "{mode:?}: took {elapsed:?}");
        eprintln!("{mode:?}: 1 GiB of output stopped after {} bytes in {elapsed:?}", outcome.stdout.total_bytes);
    }
}

#[tokio::test]
async fn sandbox_keeps_head_and_tail_of_long_output() {
    let trial = Trial::new();
    let mut spec = trial
        .spec("echo first; head -c 50000 /dev/zero | tr '\\0' x; echo; echo last; echo err >&2", IsolationChoice::Auto);
    spec.limits.output_bytes = 1000;
    spec.stdin = None;
    let outcome = sandbox::run(&spec).await;
    assert!(outcome.status.success(), "{}", describe(&outcome));
    assert!(outcome.stdout.truncated);
    assert!(outcome.stdout.head.starts_with(b"first\n"));
    assert!(outcome.stdout.tail.ends_with(b"\nlast\n"));
    assert_eq!(outcome.stdout.total_bytes, 6 + 50_000 + 1 + 5);
    assert_eq!(outcome.stderr.text(), "err\n");
    assert!(!outcome.stderr.truncated);
    assert!(outcome.reason.as_deref().unwrap_or("").contains("stdout over 1000 bytes cut"), "{:?}", outcome.reason);
}

#[tokio::test]
async fn sandbox_network_none_cuts_loopback_and_host_keeps_it() {
    if !Path::new("/bin/bash").exists() {
        skip("network test needs /bin/bash for /dev/tcp");
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let command = format!("exec /bin/bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}'");
    for mode in modes() {
        let trial = Trial::new();
        let mut spec = trial.spec(&command, mode);
        spec.network = Network::Host;
        let outcome = sandbox::run(&spec).await;
        assert_eq!(outcome.isolation.network, NetIsolation::Host);
        assert!(outcome.status.success(), "{mode:?} host network: {}", describe(&outcome));

        spec.network = Network::None;
        let outcome = sandbox::run(&spec).await;
        match outcome.isolation.network {
            NetIsolation::Namespace | NetIsolation::LandlockTcp => {
                assert!(!outcome.status.success(), "{mode:?}: connected without network: {}", describe(&outcome));
            }
            NetIsolation::NotIsolated => {
                assert!(!sandbox::probe().can_isolate_network() || mode == IsolationChoice::None);
                assert!(outcome.reason.as_deref().unwrap_or("").contains("network not isolated"));
                skip(&format!("network isolation in {mode:?} mode"));
            }
            NetIsolation::Host => unreachable!(),
        }
    }
}

#[tokio::test]
async fn sandbox_reports_signals_and_exit_codes() {
    for mode in modes() {
        let trial = Trial::new();
        let outcome = sandbox::run(&trial.spec("kill -SEGV $$", mode)).await;
        assert_eq!(
            outcome.status,
            ExitStatus::Signaled { signal: 11, name: "SIGSEGV".into() },
            "{mode:?}: {}",
            describe(&outcome)
        );
        assert!(outcome.reason.as_deref().unwrap_or("").contains("killed by SIGSEGV"));

        let mut spec = trial.spec("cat; echo; exit 3", mode);
        spec.stdin = Some(b"hello".to_vec());
        let outcome = sandbox::run(&spec).await;
        assert_eq!(outcome.status, ExitStatus::Exited { code: 3 }, "{mode:?}: {}", describe(&outcome));
        assert_eq!(outcome.stdout.text(), "hello\n");
        assert_eq!(outcome.reason, None, "{mode:?}");
    }
}

#[tokio::test]
async fn sandbox_enforces_file_size_and_memory_limits() {
    for mode in modes() {
        let trial = Trial::new();
        let mut spec = trial.spec("exec head -c 3000000 /dev/zero > big", mode);
        spec.limits.file_size_bytes = Some(1 << 20);
        let outcome = sandbox::run(&spec).await;
        assert_eq!(
            outcome.status,
            ExitStatus::KilledForLimit { limit: Limit::FileSize },
            "{mode:?}: {}",
            describe(&outcome)
        );
        assert!(std::fs::metadata(trial.dir.path().join("big")).unwrap().len() <= 1 << 20);

        let mut spec = trial.spec("perl -e '$x = q(a) x (600 * 1024 * 1024); print length $x'", mode);
        spec.limits.memory_bytes = Some(256 << 20);
        let outcome = sandbox::run(&spec).await;
        assert!(!outcome.status.success(), "{mode:?}: 600 MiB under a 256 MiB limit: {}", describe(&outcome));
        let reason = outcome.reason.clone().unwrap_or_default();
        assert!(reason.contains("memory limit 256 MiB?"), "{mode:?}: {}", describe(&outcome));
    }
}

#[tokio::test]
async fn sandbox_failed_to_start() {
    let trial = Trial::new();
    let mut spec = trial.spec("true", IsolationChoice::Auto);
    spec.shell = PathBuf::from("/nonexistent/sh");
    let outcome = sandbox::run(&spec).await;
    assert!(matches!(outcome.status, ExitStatus::FailedToStart { .. }), "{}", describe(&outcome));
    assert!(outcome.reason.unwrap().contains("/nonexistent/sh"));

    let spec = Spec::new("true", "/nonexistent/copy");
    let outcome = sandbox::run(&spec).await;
    assert!(matches!(outcome.status, ExitStatus::FailedToStart { .. }), "{}", describe(&outcome));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_runs_trials_in_parallel() {
    let trial = Trial::new();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let spec = trial.spec(&format!("echo {i}"), IsolationChoice::Auto);
        tasks.push(tokio::spawn(async move { sandbox::run(&spec).await }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let outcome = task.await.unwrap();
        assert!(outcome.status.success(), "{}", describe(&outcome));
        assert_eq!(outcome.stdout.text(), format!("{i}\n"));
    }
}

/// The private copy a trial runs in, and the content hash that names a harness version.
mod workspace {
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;
    use std::time::Instant;

    use autoharness::harness::workspace::{Filter, SKIPPED_DIRS, content_hash, private_copy};

    fn write(root: &Path, relative: &str, bytes: &str) {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    /// A small harness: nested files, an executable, links inside and out, skipped folders.
    fn harness(root: &Path) {
        write(root, "harness.toml", "name = \"bot\"\n");
        write(root, "prompts/system.md", "You are helpful.\n");
        write(root, "agent/main.py", "print('hi')\n");
        fs::set_permissions(root.join("agent/main.py"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("prompts/system.md", root.join("current-prompt")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("outside")).unwrap();
        for dir in SKIPPED_DIRS {
            write(root, &format!("{dir}/junk"), "junk");
        }
        write(root, "agent/__pycache__/main.cpython-311.pyc", "bytecode");
    }

    #[test]
    fn sandbox_workspace_hash_is_stable_across_copies() {
        let source = tempfile::tempdir().unwrap();
        harness(source.path());
        let hash = content_hash(source.path(), &Filter::default()).unwrap();
        assert_eq!(hash.len(), 64);
        assert_eq!(content_hash(source.path(), &Filter::default()).unwrap(), hash);

        let dest = tempfile::tempdir().unwrap();
        let copy = dest.path().join("copy");
        let stats = private_copy(source.path(), &copy, &Filter::default()).unwrap();
        assert_eq!((stats.files, stats.dirs, stats.symlinks), (3, 2, 2), "{stats:?}");
        assert_eq!(content_hash(&copy, &Filter::default()).unwrap(), hash);
        // Links are copied as links, not followed out of the root.
        assert_eq!(fs::read_link(copy.join("outside")).unwrap(), Path::new("/etc"));
        assert!(fs::symlink_metadata(copy.join("outside")).unwrap().file_type().is_symlink());
        assert_eq!(fs::metadata(copy.join("agent/main.py")).unwrap().mode() & 0o777, 0o755);
        for dir in SKIPPED_DIRS {
            assert!(!copy.join(dir).exists(), "{dir} was copied");
        }
        assert!(!copy.join("agent/__pycache__").exists());
    }

    #[test]
    fn sandbox_workspace_hash_changes_with_content() {
        let source = tempfile::tempdir().unwrap();
        let root = source.path();
        harness(root);
        let hash = content_hash(root, &Filter::default()).unwrap();

        write(root, "prompts/system.md", "You are helpful!\n");
        let changed_byte = content_hash(root, &Filter::default()).unwrap();
        assert_ne!(changed_byte, hash);

        fs::set_permissions(root.join("prompts/system.md"), fs::Permissions::from_mode(0o755)).unwrap();
        let changed_mode = content_hash(root, &Filter::default()).unwrap();
        assert_ne!(changed_mode, changed_byte);

        fs::rename(root.join("harness.toml"), root.join("manifest.toml")).unwrap();
        assert_ne!(content_hash(root, &Filter::default()).unwrap(), changed_mode);
    }

    #[test]
    fn sandbox_workspace_hash_ignores_skipped_folders() {
        let source = tempfile::tempdir().unwrap();
        let root = source.path();
        harness(root);
        let hash = content_hash(root, &Filter::default()).unwrap();
        for dir in SKIPPED_DIRS {
            write(root, &format!("{dir}/more/{dir}.bin"), "changed");
            write(root, &format!("nested/{dir}/x"), "changed");
        }
        write(root, "nested/ok.txt", "");
        let with_nested = content_hash(root, &Filter::default()).unwrap();
        fs::remove_file(root.join("nested/ok.txt")).unwrap();
        fs::remove_dir_all(root.join("nested")).unwrap();
        assert_eq!(content_hash(root, &Filter::default()).unwrap(), hash);
        assert_ne!(with_nested, hash);
    }

    #[test]
    fn sandbox_workspace_copies_a_thousand_files() {
        let source = tempfile::tempdir().unwrap();
        let root = source.path();
        for i in 0..1000 {
            write(root, &format!("d{}/s{}/file{i}.txt", i % 10, i % 7), &format!("content {i}\n").repeat(i % 50 + 1));
        }
        let dest = tempfile::tempdir().unwrap();
        let copy = dest.path().join("copy");
        let started = Instant::now();
        let stats = private_copy(root, &copy, &Filter::default()).unwrap();
        let elapsed = started.elapsed();
        assert_eq!(stats.files, 1000);
        assert_eq!(content_hash(&copy, &Filter::default()).unwrap(), content_hash(root, &Filter::default()).unwrap());
        eprintln!("copied 1000 files ({} bytes, {} reflinked) in {elapsed:?}", stats.bytes, stats.reflinked);

        // A trial writing to its copy never changes the original (no hard links).
        let original = root.join("d3/s3/file3.txt");
        let copied = copy.join("d3/s3/file3.txt");
        assert_ne!(fs::metadata(&original).unwrap().ino(), fs::metadata(&copied).unwrap().ino());
        fs::write(&copied, "trial wrote this").unwrap();
        assert_eq!(fs::read_to_string(&original).unwrap(), "content 3\n".repeat(4));

        // The destination must be new or empty.
        assert!(private_copy(root, &copy, &Filter::default()).is_err());
    }
}

/// A command leaves no trial cgroup behind when it ends: the idle ones it kept for reuse
/// are removed with its sandbox session (they used to stay until some later command's
/// sweep, one per parallel trial).
#[test]
fn a_command_leaves_no_idle_trial_cgroup_behind() {
    let Some(parent) = autoharness::sandbox::probe().pids_cgroup else {
        let msg = "skipped: no writable pids cgroup here (run as root, as CI does)";
        assert!(!require_all(), "{msg}");
        return;
    };
    let sb = crate::common::cli::Sandbox::new();
    crate::common::cli::copy_tree(&crate::common::fixture("harnesses/steady"), sb.path());
    let child = sb
        .std_command(crate::common::cli::bin())
        .args(sb.db_args())
        .args(["eval", "--trials", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("eval starts");
    let prefix = format!("autoharness-{}-", child.id());
    let out = child.wait_with_output().expect("eval runs");
    assert!(out.status.success(), "{}", crate::common::cli::transcript(&out));
    let left: Vec<String> = std::fs::read_dir(&parent)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "trial cgroups of the finished eval under {}: {left:?}", parent.display());
}
