"""A loopback implementation of OpenAI's Batch API, for tests and benchmarks of the `batch` backend.

The real API cannot be reached from the machines the tests run on (no network, and it is paid):
this server implements the part lionloop uses, as the API documents it —

* `POST /v1/files` (multipart: `purpose=batch`, `file`), `GET /v1/files/{id}/content`;
* `POST /v1/batches` (`input_file_id`, `endpoint`, `completion_window`, `metadata`),
  `GET /v1/batches/{id}`, `GET /v1/batches?limit=&after=` (newest first), `POST /v1/batches/{id}/cancel`;
* statuses `validating` -> `in_progress` -> `completed` (or `expired` past `expire_s`, with the
  requests finished by then), `request_counts`, `output_file_id` / `error_file_id`, output lines
  `{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`.

A job answers `delay_s` seconds after it was created; each request's reply comes from a
`responder(body) -> content` (e.g. `SkillsChat`). `stats.billed` counts every request a job
answered by custom id: a request billed twice is a request paid twice.

    with BatchServer(responder=SkillsChat(), delay_s=1.0) as srv:
        ... teacher.base_urls = [srv.base_url] ...
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lionloop.testing.fault_server import default_responder

Responder = Callable[[dict[str, Any]], str]


@dataclass
class BatchStats:
    uploads: int = 0
    created: list[str] = field(default_factory=list)  # lionloop tags (metadata) of the jobs, in order
    billed: Counter[str] = field(default_factory=Counter)  # custom_id -> times answered by a job
    failed: Counter[str] = field(default_factory=Counter)  # custom_id -> times it ended in the error file
    polls: int = 0


class BatchServer:
    """The Batch API on loopback (aiohttp.web in a daemon thread)."""

    def __init__(self, *, responder: Responder | None = None, delay_s: float = 0.5, expire_s: float | None = None,
                 errors: Callable[[str], bool] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.responder = responder or default_responder
        self.delay_s = delay_s
        self.expire_s = expire_s
        self.errors = errors  # custom_id -> True: that request ends in the error file
        self.host, self.port = host, port
        self.stats = BatchStats()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- files -----------------------------------------------------------------------------------

    async def _upload(self, request: Any) -> Any:
        from aiohttp import web

        form = await request.post()
        if form.get("purpose") != "batch" or "file" not in form:
            return web.json_response({"error": {"message": "purpose=batch and a file are required"}}, status=400)
        data = form["file"].file.read()
        fid = f"file-{uuid.uuid4().hex[:24]}"
        with self._lock:
            self.files[fid] = data
            self.stats.uploads += 1
        return web.json_response({"id": fid, "object": "file", "bytes": len(data), "purpose": "batch",
                                  "filename": form["file"].filename, "created_at": int(time.time())})

    async def _content(self, request: Any) -> Any:
        from aiohttp import web

        data = self.files.get(request.match_info["fid"])
        if data is None:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    # -- batches ---------------------------------------------------------------------------------

    async def _create(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        if body.get("input_file_id") not in self.files:
            return web.json_response({"error": {"message": "input_file_id not found"}}, status=400)
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return web.json_response({"error": {"message": "endpoint or completion_window not supported"}}, status=400)
        lines = [json.loads(x) for x in self.files[body["input_file_id"]].decode().splitlines() if x.strip()]
        ids = [x["custom_id"] for x in lines]
        if len(set(ids)) != len(ids):
            return web.json_response({"error": {"message": "custom_id values must be unique"}}, status=400)
        bid = f"batch_{uuid.uuid4().hex[:24]}"
        job = {"id": bid, "object": "batch", "endpoint": body["endpoint"], "input_file_id": body["input_file_id"],
               "completion_window": "24h", "status": "validating", "output_file_id": None, "error_file_id": None,
               "created_at": time.time(), "metadata": body.get("metadata") or {},
               "request_counts": {"total": len(lines), "completed": 0, "failed": 0}, "_lines": lines}
        with self._lock:
            self.batches[bid] = job
            self.stats.created.append(str(job["metadata"].get("lionloop_tag", bid)))
        return web.json_response(self._public(job))

    def _advance(self, job: dict[str, Any]) -> None:
        """Move a job on with the clock: answer it `delay_s` after creation (or expire it)."""
        if job["status"] in ("completed", "expired", "cancelled", "failed"):
            return
        age = time.time() - job["created_at"]
        if self.expire_s is not None and age >= self.expire_s:
            self._finish(job, "expired", job["_lines"][: len(job["_lines"]) // 2])
        elif age >= self.delay_s:
            self._finish(job, "completed", job["_lines"])
        else:
            job["status"] = "in_progress" if age >= min(0.05, self.delay_s / 2) else "validating"

    def _finish(self, job: dict[str, Any], status: str, done: list[dict[str, Any]]) -> None:
        out, err = [], []
        for line in done:
            cid = line["custom_id"]
            if self.errors is not None and self.errors(cid):  # failed requests are not billed
                self.stats.failed[cid] += 1
                err.append({"id": f"batch_req_{uuid.uuid4().hex[:12]}", "custom_id": cid, "error": None,
                            "response": {"status_code": 500, "request_id": uuid.uuid4().hex,
                                         "body": {"error": {"message": "internal error (scripted)"}}}})
                continue
            self.stats.billed[cid] += 1
            body = line["body"]
            content = self.responder(body)
            pt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
            out.append({"id": f"batch_req_{uuid.uuid4().hex[:12]}", "custom_id": cid, "error": None,
                        "response": {"status_code": 200, "request_id": uuid.uuid4().hex, "body": {
                            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
                            "model": body.get("model"),
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": content}}],
                            "usage": {"prompt_tokens": pt, "completion_tokens": len(content.split()),
                                      "total_tokens": pt + len(content.split())}}}})
        for key, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                fid = f"file-{uuid.uuid4().hex[:24]}"
                self.files[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                job[key] = fid
        job["status"] = status
        job["request_counts"] = {"total": len(job["_lines"]), "completed": len(out), "failed": len(err)}

    def _public(self, job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    async def _get(self, request: Any) -> Any:
        from aiohttp import web

        job = self.batches.get(request.match_info["bid"])
        if job is None:
            return web.json_response({"error": {"message": "no such batch"}}, status=404)
        with self._lock:
            self.stats.polls += 1
            self._advance(job)
        return web.json_response(self._public(job))

    async def _list(self, request: Any) -> Any:
        from aiohttp import web

        limit = int(request.query.get("limit", 20))
        jobs = sorted(self.batches.values(), key=lambda j: j["created_at"], reverse=True)
        after = request.query.get("after")
        if after:
            ids = [j["id"] for j in jobs]
            jobs = jobs[ids.index(after) + 1 :] if after in ids else []
        page = jobs[:limit]
        return web.json_response({"object": "list", "data": [self._public(j) for j in page],
                                  "has_more": len(jobs) > limit,
                                  "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None})

    async def _cancel(self, request: Any) -> Any:
        from aiohttp import web

        job = self.batches.get(request.match_info["bid"])
        if job is None:
            return web.json_response({"error": {"message": "no such batch"}}, status=404)
        with self._lock:
            if job["status"] not in ("completed", "expired", "failed"):
                job["status"] = "cancelled"
        return web.json_response(self._public(job))

    # -- lifecycle -------------------------------------------------------------------------------

    async def _start(self) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{fid}/content", self._content)
        app.router.add_post("/v1/batches", self._create)
        app.router.add_get("/v1/batches", self._list)
        app.router.add_get("/v1/batches/{bid}", self._get)
        app.router.add_post("/v1/batches/{bid}/cancel", self._cancel)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - port 0 resolved

    def start(self) -> BatchServer:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="batch-api-server", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("batch server did not start")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
        except Exception:  # noqa: BLE001 - best effort
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> BatchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
