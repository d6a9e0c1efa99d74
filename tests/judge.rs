//! `mine --judge` replayed against a scripted OpenAI-compatible server on 127.0.0.1: fixed
//! answers by content, so the judged clusters, the quote check, the cache and the budget
//! stop are deterministic. The server counts requests and stops by itself.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::cli::Sandbox;

/// The scripted judge, keyed on the offline cause the request names: blocked access is a
/// guardrail; an invented value gets a fabricated quote (both times, so it must be
/// rejected); anything else is a plan-adherence failure. Genuine quotes are copied from the
/// trace text, as a good model would.
fn answer(user: &str) -> String {
    let steps = user.lines().find_map(|l| l.strip_prefix("Step ids: ")).unwrap_or("");
    let step = steps.split(", ").last().unwrap_or("");
    let cause = user.lines().find_map(|l| l.strip_prefix("Cause found offline: ")).unwrap_or("");
    let text = user.split("Trace text:\n").nth(1).unwrap_or("");
    let genuine: String = text.lines().next().unwrap_or("").chars().take(30).collect();
    if let Some(run) = user.split("Run text:\n").nth(1) {
        return rubric_answer(step, cause, run);
    }
    let (category, quote) = if cause.starts_with("verdict blocked access") {
        ("guardrails_triggered", genuine)
    } else if cause.starts_with("verdict invented value") {
        ("invented_information", "the final answer is 99999 exactly".to_string())
    } else {
        ("plan_adherence", genuine)
    };
    serde_json::json!({"category": category, "step": step, "quote": quote}).to_string()
}

/// The scripted rubric judge, keyed the same way: a run that asked the user met the rubric;
/// blocked access failed it as a guardrail; an invented value gets a fabricated quote (so it
/// is rejected); anything else failed it as plan adherence.
fn rubric_answer(step: &str, cause: &str, text: &str) -> String {
    let genuine: String = text.lines().next().unwrap_or("").chars().take(30).collect();
    let (met, category, quote) = if cause.starts_with("verdict asked user") {
        (true, "inconclusive", genuine)
    } else if cause.starts_with("verdict blocked access") {
        (false, "guardrails_triggered", genuine)
    } else if cause.starts_with("verdict invented value") {
        (false, "invented_information", "the final answer is 99999 exactly".to_string())
    } else {
        (false, "plan_adherence", genuine)
    };
    serde_json::json!({"met": met, "category": category, "step": step, "quote": quote}).to_string()
}

/// A request's body, read to its `content-length`.
fn read_request(s: &mut std::net::TcpStream) -> Option<Value> {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let body_start = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..body_start]).to_lowercase();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while buf.len() < body_start + len {
        let Ok(n) = s.read(&mut chunk) else { break };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(serde_json::from_slice(&buf[body_start..]).unwrap_or(Value::Null))
}

/// The text of the request's last message of `role`.
fn message_of<'a>(req: &'a Value, role: &str) -> &'a str {
    req["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == role))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
}

/// The scripted judge's reply: its answer as a chat completion with fixed usage.
fn scripted(req: &Value) -> (u16, String) {
    let body = serde_json::json!({
        "id": "x", "object": "chat.completion", "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer(message_of(req, "user"))}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}
    });
    (200, body.to_string())
}

