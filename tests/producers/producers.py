"""One (producer, scenario) run, started by generate.py with PRODUCER, SCENARIO, MODEL_BASE
(the scripted model server's base URL for this scenario), COLLECTOR (the local receiver's
base URL for this run) and OUT_FILE (path prefix for files the producer writes itself).

Each producer is used the way its documentation tells users to: its own agent loop or
framework, its own instrumentation, its own exporter. The agent's run may fail (that is the
scenario); the process fails only when the driver itself breaks.
"""

import json
import os
import threading
import traceback

PRODUCER = os.environ["PRODUCER"]
SCENARIOS = os.environ["SCENARIOS"].split(",")
MODEL_URL = os.environ["MODEL_URL"]
COLLECTOR_URL = os.environ["COLLECTOR_URL"]
OUT_DIR = os.environ["OUT_DIR"]
# Where spans are sent: the collector files what it receives under the scenario this process
# last switched to (`switch`), so one process (one set of imports) plays every scenario.
COLLECTOR = f"{COLLECTOR_URL}/{PRODUCER}/live"
SCENARIO = ""
MODEL_BASE = ""
OUT_FILE = ""


def switch(scenario):
    global SCENARIO, MODEL_BASE, OUT_FILE
    import urllib.request

    SCENARIO = scenario
    MODEL_BASE = f"{MODEL_URL}/{scenario}/v1"
    OUT_FILE = os.path.join(OUT_DIR, PRODUCER, scenario)
    urllib.request.urlopen(f"{COLLECTOR_URL}/_switch/{PRODUCER}/{scenario}").read()
MODEL = "gpt-4o-mini"
API_KEY = "sk-test"
# Short client timeouts and one retry: the timeout scenario's server answers after 3 s, and
# the SDK's own retry still runs before the error reaches the agent.
TIMEOUT = 1.0
RETRIES = 1
MAX_TURNS = 3
SYSTEM = "You are a support agent. Use the tools."
TASKS = ["Where is order A-1?", "Where is order A-2?"]


def lookup_order(order_id: str) -> dict:
    """Look up an order's shipping status."""
    if order_id == "BAD":
        raise LookupError(f"order {order_id} not found")
    return {"order_id": order_id, "status": "in transit"}


def cancel_order(order_id: str) -> dict:
    """Cancel an order that has not shipped yet."""
    raise ValueError(f"order {order_id} has already shipped and cannot be cancelled")


TOOL_IMPLS = {"lookup_order": lookup_order, "cancel_order": cancel_order}
TOOL_SCHEMAS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": fn.__doc__,
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
    for name, fn in TOOL_IMPLS.items()
]


def each_scenario(play, flush):
    """Play every scenario in turn; flush what the producer buffered before switching on."""
    for scenario in SCENARIOS:
        switch(scenario)
        print(f"== {scenario}", flush=True)
        play()
        flush()


class MaxTurnsExceeded(RuntimeError):
    pass


def tasks():
    return TASKS if SCENARIO == "interleave" else TASKS[:1]


def concurrently(fn):
    """Run fn(task) for each task; two at once in the interleave scenario, so spans interleave."""
    errors = []

    def one(task):
        try:
            fn(task)
        except Exception as e:  # the scenario's failure: recorded by the producer, not ours
            errors.append(e)

    threads = [threading.Thread(target=one, args=(t,)) for t in tasks()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        print("agent run failed:", type(e).__name__, e)


# ---------------------------------------------------------------- a hand-written agent loop
# (what users of the plain OpenAI client and an instrumentation write)


def manual_agent(client, task, tool_span, agent_span):
    """A minimal tool-calling loop. `agent_span(task)` and `tool_span(name, args, call_id)` are
    the producer's context managers; a handled tool error goes back to the model as text."""
    with agent_span(task) as root:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task}]
        for _ in range(MAX_TURNS):
            resp = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOL_SCHEMAS)
            msg = resp.choices[0].message
            if not msg.tool_calls:
                if root is not None and hasattr(root, "set_attribute"):
                    root.set_attribute("output.value", msg.content or "")
                return msg.content
            messages.append(msg.model_dump(exclude_none=True))
            for tc in msg.tool_calls:
                args = json.loads(tc.function.arguments or "{}")
                with tool_span(tc.function.name, args, tc.id) as span:
                    try:
                        result = TOOL_IMPLS[tc.function.name](**args)
                    except LookupError as e:
                        # Handled: the model sees the error and can try again.
                        mark_error(span, e)
                        result = {"error": str(e)}
                    content = json.dumps(result)
                    if span is not None and hasattr(span, "set_attribute"):
                        span.set_attribute("output.value", content)
                messages.append({"role": "tool", "tool_call_id": tc.id, "content": content})
        raise MaxTurnsExceeded(f"Max turns ({MAX_TURNS}) exceeded")


