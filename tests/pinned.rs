//! Behaviour pinned before a refactor: `--help` of every command, the human and `--json`
//! output of the main commands on the bundled example and on the deterministic `steady`
//! harness, the evidence files, and the main error messages. A change here is a change a
//! user sees; accept it (`cargo insta review`) only when it is meant.

use crate::common::cli::{Sandbox, diff, steady, transcript};

/// Anything that depends on the machine or the clock, not on behaviour: the sandbox path,
/// content hashes, times, durations, run ids and the trials the cache served.
fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"/[^\s\x22'`]*/autoharness-test-[^/\s\x22'`]+", "[TMP]"),
        (r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]"),
        (r"\b[0-9a-f]{64}\b", "[HASH]"),
        (r"\b[0-9a-f]{40}\b", "[SHA]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", "[TIME]"),
        // The day of a case's last status change (`cases` table), e.g. a duplicate retired by mine.
        (r"\b\d{4}-\d\d-\d\d (candidate|active|quarantined|retired):", "[DATE] $1:"),
        (r"\b\d{8}T\d{6}Z?(-[0-9a-z]+)?\b", "[RUN]"),
        (r"r-[0-9a-z]{6,}", "[RUN]"),
        (r"\d+(\.\d+)?\s?(ms|s|µs)\b", "[DUR]"),
        (r#""([a-z_]*(ms|_s|seconds|_secs))": ?[0-9.]+"#, "\"$1\": [DUR]"),
        (r"autoharness \d+\.\d+\.\d+", "autoharness [VERSION]"),
        // Sums of floats over trials that end in any order.
        (r"\b\d+\.\d{9,}\b", "[FLOAT]"),
        // Trials run in parallel: which is slowest, and the host's isolation, vary.
        (r"slowest: .*", "slowest: [ORDER]"),
        (r"(?m)^isolation: .*", "isolation: [HOST]"),
        (r"(?m)^Trials ran isolated: .*", "Trials ran isolated: [HOST]"),
        // A process's private trial folder is named by its pid.
        (r"\bp\d+-[0-9a-f]+/", "p[PID]/"),
        (r#""isolation": "[^"]*""#, "\"isolation\": \"[HOST]\""),
    ]
}

fn pin(name: &str, text: &str) {
    insta::with_settings!({ filters => filters(), prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(name, text);
    });
}

fn pin_json(name: &str, doc: &serde_json::Value) {
    let mut doc = doc.clone();
    unorder(&mut doc);
    insta::with_settings!({ filters => filters(), prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(name, doc);
    });
}

/// What depends on the machine, not on behaviour: which trials were slowest (kept as a set),
/// and the last bits of float sums.
fn unorder(doc: &mut serde_json::Value) {
    match doc {
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    serde_json::Value::Array(items) if key == "slowest" => {
                        items.sort_by_key(|v| v.to_string());
                    }
                    _ => unorder(value),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unorder),
        // Sums of costs over trials that end in any order differ in the last bits.
        serde_json::Value::Number(n) if n.is_f64() => {
            let x = (n.as_f64().unwrap_or(0.0) * 1e6).round() / 1e6;
            *doc = serde_json::json!(x);
        }
        _ => {}
    }
}

/// `--help` of every command and subcommand.
#[test]
fn help_of_every_command() {
    let sb = Sandbox::new();
    let commands: &[&[&str]] = &[
        &[],
        &["mine"],
        &["gate"],
        &["run"],
        &["eval"],
        &["traces"],
        &["traces", "show"],
        &["traces", "ls"],
        &["traces", "formats"],
        &["clusters"],
        &["cases"],
        &["report"],
        &["init"],
        &["doctor"],
        &["completions"],
    ];
    for args in commands {
        let mut full: Vec<&str> = args.to_vec();
        full.push("--help");
        let out = sb.run(&full);
        assert!(out.status.success(), "{}", transcript(&out));
        let name = if args.is_empty() { "help".to_string() } else { format!("help_{}", args.join("_")) };
        pin(&name, &String::from_utf8_lossy(&out.stdout));
    }
}

