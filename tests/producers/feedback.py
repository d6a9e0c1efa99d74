"""Capture what the real SDKs send when users score or give feedback on a trace, for the
feedback fixtures under tests/fixtures/feedback/ (see its README).

    python tests/producers/feedback.py OUT_DIR LANGFUSE_TRACE LANGSMITH_TRACE OTEL_TRACE
    python tests/producers/feedback.py --corpus CORPUS_DIR      # writes CORPUS_DIR/feedback/

The trace ids are those of the `success` traces of the langfuse, langsmith and otel-genai
producers (given, or read from a corpus generate.py just wrote), so that the scores join
them. A receiver on 127.0.0.1 records each POST: Langfuse's `create_score` (its ingestion
batch), LangSmith's `create_feedback` body and what `list_feedback` gives back when the
receiver serves those same records, and OTel `gen_ai.evaluation.result` log records from
the OpenTelemetry SDK's OTLP/HTTP log exporter (protobuf turned into OTLP/JSON, ids hex).
Everything listens on 127.0.0.1 and stops with this process.
"""

import base64
import json
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path

POSTS = []
LOCK = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, doc):
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.rstrip("/").endswith("/feedback"):
            # list_feedback: the records create_feedback posted, as LangSmith stores them.
            with LOCK:
                rows = [dict(p["body"], created_at="2026-12-07T00:00:00Z", modified_at="2026-12-07T00:00:00Z")
                        for p in POSTS if p["path"].rstrip("/").endswith("/feedback")]
            return self.reply(200, rows)
        self.reply(200, {})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            import gzip

            raw = gzip.decompress(raw)
        path = self.path.split("?")[0]
        if path.endswith("/v1/logs"):
            from google.protobuf.json_format import MessageToDict
            from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

            req = ExportLogsServiceRequest()
            req.ParseFromString(raw)
            body = hex_ids(MessageToDict(req))
        else:
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"raw": raw.decode("utf-8", "replace")}
        with LOCK:
            POSTS.append({"path": path, "body": body})
        # Langfuse's ingestion answers 207 with per-event results.
        if path.endswith("/ingestion"):
            ok = [{"id": e.get("id"), "status": 201} for e in body.get("batch", [])]
            return self.reply(207, {"successes": ok, "errors": []})
        self.reply(200, {"id": str(uuid.uuid4())})

    do_PATCH = do_POST
    do_PUT = do_POST


def hex_ids(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("traceId", "spanId") and isinstance(v, str):
                obj[k] = base64.b64decode(v).hex()
            else:
                hex_ids(v)
    elif isinstance(obj, list):
        for v in obj:
            hex_ids(v)
    return obj


def taken(prefix):
    with LOCK:
        return [p["body"] for p in POSTS if prefix in p["path"]]


def first_trace_id(path, producer):
    """The trace id of the first run in a corpus file (OTLP lines or LangSmith batches)."""
    for line in Path(path).read_text().splitlines():
        doc = json.loads(line)
        if producer == "langsmith":
            for run in doc.get("post", []):
                if run.get("trace_id"):
                    return run["trace_id"]
            continue
        for rs in doc.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for span in ss.get("spans", []):
                    return span["traceId"]
    raise SystemExit(f"feedback.py: no trace id in {path}")


def main():
    if sys.argv[1] == "--corpus":
        corpus = Path(sys.argv[2])
        out = corpus / "feedback"
        lf_trace, ls_trace, otel_trace = (
            first_trace_id(corpus / p / "success.jsonl", p) for p in ("langfuse", "langsmith", "otel-genai")
        )
    else:
        out, lf_trace, ls_trace, otel_trace = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    out.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"

    # Langfuse: an LLM-judge numeric score and a user's categorical thumbs.
    from langfuse import Langfuse

    lf = Langfuse(public_key="pk-lf-test", secret_key="sk-lf-test", host=url)
    lf.create_score(trace_id=lf_trace, name="correctness", value=0.0, comment="refund amount wrong")
    lf.create_score(trace_id=lf_trace, name="user_feedback", value="thumbs_down", data_type="CATEGORICAL")
    lf.flush()
    lf.shutdown()
    with (out / "langfuse-scores.json").open("w") as f:
        for body in taken("/api/public/"):
            f.write(json.dumps(body) + "\n")

    # LangSmith: create_feedback as a user's thumbs and an evaluator's score; then the export.
    from langsmith import Client

    ls = Client(api_url=url, api_key="lsv2_test", auto_batch_tracing=False)
    ls.create_feedback(run_id=ls_trace, trace_id=ls_trace, key="user_score", score=0, comment="did not cancel")
    ls.create_feedback(run_id=ls_trace, trace_id=ls_trace, key="helpfulness", score=0.2)
    with (out / "langsmith-feedback-posts.jsonl").open("w") as f:
        for body in taken("/feedback"):
            f.write(json.dumps(body) + "\n")
    exported = [json.loads(fb.model_dump_json())
                for fb in ls.list_feedback(run_ids=[ls_trace])]
    (out / "langsmith-feedback-export.json").write_text(json.dumps(exported, indent=1))

    # OTel: gen_ai.evaluation.result events, parented to the evaluated trace.
    from opentelemetry._logs import LogRecord as ApiLogRecord
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{url}/v1/logs")))
    logger = provider.get_logger("autoharness.evals")
    span = NonRecordingSpan(SpanContext(int(otel_trace, 16), 0x1234567890ABCDEF, True, TraceFlags(1)))
    for name, value, label, why in [
        ("relevance", 0.9, "pass", "answers the question"),
        ("task_completion", 0.1, "fail", "the order was never cancelled"),
    ]:
        logger.emit(
            ApiLogRecord(
                event_name="gen_ai.evaluation.result",
                context=set_span_in_context(span),
                attributes={
                    "gen_ai.evaluation.name": name,
                    "gen_ai.evaluation.score.value": value,
                    "gen_ai.evaluation.score.label": label,
                    "gen_ai.evaluation.explanation": why,
                },
            )
        )
    provider.shutdown()
    with (out / "otel-evaluations.jsonl").open("w") as f:
        for body in taken("/v1/logs"):
            f.write(json.dumps(body) + "\n")

    versions = {p: metadata.version(p) for p in ["langfuse", "langsmith", "opentelemetry-sdk"]}
    (out / "versions.json").write_text(json.dumps(versions, indent=1) + "\n")
    server.shutdown()


if __name__ == "__main__":
    main()
