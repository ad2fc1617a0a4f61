"""The student's prompt format (one function for training rows and evaluation), LoRA adapters per
round with both policies, trackers per round, and the config that drives them — on the tiny
student, so it runs in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import micro_config

from lionloop.config import parse_config
from lionloop.errors import ConfigError
from lionloop.student.model import build_tokenizer
from lionloop.student.prompt import (
    PLAIN_CHAT_TEMPLATE,
    export_chat_template,
    format_prompt,
    render,
    resolve_format,
)

CHATML = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
          "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def test_one_function_renders_prompts_for_training_and_evaluation() -> None:
    tok = build_tokenizer()
    assert not getattr(tok, "chat_template", None)  # the tiny student ships no mismatching template
    assert resolve_format(tok, "auto") == "plain"
    with pytest.raises(ConfigError, match="student.prompt_format: chat, but the student's tokenizer has no chat template"):
        resolve_format(tok, "chat")
    content = format_prompt("reverse abc", "an input")
    assert render(tok, content, "plain") == "reverse abc\nan input\n"
    tok.chat_template = CHATML
    assert resolve_format(tok, "auto") == "chat" and resolve_format(tok, "plain") == "plain"
    assert render(tok, content, "chat") == "<|user|>\nreverse abc\nan input</s>\n<|assistant|>\n"
    # What an exported model ships renders what it was trained on, from the user's own words.
    plain = build_tokenizer()
    plain.chat_template = export_chat_template(plain, "plain")
    assert plain.chat_template == PLAIN_CHAT_TEMPLATE
    user = [{"role": "user", "content": "reverse abc\nan input"}]
    assert plain.apply_chat_template(user, add_generation_prompt=True, tokenize=False) == render(plain, content, "plain")
    assert tok.apply_chat_template(user, add_generation_prompt=True, tokenize=False) == render(tok, content, "chat")


def test_student_and_train_config() -> None:
    cfg = parse_config({"train": {"lora": True, "report_to": "tensorboard"}})
    assert cfg.train.lora.enabled and cfg.train.lora.rank == 16 and cfg.train.report_to == ["tensorboard"]
    assert cfg.student.train_max_length() == 64 and cfg.student.generate_max_new_tokens() == 16  # tiny defaults
    real = parse_config({"student": {"base": "/models/x"}})
    assert real.student.train_max_length() == 1024 and real.student.generate_max_new_tokens() == 256
    with pytest.raises(ConfigError, match=r"train\.lora\.rank: Input should be greater than or equal to 1"):
        parse_config({"train": {"lora": {"enabled": True, "rank": 0}}})
    with pytest.raises(ConfigError, match=r"student\.prompt_format"):
        parse_config({"student": {"prompt_format": "markdown"}})
    with pytest.raises(ConfigError, match=r"train\.options\.report_to: set by lionloop: use train\.report_to"):
        from lionloop.loop.preflight import preflight
        from lionloop.plugin.manager import get_plugin_manager

        preflight(parse_config({"train": {"options": {"report_to": ["wandb"]}}}), get_plugin_manager())


@pytest.mark.parametrize(("over", "message"), [
    ({"student": {"base": "/nonexistent/model"}}, "student.base: /nonexistent/model does not exist"),
    ({"student": {"prompt_format": "chat"}}, "student.prompt_format: chat, but the tiny student has no chat template"),
    ({"train": {"report_to": ["nosuchtracker"]}}, "train.report_to: unknown tracker 'nosuchtracker'"),
])
def test_student_settings_are_refused_before_anything_is_written(tmp_path: Path, over: dict, message: str) -> None:
    from typer.testing import CliRunner

    from lionloop.cli.app import app

    (tmp_path / "not-a-model").mkdir()
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps({"name": "x", "run_dir": str(tmp_path / "run"), **over}))
    res = CliRunner().invoke(app, ["run", str(cfg)])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "run").exists()
    (tmp_path / "run.yaml").write_text(json.dumps({"name": "x", "student": {"base": str(tmp_path / "not-a-model")}}))
    res = CliRunner().invoke(app, ["run", str(cfg)])
    assert res.exit_code == 2 and "holds no config.json" in res.output


@pytest.mark.parametrize("policy", ["continue", "retrain"])
def test_lora_rounds_save_adapters_and_trackers_write_one_run_per_round(tmp_path: Path, policy: str) -> None:
    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start

    cfg = micro_config(tmp_path / "run", train={"steps_per_round": 8, "batch_size": 16, "warmup_steps": 1,
                                                 "learning_rate": 5e-3, "policy": policy,
                                                 "lora": {"enabled": True, "rank": 4, "alpha": 8},
                                                 "report_to": ["tensorboard"]},
                       stop={"max_rounds": 2})
    run_dir, final = start(cfg)
    assert final["stop_reason"] == "max_rounds"
    st = run_status(run_dir)
    for r in st["rounds"]:
        n = r["round"]
        ckpt = run_dir / "student" / f"round-{n}"
        adapter = json.loads((ckpt / "adapter_config.json").read_text())
        assert adapter["r"] == 4 and Path(adapter["base_model_name_or_path"]) == run_dir / "student" / "base"
        assert not (ckpt / "model.safetensors").exists()  # the adapter only
        assert r["train"]["lora"]["continued"] == (policy == "continue" and n > 1)
        assert r["eval_accuracy"] is not None  # evaluated through base + adapter
        # One TensorBoard run per round, beside the round's checkpoint, with the loss in it.
        events = list((run_dir / "student" / f"round-{n}.trainer").rglob("events.out.tfevents.*"))
        assert events and all(e.stat().st_size > 0 for e in events)
