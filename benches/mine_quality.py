#!/usr/bin/env python3
"""Score `autoharness mine` against the human labels in ../shared, side by side with the
Python baseline of ../shared/bench/mining, on the same data in the same run.

    python3 benches/mine_quality.py [--bin target/release/autoharness] [--python /tmp/benchvenv/bin/python]

Prints, per labelled set: ARI (95% CI), AMI, purity/inverse purity, V-measure, the number of
clusters against the number of gold classes, and the permutation null (p, and the 95th
percentile of ARI under random labels with the same cluster sizes) for autoharness and for the
baseline; the same over verdict-only failures (runs that raised no error: their signal is
`verdict:*`); failure detection P/R/F1 against tau-bench rewards; decisive-step and agent
localisation on Who&When next to the published all-at-once LLM figures and a random pick.

Tuned on: Who&When and AgentRx (the patterns of `src/mine/verdict.rs` were checked there).
Checked on: TRAIL and MAST, reported in their own sections.
Labels never reach the tool: it only sees the trace files.

With `--judge-url URL` (an OpenAI-compatible server, e.g. `scripts/llm-server.sh start`),
also `mine --judge` on AgentRx and Who&When: how often the judge's category is AgentRx's
root-cause category, the agent and step accuracy of the judge's step on Who&When, what it
cost (priced at --judge-price-in/--judge-price-out dollars per million tokens), and the
cache hit rate of a second mine of the same runs copied to another folder (same store).
The judge's prompt was not tuned on either set.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared"))
BENCH = os.path.join(SHARED, "bench", "mining")
DATA = os.path.join(SHARED, "datasets")


def mine(bin_, paths, extra=()):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [bin_, "--db", os.path.join(tmp, "s.db"), "--json", "-q", "mine", "--no-cases", *extra, *paths]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=tmp).stdout
    return json.loads(out)


def mine_judged(a, path):
    """`mine --judge` of `path`, then of a copy of it in another folder against the same
    store: the copy's failures have the same content, so the cache should answer them all."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "autoharness.toml"), "w") as f:
            f.write(f'[judge]\nprovider = "openai"\nbase_url = "{a.judge_url}"\nmodel = "{a.judge_model}"\n'
                    f'timeout = "300s"\ninput_per_mtok = {a.judge_price_in}\noutput_per_mtok = {a.judge_price_out}\n')
        copy = os.path.join(tmp, "copy", os.path.basename(path))
        os.makedirs(os.path.dirname(copy))
        (shutil.copytree if os.path.isdir(path) else shutil.copy2)(path, copy)
        cmd = [a.bin, "--db", os.path.join(tmp, "s.db"), "--json", "-q", "mine", "--no-cases", "--judge"]
        first = json.loads(subprocess.run(cmd + [path], check=True, capture_output=True, text=True, cwd=tmp).stdout)
        second = json.loads(subprocess.run(cmd + [copy], check=True, capture_output=True, text=True, cwd=tmp).stdout)
    return first, second


def judge_costs(first, second):
    j, k = first["summary"]["judge"], second["summary"]["judge"]
    return (f"judged={j['failures']} accepted={j['accepted']} rejected={j['rejected']} unjudged={j['unjudged']}"
            f" requests={j['requests']} tokens={j['tokens']} cost=${j['cost_usd']:.4f}"
            f" | second mine (copy): failures={k['failures']} cache_hit_rate={k['cache_hit_rate']:.3f}"
            f" requests={k['requests']}")


# AgentRx's category names → the judge's slugs (src/mine/judge.rs CATEGORIES).
AGENTRX_SLUGS = {
    "instruction adherence failure": "plan_adherence", "plan adherence failure": "plan_adherence",
    "invention of new information": "invented_information", "invalid invocation": "invalid_invocation",
    "misinterpretation of tool output": "misinterpreted_tool_output",
    "intent plan misalignment": "intent_plan_misalignment", "underspecified user intent": "underspecified_intent",
    "intent not supported": "intent_not_supported", "guardrails triggered": "guardrails_triggered",
    "system failure": "system_failure", "inconclusive": "inconclusive",
}


def judged_members(doc):
    """(member, category) of every failure whose signature the judge set."""
    for c in doc["clusters"]:
        sig = c["signature"].split("|")[1]
        if sig.startswith("verdict:judge:"):
            for m in c["members"]:
                yield m, sig[len("verdict:judge:"):]


