#!/usr/bin/env python3
"""support-bot: a simulated tool-using customer-support agent for an online shop.

There is no real LLM. A deterministic, seeded "model" reads the customer's message,
plans tool calls and answers; it slips now and then (mistyped order ids) like a sampled
model does. What it does depends only on the task input, the seed, `config.toml` and the
text of `prompts/system.md`, so one (input, seed, config, prompt) always gives the same
run. Every run writes an OTLP/JSON trace with OpenTelemetry GenAI spans.

Trial protocol (autoharness): AUTOHARNESS_INPUT (file with the case input),
AUTOHARNESS_SEED, AUTOHARNESS_TRIAL, AUTOHARNESS_TRACE_OUT, AUTOHARNESS_RESULT.
By hand: `python3 agent.py "I'm alice_01, where is #W8767698?"` (or a JSON file, or
stdin); the trace goes to ./trace.json. stdout = the answer to the customer, stderr =
logs; exit 0 when the run completed, 1 when it aborted on an unhandled error.
"""

import sys

sys.dont_write_bytecode = True

import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
import tomllib  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import backend as be  # noqa: E402

AGENT_NAME = "support-bot"
AGENT_VERSION = "1.8.2"
PROVIDER = "simulated"
PRICE_PER_MTOK = 2.0  # USD per million tokens, input and output alike
TOOL_DEFS_TOKENS = 310  # the tool schemas sent with every model call
VERIFY_LEVELS = ("never", "refunds", "always")


class StepLimitExceeded(RuntimeError):
    pass


# --------------------------------------------------------------------------------------
# Configuration and prompt


def load_config(path=HERE / "config.toml"):
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    cfg = {
        "model": str(raw.get("model", {}).get("name", "sim-4o-mini")),
        "temperature": float(raw.get("model", {}).get("temperature", 0.7)),
        "max_steps": int(raw.get("agent", {}).get("max_steps", 5)),
        "retry_attempts": int(raw.get("tools", {}).get("retry_attempts", 1)),
        "verify_identity": str(raw.get("policy", {}).get("verify_identity", "never")),
    }
    if cfg["verify_identity"] not in VERIFY_LEVELS:
        raise ValueError(f"config.toml: policy.verify_identity must be one of {VERIFY_LEVELS}")
    if cfg["max_steps"] < 1 or cfg["retry_attempts"] < 1 or not 0.0 <= cfg["temperature"] <= 2.0:
        raise ValueError("config.toml: max_steps and retry_attempts must be >= 1, temperature in [0, 2]")
    return cfg


def load_prompt(path=HERE / "prompts" / "system.md"):
    return Path(path).read_text(encoding="utf-8")


def prompt_verify_scope(prompt):
    """What the system prompt tells the model about identity checks: never/refunds/always."""
    scope = "never"
    for line in re.split(r"\n|(?<=[.!?])\s+", prompt):
        says = re.search(r"verif\w*\s.{0,40}identit", line, re.I) or re.search(
            r"verify_identity\b.{0,60}\bbefore\b|\bbefore\b.{0,60}verify_identity|"
            r"\b(always|first|must)\b.{0,30}verify_identity",
            line,
            re.I,
        )
        if not says or re.search(r"\b(never|don't|do not|no need|without)\b.{0,20}verif", line, re.I):
            continue
        found = "refunds" if re.search(r"refund", line, re.I) else "always"
        if VERIFY_LEVELS.index(found) > VERIFY_LEVELS.index(scope):
            scope = found
    return scope


# --------------------------------------------------------------------------------------
# Task input and understanding


def task_text(raw):
    """The customer's message from a case input: {"messages": [...]}, {"task": ...}, or text."""
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return raw.strip()
        if isinstance(parsed, (dict, list)):
            return task_text(parsed)
        return str(parsed).strip()
    if isinstance(raw, list):  # a bare message list
        raw = {"messages": raw}
    if isinstance(raw, dict):
        for m in raw.get("messages") or []:
            if isinstance(m, dict) and m.get("role") in ("user", "human"):
                c = m.get("content")
                if isinstance(c, list):  # content parts
                    c = " ".join(str(p.get("text") or p.get("content") or "") for p in c if isinstance(p, dict))
                return str(c or "").strip()
        for key in ("task", "input", "query", "question", "text", "content"):
            if isinstance(raw.get(key), (str, dict, list)):
                return task_text(raw[key])
    raise ValueError("no customer message in the input (expected text, {'task': ...} or {'messages': [...]})")


