"""The `batch` teacher backend: each `Teacher.ask` of a stage as one batch job, recorded before
waiting on it (`lionloop.teacher.batch`), through one of two runners:

* `runner: openai` — OpenAI's Batch API (`/v1/files`, `/v1/batches`, a 24 h completion window,
  half the list price) or any server that implements it. `teacher.base_urls[0]` is the API
  (default api.openai.com), the key comes from `api_key_env`. A job carries its lionloop tag in
  its metadata, so a crash between creating it and recording its id finds it again.
* `runner: vllm` — `vllm run-batch` on this machine (OpenAI batch JSONL in, JSONL out) for offline
  GPU runs: the input, output and log live in RUN_DIR/batches/, the process runs in a session of
  its own (it survives the loop's death; a resumed run waits for it, or reads its output).

`cost_per_1k_*` are list prices; `discount` (default 0.5 for the API, 1 for vllm) is the share a
batch costs, and what it saves is recorded with each reply (`lionloop status` shows it).
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from lionloop import (
    BackendEnv,
    BatchBackend,
    BatchError,
    BatchGone,
    BatchLedger,
    ConfigError,
    JobState,
    PluginOptions,
    Registry,
    TeacherConfig,
    hookimpl,
)

from .http_retry import MAX_RETRY_AFTER_S, retry_after, transient
from .openai_server import DEFAULT_BASE_URL

log = logging.getLogger(__name__)

TERMINAL = {"completed", "failed", "expired", "cancelled"}


class BatchOptions(PluginOptions):
    """`teacher.options` of the batch backend."""

    runner: Literal["openai", "vllm"] = Field("openai", description="openai: the Batch API at base_urls[0]; vllm: `vllm run-batch` here.")
    completion_window: str = Field("24h", description="openai: the job's completion window (the Batch API offers 24h).")
    poll_s: float | None = Field(None, gt=0, description="Seconds between polls (default: 30 for openai, 2 for vllm).")
    discount: float | None = Field(None, ge=0, le=1, description="Share of the list price a batch costs (default: 0.5 openai, 1 vllm).")
    max_requests: int = Field(50_000, ge=1, description="Requests per job (the Batch API takes at most 50,000).")
    vllm_command: list[str] = Field(default_factory=lambda: ["vllm", "run-batch"],
                                    description="vllm: the command before -i/-o, e.g. [python, -m, vllm.entrypoints.openai.run_batch].")
    vllm_args: list[str] = Field(default_factory=list, description="vllm: extra arguments (--max-model-len 4096, --tensor-parallel-size 2, ...).")
    vllm_env: dict[str, str] = Field(default_factory=dict, description="vllm: extra environment variables of the process (e.g. VLLM_CPU_KVCACHE_SPACE).")


# -- OpenAI's Batch API -----------------------------------------------------------------------------


class OpenAIBatchRunner:
    """`/v1/files` + `/v1/batches` over HTTP (stdlib: a few calls per job, no client needed)."""

    name = "openai"

    def __init__(self, base_url: str, api_key: str, window: str, poll_s: float, timeout_s: float = 120,
                 retries: int = 5) -> None:
        self.base = base_url.rstrip("/")
        self._key = api_key
        self.window = window
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.retries = retries

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIBatchRunner({self.base!r})"

    def _call(self, method: str, path: str, body: bytes | None = None, ctype: str = "application/json") -> bytes:
        """One API call; 429, 5xx and dropped connections are retried with backoff (Retry-After honoured)."""
        for k in range(self.retries + 1):
            req = urllib.request.Request(f"{self.base}{path}", data=body, method=method,
                                         headers={"Authorization": f"Bearer {self._key}", "Content-Type": ctype})
            wait = min(30.0, 0.5 * 2**k) * random.uniform(0.5, 1.0)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return resp.read()
            except urllib.error.HTTPError as err:
                text = err.read().decode("utf-8", "replace")[:300]
                if err.code == 404:
                    raise BatchGone(f"{method} {path}: http 404: {text}") from None
                if not transient(err.code):
                    raise BatchError(f"{method} {path}: http {err.code}: {text}") from None
                asked = retry_after(err.headers)
                if asked is not None:
                    wait = min(MAX_RETRY_AFTER_S, asked)
                why = f"http {err.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                why = f"connection: {err}"
            if k == self.retries:
                raise BatchError(f"{method} {path}: {why} (after {self.retries + 1} tries)")
            log.debug("batch API %s %s: %s; retry in %.1fs", method, path, why, wait)
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        raw = self._call(method, path, None if payload is None else json.dumps(payload).encode())
        try:
            return json.loads(raw)
        except ValueError:
            raise BatchError(f"{method} {path}: the reply is not JSON") from None

    def submit(self, tag: str, lines: list[dict[str, Any]]) -> str:
        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")
        boundary = uuid.uuid4().hex
        form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{tag}.jsonl\"\r\n"
                "Content-Type: application/jsonl\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        uploaded = json.loads(self._call("POST", "/files", form, f"multipart/form-data; boundary={boundary}"))
        batch = self._json("POST", "/batches", {
            "input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions",
            "completion_window": self.window, "metadata": {"lionloop_tag": tag},
        })
        return str(batch["id"])

    def find(self, tag: str) -> str | None:
        after = None
        for _ in range(20):  # the newest 2,000 jobs: a lost id is from the last minutes
            page = self._json("GET", "/batches?limit=100" + (f"&after={urllib.parse.quote(after)}" if after else ""))
            for b in page.get("data") or []:
                if (b.get("metadata") or {}).get("lionloop_tag") == tag:
                    return str(b["id"])
            if not page.get("has_more") or not page.get("data"):
                return None
            after = page["data"][-1]["id"]
        return None

    def poll(self, batch_id: str) -> JobState:
        b = self._json("GET", f"/batches/{batch_id}")
        status = str(b.get("status"))
        return JobState(status, done=status in TERMINAL, counts=dict(b.get("request_counts") or {}),
                        detail={k: b.get(k) for k in ("output_file_id", "error_file_id") if b.get(k)})

    def results(self, batch_id: str, state: JobState) -> Iterator[dict[str, Any]]:
        for key in ("output_file_id", "error_file_id"):
            file_id = state.detail.get(key)
            if not file_id:
                continue
            for raw in self._call("GET", f"/files/{file_id}/content").decode("utf-8").splitlines():
                if raw.strip():
                    try:
                        yield json.loads(raw)
                    except ValueError:
                        log.warning("batch %s: an unreadable line in %s", batch_id, key)


# -- vllm run-batch ---------------------------------------------------------------------------------


def _alive(pid: int, tag: str, wait_s: float = 0.0) -> bool:
    """Is `pid` still the run-batch process of this job (not a recycled pid)? A process just started
    can show no arguments yet (the kernel lets the parent go on before the child's exec has set them
    up): `wait_s` is how long to wait for them before taking the process for another one."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
        if cmdline or time.monotonic() >= deadline:
            return tag in cmdline
        time.sleep(0.01)