def judge_agentrx(a, rx):
    first, second = mine_judged(a, rx)
    gold = {}
    for g in json.load(open(os.path.join(DATA, "agentrx-tau-retail", "tau_ground_truth.json"))):
        root = [f for f in g["failures"] if f["failure_id"] == g["root_cause"]["failure_id"]]
        if root:
            gold[g["trajectory_id"]] = AGENTRX_SLUGS.get(root[0]["failure_category"].lower(), "?")
    n_fail = sum(len(c["members"]) for c in first["clusters"])
    hits = n = 0
    for m, cat in judged_members(first):
        task = int(m["id"].split("#task-")[1].split("/")[0])
        if task in gold:
            n += 1
            hits += cat == gold[task]
    top = max(set(gold.values()), key=list(gold.values()).count) if gold else "-"
    major = list(gold.values()).count(top) / len(gold) if gold else 0.0
    print(f"  judge: {judge_costs(first, second)}")
    print(f"  judge category = AgentRx root-cause category: {hits}/{n} judged"
          f" ({hits / n if n else float('nan'):.3f}); {hits}/{n_fail} of all failures"
          f" | majority class ({top}) {major:.3f}, random 1/10 = 0.100")


def judge_who_and_when(a, ww):
    first, second = mine_judged(a, ww)
    step_hits = agent_hits = n = 0
    for m, _ in judged_members(first):
        sub = "Hand-Crafted" if "Hand-Crafted" in m["file"] else "Algorithm-Generated"
        run = json.load(open(os.path.join(ww, sub, os.path.basename(m["file"]))))
        if run.get("mistake_step") is None or not m["step"] or not m["step"].startswith("msg:"):
            continue
        n += 1
        pred = int(m["step"][4:])
        hist = run.get("history", [])
        step_hits += pred == int(run["mistake_step"])
        said = hist[pred] if pred < len(hist) else {}
        who = (said.get("name") or said.get("role") or "").lower()
        agent_hits += bool(run.get("mistake_agent")) and run["mistake_agent"].lower() in who
    n_fail = sum(len(c["members"]) for c in first["clusters"])
    print(f"  judge: {judge_costs(first, second)}")
    print(f"  judge's step on Who&When: n={n} judged of {n_fail} failures:"
          f" step exact={step_hits / n if n else float('nan'):.3f} agent={agent_hits / n if n else float('nan'):.3f}"
          " (offline and random above; published all-at-once LLM: agent ~0.54 step ~0.14)")


def mapping(doc, verdict_only=False):
    """Member → cluster; with `verdict_only`, only failures that raised nothing."""
    return {m["id"]: c["id"] for c in doc["clusters"] for m in c["members"]
            if not verdict_only or c["signature"].split("|")[1].startswith("verdict:")}


def verdict_line(py, doc, dataset, label_view=None):
    m = mapping(doc, verdict_only=True)
    if len(m) < 2:
        return f"{len(m)} verdict-only failures"
    return fmt(score(py, m, dataset, label_view))


def score(py, pred, dataset, label_view=None):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(pred, f)
    cmd = [py, os.path.join(BENCH, "score_clusters.py"), f.name, "--dataset", dataset, "--json"]
    if label_view:
        cmd += ["--trail-label", label_view]
    r = subprocess.run(cmd, capture_output=True, text=True)
    os.unlink(f.name)
    if r.returncode != 0:
        return {"error": r.stderr.strip()[-300:]}
    return json.loads(r.stdout)


def baseline(py, path, extra=()):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "b.json")
        subprocess.run([py, os.path.join(BENCH, "baseline_mine.py"), path, "-o", out, *extra], check=True,
                       capture_output=True)
        return json.load(open(out))


