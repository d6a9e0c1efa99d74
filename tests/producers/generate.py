"""Build the producer compatibility corpus: drive real SDKs against the scripted model server
and capture what they export, the way their users export it.

    python tests/producers/generate.py OUT_DIR [--only PRODUCER,...] [--scenarios S,...]

Writes OUT_DIR/<producer>/<scenario>.<ext>, OUT_DIR/versions.json (every producer's
package versions) and OUT_DIR/logs/<producer>.log (what each run printed). Each producer
runs in its own Python process (global tracer providers and instrumentations never leak
between producers) and plays every scenario in turn, flushing its exporter and telling the
collector which scenario comes next. Everything listens on
127.0.0.1 and stops with this process.
"""

import argparse
import base64
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import model_server  # noqa: E402

SCENARIOS = [
    "success",
    "tool_recovered",
    "tool_raises",
    "turn_limit",
    "content_filter",
    "http_500",
    "http_503",
    "http_429",
    "http_401",
    "timeout",
    "interleave",
]

# producer -> (module in producers.py, the packages whose versions are recorded)
PRODUCERS = {
    "otel-genai": ["openai", "opentelemetry-sdk", "opentelemetry-instrumentation-openai-v2"],
    "otel-console": ["openai", "opentelemetry-sdk", "opentelemetry-instrumentation-openai-v2"],
    "openinference": ["openai", "opentelemetry-sdk", "openinference-instrumentation-openai"],
    "openllmetry": ["openai", "traceloop-sdk"],
    "openai-agents": ["openai-agents", "openai"],
    "langsmith": ["langsmith", "langchain", "langchain-openai", "langgraph"],
    "langfuse": ["langfuse", "openai"],
    "pydantic-ai": ["pydantic-ai-slim", "logfire"],
    "smolagents": ["smolagents", "openinference-instrumentation-smolagents"],
    "anthropic": ["anthropic", "opentelemetry-sdk", "openinference-instrumentation-anthropic"],
}
# The Agents SDK's own ingest payloads, captured beside its tracing processor's file.
VERSIONS_ALSO = {"openai-agents-ingest": PRODUCERS["openai-agents"]}


# Scenarios a producer cannot play as scripted: smolagents always hands a tool's exception back
# to the model and merges that report into the task's message, so the scripted server cannot
# tell a retry from a first call (its tool scenarios would only end at max_steps).
# The Messages API has no content-filter error to script: Anthropic's refusals arrive as
# stop_reason "refusal" in a successful reply, a different root cause shape (not scripted yet).
SKIP = {"smolagents": {"tool_recovered", "tool_raises"}, "anthropic": {"content_filter"}}