def _reaped(pid: int) -> int | None:
    """The exit code of `pid` if it is a child of this process that has ended (reaped now; a
    signal as its negative number, as `Popen.returncode` has it); None where it is not ours."""
    if pid <= 0:
        return None
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if got == pid else None


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit status unknown: not this process's child"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}" + (": out of memory?" if -code == signal.SIGKILL else "")
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def _complete_lines(path: Path, n: int) -> bool:
    try:
        lines = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        return len(lines) >= n and all(json.loads(x).get("custom_id") for x in lines)
    except (OSError, ValueError, AttributeError):
        return False


class VLLMBatchRunner:
    """`vllm run-batch -i IN -o OUT --model M` as a process of its own session, in RUN_DIR/batches/."""

    name = "vllm"

    def __init__(self, ledger: BatchLedger, model: str, command: list[str], args: list[str], poll_s: float,
                 env: dict[str, str] | None = None) -> None:
        self.ledger = ledger
        self.env = dict(env or {})
        self.model = model
        self.command = command
        self.args = args
        self.poll_s = poll_s
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._sizes: dict[str, int] = {}

    def submit(self, tag: str, lines: list[dict[str, Any]]) -> str:
        f = self.ledger.files(tag)
        tmp = f["input"].with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, f["input"])
        f["partial"].unlink(missing_ok=True)
        cmd = [*self.command, "-i", str(f["input"]), "-o", str(f["partial"]), "--model", self.model, *self.args]
        # Unbuffered: a job that dies (out of memory, a signal) leaves what it printed in its log.
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
               "PYTHONUNBUFFERED": "1", **self.env}
        with open(f["log"], "ab") as logf:
            try:
                proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, env=env)
            except OSError as err:
                raise BatchError(f"vllm run-batch could not start ({' '.join(cmd[:3])}...): {err}") from None
        self._procs[proc.pid] = proc
        return f"pid:{proc.pid}:{tag}"

    def find(self, tag: str) -> str | None:
        f = self.ledger.files(tag)
        if f["output"].exists():
            return f"pid:0:{tag}"
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and _alive(int(d.name), tag):
                return f"pid:{d.name}:{tag}"
        return None

    def poll(self, batch_id: str) -> JobState:
        _, pid_s, tag = batch_id.split(":", 2)
        pid = int(pid_s)
        f = self.ledger.files(tag)
        if f["output"].exists():
            return JobState("completed", done=True)
        proc = self._procs.get(pid)
        running = proc.poll() is None if proc is not None else (pid > 0 and _alive(pid, tag, wait_s=2.0))
        if running:
            return JobState("in_progress")
        n = self._size(tag)
        if _complete_lines(f["partial"], n):
            os.replace(f["partial"], f["output"])
            return JobState("completed", done=True)
        if not f["input"].exists():
            raise BatchGone(f"{f['input']} is gone")
        tail = " ".join((f["log"].read_text(errors="replace")[-600:] if f["log"].exists() else "").split())[-400:]
        code = proc.returncode if proc is not None else _reaped(pid)
        return JobState("failed", done=True, detail={"error": f"vllm run-batch ended ({_exit_text(code)}) without "
                                                              f"a complete output: {tail or 'its log is empty'}"})

    def _size(self, tag: str) -> int:
        if tag not in self._sizes:
            path = self.ledger.files(tag)["input"]
            self._sizes[tag] = sum(1 for x in path.read_text(encoding="utf-8").splitlines() if x.strip()) if path.exists() else 0
        return self._sizes[tag]

    def results(self, batch_id: str, state: JobState) -> Iterator[dict[str, Any]]:
        tag = batch_id.split(":", 2)[2]
        for raw in self.ledger.files(tag)["output"].read_text(encoding="utf-8").splitlines():
            if raw.strip():
                yield json.loads(raw)

    def stop(self) -> None:
        """End the processes this object started (tests; a run leaves them to finish)."""
        for proc in self._procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)


