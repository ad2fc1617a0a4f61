"""What the student's config asks for, checked before a run writes anything (called by preflight):
a chat template where `prompt_format: chat` needs one, PEFT for
LoRA, and trackers that are known and installed. Each failure is a ConfigError naming the field."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lionloop.config import RunConfig
from lionloop.errors import ConfigError


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


def check_student(cfg: RunConfig) -> None:
    base = cfg.student.base
    if base is not None:
        base = Path(base)  # that it exists and holds a model: preflight.check_paths
        if cfg.student.prompt_format == "chat" and base.is_dir() and not _has_chat_template(base):
            raise ConfigError(f"student.prompt_format: chat, but {base} ships no chat template")
    elif cfg.student.prompt_format == "chat":
        raise ConfigError("student.prompt_format: chat, but the tiny student has no chat template (use auto or plain)")
    if cfg.train.lora.enabled and importlib.util.find_spec("peft") is None:
        raise ConfigError("train.lora: peft is not installed (pip install peft)")
    if cfg.train.report_to:
        from transformers.integrations.integration_utils import (
            INTEGRATION_TO_CALLBACK,
            get_available_reporting_integrations,
        )

        for name in cfg.train.report_to:
            if name not in INTEGRATION_TO_CALLBACK:
                raise ConfigError(f"train.report_to: unknown tracker {name!r} "
                                  f"(known: {', '.join(sorted(INTEGRATION_TO_CALLBACK))})")
            if name not in get_available_reporting_integrations():
                raise ConfigError(f"train.report_to: {name} is not installed in this environment")


def tokenizer_mismatch(t_tok: Any, t_vocab: int, s_tok: Any, s_vocab: int, student: str) -> str | None:
    """Why a teacher does not read text as the student does (None: it does): another vocabulary
    (token -> id), other end/pad tokens or another vocabulary size. TRL's DistillationTrainer
    compares the two next-token distributions id by id, so it needs none of these to differ."""
    if t_tok.get_vocab() != s_tok.get_vocab():
        return f"its vocabulary ({len(t_tok)} tokens) is not {student}'s ({len(s_tok)} tokens)"
    if (t_tok.eos_token, t_tok.pad_token or t_tok.eos_token) != (s_tok.eos_token, s_tok.pad_token or s_tok.eos_token):
        return f"its end/pad tokens {t_tok.eos_token!r}/{t_tok.pad_token!r} are not the student's"
    if t_vocab != s_vocab:
        return f"its vocab_size {t_vocab} is not the student's {s_vocab}"
    return None


# check_teacher(cfg, why, student_tokenizer, teacher_tokenizer): a white-box trainer's own check of
# its teacher (why: how the tokenizers differ, None when they match); raises ConfigError.
TeacherCheck = Callable[[RunConfig, "str | None", Any, Any], None]


def check_white_box_teacher(cfg: RunConfig, trainer: str, white_box: bool, check: TeacherCheck | None = None) -> None:
    """A white-box trainer has a teacher model whose tokenizer and config load. Where its tokenizer
    is not the student's (`tokenizer_mismatch`), the trainer's own `check` (its cross-tokenizer
    path: TRL's GOLD for gkd and minillm) decides whether it can train on that pair; a trainer
    without one is refused. Reads tokenizers and config.json only (no model is loaded)."""
    teacher = cfg.train.teacher_model
    if not white_box:
        if teacher is not None:
            raise ConfigError(f"train.teacher_model: set, but the {trainer} trainer reads no teacher distribution "
                              "(use train.trainer: gkd or minillm)")
        return
    if teacher is None:
        raise ConfigError(f"train.teacher_model: the {trainer} trainer needs a white-box teacher "
                          "(train.teacher_model: {path: HF model folder})")
    from transformers import AutoConfig, AutoTokenizer

    from lionloop.student.model import build_tokenizer, quiet_hf

    quiet_hf()
    path = Path(teacher.path)
    try:
        t_tok = AutoTokenizer.from_pretrained(path)
        t_vocab = AutoConfig.from_pretrained(path).get_text_config().vocab_size
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"train.teacher_model.path: {path}: its tokenizer or config does not load "
                          f"({' '.join(str(err).split())[:200]})") from None
    if cfg.student.base is None:
        s_tok, s_vocab, student = build_tokenizer(), None, "the tiny student's byte tokenizer"
    else:
        s_tok = AutoTokenizer.from_pretrained(cfg.student.base)
        s_vocab, student = AutoConfig.from_pretrained(cfg.student.base).get_text_config().vocab_size, str(cfg.student.base)
    why = tokenizer_mismatch(t_tok, t_vocab, s_tok, s_vocab if s_vocab is not None else len(s_tok), student)
    if check is not None:
        check(cfg, why, s_tok, t_tok)
    elif why:
        raise ConfigError(f"train.teacher_model.path: {path}: {why}; the {trainer} trainer needs the student's "
                          "tokenizer")
