#!/usr/bin/env python3
"""The knobs proposer of `autoharness run` against an exhaustive search over the same knobs.

On the bundled example (harnesses/support-bot, evals/support-bot):

1. Exhaustive: every combination of the manifest's [[knobs]] (4 x 3 x 4 x 4 = 192) is
   written into config.toml of a private copy of the harness and scored by running the
   agent directly with the trial protocol (AUTOHARNESS_INPUT / _SEED / _TRIAL /
   _TRACE_OUT / _RESULT, cwd = the copy) on every train case x seeds 0..S-1. A trial
   passes when the agent exits 0 (what the cases' `no_error` check needs; exit 0 means no
   unhandled error, so `not_signature` holds too). The agent depends only on (input, seed,
   config, prompt), so cases with the same input are run once and counted for each case
   (`--no-dedupe` runs them all).
2. `autoharness run --traces examples/support-bot/traces --max-iterations N --json` in a
   temp copy of the project with its own --db, timed; the accepted patches
   (<run_dir>/accepted.patch) are applied to a copy of config.toml and that configuration
   is looked up in (scored by) the same table as 1.
3. A side-by-side table.

    python3 benches/knobs_search.py [--seeds S] [--refine-seeds K] [--jobs 2] [--max-iterations 5] [--skip-run]

The grid uses seeds 0..S-1 (default 1: 192 x 15 distinct inputs = 2880 agent runs, ~6 min
on two busy cores); then the grid's best configurations, production and the run's final
configuration are re-scored on seeds 0..K-1 (default 5), so the comparison does not rest
on one seed.

AUTOHARNESS_BIN names the binary (default target/release/autoharness). Stdlib only.
Run it under `nice` on a shared machine; nothing in the repository is written.
"""

import argparse
import concurrent.futures as cf
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HARNESS = "support-bot"


# ------------------------------------------------------------------------------------------
# config.toml edits (line-based, comments kept, like autoharness's knob edits)


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v)


def set_key(text, dotted, value):
    section, _, key = dotted.rpartition(".")
    out, cur, done = [], "", False
    for line in text.splitlines(keepends=True):
        m = re.match(r"\s*\[([^\]]+)\]\s*(#.*)?$", line)
        if m:
            cur = m.group(1).strip()
        elif cur == section and not done:
            m = re.match(r"(\s*" + re.escape(key) + r"\s*=\s*)(\"[^\"]*\"|[^\s#]+)(.*)$", line, re.S)
            if m:
                line = m.group(1) + toml_value(value) + m.group(3)
                done = True
        out.append(line)
    if not done:
        raise ValueError(f"config key {dotted} not found")
    return "".join(out)


def get_key(cfg, dotted):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def apply_unified_diff(text, diff, path="config.toml"):
    """Apply the hunks of `diff` touching `path` to `text` (exact context match, in order)."""
    hunks, cur, in_file = [], None, False
    for line in diff.splitlines():
        if line.startswith("+++ "):
            in_file = line[4:].strip().split("/", 1)[-1] == path
            continue
        if line.startswith("--- ") or line.startswith("diff "):
            continue
        if line.startswith("@@"):
            cur = ([], []) if in_file else None
            if cur is not None:
                hunks.append(cur)
            continue
        if cur is None:
            continue
        tag, body = line[:1], line[1:]
        if tag in (" ", ""):
            cur[0].append(body)
            cur[1].append(body)
        elif tag == "-":
            cur[0].append(body)
        elif tag == "+":
            cur[1].append(body)
    lines = text.split("\n")
    for old, new in hunks:
        for i in range(len(lines) - len(old) + 1):
            if lines[i:i + len(old)] == old:
                lines[i:i + len(old)] = new
                break
        else:
            raise ValueError("a hunk of the accepted patch does not apply:\n" + "\n".join(old))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# 1. exhaustive search


def load_cases():
    cases = []
    for f in sorted((REPO / "evals" / HARNESS).rglob("*.json")):
        d = json.loads(f.read_text(encoding="utf-8"))
        if d.get("schema") == "autoharness.case/v1" and d.get("split") == "train":
            cases.append(d)
    return cases


