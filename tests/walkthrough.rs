//! docs/walkthrough.md, followed literally: `tests/fixtures/walkthrough/walkthrough.sh` (the
//! commands the page shows) runs on a copy of the fixture agent project — the `openai`
//! client with OpenInference tracing, in a real virtualenv made from PyPI packages
//! (cached under ~/.cache) — against a scripted OpenAI-compatible server on 127.0.0.1.
//! From production traces to `init`, `doctor`, `mine`, `eval` and a passing `gate` on a
//! hand-made patch. Prints the time of each step (`--nocapture`).

#![allow(clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/walkthrough")
}

fn skip(what: &str) {
    let msg = format!("SKIPPED: walkthrough: {what}");
    let required = std::env::var("AUTOHARNESS_REQUIRE_ALL").is_ok_and(|v| v == "1");
    assert!(!required, "{msg} (AUTOHARNESS_REQUIRE_ALL=1 forbids skipping)");
    eprintln!("{msg}");
}

/// The virtualenv of the fixture's requirements.txt, made once per set of pins under
/// ~/.cache/autoharness-walkthrough (CI's `.ci/run` keeps ~/.cache).
fn virtualenv() -> Result<PathBuf, String> {
    let requirements = fixture().join("project/requirements.txt");
    let pins = std::fs::read(&requirements).map_err(|e| e.to_string())?;
    let home = std::env::var_os("HOME").map(PathBuf::from).ok_or("no HOME")?;
    let cache = home.join(".cache/autoharness-walkthrough");
    let venv = cache.join(format!("venv-{}", &blake3::hash(&pins).to_hex()[..12]));
    if venv.join("bin/python").exists() && venv.join(".complete").exists() {
        return Ok(venv);
    }
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::create_dir_all(&cache).map_err(|e| e.to_string())?;
    let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
    let made = Command::new(python).args(["-m", "venv"]).arg(&venv).status().map_err(|e| e.to_string())?;
    if !made.success() {
        return Err("python3 -m venv failed (apt-get install python3-venv)".into());
    }
    let pip = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--disable-pip-version-check", "-r"])
        .arg(&requirements)
        .status()
        .map_err(|e| e.to_string())?;
    if !pip.success() {
        return Err("pip install -r requirements.txt failed (no access to PyPI?)".into());
    }
    std::fs::write(venv.join(".complete"), "").map_err(|e| e.to_string())?;
    Ok(venv)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The scripted model server; killed when dropped (it also stops by itself).
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn walkthrough_from_traces_to_a_passing_gate() {
    let venv = match virtualenv() {
        Ok(venv) => venv,
        Err(why) => return skip(&why),
    };
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let project = base.path().join("order-desk");
    copy_dir(&fixture().join("project"), &project);
    std::os::unix::fs::symlink(&venv, project.join(".venv")).unwrap();

    let port_file = base.path().join("port");
    let server = Server(
        Command::new("python3")
            .arg(fixture().join("fake_openai.py"))
            .arg(&port_file)
            .args(["--lifetime", "600"])
            .spawn()
            .expect("start the scripted server"),
    );
    let started = Instant::now();
    let port = loop {
        if let Some(port) = std::fs::read_to_string(&port_file).ok().filter(|p| !p.is_empty()) {
            break port;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the scripted server did not start");
        std::thread::sleep(Duration::from_millis(50));
    };

    let mut child = Command::new("bash")
        .arg(fixture().join("walkthrough.sh"))
        .current_dir(&project)
        .env("AUTOHARNESS", assert_cmd::cargo::cargo_bin("autoharness"))
        .env("OPENAI_BASE_URL", format!("http://127.0.0.1:{port}/v1"))
        .env("OPENAI_API_KEY", "sk-walkthrough-not-a-real-key")
        .env("NO_COLOR", "1")
        .env_remove("AUTOHARNESS_DB")
        .env_remove("AUTOHARNESS_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut output = String::new();
    let mut steps: Vec<(String, Instant)> = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(step) = line.strip_prefix("== ") {
            steps.push((step.to_string(), Instant::now()));
        }
        output.push_str(&line);
        output.push('\n');
    }
    let status = child.wait().unwrap();
    let errors = errors.join().unwrap();
    drop(server);
    eprintln!("{output}");
    for pair in steps.windows(2) {
        eprintln!("{:>7.1}s  {}", (pair[1].1 - pair[0].1).as_secs_f64(), pair[0].0);
    }
    assert!(status.success(), "walkthrough.sh failed ({status}):\n{output}\n{}", errors);

    // Step 1: the agent's own traces are read as failed runs of OpenInference spans.
    assert!(output.contains("6 traces: 0 passed, 5 failed, 1 unknown"), "{output}");
    // Step 3: doctor ran the check in the sandbox, with the virtualenv granted.
    assert!(output.contains("`.venv/bin/python -m py_compile agent.py` in a trial"), "{output}");
    assert!(output.contains(&format!("read-only: {}", venv.canonicalize().unwrap().display())), "{output}");
    // Step 4: one root cause, five cases, one of them held out.
    assert!(output.contains("1 clusters (1 new) · 5 cases written"), "{output}");
    let cases: Vec<_> = walk(&project.join("evals/order-desk"));
    assert_eq!(cases.len(), 5, "{cases:?}");
    // Step 5: the current agent fails every train case, for the reason production showed.
    assert!(output.contains("0/8 passed"), "{output}");
    assert!(output.contains("KeyError: \"no order 'a-17'\""), "{output}");
    // Step 6: the fix passes the gate; the evidence is written.
    assert!(output.contains("✔ PASS"), "{output}");
    assert!(output.contains("== done"), "{output}");
    for file in ["gate.md", "gate.xml", "gate.html", "eval.xml"] {
        assert!(project.join(".autoharness").join(file).is_file(), "{file} missing");
    }
    // The trials ran isolated (the virtualenv read-only, not copied).
    let gate_md = std::fs::read_to_string(project.join(".autoharness/gate.md")).unwrap();
    assert!(gate_md.contains("PASS") || gate_md.contains("pass"), "{gate_md}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    out
}