def mark_error(span, e):
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    if hasattr(span, "record_exception"):
        span.record_exception(e)
        span.set_status(Status(StatusCode.ERROR, str(e)))


def sync_client():
    from openai import OpenAI

    return OpenAI(base_url=MODEL_BASE, api_key=API_KEY, timeout=TIMEOUT, max_retries=RETRIES)


def otel_provider(exporter, simple=False):
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "support-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter) if simple else BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def otlp_exporter():
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=f"{COLLECTOR}/v1/traces")


def genai_spans(tracer):
    """Agent and tool spans as the OpenTelemetry GenAI semantic conventions name them."""
    from contextlib import contextmanager

    @contextmanager
    def agent_span(task):
        with tracer.start_as_current_span(
            "invoke_agent support-agent",
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "support-agent",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": MODEL,
            },
        ) as span:
            yield span

    @contextmanager
    def tool_span(name, args, call_id):
        with tracer.start_as_current_span(
            f"execute_tool {name}",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.call.id": call_id,
                "gen_ai.tool.call.arguments": json.dumps(args),
            },
        ) as span:
            yield span

    return agent_span, tool_span


def oi_spans(tracer):
    """Agent and tool spans with OpenInference's attributes."""
    from contextlib import contextmanager

    @contextmanager
    def agent_span(task):
        with tracer.start_as_current_span(
            "support-agent",
            attributes={"openinference.span.kind": "AGENT", "input.value": task, "agent.name": "support-agent"},
        ) as span:
            yield span

    @contextmanager
    def tool_span(name, args, call_id):
        with tracer.start_as_current_span(
            name,
            attributes={
                "openinference.span.kind": "TOOL",
                "tool.name": name,
                "tool.parameters": json.dumps(args),
                "tool_call.id": call_id,
                "input.value": json.dumps(args),
            },
        ) as span:
            yield span

    return agent_span, tool_span


def run_otel_genai(console=False):
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    from opentelemetry import trace
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    if console:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        class Out:
            """The console exporter's stream, reopened per scenario."""

            f = None

            def write(self, text):
                if self.f is None or self.f.name != OUT_FILE + ".console.json":
                    self.f = open(OUT_FILE + ".console.json", "w")
                self.f.write(text)

            def flush(self):
                if self.f:
                    self.f.flush()

        provider = otel_provider(ConsoleSpanExporter(out=Out()), simple=True)
    else:
        provider = otel_provider(otlp_exporter())
    OpenAIInstrumentor().instrument()
    agent_span, tool_span = genai_spans(trace.get_tracer("support-agent"))

    def play():
        client = sync_client()
        concurrently(lambda task: manual_agent(client, task, tool_span, agent_span))

    each_scenario(play, provider.force_flush)
    provider.shutdown()


def run_openinference():
    from openinference.instrumentation.openai import OpenAIInstrumentor
    from opentelemetry import trace

    provider = otel_provider(otlp_exporter())
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    agent_span, tool_span = oi_spans(trace.get_tracer("support-agent"))

    def play():
        client = sync_client()
        concurrently(lambda task: manual_agent(client, task, tool_span, agent_span))

    each_scenario(play, provider.force_flush)
    provider.shutdown()


