"""The gkd and minillm trainers with a white-box teacher whose tokenizer is not the student's: TRL's
GOLD (cross-tokenizer ULD, plugins/trainer_gold.py), and the pairs it cannot train refused at start.

The teacher here is real and runs on 2 cores: a tiny model trained for a few steps on the skills
pack's oracle answers with a byte-level BPE tokenizer of its own (`bpe_tokenizer`: merged tokens,
other ids and special tokens, no tokens for non-ASCII bytes), taught to the tiny student, whose
tokenizer has one token per byte. The packaged SmolLM2-135M as the teacher is the slow test.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from conftest import MICRO, micro_config
from test_distill_trainers import _changed, _refused, _train_figures, _weights


@pytest.fixture(scope="module")
def bpe_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lionloop.testing.white_box import train_teacher

    out = tmp_path_factory.mktemp("teacher") / "teacher"
    train_teacher(out, hidden_size=48, num_layers=2, num_heads=2, steps=40, per_skill=20, tokenizer="bpe")
    return out


def _run(tmp_path: Path, teacher: Path, trainer: str, options: dict[str, Any], **train: Any) -> tuple[Path, list]:
    from lionloop.loop.runner import start

    cfg = micro_config(tmp_path / trainer, train={"trainer": trainer, "teacher_model": str(teacher),
                                                  "options": options, **train})
    run_dir, final = start(cfg)
    assert final["round"] == 2
    return run_dir, _train_figures(run_dir)


@pytest.mark.parametrize(("trainer", "options"), [("gkd", {"lmbda": 0.5}), ("minillm", {})])
def test_a_teacher_with_another_tokenizer_trains_through_gold(trainer: str, options: dict[str, Any],
                                                              tmp_path: Path, bpe_teacher: Path) -> None:
    run_dir, rounds = _run(tmp_path, bpe_teacher, trainer, options)
    students = run_dir / "student"
    for r, fig in enumerate(rounds, start=1):
        assert fig["trl_trainer"] == "GOLDTrainer" and fig["method"] == trainer
        assert fig["uld_alignment"] == "bytes" and fig["uld_hybrid"] is True
        assert fig["steps"] == MICRO["train"]["steps_per_round"]
        assert fig["losses"] and all(math.isfinite(x) and x >= 0 for x in fig["losses"])
        assert fig["on_policy_batches"] + fig["off_policy_batches"] == fig["steps"]
        # Counted by the Trainer from the batches it read: at least one token per row and step.
        assert fig["tokens"] >= fig["steps"] * MICRO["train"]["batch_size"] and fig["tokens_per_s"] > 0
        # The byte student's non-ASCII and control bytes are never sampled: the teacher cannot read them.
        assert fig["suppressed_tokens"] > 100
        assert _changed(students / ("base" if r == 1 else f"round-{r - 1}"), students / f"round-{r}")
    if trainer == "minillm":
        assert all(f["off_policy_batches"] == 0 and f["beta"] == 1.0 for f in rounds)
    else:  # lmbda 0.5: the student's samples and the pool's teacher answers, seeded per step
        assert all(f["on_policy_batches"] > 0 and f["off_policy_batches"] > 0 for f in rounds)


def test_gold_with_sft_share_and_lora(tmp_path: Path, bpe_teacher: Path) -> None:
    run_dir, rounds = _run(tmp_path, bpe_teacher, "gkd", {"sft_share": 0.4, "lmbda": 0.0},
                           lora={"enabled": True, "rank": 4, "alpha": 8})
    total = MICRO["train"]["steps_per_round"]
    for fig in rounds:
        assert fig["trl_trainer"] == "GOLDTrainer"
        assert fig["sft"]["steps"] == round(0.4 * total) and fig["steps"] == total
        assert fig["on_policy_batches"] == 0  # lmbda 0: GOLD on the pool's teacher answers only
        assert math.isfinite(fig["last_loss"]) and math.isfinite(fig["sft"]["last_loss"])
    from safetensors.torch import load_file

    a, b = (load_file(str(run_dir / "student" / f"round-{r}" / "adapter_model.safetensors")) for r in (1, 2))
    assert any(not (a[k] == b[k]).all() for k in a)  # the adapter kept training in round 2


def test_gold_resumes_inside_the_stage_to_the_same_weights(tmp_path: Path, bpe_teacher: Path) -> None:
    """A stage stopped after its step-4 checkpoint (an exception from the progress callback, as
    Ctrl-C lands) resumes from step 4, not 0, and writes the weights an uninterrupted stage writes."""
    from lionloop.config import StudentConfig, TrainConfig
    from lionloop.plugins.trainer_distill import DistillTrainer
    from lionloop.records import Example
    from lionloop.student.model import build_tiny_student

    student = StudentConfig(**MICRO["student"])
    base = build_tiny_student(tmp_path / "base", student, 0)
    rows = [Example(f"i{k}", f"Reverse: {w}\nAnswer: ", w[::-1]) for k, w in
            enumerate(f"{a}{b}{c}" for a in "abcd" for b in "xyz" for c in "pq")]  # 24 rows: one epoch
    cfg = TrainConfig(steps_per_round=10, batch_size=2, warmup_steps=1, save_steps=4,
                      teacher_model={"path": bpe_teacher}, options={"lmbda": 0.5})

    def train(name: str, stop_at: int | None = None) -> dict[str, Any]:
        def progress(step: int, total: int, *loss: float) -> None:
            if step == stop_at and not loss:
                raise KeyboardInterrupt

        return DistillTrainer(cfg, student).train(base, tmp_path / name, rows, seed=3, progress=progress,
                                                  checkpoint_dir=tmp_path / f"{name}.ckpt")

    whole = train("whole")
    assert whole["trl_trainer"] == "GOLDTrainer" and "resumed_from_step" not in whole
    with pytest.raises(KeyboardInterrupt):
        train("cut", stop_at=6)
    assert not (tmp_path / "cut").exists()
    resumed = train("cut")
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == 10
    assert resumed["on_policy_batches"] + resumed["off_policy_batches"] == 6  # only the steps after 4 ran
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert all((a[k] == b[k]).all() for k in a), {k: float((a[k] - b[k]).abs().max()) for k in a}


def test_unreadable_student_tokens_are_the_bytes_the_teacher_lacks(bpe_teacher: Path) -> None:
    from transformers import AutoTokenizer

    from lionloop.plugins.trainer_gold import unreadable_tokens
    from lionloop.student.model import build_tokenizer

    student = build_tokenizer()
    ids = set(unreadable_tokens(student, AutoTokenizer.from_pretrained(bpe_teacher)))
    spelled = {student.decode([i]) for i in ids}
    assert "\x00" in spelled and "\x16" in spelled  # control bytes
    assert not {"a", "Z", "7", " ", "\n", "+"} & spelled  # what the pack's answers are made of
    assert student.eos_token_id not in ids  # the student may always stop
    assert unreadable_tokens(student, student) == []


# -- pairs and options GOLD cannot train, refused at start ------------------------------------------


def _teacher_with(tmp_path: Path, tokenizer: Any) -> Path:
    from lionloop.config import StudentConfig
    from lionloop.student.model import build_tiny_student

    return build_tiny_student(tmp_path / "teacher", StudentConfig(hidden_size=32, num_layers=1, num_heads=2), 0,
                              tokenizer=tokenizer)


def _word_level_tokenizer() -> Any:
    """A fast tokenizer that is not byte-level BPE: whole words, split at whitespace."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<pad>", "</s>", "Answer", ":", "Reverse", "Add", "+", *map(str, range(10))]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")


