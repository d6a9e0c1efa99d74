#!/usr/bin/env python3
"""Generate the "production" traces of the support-bot example.

Runs the bundled agent (harnesses/support-bot) with its production configuration on
about 50 customer tasks, about 150 conversations spread over five days in late November
2026, on a fake clock, and writes what the OpenTelemetry file exporter would have written:
one OTLP/JSON export request per line, one file per day, under traces/.

Deterministic: fixed seeds and a fake clock, so running it again gives identical bytes
(as long as the harness files it reads are unchanged).

    python3 examples/support-bot/gen_traces.py [--out DIR]
"""

import argparse
import datetime as dt
import hashlib
import json
import random
import sys
from pathlib import Path

sys.dont_write_bytecode = True
REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "harnesses" / "support-bot"
sys.path.insert(0, str(HARNESS))

import agent  # noqa: E402

# The configuration production ran with (pinned: the harness's config.toml may be improved
# later; these traces are what that improvement starts from).
PRODUCTION_CONFIG = {
    "model": "sim-4o-mini",
    "temperature": 0.7,
    "max_steps": 5,
    "retry_attempts": 1,
    "verify_identity": "never",
}
# sha256 of prompts/system.md as deployed when the traces were made.
PRODUCTION_PROMPT_SHA256 = "ef89cbc9cf35670cd34add39a3b8be32382b6b8b61116c897b285d07b25f6daa"

DAYS = [dt.date(2026, 11, d) for d in (24, 25, 26, 27, 28)]
RUNS = 150
PODS = ["support-bot-7d9f6c-2xkqp", "support-bot-7d9f6c-h8w4n", "support-bot-7d9f6c-tv5rz"]


def load_orders():
    data = json.loads((HARNESS / "data" / "orders.json").read_text(encoding="utf-8"))
    return {o["order_id"]: o for o in data["orders"]}