def run_openllmetry():
    from contextlib import contextmanager

    from traceloop.sdk import Traceloop
    from traceloop.sdk.decorators import agent, tool

    Traceloop.init(app_name="support-agent", api_endpoint=COLLECTOR, disable_batch=True, telemetry_enabled=False)
    clients = {}

    def client():
        return clients.setdefault(MODEL_BASE, sync_client())

    # The decorators are how traceloop users mark agents and tools.
    traced_tools = {name: tool(name=name)(fn) for name, fn in TOOL_IMPLS.items()}

    @contextmanager
    def no_span(*_):
        yield None

    @agent(name="support-agent")
    def support_agent(task):
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task}]
        for _ in range(MAX_TURNS):
            resp = client().chat.completions.create(model=MODEL, messages=messages, tools=TOOL_SCHEMAS)
            msg = resp.choices[0].message
            if not msg.tool_calls:
                return msg.content
            messages.append(msg.model_dump(exclude_none=True))
            for tc in msg.tool_calls:
                args = json.loads(tc.function.arguments or "{}")
                try:
                    result = traced_tools[tc.function.name](**args)
                except LookupError as e:
                    result = {"error": str(e)}
                messages.append({"role": "tool", "tool_call_id": tc.id, "content": json.dumps(result)})
        raise MaxTurnsExceeded(f"Max turns ({MAX_TURNS}) exceeded")

    from opentelemetry import trace

    each_scenario(lambda: concurrently(support_agent), trace.get_tracer_provider().force_flush)
    trace.get_tracer_provider().shutdown()


def run_langfuse():
    os.environ.update(
        LANGFUSE_PUBLIC_KEY="pk-lf-test",
        LANGFUSE_SECRET_KEY="sk-lf-test",
        LANGFUSE_HOST=COLLECTOR,
        LANGFUSE_BASE_URL=COLLECTOR,
        LANGFUSE_TRACING_ENVIRONMENT="test",
    )
    from langfuse import get_client, observe
    from langfuse.openai import OpenAI

    clients = {}

    def client():
        return clients.setdefault(
            MODEL_BASE, OpenAI(base_url=MODEL_BASE, api_key=API_KEY, timeout=TIMEOUT, max_retries=RETRIES)
        )

    traced_tools = {name: observe(name=name, as_type="tool")(fn) for name, fn in TOOL_IMPLS.items()}

    @observe(name="support-agent", as_type="agent")
    def support_agent(task):
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task}]
        for _ in range(MAX_TURNS):
            resp = client().chat.completions.create(model=MODEL, messages=messages, tools=TOOL_SCHEMAS)
            msg = resp.choices[0].message
            if not msg.tool_calls:
                return msg.content
            messages.append(msg.model_dump(exclude_none=True))
            for tc in msg.tool_calls:
                args = json.loads(tc.function.arguments or "{}")
                try:
                    result = traced_tools[tc.function.name](**args)
                except LookupError as e:
                    result = {"error": str(e)}
                messages.append({"role": "tool", "tool_call_id": tc.id, "content": json.dumps(result)})
        raise MaxTurnsExceeded(f"Max turns ({MAX_TURNS}) exceeded")

    each_scenario(lambda: concurrently(support_agent), lambda: get_client().flush())
    get_client().shutdown()


def run_openai_agents():
    import asyncio

    from agents import (
        Agent,
        Runner,
        function_tool,
        set_default_openai_api,
        set_default_openai_client,
        set_trace_processors,
    )
    from agents.tracing.processor_interface import TracingProcessor
    from agents.tracing.processors import BackendSpanExporter, BatchTraceProcessor
    from openai import AsyncOpenAI

    class FileProcessor(TracingProcessor):
        """What users write to keep the SDK's spans locally: one exported span per line."""

        def __init__(self):
            self.f = None
            self.lock = threading.Lock()

        def write(self, item):
            doc = item.export()
            if doc:
                with self.lock:
                    if self.f is None or self.f.name != OUT_FILE + ".jsonl":
                        self.f = open(OUT_FILE + ".jsonl", "w")
                    self.f.write(json.dumps(doc, default=str) + "\n")
                    self.f.flush()

        def on_trace_start(self, trace):
            pass

        def on_trace_end(self, trace):
            self.write(trace)

        def on_span_start(self, span):
            pass

        def on_span_end(self, span):
            self.write(span)

        def shutdown(self):
            if self.f:
                self.f.close()

        def force_flush(self):
            if self.f:
                self.f.flush()

    set_default_openai_api("chat_completions")
    # The SDK's own ingest payloads go to the collector, filed as a producer of their own.
    ingest = f"{COLLECTOR_URL}/openai-agents-ingest/live/v1/traces/ingest"
    backend = BatchTraceProcessor(BackendSpanExporter(api_key=API_KEY, endpoint=ingest), schedule_delay=0.2)
    files = FileProcessor()
    set_trace_processors([files, backend])

    handled = function_tool(lookup_order)  # default: the error goes back to the model
    raising = function_tool(cancel_order, failure_error_function=None)  # the error ends the run
    agent = Agent(name="support-agent", instructions=SYSTEM, model=MODEL, tools=[handled, raising])

    async def one(task):
        await Runner.run(agent, task, max_turns=MAX_TURNS)

    async def all_():
        results = await asyncio.gather(*(one(t) for t in tasks()), return_exceptions=True)
        for r in results:
            if isinstance(r, Exception):
                print("agent run failed:", type(r).__name__, r)

    def play():
        import urllib.request

        urllib.request.urlopen(f"{COLLECTOR_URL}/_switch/openai-agents-ingest/{SCENARIO}").read()
        client = AsyncOpenAI(base_url=MODEL_BASE, api_key=API_KEY, timeout=TIMEOUT, max_retries=RETRIES)
        set_default_openai_client(client, use_for_tracing=False)
        asyncio.run(all_())

    def flush():
        files.force_flush()
        backend.force_flush()

    each_scenario(play, flush)
    backend.shutdown()