# -- the backend ------------------------------------------------------------------------------------


def make_batch_backend(cfg: TeacherConfig, env: BackendEnv, options: BatchOptions | None = None) -> BatchBackend:
    opts = options if options is not None else (env.options if isinstance(env.options, BatchOptions)
                                                 else BatchOptions.model_validate(cfg.options))
    path = getattr(env, "section", "teacher")
    if not cfg.model:
        raise ConfigError(f"{path}.model: the batch backend needs a model name (vllm: a model path)")
    ledger = BatchLedger(env.run_dir, getattr(env, "jobs", None))
    if opts.runner == "openai":
        key = "EMPTY"
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env) or ""
            if not key:
                raise ConfigError(f"{path}.api_key_env: environment variable {cfg.api_key_env} is not set")
        base = cfg.base_urls[0] if cfg.base_urls else DEFAULT_BASE_URL
        runner: Any = OpenAIBatchRunner(base, key, opts.completion_window, opts.poll_s or 30.0, cfg.timeout_s,
                                        cfg.max_retries)
        discount = 0.5 if opts.discount is None else opts.discount
    else:
        runner = VLLMBatchRunner(ledger, str(cfg.model), list(opts.vllm_command), list(opts.vllm_args), opts.poll_s or 2.0,
                                 opts.vllm_env)
        discount = 1.0 if opts.discount is None else opts.discount
    return BatchBackend(cfg, env, runner, ledger, discount=discount, max_requests=opts.max_requests)


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_backend("batch", make_batch_backend, options=BatchOptions)