/// `mine`, `clusters`, `cases` and `report` on the bundled example, human and JSON.
#[test]
fn mine_clusters_cases_on_the_example() {
    let sb = crate::example::example_project();
    pin("mine_human", &transcript(&sb.run(&["mine", "examples/support-bot/traces", "--harness", "support-bot"])));
    pin("clusters_human", &transcript(&sb.run(&["clusters"])));
    pin_json("clusters_json", &sb.json(&["clusters"]));
    pin("cluster_one_human", &transcript(&sb.run(&["clusters", "k-9278df0f"])));
    pin_json("cluster_one_json", &sb.json(&["clusters", "k-9278df0f"]));
    pin("cases_human", &transcript(&sb.run(&["cases"])));
    pin_json("cases_json", &sb.json(&["cases"]));
    let again = crate::example::example_project();
    pin_json("mine_json", &again.json(&["mine", "examples/support-bot/traces", "--harness", "support-bot"]));
}

/// `eval` and `gate` on the deterministic harness: terminal, JSON, Markdown and JUnit.
#[test]
fn eval_and_gate_on_the_steady_harness() {
    let sb = steady();
    pin("eval_human", &transcript(&sb.run(&["eval", "--trials", "2"])));
    pin_json("eval_json", &sb.json(&["eval", "--trials", "2"]));
    let p = diff(&sb, "harnesses/steady/prompt.txt", "goodbye\n");
    sb.write("broken.patch", &p);
    let out = sb.run(&["gate", "broken.patch", "--markdown", "gate.md", "--junit", "gate.xml"]);
    pin("gate_fail_human", &transcript(&out));
    pin("gate_fail_markdown", &std::fs::read_to_string(sb.path().join("gate.md")).unwrap());
    pin("gate_fail_junit", &std::fs::read_to_string(sb.path().join("gate.xml")).unwrap());
    let out = sb.run(&["--json", "gate", "broken.patch"]);
    pin_json("gate_fail_json", &serde_json::from_slice(&out.stdout).unwrap());
    let p = diff(&sb, "harnesses/steady/run.sh", "# Prints the prompt (reworded comment).\ncat prompt.txt\n");
    sb.write("neutral.patch", &p);
    let out = sb.run(&["gate", "neutral.patch", "--markdown", "pass.md"]);
    pin("gate_pass_human", &transcript(&out));
    pin("gate_pass_markdown", &std::fs::read_to_string(sb.path().join("pass.md")).unwrap());
}

/// `run` on the bundled example and the `report` of it.
#[test]
fn run_and_report_on_the_example() {
    let sb = crate::example::example_project();
    let out = sb.run(&["run", "--traces", "examples/support-bot/traces", "--max-iterations", "1", "--candidates", "1"]);
    pin("run_human", &transcript(&out));
    pin("report_human", &transcript(&sb.run(&["report"])));
    let again = crate::example::example_project();
    let doc =
        again.json(&["run", "--traces", "examples/support-bot/traces", "--max-iterations", "1", "--candidates", "1"]);
    pin_json("run_json", &doc);
    pin_json("report_json", &again.json(&["report"]));
}

/// The main error messages: what happened, where, and what to do.
#[test]
fn main_error_messages() {
    let sb = steady();
    sb.write("evals/steady/k-s/c-bad.json", r#"{"input": "x", "chekcs": []}"#);
    let cases: &[(&str, &[&str])] = &[
        ("error_gate_missing_patch", &["gate", "nothing.patch"]),
        ("error_gate_folder", &["gate", "evals"]),
        ("error_mine_missing", &["mine", "no-such-folder"]),
        ("error_eval_bad_case", &["eval", "--trials", "1"]),
        ("error_cases_bad_case", &["cases"]),
        ("error_bad_flag", &["gate", "--alpha", "2", "x.patch"]),
        ("error_unknown_cluster", &["clusters", "k-nope"]),
        ("error_resume_nothing", &["run", "--resume"]),
    ];
    for (name, args) in cases {
        pin(name, &transcript(&sb.run(args)));
    }
}