def run_langsmith():
    os.environ.update(
        LANGSMITH_TRACING="true",
        LANGSMITH_ENDPOINT=COLLECTOR,
        LANGSMITH_API_KEY="lsv2_test",
        LANGSMITH_PROJECT="support-agent",
    )
    from langchain.agents import create_agent
    from langchain_core.tools import StructuredTool, ToolException
    from langchain_openai import ChatOpenAI

    def lookup(order_id: str) -> dict:
        """Look up an order's shipping status."""
        try:
            return lookup_order(order_id)
        except LookupError as e:
            # LangChain's way to hand a tool error back to the model.
            raise ToolException(str(e)) from e

    tools = [
        StructuredTool.from_function(lookup, name="lookup_order", handle_tool_error=True),
        StructuredTool.from_function(cancel_order, name="cancel_order"),
    ]
    from langchain_core.tracers.langchain import wait_for_all_tracers

    def play():
        llm = ChatOpenAI(model=MODEL, base_url=MODEL_BASE, api_key=API_KEY, timeout=TIMEOUT, max_retries=RETRIES)
        agent = create_agent(llm, tools=tools, system_prompt=SYSTEM, name="support-agent")
        # LangGraph counts super-steps: a model turn and a tool turn are two.
        limit = {"recursion_limit": 2 * MAX_TURNS}
        concurrently(lambda task: agent.invoke({"messages": [{"role": "user", "content": task}]}, limit))

    each_scenario(play, wait_for_all_tracers)


def run_pydantic_ai():
    import logfire
    from openai import AsyncOpenAI
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from pydantic_ai import Agent, ModelRetry
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.usage import UsageLimits

    # Logfire without its cloud: spans go to a local OTLP endpoint.
    logfire.configure(
        send_to_logfire=False,
        console=False,
        service_name="support-agent",
        additional_span_processors=[BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{COLLECTOR}/v1/traces"))],
    )
    logfire.instrument_pydantic_ai()
    agent = Agent(system_prompt=SYSTEM, name="support-agent")

    @agent.tool_plain(name="lookup_order")
    def lookup(order_id: str) -> dict:
        """Look up an order's shipping status."""
        try:
            return lookup_order(order_id)
        except LookupError as e:
            raise ModelRetry(str(e)) from e

    @agent.tool_plain(name="cancel_order")
    def cancel(order_id: str) -> dict:
        """Cancel an order that has not shipped yet."""
        return cancel_order(order_id)

    def one(task):
        # A client per run: each thread's run_sync has its own event loop.
        client = AsyncOpenAI(base_url=MODEL_BASE, api_key=API_KEY, timeout=TIMEOUT, max_retries=RETRIES)
        model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))
        agent.run_sync(task, model=model, usage_limits=UsageLimits(request_limit=MAX_TURNS))

    def play():
        concurrently(one)

    each_scenario(play, logfire.force_flush)
    logfire.shutdown() if hasattr(logfire, "shutdown") else None


