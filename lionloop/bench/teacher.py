"""Teacher-client throughput: how close a client gets to a server's ceiling C/L.

A loopback OpenAI-compatible server (`lionloop.testing.fault_server`, its own process) answers
every request after a fixed latency L with at most C requests in service, so no client can do
better than C/L requests per second. Each client under test sends `requests` judge requests
with `concurrency` C in flight; the figure is its throughput divided by C/L.

Clients measured:

* `ceiling: bare aiohttp` — a minimal aiohttp loop (pre-serialised bodies, no parsing beyond
  JSON): what the server and this machine allow at all;
* `backend openai (transport=aiohttp)` — lionloop's `openai` backend as the loop uses it;
* `backend openai (transport=openai)` — the same backend on `AsyncOpenAI` (aiohttp transport);
* `AsyncOpenAI + semaphore, default transport` — the plain library client (httpx, or httpx2 in
  openai 3.x) with a semaphore;
* `Teacher.ask end to end` — the default backend behind the teacher: template rendering, cache
  lookups and one SQLite write per reply included.
"""

from __future__ import annotations

import asyncio
import importlib.metadata as md
import logging
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CLIENTS = ("ceiling", "backend-aiohttp", "backend-openai", "openai-httpx", "teacher")


@dataclass
class Figure:
    client: str
    requests: int
    seconds: float
    per_second: float
    ratio: float  # of the ceiling C/L


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("aiohttp", "openai", "httpx", "httpx2"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


class ServerProcess:
    """The scripted server in a child process (so it does not share the client's GIL)."""

    def __init__(self, latency_ms: float, concurrency: int) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "lionloop.testing.fault_server",
             "--latency-ms", str(latency_ms), "--concurrency", str(concurrency)],
            stdout=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"benchmark server did not start: {line!r}")
        self.base_url = line.split()[1]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _requests(n: int, tag: str) -> list[Any]:
    from lionloop.teacher.requests import Judge

    answer = "The answer is 42, because six times seven is forty-two. " * 4
    return [Judge(instruction=f"{tag} question {i}: what is six times seven?", answer_1=answer,
                  answer_2=f"{i}") for i in range(n)]


def _teacher_config(url: str, concurrency: int, transport: str) -> Any:
    from lionloop.config import TeacherConfig

    return TeacherConfig(backend="openai", model="scripted", base_urls=[url], concurrency=concurrency,
                         transport=transport, max_tokens=64, timeout_s=60, max_retries=0)


def _openai_backend(url: str, concurrency: int, transport: str) -> Any:
    """lionloop's `openai` backend, reached as the loop reaches it: through the plugins' registry."""
    from lionloop.plugin.manager import get_plugin_manager

    factory = get_plugin_manager().build_registry().get("backend", "openai", "teacher.backend")
    return factory(_teacher_config(url, concurrency, transport))


def _bench_backend(url: str, concurrency: int, n: int, transport: str) -> float:
    backend = _openai_backend(url, concurrency, transport)
    try:
        warm = _requests(concurrency, f"warm-{transport}")
        list(backend.complete(warm, 0))
        reqs = _requests(n, transport)
        for r in reqs:  # rendered before the clock starts, as Teacher.ask does for its cache keys
            backend.prompt_for(r, 0)
        t0 = time.perf_counter()
        got = sum(1 for _, reply in backend.complete(reqs, 0) if reply.error is None)
        dt = time.perf_counter() - t0
    finally:
        backend.close()
    if got != n:
        raise RuntimeError(f"{n - got} of {n} requests failed in the benchmark ({transport})")
    return dt