def run_trial(root, input_file, seed, io_dir, timeout):
    trace = io_dir / f"t-{os.getpid()}-{time.monotonic_ns()}.json"
    result = trace.with_suffix(".result.json")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(io_dir), "LANG": "C.UTF-8",
           "AUTOHARNESS_INPUT": str(input_file), "AUTOHARNESS_SEED": str(seed),
           "AUTOHARNESS_TRIAL": str(seed), "AUTOHARNESS_TRACE_OUT": str(trace),
           "AUTOHARNESS_RESULT": str(result)}
    try:
        p = subprocess.run(["python3", "agent.py"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        rc = -1
    for f in (trace, result):
        try:
            f.unlink()
        except FileNotFoundError:
            pass
    return rc


def exhaustive(args, work):
    manifest = tomllib.loads((REPO / "harnesses" / HARNESS / "harness.toml").read_text())
    knobs = [(k["key"], k["values"]) for k in manifest["knobs"]]
    assert all(k["file"] == "config.toml" for k in manifest["knobs"])
    timeout = float(re.sub(r"s$", "", str(manifest.get("timeout", "20s"))))
    base_text = (REPO / "harnesses" / HARNESS / "config.toml").read_text()
    base_cfg = tomllib.loads(base_text)
    production = tuple(get_key(base_cfg, k) for k, _ in knobs)

    cases = load_cases()
    io_dir = work / "io"
    io_dir.mkdir()
    inputs = {}  # canonical input -> (file, [case ids])
    for c in cases:
        key = json.dumps(c["input"], sort_keys=True) if not args.no_dedupe else c["id"]
        if key not in inputs:
            f = io_dir / f"input-{len(inputs)}.json"
            f.write_text(json.dumps(c["input"], indent=2, ensure_ascii=False), encoding="utf-8")
            inputs[key] = (f, [])
        inputs[key][1].append(c["id"])

    combos = list(itertools.product(*[v for _, v in knobs]))
    roots = {}
    src = REPO / "harnesses" / HARNESS
    for i, combo in enumerate(combos):
        root = work / "grid" / f"{i:03d}"
        shutil.copytree(src, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        text = base_text
        for (k, _), v in zip(knobs, combo):
            text = set_key(text, k, v)
        (root / "config.toml").write_text(text)
        got = tomllib.loads(text)
        assert tuple(get_key(got, k) for k, _ in knobs) == combo, combo
        roots[combo] = root

    seeds = range(args.seeds)
    jobs = [(combo, key, s) for combo in combos for key in inputs for s in seeds]
    print(f"exhaustive: {len(combos)} combinations x {len(cases)} train cases ({len(inputs)} distinct inputs)"
          f" x {args.seeds} seeds = {len(combos) * len(cases) * args.seeds} trials, "
          f"{len(jobs)} agent runs, {args.jobs} workers", file=sys.stderr)
    t0 = time.monotonic()
    rc = {}
    with cf.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futs = {pool.submit(run_trial, roots[c], inputs[k][0], s, io_dir, timeout): (c, k, s) for c, k, s in jobs}
        for n, fut in enumerate(cf.as_completed(futs), 1):
            rc[futs[fut]] = fut.result()
            if n % 500 == 0:
                el = time.monotonic() - t0
                print(f"  {n}/{len(jobs)} runs, {el:.0f}s, ~{el / n * (len(jobs) - n):.0f}s left", file=sys.stderr)
    wall = time.monotonic() - t0
    bad = sorted({v for v in rc.values() if v not in (0, 1)})
    if bad:
        print(f"warning: agent exit codes other than 0/1: {bad}", file=sys.stderr)

    scores, per_case = {}, {}
    for combo in combos:
        total = 0
        for key, (_, ids) in inputs.items():
            p = sum(rc[(combo, key, s)] == 0 for s in seeds)
            for cid in ids:
                per_case[(combo, cid)] = p
            total += p * len(ids)
        scores[combo] = total
    return {"knobs": knobs, "combos": combos, "scores": scores, "per_case": per_case, "cases": cases,
            "production": production, "trials": len(combos) * len(cases) * args.seeds, "runs": len(jobs),
            "wall": wall, "base_text": base_text, "max": len(cases) * args.seeds, "rc": rc, "roots": roots,
            "inputs": inputs, "io_dir": io_dir, "timeout": timeout}


def refine(args, ex, configs):
    """Re-score a few configurations on seeds 0..refine_seeds-1 (reusing the grid's seeds)."""
    seeds = range(args.refine_seeds)
    jobs = [(c, k, s) for c in configs for k in ex["inputs"] for s in seeds if (c, k, s) not in ex["rc"]]
    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futs = {pool.submit(run_trial, ex["roots"][c], ex["inputs"][k][0], s, ex["io_dir"], ex["timeout"]): (c, k, s)
                for c, k, s in jobs}
        for fut in cf.as_completed(futs):
            ex["rc"][futs[fut]] = fut.result()
    out = {}
    for c in configs:
        out[c] = sum(len(ids) * sum(ex["rc"][(c, k, s)] == 0 for s in seeds) for k, (_, ids) in ex["inputs"].items())
    return out, len(jobs), time.monotonic() - t0


# ------------------------------------------------------------------------------------------
# 2. autoharness run


def autoharness_run(args, work, ex):
    binary = Path(os.environ.get("AUTOHARNESS_BIN", "target/release/autoharness"))
    if not binary.is_absolute():
        binary = (Path.cwd() / binary) if (Path.cwd() / binary).exists() else REPO / binary
    if not binary.exists():
        sys.exit(f"no autoharness binary at {binary} (set AUTOHARNESS_BIN)")
    proj = work / "project"
    for d in ("harnesses", "evals", "examples"):
        shutil.copytree(REPO / d, proj / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    db = proj / "state.db"
    cmd = [str(binary), "--db", str(db), "--json", "run", "--traces", "examples/support-bot/traces",
           "--max-iterations", str(args.max_iterations)]
    print("run: " + " ".join(cmd) + f"  (cwd {proj})", file=sys.stderr)
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=proj, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"autoharness run exited {p.returncode}:\n{p.stderr[-3000:]}")
    summary = json.loads(p.stdout)
    run_dir = Path(summary["run_dir"])
    text = ex["base_text"]
    patch = run_dir / "accepted.patch"
    if patch.exists():
        text = apply_unified_diff(text, patch.read_text())
    cfg = tomllib.loads(text)
    final = tuple(get_key(cfg, k) for k, _ in ex["knobs"])
    # the iteration that reached the final configuration (the last accepted one)
    reached = max([it["iteration"] for it in summary["iterations"] if it.get("accepted")], default=0)
    stored = None
    try:
        import sqlite3
        with sqlite3.connect(db) as c:
            stored = c.execute("SELECT count(*) FROM trials").fetchone()[0]
    except Exception:  # noqa: BLE001
        pass
    if final not in ex["scores"]:
        sys.exit(f"the run ended outside the knob grid: {final}")
    return {"summary": summary, "final": final, "wall": wall, "reached": reached, "stored_trials": stored,
            "cmd": cmd}


# ------------------------------------------------------------------------------------------
# 3. report


def fmt(combo, knobs):
    return ", ".join(f"{k.split('.')[-1]}={json.dumps(v)}" for (k, _), v in zip(knobs, combo))


def report(args, ex, run, refined=None):
    knobs, scores, mx = ex["knobs"], ex["scores"], ex["max"]
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    best = ranked[0][1]
    bests = [c for c, s in ranked if s == best]

    def rank(combo):
        return 1 + sum(1 for s in scores.values() if s > scores[combo])

    def pct(s):
        return f"{s}/{mx} ({100 * s / mx:.1f}%)"

    print(f"\n## knobs search on support-bot: train cases x seeds 0..{args.seeds - 1} (pass = exit 0)\n")
    rows = [("", "exhaustive (192 configs)", "autoharness run (knobs proposer)")]
    rows.append(("final config", fmt(bests[0], knobs) + (f" (+{len(bests) - 1} tied)" if len(bests) > 1 else ""),
                 fmt(run["final"], knobs) if run else "-"))
    rows.append(("train score", pct(best), (pct(scores[run["final"]]) + f", rank {rank(run['final'])}/192")
                 if run else "-"))
    prod = ex["production"]
    rows.append(("production score", pct(scores[prod]) + f", rank {rank(prod)}/192", "(same)"))
    if run:
        s = run["summary"]
        acc = [it["iteration"] for it in s["iterations"] if it.get("accepted")]
        rows.append(("iterations", "-", f"{len(s['iterations'])} run, accepted in {acc}, final config after "
                                         f"iteration {run['reached']}"))
        scr = sum(it.get("screening_trials", 0) for it in s["iterations"])
        rows.append(("trials", f"{ex['trials']} ({ex['runs']} agent runs after dedupe)",
                     f"{s['trials']} ({s['cached_trials']} cached; {scr} screening), {run['stored_trials']} "
                     f"distinct in its store"))
        rows.append(("wall time", f"{ex['wall']:.0f}s ({args.jobs} workers)",
                     f"{run['wall']:.0f}s (wall_ms {s['wall_ms']})"))
    else:
        rows.append(("trials", f"{ex['trials']} ({ex['runs']} agent runs)", "-"))
        rows.append(("wall time", f"{ex['wall']:.0f}s", "-"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for i, r in enumerate(rows):
        print(f"| {r[0]:<{w0}} | {r[1]:<{w1}} | {r[2]} |")
        if i == 0:
            print(f"|{'-' * (w0 + 2)}|{'-' * (w1 + 2)}|{'-' * (len(rows[0][2]) + 2)}|")

    if run:
        print("\nrun iterations:")
        for it in run["summary"]["iterations"]:
            cands = "; ".join(f"{c['description'].replace('config.toml ', '')} -> {c['verdict']}/{c['rule']}"
                              for c in it["candidates"]) or "no candidate passed screening"
            print(f"  {it['iteration']}. {it['cluster']} (screening {it['screening_trials']} trials): {cands}")

    print("\ntop configurations:")
    for c, s in ranked[:8]:
        print(f"  {pct(s):>16}  {fmt(c, knobs)}")
    print("\neach knob alone from production, then each knob varied around the best:")
    for name, base in (("production", prod), ("best", bests[0])):
        for i, (k, vals) in enumerate(knobs):
            cells = []
            for v in vals:
                c = tuple(v if j == i else base[j] for j in range(len(knobs)))
                cells.append(f"{json.dumps(v)}:{scores[c]}")
            print(f"  {name:<10} {k:<24} " + "  ".join(cells))
    if refined:
        scores_r, nruns, wall = refined
        mxr = len(ex["cases"]) * args.refine_seeds
        print(f"\nre-scored on seeds 0..{args.refine_seeds - 1} ({nruns} more agent runs, {wall:.0f}s):")
        for c, s in sorted(scores_r.items(), key=lambda kv: -kv[1]):
            tag = []
            if c == ex["production"]:
                tag.append("production")
            if run and c == run["final"]:
                tag.append("autoharness run")
            print(f"  {s:>4}/{mxr} ({100 * s / mxr:5.1f}%)  {fmt(c, knobs)}" + (f"  <- {', '.join(tag)}" if tag else ""))
    # where the best config still fails
    fails = {}
    for c in ex["cases"]:
        p = ex["per_case"][(bests[0], c["id"])]
        if p < args.seeds:
            fails[c["id"]] = f"{c['cluster']} {args.seeds - p}/{args.seeds} fail"
    print("\nbest config's failing train cases: " + (", ".join(f"{k} ({v})" for k, v in fails.items()) or "none"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=1,
                    help="seeds per case for the whole grid (1 keeps it under ~8 min on 2 loaded cores)")
    ap.add_argument("--refine-seeds", type=int, default=5,
                    help="re-score the best configs, production and the run's final config on this many seeds")
    ap.add_argument("--refine-top", type=int, default=6)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--max-iterations", type=int, default=5)
    ap.add_argument("--skip-run", action="store_true", help="only the exhaustive search")
    ap.add_argument("--no-dedupe", action="store_true", help="run cases with the same input separately")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="knobs-search-"))
    try:
        ex = exhaustive(args, work)
        run = None if args.skip_run else autoharness_run(args, work, ex)
        refined = None
        if args.refine_seeds > args.seeds:
            best = max(ex["scores"].values())
            top = sorted(ex["combos"], key=lambda c: -ex["scores"][c])
            configs = [c for c in top if ex["scores"][c] == best]
            configs += [c for c in top[:args.refine_top] if c not in configs]
            for c in [ex["production"]] + ([run["final"]] if run else []):
                if c not in configs:
                    configs.append(c)
            refined = refine(args, ex, configs)
        report(args, ex, run, refined)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