INTENT_RES = {
    "refund": re.compile(r"\brefund|\bmoney back|\breimburse", re.I),
    "cancel": re.compile(r"\bcancel", re.I),
    "address": re.compile(r"\baddress\b|\bship (?:it|them) to\b", re.I),
    "status": re.compile(r"\bwhere(?:'s| is| are)\b|\bstatus\b|\btrack|\bwhen will\b|\barriv|\bshipped yet\b", re.I),
}
ORDER_RE = re.compile(r"(?:#\s*[Ww]\s?|\b[Ww]\s?|\border (?:number |no\.? ?)?#?)(\d{7})\b", re.I)
USER_RE = re.compile(r"\b([a-z]+_\d{2})\b")
AMOUNT_RE = re.compile(r"\$\s?(\d+(?:\.\d{1,2})?)")
ADDRESS_RE = re.compile(r"\bto:?\s+(\d+\s[^.!?\n]*?(?:,\s*[A-Z][^.!?\n]*)?)\s*(?:[.!?](?:\s|$)|$)")


def understand(text):
    """Parse the message into goals: one per order id, each with an intent."""
    marks = sorted((m.start(), intent) for intent, rx in INTENT_RES.items() for m in rx.finditer(text))
    user = USER_RE.search(text)
    amounts = [float(a) for a in AMOUNT_RE.findall(text)]
    address = ADDRESS_RE.search(text)
    goals, seen = [], set()
    for m in ORDER_RE.finditer(text):
        oid = "#W" + m.group(1)
        if oid in seen:
            continue
        seen.add(oid)
        before = [i for pos, i in marks if pos < m.start()]
        after = [i for pos, i in marks if pos > m.end()]
        intent = before[-1] if before else (after[0] if after else "status")
        goals.append(
            {
                "order_id": oid,
                "intent": intent,
                "irregular": m.group(0).strip().upper() != oid,
                "amount": None,
                "address": None,
                "order": None,
                "verified": False,
                "done": False,
                "answer": None,
                "bad_id": None,
            }
        )
    refunds = [g for g in goals if g["intent"] == "refund"]
    if len(refunds) == 1 and len(amounts) == 1:
        refunds[0]["amount"] = amounts[0]
    for g in goals:
        if g["intent"] == "address" and address:
            g["address"] = address.group(1).strip()
    return {"text": text, "user_id": user.group(1) if user else None, "goals": goals}


# --------------------------------------------------------------------------------------
# Trace recording (OTLP/JSON, OpenTelemetry GenAI semantic conventions)


def _any(v):
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [_any(x) for x in v]}}
    return {"stringValue": str(v)}


def _attrs(d):
    return [{"key": k, "value": _any(v)} for k, v in d.items() if v is not None]