def build_tasks(orders):
    """About 50 distinct customer messages: (category, text)."""
    rng = random.Random(2026_11)
    by = lambda pred: [o for o in orders.values() if pred(o)]  # noqa: E731
    tasks = []

    def add(cat, text):
        tasks.append((cat, text))

    def plain(oid):
        return oid[2:]

    # Where is my order? (account holders; a few write the id their own way)
    status_tpl = [
        "Hi, I'm {u}. Where is my order {o}?",
        "my user id is {u} - what's the status of {o}?",
        "Hello! Could you tell me when {o} will arrive? I'm {u}",
        "I'm {u}, has order {o} shipped yet?",
    ]
    for o in by(lambda o: o["user_id"] and o["status"] in ("shipped", "processing", "delivered"))[:9]:
        add("status", rng.choice(status_tpl).format(u=o["user_id"], o=o["order_id"]))
    odd = [
        "hi its {u}, where is order number {d}??",
        "I'm {u}. Status of W{d} please",
        "where is my package w{d} ... I'm {u}",
        "{u} here. Tracking for order no. {d}?",
        "hello, I'm {u}, order W {d} still hasn't arrived, where is it",
        "Where's my order {d}? ({u})",
    ]
    for tpl, o in zip(odd, by(lambda o: o["user_id"] and o["status"] in ("shipped", "delivered"))[-6:]):
        add("status-odd-id", tpl.format(u=o["user_id"], d=plain(o["order_id"])))
    # Guests (no account).
    guest_tpl = [
        "I checked out as a guest, where is my order {o}?",
        "Hi, no account here (guest checkout). What's the status of order {o}?",
        "Guest order {o} - has it shipped yet?",
    ]
    guests = by(lambda o: not o["user_id"])
    for o in guests[:5]:
        add("guest-status", rng.choice(guest_tpl).format(o=o["order_id"]))
    pending_guest = [o for o in guests if o["status"] in ("pending", "processing")]
    add("guest-address", f"I ordered as a guest. Please change the address of {pending_guest[-1]['order_id']} to 18 Birch Road, Austin, TX 78702.")
    add("guest-cancel", f"Guest checkout here - please cancel {pending_guest[0]['order_id']}, I ordered the wrong size.")
    # Cancel one order.
    cancel_tpl = [
        "I'm {u}. Please cancel order {o}, I don't need it anymore.",
        "Hi, {u} here, can you cancel {o}?",
        "Cancel {o} please. my user id is {u}",
    ]
    cancellable = by(lambda o: o["user_id"] and o["status"] in ("pending", "processing"))
    for o in cancellable[::3][:6]:
        add("cancel", rng.choice(cancel_tpl).format(u=o["user_id"], o=o["order_id"]))
    for o in by(lambda o: o["user_id"] and o["status"] == "shipped")[:2]:
        add("cancel-shipped", f"I'm {o['user_id']}, please cancel {o['order_id']}, I found it cheaper elsewhere.")
    # Several orders in one message.
    def ids(u, pred):
        return [o["order_id"] for o in orders.values() if o["user_id"] == u and pred(o)]

    can = lambda o: o["status"] in ("pending", "processing")  # noqa: E731
    b = ids("bob_02", can)
    add("multi-cancel", f"please cancel {b[0]} and {b[1]} and {b[2]}, I'm bob_02")
    f = ids("frank_06", can)
    add("multi-cancel", f"Hi, I'm frank_06. I ordered by mistake, cancel {f[0]}, {f[1]} and {f[2]} please.")
    d, dd = ids("dave_04", can), ids("dave_04", lambda o: not can(o))
    add("multi-mixed", f"I'm dave_04. Cancel {d[0]} and {d[1]}. Also, where is {dd[0]}?")
    h, hh = ids("heidi_08", can), ids("heidi_08", lambda o: not can(o))
    add("multi-mixed", f"heidi_08 here: please cancel orders {h[0]} and {h[1]}, and tell me the status of {hh[0]}")
    j, jj = ids("judy_10", can), ids("judy_10", lambda o: not can(o))
    add("multi-mixed", f"I'm judy_10. Cancel {j[0]} and {j[1]}; and when will {jj[-1]} arrive?")
    s, ss = ids("oscar_12", can), ids("oscar_12", lambda o: not can(o))
    add("multi-mixed", f"my user id is oscar_12. cancel {s[0]} and {s[1]} please, and where is {ss[0]}?")
    a = ids("alice_01", lambda o: True)
    add("multi-status", f"I'm alice_01, where are my orders {a[0]}, {a[1]} and {a[2]}?")
    add("multi-cancel", f"I'm frank_06, cancel {f[0]} and {f[2]}")
    add("multi-cancel", f"I'm oscar_12 - please cancel {s[0]} and {s[1]}.")
    add("multi-mixed", f"I'm judy_10. Please change the address of {j[1]} to 77 Lake Shore Drive, Chicago, IL 60611 and cancel {j[0]}.")
    # Refunds.
    refund_tpl = [
        "Hi, I'm {u}, please refund order {o}, it arrived broken.",
        "I want my money back for {o}. I'm {u}",
        "my user id is {u}. The item in {o} doesn't work, I'd like a refund.",
        "I'm {u} - requesting a refund for {o}, wrong item delivered.",
    ]
    delivered = lambda o: o["user_id"] and o["status"] == "delivered"  # noqa: E731
    small = by(lambda o: delivered(o) and o["payment_method"] != "gift_card" and o["total"] <= 100)
    big = by(lambda o: delivered(o) and o["payment_method"] != "gift_card" and o["total"] > 100)
    gift = by(lambda o: delivered(o) and o["payment_method"] == "gift_card")
    for o in small[:4]:
        add("refund-small", rng.choice(refund_tpl).format(u=o["user_id"], o=o["order_id"]))
    for o in big[:7]:
        add("refund-over-100", rng.choice(refund_tpl).format(u=o["user_id"], o=o["order_id"]))
    for o in gift[:4]:
        add("refund-gift-card", rng.choice(refund_tpl).format(u=o["user_id"], o=o["order_id"]))
    o = big[-1]
    add("refund-partial", f"I'm {o['user_id']}. One item in {o['order_id']} was missing, please refund $40 of it.")
    # Change the address.
    addresses = ["12 Oak Street, Springfield, IL 62704", "5 Harbor Road, Portland, OR 97205",
                 "901 Cedar Lane, Madison, WI 53703", "44 Station Road, Raleigh, NC 27601"]
    for o, addr in zip(cancellable[1::3], addresses):
        add("address", f"I'm {o['user_id']}. Please change the shipping address of {o['order_id']} to {addr}.")
    o = cancellable[-1]
    add("cancel-odd-id", f"{o['user_id']} here, pls cancel order number {plain(o['order_id'])}")
    o = cancellable[-2]
    add("address-odd-id", f"I'm {o['user_id']}, change the address of W{plain(o['order_id'])} to 3 Mill Lane, Denver, CO 80202")
    return tasks