def _bench_teacher(url: str, concurrency: int, n: int) -> float:
    from lionloop.stores.cache import CallCache
    from lionloop.teacher.client import Teacher

    backend = _openai_backend(url, concurrency, "aiohttp")
    with tempfile.TemporaryDirectory() as tmp:
        cache = CallCache(Path(tmp) / "cache.sqlite")
        teacher = Teacher(backend, cache, "bench", parse_retries=0)
        try:
            teacher.ask(_requests(concurrency, "warm-teacher"))
            reqs = _requests(n, "teacher")
            t0 = time.perf_counter()
            ok = sum(r.ok for r in teacher.ask(reqs))
            dt = time.perf_counter() - t0
        finally:
            backend.close()
            cache.close()
    if ok != n:
        raise RuntimeError(f"{n - ok} of {n} requests failed in the benchmark (teacher)")
    return dt


def _bench_ceiling(url: str, concurrency: int, n: int) -> float:
    import json

    import aiohttp

    body = json.dumps({"model": "scripted", "max_tokens": 64, "messages": [
        {"role": "user", "content": "x " * 300}]}).encode()

    async def run() -> float:
        sem = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
            async def one() -> None:
                async with sem, s.post(f"{url}/chat/completions", data=body,
                                       headers={"Content-Type": "application/json"}) as r:
                    (await r.json())["choices"][0]["message"]["content"]

            await asyncio.gather(*(one() for _ in range(concurrency)))
            t0 = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n)))
            return time.perf_counter() - t0

    return asyncio.run(run())


def _bench_openai_httpx(url: str, concurrency: int, n: int) -> float:
    import openai

    async def run() -> float:
        sem = asyncio.Semaphore(concurrency)
        client = openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0)

        async def one(i: int) -> None:
            async with sem:
                r = await client.chat.completions.create(
                    model="scripted", max_tokens=64, temperature=0,
                    messages=[{"role": "user", "content": f"{i} " + "x " * 300}])
                r.choices[0].message.content  # noqa: B018

        try:
            await asyncio.gather(*(one(i) for i in range(concurrency)))
            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            return time.perf_counter() - t0
        finally:
            await client.close()

    return asyncio.run(run())


def run(
    concurrency: int = 64,
    latency_ms: float = 200.0,
    requests: int = 2000,
    clients: tuple[str, ...] = CLIENTS,
    repeat: int = 1,
    on_figure: Callable[[Figure], None] | None = None,
) -> dict[str, Any]:
    """Measure each client (best of `repeat`) against one server; returns figures and versions."""
    unknown = [c for c in clients if c not in CLIENTS]
    if unknown:
        raise ValueError(f"unknown client(s) {unknown}; choose from {', '.join(CLIENTS)}")
    limit = concurrency / (latency_ms / 1000)
    benches: dict[str, tuple[str, Callable[[str], float]]] = {
        "ceiling": ("ceiling: bare aiohttp", lambda u: _bench_ceiling(u, concurrency, requests)),
        "backend-aiohttp": ("backend openai (transport=aiohttp)",
                            lambda u: _bench_backend(u, concurrency, requests, "aiohttp")),
        "backend-openai": ("backend openai (transport=openai)",
                           lambda u: _bench_backend(u, concurrency, requests, "openai")),
        "openai-httpx": ("AsyncOpenAI + semaphore, default transport", lambda u: _bench_openai_httpx(u, concurrency, requests)),
        "teacher": ("Teacher.ask end to end (aiohttp)", lambda u: _bench_teacher(u, concurrency, requests)),
    }
    server = ServerProcess(latency_ms, concurrency)
    figures: list[Figure] = []
    try:
        for key in clients:
            label, fn = benches[key]
            best = min(fn(server.base_url) for _ in range(max(1, repeat)))
            fig = Figure(label, requests, round(best, 3), round(requests / best, 1),
                         round(requests / best / limit, 3))
            figures.append(fig)
            if on_figure:
                on_figure(fig)
    finally:
        server.close()
    return {
        "concurrency": concurrency, "latency_ms": latency_ms, "limit_per_second": round(limit, 1),
        "figures": [asdict(f) for f in figures], "versions": versions(),
    }