/// Serves `reply(request body)` on 127.0.0.1 for at most `for_secs`, one connection at a
/// time; returns the base URL and the request counter.
fn serve(for_secs: u64, reply: impl Fn(&Value) -> (u16, String) + Send + 'static) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(for_secs);
        while Instant::now() < end {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    seen.fetch_add(1, Ordering::SeqCst);
                    let Some(req) = read_request(&mut s) else { continue };
                    let (status, body) = reply(&req);
                    let _ = s.write_all(
                        format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (format!("http://{addr}/v1"), count)
}

fn scripted_server(for_secs: u64) -> (String, Arc<AtomicUsize>) {
    serve(for_secs, scripted)
}

/// A project whose `[judge]` is the scripted server ($0.002 a request: 1000 tokens in at
/// $1/Mtok, 100 out at $10/Mtok), with the verdict-only fixtures under `traces/`.
fn project(url: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.write(
        "autoharness.toml",
        format!(
            "[judge]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"scripted\"\ninput_per_mtok = 1.0\noutput_per_mtok = 10.0\n"
        ),
    );
    crate::common::cli::copy_tree(&crate::common::fixture("verdict"), &sb.path().join("traces"));
    sb
}

fn signals(doc: &Value) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> = doc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["signature"].as_str().unwrap().split('|').nth(1).unwrap().to_string(),
                c["count"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn judged_clusters_follow_the_checked_judge_and_a_second_mine_asks_nothing() {
    let (url, requests) = scripted_server(120);
    let sb = project(&url);
    let first = sb.json(&["mine", "--no-cases", "--judge", "traces"]);
    let j = &first["summary"]["judge"];
    assert_eq!(j["taxonomy"], "agentrx-v2", "{j}");
    // Ten verdict-only failures: eight accepted at once; the two census runs' fabricated
    // quotes fail the check, are re-asked once, and are recorded as rejected.
    assert_eq!(
        (j["failures"].as_u64(), j["accepted"].as_u64(), j["rejected"].as_u64()),
        (Some(10), Some(8), Some(2)),
        "{j}"
    );
    assert_eq!(j["requests"].as_u64(), Some(12), "{j}");
    assert_eq!(requests.load(Ordering::SeqCst), 12);
    assert!((j["cost_usd"].as_f64().unwrap() - 12.0 * 0.002).abs() < 1e-9, "{j}");
    assert_eq!(j["cache_hits"].as_u64(), Some(0));
    // Clusters follow the judge: the three offline causes it calls plan adherence join; the
    // rejected ones keep their offline cause (nothing invented).
    assert_eq!(
        signals(&first),
        vec![
            ("verdict:invented_value".to_string(), 2),
            ("verdict:judge:guardrails_triggered".to_string(), 2),
            ("verdict:judge:plan_adherence".to_string(), 6),
        ]
    );
    // Same failures, new file contents: re-analysed, every judgement from the cache.
    for e in std::fs::read_dir(sb.path().join("traces")).unwrap() {
        let p = e.unwrap().path();
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push('\n');
        std::fs::write(&p, text).unwrap();
    }
    let second = sb.json(&["mine", "--no-cases", "--judge", "traces"]);
    let j = &second["summary"]["judge"];
    assert_eq!(second["summary"]["new_failures"].as_u64(), Some(10), "{}", second["summary"]);
    assert_eq!((j["cache_hits"].as_u64(), j["requests"].as_u64()), (Some(10), Some(0)), "{j}");
    assert_eq!(j["cache_hit_rate"].as_f64(), Some(1.0));
    assert_eq!(requests.load(Ordering::SeqCst), 12, "the second mine sent requests");
    assert_eq!(signals(&second), signals(&first));
}

/// A server that refuses `response_format: json_schema` as llama-cpp-python does (a 500
/// naming the field) and answers `json_object` like the scripted judge: after the first
/// refusal the mine asks in `json_object` directly, so twelve asks cost thirteen requests,
/// not twenty-four.
#[test]
fn a_server_that_refuses_json_schema_is_asked_in_json_object_after_the_first_refusal() {
    let refused = Arc::new(AtomicUsize::new(0));
    let seen = refused.clone();
    let (url, requests) = serve(120, move |req| {
        if req["response_format"]["type"] == "json_schema" {
            seen.fetch_add(1, Ordering::SeqCst);
            let message = "1 validation error: {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), \
                           'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}";
            let body = serde_json::json!({"error": {"message": message, "type": "internal_server_error"}});
            return (500, body.to_string());
        }
        scripted(req)
    });
    let sb = project(&url);
    let doc = sb.json(&["mine", "--no-cases", "--judge", "traces"]);
    let j = &doc["summary"]["judge"];
    // The same judgements as with a server that takes json_schema (the test above).
    assert_eq!(
        (j["accepted"].as_u64(), j["rejected"].as_u64(), j["requests"].as_u64()),
        (Some(8), Some(2), Some(12)),
        "{j}"
    );
    assert_eq!(
        (refused.load(Ordering::SeqCst), requests.load(Ordering::SeqCst)),
        (1, 13),
        "one refusal, then one request per ask"
    );
}

#[test]
fn the_judge_stops_asking_when_the_budget_is_spent_and_says_so() {
    let (url, requests) = scripted_server(120);
    let sb = project(&url);
    let out = sb.run(&["--json", "mine", "--no-cases", "--judge", "--budget-usd", "0.005", "traces"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let j = &doc["summary"]["judge"];
    let cost = j["cost_usd"].as_f64().unwrap();
    let sent = requests.load(Ordering::SeqCst);
    assert_eq!(j["budget_exhausted"], true, "{j}");
    // Asking stops at the first failure after the budget is reached: at most one failure
    // (two requests, a re-ask) past it.
    assert!((0.005..=0.005 + 2.0 * 0.002 + 1e-9).contains(&cost), "{j}");
    assert!(sent < 12 && j["requests"].as_u64() == Some(sent as u64), "{sent} {j}");
    assert!(j["unjudged"].as_u64().unwrap() > 0, "{j}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("budget") && stderr.contains("--budget-usd"), "{stderr}");
}

#[test]
fn judge_without_an_llm_says_which_section_to_set() {
    let sb = Sandbox::new();
    crate::common::cli::copy_tree(&crate::common::fixture("verdict"), &sb.path().join("traces"));
    let out = sb.run(&["mine", "--no-cases", "--judge", "traces"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--judge needs an LLM") && stderr.contains("[judge]"), "{stderr}");
}

/// The verdict fixtures with their verdicts taken out, under `unknown/`: traces whose outcome
/// is unknown, the same content as the recorded failures beside them.
fn add_unknown_outcome_traces(sb: &Sandbox) {
    let dir = sb.path().join("traces").join("unknown");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(crate::common::fixture("verdict")).unwrap() {
        let p = e.unwrap().path();
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("is_correct");
        // Another task (else their cases would be merged into the recorded ones' as duplicates).
        let q = format!("{} (production)", v["question"].as_str().unwrap());
        v["question"] = Value::String(q);
        std::fs::write(dir.join(p.file_name().unwrap()), serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }
}

fn set_rubric(sb: &Sandbox, url: &str, version: &str) {
    sb.write(
        "autoharness.toml",
        format!(
            "[judge]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"scripted\"\ninput_per_mtok = 1.0\noutput_per_mtok = 10.0\n\n[judge.rubric]\ncriteria = \"The agent answers the question itself, with values it was given.\"\nversion = \"{version}\"\n"
        ),
    );
}

fn outcome_sources(doc: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = doc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let signal = c["signature"].as_str().unwrap().split('|').nth(1).unwrap().to_string();
            (signal, c["outcome_source"].as_str().unwrap().to_string())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_rubric_judges_unknown_outcome_traces_apart_from_recorded_failures_cached_by_version() {
    let (url, requests) = scripted_server(180);
    let sb = project(&url);
    add_unknown_outcome_traces(&sb);
    set_rubric(&sb, &url, "v1");
    let first = sb.json(&["mine", "--judge", "traces"]);
    assert_eq!(first["summary"]["unknown"].as_u64(), Some(10), "{}", first["summary"]);
    let j = &first["summary"]["judge"];
    let r = &j["rubric"];
    assert_eq!(r["version"], "v1", "{j}");
    // Ten unknown-outcome traces: two met the rubric, six failed it, two fabricated quotes
    // were rejected twice (their outcome stays unknown).
    assert_eq!(
        [&r["traces"], &r["met"], &r["failed"], &r["rejected"], &r["unjudged"]].map(Value::as_u64),
        [Some(10), Some(2), Some(6), Some(2), Some(0)],
        "{j}"
    );
    // 12 requests for the recorded failures, 12 for the rubric (10 + 2 re-asks).
    assert_eq!(j["requests"].as_u64(), Some(24), "{j}");
    assert_eq!(first["summary"]["new_failures"].as_u64(), Some(16), "{}", first["summary"]);
    // Judged failures have clusters of their own, marked judged; recorded ones are not mixed in.
    assert_eq!(
        outcome_sources(&first),
        vec![
            ("rubric:guardrails_triggered".to_string(), "judged".to_string()),
            ("rubric:plan_adherence".to_string(), "judged".to_string()),
            ("verdict:invented_value".to_string(), "recorded".to_string()),
            ("verdict:judge:guardrails_triggered".to_string(), "recorded".to_string()),
            ("verdict:judge:plan_adherence".to_string(), "recorded".to_string()),
        ]
    );
    let mut judged_cases = 0;
    for c in first["clusters"].as_array().unwrap() {
        let judged = c["outcome_source"] == "judged";
        assert_eq!(judged, c["label"].as_str().unwrap().starts_with("judged against the rubric"), "{c}");
        for m in c["members"].as_array().unwrap() {
            assert_eq!(judged, m["file"].as_str().unwrap().contains("unknown"), "{c}");
        }
        // The case files say so too.
        for id in c["cases"].as_array().unwrap() {
            let path = sb.path().join("evals").join("default").join(c["id"].as_str().unwrap());
            let file = path.join(format!("{}.json", id.as_str().unwrap()));
            let case: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let source = &case["provenance"]["outcome_source"];
            assert_eq!(judged, source == "judged", "{}: {case}", file.display());
            assert!(judged || source.is_null(), "{case}");
            judged_cases += usize::from(judged);
        }
    }
    assert!(judged_cases > 0, "no case file of a judged cluster was written");
    let clusters = sb.json(&["clusters"]);
    assert_eq!(outcome_sources(&clusters), outcome_sources(&first));
    // Unchanged files and rubric: the unknown-outcome files are read again, nothing is asked.
    let second = sb.json(&["mine", "--judge", "traces"]);
    let j = &second["summary"]["judge"];
    assert_eq!((j["requests"].as_u64(), j["cache_hit_rate"].as_f64()), (Some(0), Some(1.0)), "{j}");
    assert_eq!(requests.load(Ordering::SeqCst), 24);
    assert_eq!(outcome_sources(&second), outcome_sources(&first));
    // A new rubric version judges the unknown-outcome traces again, and only them.
    set_rubric(&sb, &url, "v2");
    let third = sb.json(&["mine", "--judge", "traces"]);
    let j = &third["summary"]["judge"];
    assert_eq!((j["requests"].as_u64(), j["rubric"]["version"].as_str()), (Some(12), Some("v2")), "{j}");
}

#[test]
fn failures_stored_before_are_judged_on_request_and_only_once() {
    let (url, requests) = scripted_server(120);
    let sb = project(&url);
    let plain = sb.json(&["mine", "--no-cases", "traces"]);
    assert!(signals(&plain).iter().all(|(s, _)| !s.starts_with("verdict:judge:")), "{:?}", signals(&plain));
    // Nothing changed on disk: the stored failures are judged all the same.
    let judged = sb.json(&["mine", "--no-cases", "--judge", "traces"]);
    let j = &judged["summary"]["judge"];
    assert_eq!((j["failures"].as_u64(), j["requests"].as_u64()), (Some(10), Some(12)), "{j}");
    assert_eq!(
        signals(&judged),
        vec![
            ("verdict:invented_value".to_string(), 2),
            ("verdict:judge:guardrails_triggered".to_string(), 2),
            ("verdict:judge:plan_adherence".to_string(), 6),
        ]
    );
    assert_eq!(judged["summary"]["failures_total"].as_u64(), Some(10), "{}", judged["summary"]);
    // Once judged (accepted or rejected), a file is not read again for the judge.
    let again = sb.json(&["mine", "--no-cases", "--judge", "traces"]);
    let j = &again["summary"]["judge"];
    assert_eq!((j["failures"].as_u64(), j["requests"].as_u64()), (Some(0), Some(0)), "{j}");
    assert_eq!(again["summary"]["skipped_unchanged"].as_u64(), Some(10), "{}", again["summary"]);
    assert_eq!(requests.load(Ordering::SeqCst), 12);
    assert_eq!(signals(&again), signals(&judged));
}

// ---------------------------------------------------------------------------------------
// Recorded answers of the real model, replayed
// ---------------------------------------------------------------------------------------

/// Answers the real local model (`scripts/llm-server.sh`: SmolLM2-135M) gave to `mine
/// --judge` of `tests/fixtures/verdict`, with what that mine found; written by
/// `record_the_real_model_s_judge_answers`.
const RECORDING: &str = "judge-replay/smollm2-verdict.json";

/// What a judged mine came to, compared between the recording and its replays: the judge's
/// counts and usage, and every cluster (id, signature, label, members with their steps).
fn judged_result(doc: &Value) -> Value {
    let j = &doc["summary"]["judge"];
    let counts: Vec<&Value> =
        ["failures", "accepted", "rejected", "unjudged", "requests", "tokens"].map(|k| &j[k]).into();
    let mut clusters: Vec<Value> = doc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut members: Vec<Value> = c["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| serde_json::json!([m["trace_id"], m["step"]]))
                .collect();
            members.sort_by_key(Value::to_string);
            serde_json::json!({"id": c["id"], "signature": c["signature"], "label": c["label"], "members": members})
        })
        .collect();
    clusters.sort_by_key(|c| c["id"].to_string());
    serde_json::json!({"judge": counts, "cost_usd": j["cost_usd"], "clusters": clusters})
}

/// A project judging with `model` at `url`, priced as llm_e2e prices the real model, with
/// the verdict-only fixtures under `traces/`.
fn real_model_project(url: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.write(
        "autoharness.toml",
        format!(
            "[judge]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"smollm2\"\ntimeout = \"600s\"\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n"
        ),
    );
    crate::common::cli::copy_tree(&crate::common::fixture("verdict"), &sb.path().join("traces"));
    sb
}

/// The real model's answers replayed by request: the same failures judged in two fresh
/// stores give exactly the clusters, steps, labels, counts and cost the live mine gave, and
/// a re-mine of changed files asks nothing. A request the recording does not hold (a prompt
/// or taxonomy change) is refused with 404 and fails the test: record again.
#[test]
fn recorded_answers_of_the_real_model_replay_to_the_clusters_it_gave() {
    let rec: Value =
        serde_json::from_str(&std::fs::read_to_string(crate::common::fixture(RECORDING)).unwrap()).unwrap();
    let answers: std::collections::HashMap<String, (u16, Value)> = rec["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["request"].to_string(), (e["status"].as_u64().unwrap() as u16, e["response"].clone())))
        .collect();
    let misses = Arc::new(AtomicUsize::new(0));
    let missed = misses.clone();
    let (url, requests) = serve(300, move |req| match answers.get(&exchange_key(req).to_string()) {
        Some((status, body)) => (*status, body.to_string()),
        None => {
            missed.fetch_add(1, Ordering::SeqCst);
            (404, r#"{"error": "not in the recording"}"#.into())
        }
    });
    let want = &rec["result"];
    assert!(
        want["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["signature"].as_str().unwrap().contains("|verdict:judge:")),
        "the recording holds no accepted answer: it shows nothing of the judge's effect on clusters"
    );
    for store in ["first store", "second store"] {
        let sb = real_model_project(&url);
        let doc = sb.json(&["mine", "--no-cases", "--judge", "traces"]);
        assert_eq!(misses.load(Ordering::SeqCst), 0, "{store}: a request the recording does not hold; record again");
        assert_eq!(&judged_result(&doc), want, "{store}: replayed answers gave other clusters");
        if store == "second store" {
            for e in std::fs::read_dir(sb.path().join("traces")).unwrap() {
                let p = e.unwrap().path();
                let text = std::fs::read_to_string(&p).unwrap() + "\n";
                std::fs::write(&p, text).unwrap();
            }
            let sent = requests.load(Ordering::SeqCst);
            let again = sb.json(&["mine", "--no-cases", "--judge", "traces"]);
            let j = &again["summary"]["judge"];
            assert_eq!((j["cache_hit_rate"].as_f64(), j["requests"].as_u64()), (Some(1.0), Some(0)), "{j}");
            assert_eq!(requests.load(Ordering::SeqCst), sent, "the cached re-mine reached the server");
            assert_eq!(judged_result(&again)["clusters"], want["clusters"]);
        }
    }
}

/// What identifies a request in the recording: its messages and the answer format asked
/// for (llama-cpp-python refuses `json_schema` with a 400, then gets `json_object`: both
/// exchanges are recorded and replayed).
fn exchange_key(req: &Value) -> Value {
    serde_json::json!({"messages": req["messages"], "format": req["response_format"]["type"]})
}

/// Writes the recording the test above replays: run with the real server's URL,
/// `AUTOHARNESS_LLM_URL=… cargo test --locked --test main record_the_real_model -- --ignored`.
/// A proxy on 127.0.0.1 passes each request to the real server (through curl) and keeps
/// the exchange; the mine's result is stored beside them.
#[test]
#[ignore = "writes tests/fixtures/judge-replay from the real local LLM server; run by hand"]
fn record_the_real_model_s_judge_answers() {
    let real = std::env::var("AUTOHARNESS_LLM_URL").expect("AUTOHARNESS_LLM_URL: start scripts/llm-server.sh");
    let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = kept.clone();
    let (url, _) = serve(3600, move |req| {
        let mut curl = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "600", "-H", "content-type: application/json", "--data-binary", "@-"])
            .args(["-w", "\n%{http_code}"])
            .arg(format!("{real}/chat/completions"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("curl");
        curl.stdin.take().unwrap().write_all(req.to_string().as_bytes()).unwrap();
        let out = String::from_utf8(curl.wait_with_output().unwrap().stdout).unwrap();
        let (body, status) = out.rsplit_once('\n').expect("curl prints the status last");
        let status: u16 = status.trim().parse().expect("an HTTP status");
        let body: Value = serde_json::from_str(body).expect("the real server's answer is JSON");
        keep.lock()
            .unwrap()
            .push(serde_json::json!({"request": exchange_key(req), "status": status, "response": body}));
        (status, body.to_string())
    });
    let sb = real_model_project(&url);
    let doc = sb.json(&["mine", "--no-cases", "--judge", "traces"]);
    let recording = serde_json::json!({
        "about": "SmolLM2-135M-Instruct (Q4_1, llama-cpp-python; scripts/llm-server.sh) judging tests/fixtures/verdict; \
                  replayed by tests/judge.rs::recorded_answers_of_the_real_model_replay_to_the_clusters_it_gave",
        "exchanges": *kept.lock().unwrap(),
        "result": judged_result(&doc),
    });
    let path = crate::common::fixture(RECORDING);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(&recording).unwrap() + "\n").unwrap();
}
