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
