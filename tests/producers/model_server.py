"""A scripted OpenAI-compatible model server (stdlib only, 127.0.0.1) that plays scenarios.

The scenario is the first path segment of the base URL the SDK is given:
    http://127.0.0.1:PORT/<scenario>/v1/chat/completions
    http://127.0.0.1:PORT/<scenario>/v1/messages     (the same script as Anthropic's Messages API)
so one server serves every producer and scenario at once. Replies depend only on the
request (how many tool results the conversation holds), so a run is reproducible whatever
the SDK's retries or concurrency.

Scenarios (the root causes the compatibility suite checks):
    success         lookup_order(A-1) then a final answer
    tool_recovered  lookup_order(BAD) fails, the agent retries with A-1, then answers
    tool_raises     cancel_order(A-1) raises and the run ends with that exception
    turn_limit      the model asks for lookup_order forever; the framework's turn limit stops it
    content_filter  HTTP 400 with code content_filter (Azure/OpenAI content management policy)
    http_500 / http_503 / http_429 / http_401   the model API fails with that status
    timeout         the reply comes after the client's timeout
    interleave      like success, with a delay, for two concurrent runs
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "gpt-4o-mini-2024-07-18"
ANTHROPIC_MODEL = "claude-haiku-4-5-20251001"
TIMEOUT_SLEEP = 3.0

ERRORS = {
    "http_500": (500, {"message": "The server had an error while processing your request.", "type": "server_error", "code": None}),
    "http_503": (503, {"message": "The engine is currently overloaded, please try again later.", "type": "server_error", "code": None}),
    "http_429": (429, {"message": "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3, Requested 1.", "type": "requests", "code": "rate_limit_exceeded"}),
    "http_401": (401, {"message": "Incorrect API key provided: sk-test. You can find your API key at https://platform.openai.com/account/api-keys.", "type": "invalid_request_error", "code": "invalid_api_key"}),
    "content_filter": (400, {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.", "type": None, "param": "prompt", "code": "content_filter"}),
}


def turns_taken(messages):
    """Model turns already in the conversation. Counting assistant messages rather than tool
    results holds for every framework: some send tool results back as user messages."""
    assistant = sum(1 for m in messages if m.get("role") == "assistant")
    # smolagents reports a failed tool call as a user message without the assistant's call
    # before it, merged into the task's message as one more text part.
    parts = 0
    for m in messages:
        if m.get("role") not in ("assistant", "tool", "system"):
            c = m.get("content")
            parts += len(c) if isinstance(c, list) else 1
    return max(assistant, parts - 1)


def last_user_text(messages):
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                return " ".join(p.get("text", "") for p in c if isinstance(p, dict))
            return c or ""
    return ""


def tool_call(name, args, n):
    return {"id": f"call_{name}_{n}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def reply(scenario, body):
    """The assistant message for this request: tool calls or a final answer."""
    messages = body.get("messages") or []
    n = turns_taken(messages)
    # OpenAI nests a tool's name under "function"; Anthropic's tools carry it at the top.
    tools = [(t.get("function") or t).get("name") for t in body.get("tools") or []]
    has_tools = bool(tools)
    msg = script(scenario, messages, n, has_tools)
    # Frameworks that end a run through a final_answer tool (smolagents) get the answer that way.
    if msg.get("content") and "final_answer" in tools:
        return {"role": "assistant", "content": None,
                "tool_calls": [tool_call("final_answer", {"answer": msg["content"]}, n)]}
    return msg


def script(scenario, messages, n, has_tools):
    if scenario == "turn_limit":
        return {"role": "assistant", "content": None, "tool_calls": [tool_call("lookup_order", {"order_id": "A-1"}, n)]}
    if scenario == "tool_raises":
        if n == 0 and has_tools:
            return {"role": "assistant", "content": None, "tool_calls": [tool_call("cancel_order", {"order_id": "A-1"}, n)]}
        return {"role": "assistant", "content": "I could not cancel order A-1."}
    if scenario == "tool_recovered":
        if n == 0 and has_tools:
            return {"role": "assistant", "content": None, "tool_calls": [tool_call("lookup_order", {"order_id": "BAD"}, n)]}
        if n == 1 and has_tools:
            return {"role": "assistant", "content": None, "tool_calls": [tool_call("lookup_order", {"order_id": "A-1"}, n)]}
        return {"role": "assistant", "content": "Order A-1 is in transit."}
    # success, interleave
    if n == 0 and has_tools:
        order = "A-2" if "A-2" in last_user_text(messages) else "A-1"
        return {"role": "assistant", "content": None, "tool_calls": [tool_call("lookup_order", {"order_id": order}, n)]}
    return {"role": "assistant", "content": "Order A-1 is in transit."}


# Anthropic's error bodies for the same scenarios, with its own error types. content_filter
# is not played on this endpoint: the Messages API has no content-filter error (generate.py).
ANTHROPIC_TYPES = {
    500: "api_error",
    503: "overloaded_error",
    429: "rate_limit_error",
    401: "authentication_error",
}


def anthropic_message(msg, n):
    """An OpenAI-style assistant message as a Messages API response."""
    content = []
    if msg.get("content"):
        content.append({"type": "text", "text": msg["content"]})
    for tc in msg.get("tool_calls") or []:
        fn = tc["function"]
        content.append({"type": "tool_use", "id": f"toolu_{fn['name']}_{n}", "name": fn["name"],
                        "input": json.loads(fn["arguments"])})
    return {
        "id": "msg_" + str(int(time.time() * 1e6)),
        "type": "message",
        "role": "assistant",
        "model": ANTHROPIC_MODEL,
        "content": content,
        "stop_reason": "tool_use" if msg.get("tool_calls") else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 42, "output_tokens": 7},
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def send_json(self, code, doc):
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if code == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        self.send_json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        parts = [p for p in self.path.split("/") if p]
        scenario = parts[0] if parts else "success"
        anthropic = parts[-1:] == ["messages"]
        if scenario in ERRORS:
            code, err = ERRORS[scenario]
            if anthropic:
                err = {"type": ANTHROPIC_TYPES[code], "message": err["message"]}
                return self.send_json(code, {"type": "error", "error": err})
            return self.send_json(code, {"error": err})
        if scenario == "timeout":
            time.sleep(TIMEOUT_SLEEP)
        if scenario == "interleave":
            time.sleep(0.15)
        msg = reply(scenario, body)
        if anthropic:
            return self.send_json(200, anthropic_message(msg, turns_taken(body.get("messages") or [])))
        finish = "tool_calls" if msg.get("tool_calls") else "stop"
        doc = {
            "id": "chatcmpl-" + str(int(time.time() * 1e6)),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49},
        }
        if body.get("stream"):
            return self.send_stream(doc)
        self.send_json(200, doc)

    def send_stream(self, doc):
        msg = doc["choices"][0]["message"]
        delta = {"role": "assistant", "content": msg.get("content") or ""}
        if msg.get("tool_calls"):
            delta["tool_calls"] = [dict(tc, index=i) for i, tc in enumerate(msg["tool_calls"])]
        chunks = [
            {"id": doc["id"], "object": "chat.completion.chunk", "created": doc["created"], "model": MODEL,
             "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {"id": doc["id"], "object": "chat.completion.chunk", "created": doc["created"], "model": MODEL,
             "choices": [{"index": 0, "delta": {}, "finish_reason": doc["choices"][0]["finish_reason"]}],
             "usage": doc["usage"]},
        ]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for c in chunks:
            self.wfile.write(b"data: " + json.dumps(c).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


def start(port=0):
    """Start on 127.0.0.1 in a daemon thread (it stops with the process); return the server."""
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    srv = start(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(f"http://127.0.0.1:{srv.server_address[1]}", flush=True)
    # Stops by itself after an hour at most.
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 3600)