def _json(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


class Clock:
    """Simulated time in unix nanoseconds: the agent never sleeps."""

    def __init__(self, start_ns):
        self.now = int(start_ns)

    def advance_ms(self, ms):
        self.now += int(ms * 1_000_000)


class Span:
    def __init__(self, rec, name, kind, parent, attrs):
        self.rec, self.name, self.kind, self.parent = rec, name, kind, parent
        self.span_id = rec.new_id(8)
        self.start = rec.clock.now
        self.end = None
        self.attrs = dict(attrs)
        self.events = []
        self.status = {}

    def event(self, name, attrs):
        self.events.append({"timeUnixNano": str(self.rec.clock.now), "name": name, "attributes": _attrs(attrs)})

    def fail(self, exc):
        """Record an exception the way the OTel Python SDK does when it escapes the span."""
        name = type(exc).__name__
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if self.rec.path_alias:
            stack = stack.replace(str(HERE), self.rec.path_alias)
        self.event("exception", {"exception.type": name, "exception.message": str(exc), "exception.stacktrace": stack})
        self.attrs["error.type"] = name
        self.status = {"code": 2, "message": f"{name}: {exc}"}

    def close(self):
        self.end = self.rec.clock.now
        self.rec.finished.append(self)

    def to_otlp(self):
        span = {
            "traceId": self.rec.trace_id,
            "spanId": self.span_id,
            "parentSpanId": self.parent.span_id if self.parent else "",
            "flags": 257,
            "name": self.name,
            "kind": self.kind,
            "startTimeUnixNano": str(self.start),
            "endTimeUnixNano": str(self.end),
            "attributes": _attrs(self.attrs),
        }
        if self.events:
            span["events"] = self.events
        span["status"] = self.status
        return span


class Recorder:
    def __init__(self, clock, id_seed, resource, path_alias=None):
        self.clock = clock
        self.ids = random.Random(id_seed)
        self.trace_id = self.new_id(16)
        self.resource = resource
        self.path_alias = path_alias
        self.finished = []

    def new_id(self, nbytes):
        return f"{self.ids.getrandbits(nbytes * 8):0{nbytes * 2}x}"

    def export(self):
        """One ExportTraceServiceRequest, spans in the order they ended (children first)."""
        return {
            "resourceSpans": [
                {
                    "resource": {"attributes": _attrs(self.resource)},
                    "scopeSpans": [
                        {
                            "scope": {"name": "support_bot.agent", "version": AGENT_VERSION},
                            "spans": [s.to_otlp() for s in self.finished],
                        }
                    ],
                }
            ]
        }


# --------------------------------------------------------------------------------------
# The agent


def _digest(*parts):
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def _tokens(obj):
    text = obj if isinstance(obj, str) else _json(obj)
    return max(1, math.ceil(len(text.encode()) / 4))


class Agent:
    def __init__(self, text, seed, cfg, prompt, clock, rec, backend):
        self.task = understand(text)
        self.cfg, self.prompt, self.clock, self.rec, self.backend = cfg, prompt, clock, rec, backend
        # The "model": sampling depends on the input, the seed and the prompt it was given.
        self.rng = random.Random(_digest("model", seed, text, _digest(prompt)))
        self.verify_scope = max(
            cfg["verify_identity"], prompt_verify_scope(prompt), key=VERIFY_LEVELS.index
        )
        self.sys_tokens = _tokens(prompt)
        self.history = [{"role": "user", "parts": [{"type": "text", "content": text}]}]
        self.steps = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.not_found_streak = 0
        self.customer = None
        self.log = []

    # --- the simulated model's decisions -----------------------------------------------

    def _slips(self, goal):
        difficulty = (3.0 if goal["irregular"] else 1.0) * (1 + 0.25 * (len(self.task["goals"]) - 1))
        return self.rng.random() < min(0.95, 0.2 * self.cfg["temperature"] * difficulty)

    def _typo(self, oid):
        digits = list(oid[2:])
        for _ in range(20):
            d = digits[:]
            i = self.rng.randrange(6)
            d[i], d[i + 1] = d[i + 1], d[i]
            if d == digits:
                d[i] = str((int(d[i]) + 1 + self.rng.randrange(8)) % 10)
            cand = "#W" + "".join(d)
            if cand != oid and cand not in self.backend.orders:
                return cand
        return "#W" + "".join(reversed(digits))

    def _needs_verify(self, goal):
        if self.verify_scope == "always":
            return True
        return self.verify_scope == "refunds" and goal["intent"] == "refund"

    def decide(self):
        """The next action: ("tool", name, args) or ("answer", text)."""
        if len(self.task["goals"]) > 1 and self.task["user_id"] and self.customer is None:
            # Several orders at once: the model first pulls up the customer's account.
            return ("tool", "find_customer", {"user_id": self.task["user_id"]})
        for g in self.task["goals"]:
            if g["done"]:
                continue
            if g["order"] is None:
                oid = g["order_id"]
                if g["bad_id"]:
                    # The tool said the id does not exist: most of the time the model notices
                    # its typo; sometimes it insists on the same id (more often when the
                    # customer wrote the id in an unusual form it cannot simply copy).
                    if self.rng.random() < (0.5 if g["irregular"] else 0.2):
                        oid = g["bad_id"]
                    else:
                        g["bad_id"] = None
                elif self._slips(g):
                    oid = g["bad_id"] = self._typo(oid)
                return ("tool", "get_order", {"order_id": oid})
            o = g["order"]
            if self._needs_verify(g) and not g["verified"]:
                return ("tool", "verify_identity", {"order_id": o["order_id"]})
            if g["intent"] == "cancel" and o["status"] in be.CANCELLABLE:
                return ("tool", "cancel_order", {"order_id": o["order_id"]})
            if g["intent"] == "address" and o["status"] in be.CANCELLABLE and g["address"]:
                return ("tool", "change_address", {"order_id": o["order_id"], "address": g["address"]})
            if g["intent"] == "refund":
                args = {"order_id": o["order_id"]}
                if g["amount"] is not None:
                    args["amount"] = g["amount"]
                return ("tool", "issue_refund", args)
            g["answer"] = self._describe(g)
            g["done"] = True
        return ("answer", self._final_answer())

    def _describe(self, g):
        o = g["order"]
        oid, st = o["order_id"], o["status"]
        if g["intent"] == "cancel":
            return f"Order {oid} can no longer be cancelled: it is already {st}."
        if g["intent"] == "address" and not g["address"]:
            return f"Which address should order {oid} go to? It currently ships to {o['shipping_address']}."
        if g["intent"] == "address":
            return f"Order {oid} is already {st}, so its address can no longer be changed."
        track = f" (tracking {o['tracking']})" if o.get("tracking") else ""
        phrases = {
            "pending": "has been received and will be packed soon",
            "processing": "is being packed at our warehouse",
            "shipped": "is on its way",
            "delivered": "was delivered",
            "cancelled": "was cancelled",
        }
        return f"Order {oid} {phrases.get(st, 'is ' + st)}{track}."

    def _final_answer(self):
        lines = [g["answer"] for g in self.task["goals"]]
        if not lines:
            return "Could you send me the order number (it looks like #W1234567)? Then I can help right away."
        closing = self.rng.choice(["", " Anything else I can do for you?", " Have a great day!"])
        return " ".join(lines) + closing

    def _after_tool(self, name, args, result):
        if name == "find_customer":
            self.customer = result
            return
        g = next(g for g in self.task["goals"] if not g["done"])
        if name == "get_order":
            g["order"] = result
            g["bad_id"] = None
        elif name == "verify_identity":
            g["verified"] = True
        elif name == "cancel_order":
            g["answer"] = (
                f"I've cancelled order {result['order_id']}; you won't be charged."
                if result.get("cancelled")
                else f"Order {result['order_id']} can no longer be cancelled: {result.get('reason')}."
            )
            g["done"] = True
        elif name == "change_address":
            g["answer"] = (
                f"Order {result['order_id']} will now ship to {result['shipping_address']}."
                if result.get("changed")
                else f"I couldn't change the address of {result['order_id']}: {result.get('reason')}."
            )
            g["done"] = True
        elif name == "issue_refund":
            g["answer"] = (
                f"I've refunded ${result['refunded']:.2f} for order {result['order_id']} to your "
                f"{result['to'].replace('_', ' ')}; expect it within {result['eta_days']} business days."
            )
            g["done"] = True

    # --- one model call ------------------------------------------------------------------

    def chat(self, root):
        if self.steps >= self.cfg["max_steps"]:
            raise StepLimitExceeded(f"gave up after {self.cfg['max_steps']} steps")
        self.steps += 1
        model = self.cfg["model"]
        span = Span(
            self.rec,
            f"chat {model}",
            3,
            root,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": PROVIDER,
                "gen_ai.request.model": model,
                "gen_ai.request.temperature": self.cfg["temperature"],
            },
        )
        action = self.decide()
        parts = []
        if action[0] == "tool":
            if self.rng.random() < 0.3:
                parts.append({"type": "text", "content": self.rng.choice(
                    ["Let me check that for you.", "One moment.", "Looking into it."])})
            call_id = "call_" + self.rec.new_id(12)[:24]
            parts.append({"type": "tool_call", "id": call_id, "name": action[1], "arguments": action[2]})
            finish = "tool_call"
        else:
            call_id = None
            parts.append({"type": "text", "content": action[1]})
            finish = "stop"
        out_msg = {"role": "assistant", "parts": parts, "finish_reason": finish}
        in_tokens = self.sys_tokens + TOOL_DEFS_TOKENS + sum(_tokens(m) for m in self.history)
        out_tokens = _tokens(parts) + self.rng.randrange(4, 40)  # + unseen reasoning tokens
        self.input_tokens += in_tokens
        self.output_tokens += out_tokens
        self.clock.advance_ms(180 + 0.05 * in_tokens + 14 * out_tokens + self.rng.randrange(0, 500))
        span.attrs.update(
            {
                "gen_ai.response.model": f"{model}-2026-09-01",
                "gen_ai.response.id": "chatcmpl-" + self.rec.new_id(12),
                "gen_ai.response.finish_reasons": [finish],
                "gen_ai.usage.input_tokens": in_tokens,
                "gen_ai.usage.output_tokens": out_tokens,
                "gen_ai.usage.cost": round((in_tokens + out_tokens) * PRICE_PER_MTOK / 1e6, 8),
                "gen_ai.system_instructions": _json([{"type": "text", "content": self.prompt}]),
                "gen_ai.input.messages": _json(self.history),
                "gen_ai.output.messages": _json([out_msg]),
            }
        )
        span.close()
        self.history.append({"role": "assistant", "parts": parts})
        return action, call_id

    # --- one tool call -------------------------------------------------------------------

    def run_tool(self, root, name, args, call_id):
        span = Span(
            self.rec,
            f"execute_tool {name}",
            1,
            root,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.call.id": call_id,
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.arguments": _json(args),
            },
        )
        try:
            if name == "get_order":
                result = self._get_order_with_retry(span, args["order_id"])
            else:
                result = getattr(self.backend, name)(**args)
                self.clock.advance_ms(self.backend.last_latency_ms)
        except Exception as exc:  # recorded on the span, then handled or re-raised below
            if not (name == "get_order" and isinstance(exc, TimeoutError)):  # (already counted)
                self.clock.advance_ms(self.backend.last_latency_ms)
            span.fail(exc)
            span.close()
            self.history.append(
                {"role": "tool", "parts": [{"type": "tool_call_response", "id": call_id,
                                            "response": f"Error: {type(exc).__name__}: {exc}"}]}
            )
            self.log.append(f"tool {name} failed: {type(exc).__name__}: {exc}")
            # Only "no such order" is fed back to the model (it may have mistyped the id);
            # twice in a row, or any other error, aborts the conversation.
            if isinstance(exc, be.OrderNotFound):
                self.not_found_streak += 1
                if self.not_found_streak < 2:
                    return
            raise
        self.not_found_streak = 0
        self.clock.advance_ms(1)
        span.attrs["gen_ai.tool.call.result"] = _json(result)
        span.close()
        self.history.append(
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": call_id, "response": result}]}
        )
        self._after_tool(name, args, result)

    def _get_order_with_retry(self, span, order_id):
        attempts = self.cfg["retry_attempts"]
        for attempt in range(1, attempts + 1):
            try:
                result = self.backend.get_order(order_id)
                self.clock.advance_ms(self.backend.last_latency_ms)
                return result
            except TimeoutError as exc:
                self.clock.advance_ms(self.backend.last_latency_ms)
                if attempt == attempts:
                    raise
                span.event("retry", {"attempt": attempt, "error.type": "TimeoutError", "reason": str(exc)})
                self.clock.advance_ms(200 * attempt)  # backoff

    # --- the whole conversation -------------------------------------------------------------

    def run(self):
        """Returns (answer or None, exception or None)."""
        root = Span(
            self.rec,
            f"invoke_agent {AGENT_NAME}",
            1,
            None,
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": AGENT_NAME,
                "gen_ai.agent.version": AGENT_VERSION,
                "gen_ai.provider.name": PROVIDER,
                "gen_ai.request.model": self.cfg["model"],
                "gen_ai.conversation.id": "conv-" + self.rec.new_id(8),
                "user.id": self.task["user_id"],
                "gen_ai.input.messages": _json(self.history),
                "support_bot.config.max_steps": self.cfg["max_steps"],
                "support_bot.config.retry_attempts": self.cfg["retry_attempts"],
                "support_bot.config.verify_identity": self.cfg["verify_identity"],
            },
        )
        self.clock.advance_ms(2)
        answer, error = None, None
        try:
            while True:
                action, call_id = self.chat(root)
                if action[0] == "answer":
                    answer = action[1]
                    break
                self.run_tool(root, action[1], action[2], call_id)
        except Exception as exc:  # the conversation aborts; the error escapes the root span
            error = exc
            self.clock.advance_ms(1)
            root.fail(exc)
        else:
            root.attrs["gen_ai.output.messages"] = _json(
                [{"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": "stop"}]
            )
            # The shop's resolution check: every request the customer made was handled.
            root.event(
                "gen_ai.evaluation.result",
                {
                    "gen_ai.evaluation.name": "resolution",
                    "gen_ai.evaluation.score.value": 1.0,
                    "gen_ai.evaluation.score.label": "pass",
                    "gen_ai.evaluation.explanation": "every request in the conversation was handled",
                },
            )
        root.attrs["gen_ai.usage.input_tokens"] = self.input_tokens
        root.attrs["gen_ai.usage.output_tokens"] = self.output_tokens
        self.clock.advance_ms(1)
        root.close()
        return answer, error