def fmt(r):
    if "error" in r:
        return "error: " + r["error"]
    def g(*keys):
        for k in keys:
            if k in r:
                return r[k]
        return None
    ari = g("ari")
    ci = g("ari_ci", "ari_ci95")
    out = f"n={g('matched', 'n')} clusters={g('k_pred')} (gold classes {g('k_gold')}) ARI={ari:.3f}" if isinstance(ari, (int, float)) else json.dumps(r)[:300]
    if ci:
        out += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    for k in ("ari_penalized", "ami", "purity", "inverse_purity", "v_measure", "perm_p", "ari_perm_p", "ari_null_p95"):
        v = r.get(k)
        if isinstance(v, (int, float)):
            out += f" {k}={v:.3f}"
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "autoharness"))
    ap.add_argument("--python", default=os.environ.get("BENCH_PYTHON", "/tmp/benchvenv/bin/python"))
    ap.add_argument("--judge-url", help="an OpenAI-compatible server: also score `mine --judge`")
    ap.add_argument("--judge-model", default="smollm2")
    ap.add_argument("--judge-price-in", type=float, default=1.0, help="dollars per million input tokens")
    ap.add_argument("--judge-price-out", type=float, default=2.0, help="dollars per million output tokens")
    ap.add_argument("--judge-only", action="store_true", help="only the --judge figures")
    a = ap.parse_args()
    if not os.path.isdir(DATA):
        print(f"SKIPPED: {DATA} not found")
        return
    py = a.python
    rx = os.path.join(DATA, "agentrx-tau-retail", "tau_dataset_failed.json")
    trail = os.path.join(DATA, "trail", "data")
    ww = os.path.join(DATA, "who-and-when")

    if a.judge_url:
        print(f"== mine --judge ({a.judge_model} at {a.judge_url}; AgentRx and Who&When, prompt not tuned on them)")
        print(" AgentRx tau-retail:")
        judge_agentrx(a, rx)
        print(" Who&When:")
        judge_who_and_when(a, ww)
        if a.judge_only:
            return

    print("== AgentRx tau-retail root causes (29 failed runs)")
    d = mine(a.bin, [rx])
    print("  autoharness :", fmt(score(py, mapping(d), "agentrx-tau")))
    print("  baseline    :", fmt(score(py, baseline(py, rx), "agentrx-tau")))
    print("  verdict-only:", verdict_line(py, d, "agentrx-tau"))
    # Localisation: the root-cause failure's step_number is the 1-based `index` of the
    # message in `traj` (system = 1); the tool's steps are 0-based message positions.
    gold = {}
    for g in json.load(open(os.path.join(DATA, "agentrx-tau-retail", "tau_ground_truth.json"))):
        root = [f for f in g["failures"] if f["failure_id"] == g["root_cause"]["failure_id"]]
        if root:
            gold[g["trajectory_id"]] = root[0]["step_number"]
    exact = near = n = 0
    for c in d["clusters"]:
        for m in c["members"]:
            task = int(m["id"].split("#task-")[1].split("/")[0])
            if task not in gold:
                continue
            n += 1
            if m["step"] and m["step"].startswith("msg:"):
                diff = int(m["step"][4:]) + 1 - gold[task]
                exact += diff == 0
                near += abs(diff) <= 3
    if n:
        print(f"  root-cause step: n={n} exact={exact / n:.3f} within±3={near / n:.3f}")

    print("== TRAIL primary_category (every trace assumed failed)")
    d = mine(a.bin, [trail], ["--assume-failed"])
    print("  autoharness :", fmt(score(py, mapping(d), "trail")))
    print("  verdict-only:", verdict_line(py, d, "trail"))
    print("  baseline    :", fmt(score(py, baseline(py, trail, ["--assume-failed"]), "trail")))
    print("== TRAIL primary_category (failures the tool detects itself)")
    print("  autoharness :", fmt(score(py, mapping(mine(a.bin, [trail])), "trail")))
    print("  baseline    :", fmt(score(py, baseline(py, trail), "trail")))

    print("== Failure detection vs tau-bench rewards")
    for name, path in [("tau-bench-historical airline", os.path.join(DATA, "tau-bench-historical", "gpt-4o-airline.json")),
                       ("agentrx tau_dataset_full", os.path.join(DATA, "agentrx-tau-retail", "tau_dataset_full.json"))]:
        show = json.loads(subprocess.run([a.bin, "--json", "traces", "show", path], check=True, capture_output=True,
                                         text=True).stdout)
        raw = json.load(open(path))
        tp = fp = fn = tn = 0
        for t, r in zip(show["traces"], raw):
            truth = float(r.get("reward", 0)) < 1.0
            pred = t["outcome"] == "failed"
            tp += truth and pred; fp += pred and not truth; fn += truth and not pred; tn += not truth and not pred
        p = tp / (tp + fp) if tp + fp else 0.0
        rc = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * p * rc / (p + rc) if p + rc else 0.0
        print(f"  {name}: n={len(raw)} P={p:.3f} R={rc:.3f} F1={f1:.3f} (tp={tp} fp={fp} fn={fn} tn={tn})")

    who_and_when(a, py, ww)
    mast(a)