# How much more often than once a task comes back (customers with several orders in one
# message, and those whose order id the bot trips over, write again).
WEIGHTS = {"multi-cancel": 3, "multi-mixed": 3, "multi-status": 2, "status-odd-id": 3, "cancel-odd-id": 3,
           "address-odd-id": 3, "refund-over-100": 2, "refund-gift-card": 3}


def schedule(tasks):
    """(day, second of day, task index, seed) for every run, in time order per day."""
    rng = random.Random(150)
    picks = list(range(len(tasks)))
    rng.shuffle(picks)
    weights = [WEIGHTS.get(cat, 1) for cat, _ in tasks]
    while len(picks) < RUNS:
        picks.append(rng.choices(range(len(tasks)), weights)[0])
    runs = []
    for i, t in enumerate(picks):
        day = DAYS[i % len(DAYS)] if i < len(tasks) else rng.choice(DAYS)
        second = rng.randrange(7 * 3600, 22 * 3600 + 1800)
        runs.append((day, second, t, 7000 + i))
    runs.sort(key=lambda r: (r[0], r[1]))
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "traces")
    args = ap.parse_args()
    prompt = agent.load_prompt()
    sha = hashlib.sha256(prompt.encode()).hexdigest()
    if sha != PRODUCTION_PROMPT_SHA256:
        print(f"warning: prompts/system.md changed since the traces were made (sha256 {sha[:12]}…); "
              "the output will differ from the committed traces", file=sys.stderr)
    tasks = build_tasks(load_orders())
    args.out.mkdir(parents=True, exist_ok=True)
    files, tally = {}, {}
    for day, second, t, seed in schedule(tasks):
        cat, text = tasks[t]
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc) + dt.timedelta(seconds=second)
        start_ns = int(start.timestamp()) * 1_000_000_000 + seed * 7919 % 1_000_000_000
        out = agent.run_agent(
            {"messages": [{"role": "user", "content": text}]},
            seed=seed,
            cfg=dict(PRODUCTION_CONFIG),
            prompt=prompt,
            start_ns=start_ns,
            resource={
                "deployment.environment.name": "production",
                "host.name": PODS[seed % len(PODS)],
            },
            path_alias="/app",
        )
        line = json.dumps(out["trace"], separators=(",", ":"), ensure_ascii=False)
        files.setdefault(day, []).append(line)
        err = out["error"]
        key = type(err).__name__ if err else "ok"
        tally.setdefault(cat, {}).setdefault(key, 0)
        tally[cat][key] += 1
    total = 0
    for day, lines in sorted(files.items()):
        path = args.out / f"{day.isoformat()}.jsonl"
        data = "\n".join(lines) + "\n"
        path.write_text(data, encoding="utf-8")
        total += len(data.encode())
        print(f"{path}: {len(lines)} traces, {len(data.encode()) / 1024:.0f} KB", file=sys.stderr)
    print(f"{len(tasks)} tasks, {RUNS} runs, {total / 1024:.0f} KB", file=sys.stderr)
    for cat in sorted(tally):
        print(f"  {cat:18} {tally[cat]}", file=sys.stderr)


if __name__ == "__main__":
    main()