def run_agent(raw_input, seed=0, trial=0, cfg=None, prompt=None, start_ns=None, resource=None, path_alias=None):
    """Run one conversation. Returns a dict with answer, error, trace (one OTLP request), usage."""
    cfg = cfg or load_config()
    prompt = load_prompt() if prompt is None else prompt
    text = task_text(raw_input)
    start_ns = time.time_ns() if start_ns is None else int(start_ns)
    clock = Clock(start_ns)
    res = {
        "service.name": AGENT_NAME,
        "service.version": AGENT_VERSION,
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": "1.38.0",
    }
    res.update(resource or {})
    rec = Recorder(clock, _digest("ids", seed, trial, text, start_ns, _digest(prompt), sorted(cfg.items())), res,
                   path_alias)
    backend = be.Backend(infra_key=_digest("infra", seed, text))
    agent = Agent(text, seed, cfg, prompt, clock, rec, backend)
    answer, error = agent.run()
    tokens = agent.input_tokens + agent.output_tokens
    return {
        "answer": answer,
        "error": error,
        "trace": rec.export(),
        "trace_id": rec.trace_id,
        "steps": agent.steps,
        "input_tokens": agent.input_tokens,
        "output_tokens": agent.output_tokens,
        "tokens": tokens,
        "cost_usd": round(tokens * PRICE_PER_MTOK / 1e6, 6),
        "log": agent.log,
    }