def who_and_when(a, py, ww):
    print("== Who&When: decisive-step localisation vs mistake_step / mistake_agent")
    d = mine(a.bin, [ww])
    steps = {m["file"]: m["step"] for c in d["clusters"] for m in c["members"]}
    tot = [0, 0, 0, 0, 0.0, 0.0]
    for sub in ("Algorithm-Generated", "Hand-Crafted"):
        folder = os.path.join(ww, sub)
        exact = near = agent = n = 0
        rand_step = rand_agent = 0.0
        for name in os.listdir(folder):
            if not name.endswith(".json"):
                continue
            run = json.load(open(os.path.join(folder, name)))
            gold = run.get("mistake_step")
            key = next((k for k in steps if k.endswith(f"{sub}/{name}")), None)
            n += 1
            # Random: a step uniformly, an agent uniformly among those that spoke.
            hist = run.get("history", [])
            speakers = {(h.get("name") or h.get("role") or "").lower() for h in hist} - {""}
            rand_step += 1 / max(1, len(hist))
            rand_agent += (run.get("mistake_agent", "").lower() in speakers) / max(1, len(speakers))
            if gold is None or key is None or steps[key] is None:
                continue
            pred = int(str(steps[key]).split(":")[-1])
            g = int(gold)
            exact += pred == g
            near += abs(pred - g) <= 3
            # The agent that spoke at the predicted step (`name`, or `role` in Hand-Crafted).
            said = hist[pred] if pred < len(hist) else {}
            who = (said.get("name") or said.get("role") or "").lower()
            agent += bool(run.get("mistake_agent")) and run["mistake_agent"].lower() in who
        print(f"  {sub}: n={n} step exact={exact / n:.3f} within±3={near / n:.3f} agent={agent / n:.3f}"
              f" | random step={rand_step / n:.3f} agent={rand_agent / n:.3f}")
        tot = [tot[0] + n, tot[1] + exact, tot[2] + near, tot[3] + agent, tot[4] + rand_step, tot[5] + rand_agent]
    n = tot[0]
    print(f"  all: n={n} step exact={tot[1] / n:.3f} within±3={tot[2] / n:.3f} agent={tot[3] / n:.3f}"
          f" | random step={tot[4] / n:.3f} agent={tot[5] / n:.3f}"
          " | published all-at-once LLM (strongest, Who&When paper): agent ~0.54 step ~0.14")
    print("  agent clustering:", fmt(score(py, mapping(d), "who-and-when")))
    print("  verdict-only    :", verdict_line(py, d, "who-and-when"))
    causes = {}
    for c in d["clusters"]:
        sig = c["signature"].split("|")[1]
        causes[sig] = causes.get(sig, 0) + c["count"]
    print("  signals:", ", ".join(f"{k}={v}" for k, v in sorted(causes.items(), key=lambda x: -x[1])))


def mast(a):
    """MAST (checked on, never tuned on): 19 multi-agent logs, multi-label failure modes by
    three annotators. Too small for ARI; reported: clusters vs the distinct majority modes,
    and how often two traces put together share a majority mode, against all pairs."""
    path = os.path.join(DATA, "mast-mad-human", "MAD_human_labelled_dataset.json")
    if not os.path.exists(path):
        print("== MAST: SKIPPED (not found)")
        return
    print("== MAST (human-labelled MAD, every trace assumed failed; checked on, not tuned on)")
    d = mine(a.bin, [path], ["--assume-failed"])
    text = open(path).read().replace("NaN", "null")
    modes = {}
    for r in json.loads(text):
        got = set()
        for ann in r["annotations"]:
            votes = sum(bool(ann.get(f"annotator_{k}")) for k in (1, 2, 3))
            if votes >= 2:
                # Names, not numbers: the numbering changed between rounds.
                got.add(ann["failure mode"].split(" ", 1)[-1].strip().lower())
        modes[r["trace_id"]] = got
    pred = {}
    for c in d["clusters"]:
        for m in c["members"]:
            tid = m["trace_id"].split("=")[-1].split("-")[-1]
            if tid.isdigit() and int(tid) in modes:
                pred[int(tid)] = c["id"]
    ids = sorted(pred)
    share = lambda i, j: bool(modes[i] & modes[j])
    pairs = [(i, j) for x, i in enumerate(ids) for j in ids[x + 1:]]
    same = [p for p in pairs if pred[p[0]] == pred[p[1]]]
    base = sum(share(*p) for p in pairs) / len(pairs) if pairs else 0.0
    prec = sum(share(*p) for p in same) / len(same) if same else float("nan")
    print(f"  n={len(ids)} of {len(modes)} clusters={len(set(pred.values()))}"
          f" distinct majority modes={len(set().union(*modes.values()))}"
          f" same-cluster pairs sharing a mode={prec:.3f} (all pairs: {base:.3f})")


if __name__ == "__main__":
    main()
