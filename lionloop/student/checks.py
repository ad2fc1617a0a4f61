"""What the student's config asks for, checked before a run writes anything (called by preflight):
a chat template where `prompt_format: chat` needs one, PEFT for
LoRA, and trackers that are known and installed. Each failure is a ConfigError naming the field."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

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


def check_white_box_teacher(cfg: RunConfig, trainer: str, white_box: bool) -> None:
    """A white-box trainer has a teacher model, and that teacher reads text as the student does:
    the same vocabulary (token -> id), the same special tokens and the same vocabulary size, since
    TRL compares the two next-token distributions id by id. Reads tokenizers and config.json only
    (no model is loaded)."""
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
    s_vocab = s_vocab if s_vocab is not None else len(s_tok)
    why = None
    if t_tok.get_vocab() != s_tok.get_vocab():
        why = f"its vocabulary ({len(t_tok)} tokens) is not {student}'s ({len(s_tok)} tokens)"
    elif (t_tok.eos_token, t_tok.pad_token or t_tok.eos_token) != (s_tok.eos_token, s_tok.pad_token or s_tok.eos_token):
        why = f"its end/pad tokens {t_tok.eos_token!r}/{t_tok.pad_token!r} are not the student's"
    elif t_vocab != s_vocab:
        why = f"its vocab_size {t_vocab} is not the student's {s_vocab}"
    if why:
        raise ConfigError(f"train.teacher_model.path: {path}: {why}; the {trainer} trainer needs the student's "
                          "tokenizer (cross-tokenizer distillation, TRL's GOLD, is not wired)")