APOLOGY = "Sorry, I couldn't finish this request; a colleague from our support team will follow up by email."


def main(argv):
    env = os.environ
    if env.get("AUTOHARNESS_INPUT"):
        raw = Path(env["AUTOHARNESS_INPUT"]).read_text(encoding="utf-8")
    elif len(argv) > 1:
        raw = Path(argv[1]).read_text(encoding="utf-8") if Path(argv[1]).is_file() else " ".join(argv[1:])
    else:
        raw = sys.stdin.read()
    seed = int(env.get("AUTOHARNESS_SEED") or 0)
    trial = int(env.get("AUTOHARNESS_TRIAL") or 0)
    trace_out = env.get("AUTOHARNESS_TRACE_OUT") or "trace.json"
    try:
        out = run_agent(raw, seed=seed, trial=trial, resource={"deployment.environment.name": "eval"})
    except (ValueError, OSError, tomllib.TOMLDecodeError) as exc:  # bad input or config
        print(f"support-bot: {exc}", file=sys.stderr)
        return 2
    with open(trace_out, "w", encoding="utf-8") as f:
        f.write(_json(out["trace"]) + "\n")
    for line in out["log"]:
        print(f"support-bot: {line}", file=sys.stderr)
    ok = out["error"] is None
    if env.get("AUTOHARNESS_RESULT"):
        with open(env["AUTOHARNESS_RESULT"], "w", encoding="utf-8") as f:
            json.dump({"pass": ok, "score": 1.0 if ok else 0.0, "tokens": out["tokens"],
                       "cost_usd": out["cost_usd"]}, f)
    print(out["answer"] if ok else APOLOGY)
    print(f"support-bot: trace {out['trace_id']} -> {trace_out}; {out['steps']} model calls, "
          f"{out['tokens']} tokens, ${out['cost_usd']:.6f}", file=sys.stderr)
    if not ok:
        exc = out["error"]
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
