"""A scripted OpenAI-compatible chat server on loopback: fixed latency, bounded concurrency, faults.

Two uses:

* benchmarks: a server with latency L and at most C requests in service has a ceiling of C/L
  requests per second; `lionloop bench teacher` measures how close a client gets to it;
* fault tests: each request can be answered with a scripted fault (429 with Retry-After, 500,
  a response slower than the client's timeout, a dropped connection, a malformed JSON body, an
  empty message) chosen by a `plan(key, nth)` from the request's content key and how many times
  that content was seen, so a retry of the same prompt can meet a different fate.

The replies themselves come from a `responder(body) -> str` (default: a minimal instance of the
requested JSON schema, or "ok").

In a thread of the current process::

    with ScriptedServer(latency_s=0.2, concurrency=64) as srv:
        ... srv.base_url ...

Or as its own process (what the benchmark does, so the server does not share the client's GIL)::

    python -m lionloop.testing.fault_server --latency-ms 200 --concurrency 64
    # prints "READY http://127.0.0.1:PORT/v1" once it listens
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

FAULTS = ("429", "500", "400", "context", "slow", "drop", "malformed", "empty", "no_choices", "truncated")
"""Fault names a plan may return (None or "ok" answers normally)."""

Plan = Callable[[str, int], "str | None"]
Responder = Callable[[dict[str, Any]], str]


def content_key(body: dict[str, Any]) -> str:
    """What identifies a request's content across retries: model, messages and response format."""
    blob = json.dumps(
        {"model": body.get("model"), "messages": body.get("messages"), "rf": body.get("response_format")},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def schema_instance(schema: dict[str, Any]) -> Any:
    """A small value that satisfies a (simple) JSON schema: the default responder's reply."""
    t = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if t == "object":
        props = schema.get("properties", {})
        return {k: schema_instance(v) for k, v in props.items()}
    if t == "array":
        return [schema_instance(schema.get("items", {}))] * int(schema.get("minItems", 0))
    if t in ("integer", "number"):
        lo = schema.get("minimum", 0)
        hi = schema.get("maximum", lo)
        return int((lo + hi) // 2) if t == "integer" else (lo + hi) / 2
    if t == "boolean":
        return False
    return "x" * max(1, int(schema.get("minLength", 1)))


def default_responder(body: dict[str, Any]) -> str:
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_schema":
        return json.dumps(schema_instance(rf["json_schema"]["schema"]))
    if rf.get("type") == "json_object":
        return json.dumps(schema_instance(rf["schema"])) if rf.get("schema") else "{}"
    return "ok"


def format_name(body: dict[str, Any]) -> str:
    """The structured-output mode a request asks for: json_schema, json_object+schema,
    json_object or text."""
    rf = body.get("response_format") or {}
    kind = rf.get("type") or "text"
    return "json_object+schema" if kind == "json_object" and rf.get("schema") else kind


def cycle_plan(scripts: list[list[str | None]]) -> Plan:
    """A plan giving each content key one of `scripts` (by hash): the n-th sight of a key gets
    script[n], and the script's last entry once it runs out. Deterministic across processes."""

    def plan(key: str, nth: int) -> str | None:
        script = scripts[int(key, 16) % len(scripts)]
        return script[min(nth, len(script) - 1)] if script else None

    return plan


@dataclass
class ServerStats:
    """What the server saw: thread-safe enough for tests (CPython dict/Counter ops are atomic)."""

    requests: int = 0
    answered: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    seen: Counter[str] = field(default_factory=Counter)  # content key -> requests
    answered_keys: list[str] = field(default_factory=list)  # content keys answered with 200 + content
    inflight: int = 0
    max_inflight: int = 0
    models: Counter[str] = field(default_factory=Counter)
    auth: Counter[str] = field(default_factory=Counter)  # Authorization headers seen
    bodies: list[dict[str, Any]] = field(default_factory=list)  # the last `keep_bodies` request bodies

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "answered": self.answered, "faults": dict(self.faults),
            "max_inflight": self.max_inflight, "distinct": len(self.seen), "models": dict(self.models),
        }


class ScriptedServer:
    """OpenAI-compatible `/v1/chat/completions` and `/v1/models` on loopback (aiohttp.web)."""

    def __init__(
        self,
        *,
        responder: Responder | None = None,
        plan: Plan | None = None,
        latency_s: float = 0.0,
        concurrency: int | None = None,
        retry_after: str | None = "1",
        retry_after_ms: int | None = None,
        slow_s: float = 30.0,
        model: str = "scripted",
        host: str = "127.0.0.1",
        port: int = 0,
        keep_bodies: int = 0,
        formats: tuple[str, ...] | None = None,
    ) -> None:
        self.responder = responder or default_responder
        # Structured-output modes this server accepts (None: all). Others are refused as
        # llama.cpp's server refuses json_schema: HTTP 500 with a validation message.
        self.formats = formats
        self.plan = plan
        self.latency_s = latency_s
        self.concurrency = concurrency
        self.retry_after = retry_after
        self.retry_after_ms = retry_after_ms
        self.slow_s = slow_s
        self.model = model
        self.host = host
        self.port = port
        self.keep_bodies = keep_bodies
        self.on_body: Callable[[dict[str, Any]], None] | None = None  # sees each body first
        self.stats = ServerStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self._ready = threading.Event()
        self._sem: asyncio.Semaphore | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- handlers --------------------------------------------------------------------------------

    async def _models(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        st = self.stats
        st.requests += 1
        body = await request.json()
        if self.on_body is not None:
            self.on_body(body)
        key = content_key(body)
        nth = st.seen[key]
        st.seen[key] += 1
        st.models[str(body.get("model"))] += 1
        st.auth[request.headers.get("Authorization", "")] += 1
        if self.keep_bodies:
            st.bodies.append(body)
            del st.bodies[: -self.keep_bodies]
        if self.formats is not None and format_name(body) not in ("text", *self.formats):
            st.faults["format"] += 1
            allowed = " or ".join(repr(f) for f in ("text", *self.formats))
            return web.json_response({"error": {"code": 500, "type": "server_error", "message": (
                f"1 validation error: response_format: Input should be {allowed} "
                f"(got {format_name(body)!r}) [type=literal_error]")}}, status=500)
        fault = self.plan(key, nth) if self.plan else None
        if fault in (None, "ok"):
            fault = None
        else:
            st.faults[fault] += 1
        if fault == "429":
            headers = {}
            if self.retry_after is not None:
                headers["Retry-After"] = self.retry_after
            if self.retry_after_ms is not None:
                headers["retry-after-ms"] = str(self.retry_after_ms)
            return web.json_response(
                {"error": {"message": "rate limited (scripted)", "type": "rate_limit", "code": 429}},
                status=429, headers=headers,
            )
        if fault == "400":
            return web.json_response({"error": {"message": "bad request (scripted)"}}, status=400)
        if fault == "context":  # vLLM's refusal of a prompt longer than its context, word for word
            return web.json_response({"error": {"message": (
                "This model's maximum context length is 512 tokens. However, your prompt contains at least 513 "
                "input tokens, which exceeds this limit even without any output tokens. Please reduce the length "
                "of the input prompt. (parameter=input_tokens, value=513)"), "type": "BadRequestError",
                "param": "input_tokens", "code": 400}}, status=400)
        if fault == "500":
            return web.json_response({"error": {"message": "internal error (scripted)"}}, status=500)
        if fault == "drop":
            request.transport.close()  # the client sees the connection die without a response
            return web.Response(status=204)
        sem = self._sem
        if sem is not None:
            await sem.acquire()
        st.inflight += 1
        st.max_inflight = max(st.max_inflight, st.inflight)
        try:
            await asyncio.sleep(self.slow_s if fault == "slow" else self.latency_s)
            if fault == "malformed":
                return web.Response(text='{"id": "x", "choices": [{"message": ', content_type="application/json")
            content = "" if fault == "empty" else self.responder(body)
            if fault == "truncated":  # as if max_tokens ran out half-way
                content = content[: len(content) // 2]
        finally:
            st.inflight -= 1
            if sem is not None:
                sem.release()
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        reply = {
            "id": f"chatcmpl-{key}-{nth}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [] if fault == "no_choices" else [
                {"index": 0, "finish_reason": "length" if fault == "truncated" else "stop",
                 "message": {"role": "assistant", "content": content}},
            ],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content.split()),
                      "total_tokens": prompt_tokens + len(content.split())},
        }
        if content:
            st.answered += 1
            st.answered_keys.append(key)
        return web.json_response(reply)

    # -- lifecycle -------------------------------------------------------------------------------

    async def _start(self) -> None:
        from aiohttp import web

        self._sem = asyncio.Semaphore(self.concurrency) if self.concurrency else None
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - port 0 resolved

    async def serve_forever(self) -> None:
        """Run in the current event loop until cancelled (the `python -m` entry point)."""
        await self._start()
        self._ready.set()
        try:
            await asyncio.Event().wait()
        finally:
            await self._runner.cleanup()

    def start(self) -> ScriptedServer:
        """Serve from a daemon thread with its own event loop; returns once listening."""
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            self._ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="scripted-openai-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("scripted server did not start")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
        try:
            fut.result(10)
        except Exception:  # noqa: BLE001 - best effort
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency-ms", type=float, default=200.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--model", default="scripted")
    args = p.parse_args(argv)
    srv = ScriptedServer(
        latency_s=args.latency_ms / 1000, concurrency=args.concurrency or None,
        model=args.model, host=args.host, port=args.port,
    )

    async def run() -> None:
        task = asyncio.create_task(srv.serve_forever())
        while not srv._ready.is_set():  # noqa: SLF001
            await asyncio.sleep(0.01)
        print(f"READY {srv.base_url}", flush=True)
        await task

    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