def ids_to_hex(obj):
    """OTLP/JSON carries ids as hex (the collector's file exporter); protobuf JSON gives base64."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                obj[k] = base64.b64decode(v).hex()
            else:
                ids_to_hex(v)
    elif isinstance(obj, list):
        for v in obj:
            ids_to_hex(v)
    return obj


class Collector(BaseHTTPRequestHandler):
    """Receives what the SDKs send (OTLP/HTTP protobuf, LangSmith batches and multipart,
    OpenAI Agents ingest) under /<producer>/<scenario>/... and appends it as JSON lines to
    OUT/<producer>/<scenario>.jsonl."""

    protocol_version = "HTTP/1.1"
    out: Path = Path(".")
    lock = threading.Lock()
    # producer -> the scenario it is playing (set by GET /_switch/<producer>/<scenario>)
    current: dict = {}

    def log_message(self, fmt, *args):
        pass

    def reply(self, code=200, doc=None, ctype="application/json"):
        data = json.dumps(doc if doc is not None else {}).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if len(parts) == 3 and parts[0] == "_switch":
            with self.lock:
                self.current[parts[1]] = parts[2]
        # LangSmith asks /info for its batch settings; an empty answer keeps its defaults.
        self.reply(200, {})

    def write(self, producer, scenario, docs):
        path = self.out / producer / f"{scenario}.jsonl"
        with self.lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                for d in docs:
                    f.write(json.dumps(d) + "\n")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.headers.get("Content-Encoding") == "gzip":
            import gzip

            raw = gzip.decompress(raw)
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if len(parts) < 2:
            return self.reply(404, {"error": "path must start with /<producer>/<scenario>"})
        producer, scenario, rest = parts[0], parts[1], "/".join(parts[2:])
        if scenario == "live":
            with self.lock:
                scenario = self.current.get(producer, "unknown")
        ctype = self.headers.get("Content-Type", "")
        if rest.endswith("v1/traces") and "protobuf" in ctype:
            from google.protobuf.json_format import MessageToDict
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

            req = ExportTraceServiceRequest()
            req.ParseFromString(raw)
            self.write(producer, scenario, [ids_to_hex(MessageToDict(req))])
            return self.reply(200, {})
        if "multipart" in ctype:
            self.write(producer, scenario, [multipart_batch(raw, ctype)])
            return self.reply(200, {})
        try:
            doc = json.loads(raw or b"{}")
        except ValueError:
            return self.reply(400, {"error": "not JSON"})
        self.write(producer, scenario, [doc])
        self.reply(200, {})

    do_PATCH = do_POST
    do_PUT = do_POST


def multipart_batch(raw, ctype):
    """LangSmith's /runs/multipart: parts named post.<id>, post.<id>.inputs, patch.<id>.outputs…
    reassembled into the {"post": [...], "patch": [...]} batch its JSON endpoint takes."""
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
    runs = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition") or ""
        bits = name.split(".")
        if len(bits) < 2 or bits[0] not in ("post", "patch"):
            continue
        op, rid = bits[0], bits[1]
        body = part.get_payload(decode=True) or b"{}"
        try:
            value = json.loads(body)
        except ValueError:
            continue
        run = runs.setdefault((op, rid), {"id": rid})
        if len(bits) == 2:
            run.update(value)
        else:
            run[bits[2]] = value
    batch = {"post": [], "patch": []}
    for (op, _), run in runs.items():
        batch[op].append(run)
    return batch


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def versions(packages):
    out = {}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--only", help="comma-separated producers (default: all)")
    ap.add_argument("--scenarios", help="comma-separated scenarios (default: all)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    producers = args.only.split(",") if args.only else list(PRODUCERS)
    scenarios = args.scenarios.split(",") if args.scenarios else SCENARIOS
    model = model_server.start()
    Collector.out = out
    collector = serve(Collector)
    model_url = f"http://127.0.0.1:{model.server_address[1]}"
    collector_url = f"http://127.0.0.1:{collector.server_address[1]}"

    def run(producer):
        (out / producer).mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            PRODUCER=producer,
            SCENARIOS=",".join(s for s in scenarios if s not in SKIP.get(producer, ())),
            MODEL_URL=model_url,
            COLLECTOR_URL=collector_url,
            OUT_DIR=str(out),
            # No SDK may phone home: every endpoint is the local collector.
            OTEL_SDK_DISABLED="false",
            LANGSMITH_TRACING="false",
            DO_NOT_TRACK="1",
            TRACELOOP_TELEMETRY="false",
            ANONYMIZED_TELEMETRY="false",
            CREWAI_DISABLE_TELEMETRY="true",
        )
        started = time.time()
        p = subprocess.run(
            [sys.executable, str(HERE / "producers.py")], env=env, capture_output=True, text=True, timeout=300
        )
        took = time.time() - started
        (out / "logs").mkdir(exist_ok=True)
        (out / "logs" / f"{producer}.log").write_text(p.stdout + p.stderr)
        return producer, p.returncode, took

    failed = []
    with ThreadPoolExecutor(args.jobs) as pool:
        for producer, rc, took in pool.map(run, producers):
            print(f"{producer:14} rc={rc} {took:5.1f}s", flush=True)
            if rc != 0:
                failed.append(producer)
    time.sleep(0.5)
    doc = {p: versions(PRODUCERS[p]) for p in producers}
    if "openai-agents" in producers:
        doc.update({p: versions(pk) for p, pk in VERSIONS_ALSO.items()})
    (out / "versions.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    if failed:
        print("driver failures (see OUT/logs/<producer>.log):", ", ".join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