def test_a_teacher_tokenizer_that_is_not_byte_level_needs_positions(tmp_path: Path) -> None:
    """Refused at start for GOLD's byte alignment (naming the teacher and why); trains when the
    config asks for ULD's positional alignment, as the refusal says."""
    teacher = _teacher_with(tmp_path, _word_level_tokenizer())
    line = _refused(tmp_path, {"train": {"trainer": "gkd", "teacher_model": str(teacher)}})
    assert line.startswith(f"error: train.teacher_model.path: {teacher}: its vocabulary"), line
    assert "trains with TRL's GOLD" in line and "byte-level BPE" in line and "uld_alignment: positions" in line
    # ULD as its paper has it: tokens paired by position, sorted probabilities only (no hybrid)
    _, rounds = _run(tmp_path, teacher, "gkd", {"uld_alignment": "positions", "uld_hybrid": False})
    assert all(f["trl_trainer"] == "GOLDTrainer" and f["uld_alignment"] == "positions" for f in rounds)
    assert all(math.isfinite(x) for f in rounds for x in f["losses"])


@pytest.mark.parametrize(("train", "needle"), [
    ({"teacher_model": {"server_url": "http://localhost:8000"}},
     "train.teacher_model.server_url serves only a teacher with the student's tokenizer"),
    ({"options": {"use_uld_loss": False}}, "train.options.use_uld_loss: set by lionloop"),
    ({"options": {"loss_top_k": 4}}, "train.options.loss_top_k: set by lionloop"),
    ({"options": {"uld_crossentropy_weight": 0.5}}, None),  # a GOLDConfig field: passed on to TRL
])
def test_gold_options_and_server_at_the_door(train: dict[str, Any], needle: str | None, tmp_path: Path,
                                             bpe_teacher: Path) -> None:
    if needle is None:
        from lionloop.loop.preflight import preflight
        from lionloop.plugin.manager import get_plugin_manager

        cfg = micro_config(tmp_path / "run", train={"trainer": "gkd", "teacher_model": str(bpe_teacher), **train})
        preflight(cfg, get_plugin_manager(), new_run=True)
        return
    over = {"trainer": "gkd", **train}
    over["teacher_model"] = {"path": str(bpe_teacher), **train.get("teacher_model", {})}
    assert needle in _refused(tmp_path, {"train": over})


def test_a_gold_option_with_the_students_tokenizer_is_refused(tmp_path: Path) -> None:
    from lionloop.config import StudentConfig
    from lionloop.student.model import build_tiny_student

    same = build_tiny_student(tmp_path / "same", StudentConfig(hidden_size=32, num_layers=1, num_heads=2), 0)
    line = _refused(tmp_path, {"train": {"trainer": "gkd", "teacher_model": str(same),
                                         "options": {"uld_crossentropy_weight": 0.5}}})
    assert "train.options.uld_crossentropy_weight: a GOLDConfig field" in line and "DistillationTrainer" in line


# -- the packaged SmolLM2-135M-Instruct as the teacher of the tiny student --------------------------


@pytest.mark.slow
def test_smollm2_teaches_the_byte_student_through_gold(tmp_path: Path, real_model: Path) -> None:
    run_dir, rounds = _run(tmp_path, real_model, "gkd", {"lmbda": 0.5})
    for r, fig in enumerate(rounds, start=1):
        assert fig["trl_trainer"] == "GOLDTrainer" and all(math.isfinite(x) for x in fig["losses"])
        assert fig["suppressed_tokens"] > 0  # SmolLM2's vocabulary lacks some control bytes
        assert _changed(run_dir / "student" / ("base" if r == 1 else f"round-{r - 1}"),
                        run_dir / "student" / f"round-{r}")
