"""A real pretrained student in the loop: SmolLM2-135M-Instruct with LoRA, the oracle teacher, the
`skills` pack, 2 rounds. The accuracy per round, the round's wall time and the trainer's tokens/s
are printed (the figures quoted in BENCHMARKS.md come from `lionloop bench effect --student`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import pool_rows
from test_export import answers_of_export, check_export, run_answers

from lionloop.inspect.status import run_status

pytestmark = pytest.mark.slow


def test_a_lora_student_learns_through_its_chat_template(real_student_run: Path, real_model: Path) -> None:
    st = run_status(real_student_run)
    r1, r2 = st["rounds"]
    for r in (r1, r2):
        t = r["train"]
        print(f"round {r['round']}: eval {r['eval_accuracy']:.1%} {r['eval_per_skill']} · train "
              f"{t['seconds']:.0f} s, {t['tokens_per_s']:.0f} tokens/s, loss {t['train_loss']:.3f} · round "
              f"{sum(r['seconds'].values()):.0f} s")
        assert 0.0 < r["eval_accuracy"] <= 1.0  # the pretrained model copies from the start
        # Train and eval saw the same format: the chat template, answers ended by <|im_end|>.
        assert t["prompt_format"] == "chat" and t["truncated_rows"] == 0
        assert t["lora"]["trainable_params"] < 10_000_000
    assert not r1["train"]["lora"]["continued"] and r2["train"]["lora"]["continued"]  # policy continue
    assert r2["train"]["train_loss"] < r1["train"]["train_loss"]
    # Each round saved its adapter only (MBs, against the base's 538 MB).
    for rnd in (1, 2):
        ckpt = real_student_run / "student" / f"round-{rnd}"
        adapter = json.loads((ckpt / "adapter_config.json").read_text())
        assert Path(adapter["base_model_name_or_path"]) == real_model
        size = sum(f.stat().st_size for f in ckpt.iterdir())
        assert size < 40e6 and not (ckpt / "model.safetensors").exists()
    # Evaluated answers end at the end of turn: no template tokens, no runaway text.
    answers = [a for (a,) in pool_rows(real_student_run, "SELECT text FROM responses WHERE role = 'student'")]
    assert answers and not any("<|im_" in a for a in answers)


def test_export_of_a_lora_student_answers_like_its_evaluation(real_student_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    info = check_export(real_student_run, out)
    assert info["prompt_format"] == "chat" and info["lora_merged"]
    assert "<|im_start|>" in (out / "chat_template.jinja").read_text()
    evald = run_answers(real_student_run, info["round"])
    items = sorted(evald.values(), key=lambda x: x[0].id)[:6]
    cfg = json.loads((out / "generation_config.json").read_text())
    got = answers_of_export(out, [i for i, _ in items], cfg["max_new_tokens"])
    assert [g.strip() for g in got] == [a for _, a in items]