def run_smolagents():
    from openinference.instrumentation.smolagents import SmolagentsInstrumentor
    from smolagents import OpenAIModel, ToolCallingAgent, tool

    provider = otel_provider(otlp_exporter())
    SmolagentsInstrumentor().instrument(tracer_provider=provider)

    @tool
    def lookup_order_tool(order_id: str) -> dict:
        """Look up an order's shipping status.

        Args:
            order_id: the order's id.
        """
        return lookup_order(order_id)

    @tool
    def cancel_order_tool(order_id: str) -> dict:
        """Cancel an order that has not shipped yet.

        Args:
            order_id: the order's id.
        """
        return cancel_order(order_id)

    lookup_order_tool.name = "lookup_order"
    cancel_order_tool.name = "cancel_order"
    def one(task):
        model = OpenAIModel(
            model_id=MODEL,
            api_base=MODEL_BASE,
            api_key=API_KEY,
            client_kwargs={"timeout": TIMEOUT, "max_retries": RETRIES},
            # smolagents' own rate-limit retry waits 60 s and more; the client's retry stays.
            retry=False,
        )
        agent = ToolCallingAgent(
            tools=[lookup_order_tool, cancel_order_tool], model=model, max_steps=MAX_TURNS, name="support_agent"
        )
        agent.run(task)

    each_scenario(lambda: concurrently(one), provider.force_flush)
    provider.shutdown()


def run_anthropic():
    """The anthropic client in a hand-written tool loop, instrumented by OpenInference."""
    from anthropic import Anthropic
    from openinference.instrumentation.anthropic import AnthropicInstrumentor
    from opentelemetry import trace

    provider = otel_provider(otlp_exporter())
    AnthropicInstrumentor().instrument(tracer_provider=provider)
    agent_span, tool_span = oi_spans(trace.get_tracer("support-agent"))
    tools = [
        {"name": t["function"]["name"], "description": t["function"]["description"],
         "input_schema": t["function"]["parameters"]}
        for t in TOOL_SCHEMAS
    ]

    def agent(client, task):
        with agent_span(task) as root:
            messages = [{"role": "user", "content": task}]
            for _ in range(MAX_TURNS):
                resp = client.messages.create(
                    model="claude-haiku-4-5", max_tokens=512, system=SYSTEM, messages=messages, tools=tools
                )
                calls = [b for b in resp.content if b.type == "tool_use"]
                if not calls:
                    text = "".join(b.text for b in resp.content if b.type == "text")
                    root.set_attribute("output.value", text)
                    return text
                messages.append({"role": "assistant", "content": [b.model_dump() for b in resp.content]})
                results = []
                for call in calls:
                    with tool_span(call.name, call.input, call.id) as span:
                        try:
                            result, failed = TOOL_IMPLS[call.name](**call.input), False
                        except LookupError as e:
                            # Handled: the model sees the error (is_error) and can try again.
                            mark_error(span, e)
                            result, failed = {"error": str(e)}, True
                        content = json.dumps(result)
                        span.set_attribute("output.value", content)
                    results.append(
                        {"type": "tool_result", "tool_use_id": call.id, "content": content, "is_error": failed}
                    )
                messages.append({"role": "user", "content": results})
            raise MaxTurnsExceeded(f"Max turns ({MAX_TURNS}) exceeded")

    def play():
        # The Messages API lives at <base>/v1/messages.
        client = Anthropic(
            base_url=MODEL_BASE.removesuffix("/v1"), api_key=API_KEY, timeout=TIMEOUT, max_retries=RETRIES
        )
        concurrently(lambda task: agent(client, task))

    each_scenario(play, provider.force_flush)
    provider.shutdown()


RUNNERS = {
    "otel-genai": run_otel_genai,
    "otel-console": lambda: run_otel_genai(console=True),
    "openinference": run_openinference,
    "openllmetry": run_openllmetry,
    "openai-agents": run_openai_agents,
    "langsmith": run_langsmith,
    "langfuse": run_langfuse,
    "pydantic-ai": run_pydantic_ai,
    "smolagents": run_smolagents,
    "anthropic": run_anthropic,
}

if __name__ == "__main__":
    try:
        RUNNERS[PRODUCER]()
    except Exception:
        traceback.print_exc()
        raise SystemExit(2)
