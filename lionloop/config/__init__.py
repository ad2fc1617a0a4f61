"""Run configuration: one YAML file validated by pydantic; errors name the field path.

Sections by side: `student` (student, LoRA, white-box teacher, train), `teacher` (teacher,
referee rule), `loop` (task, evaluate, generate, allocation, dedup, stop); `run` holds the root,
RunConfig; `files` parses, loads and dumps config files; `section` is every section's base.
Import from here: `from lionloop.config import RunConfig, load_config`.
"""

from __future__ import annotations

from lionloop.config.files import commented_yaml, dump_config, load_config, parse_config
from lionloop.config.loop import (
    AllocationConfig,
    DedupConfig,
    EvaluateConfig,
    GenerateConfig,
    GeneratorConfig,
    IndexConfig,
    StopConfig,
    TaskConfig,
)
from lionloop.config.run import RunConfig
from lionloop.config.section import MAX_SEED
from lionloop.config.student import LoRAConfig, StudentConfig, TrainConfig, WhiteBoxTeacherConfig
from lionloop.config.teacher import RefereeConfig, TeacherConfig
from lionloop.errors import ConfigError

__all__ = [
    "MAX_SEED",
    "AllocationConfig",
    "ConfigError",
    "DedupConfig",
    "EvaluateConfig",
    "GenerateConfig",
    "GeneratorConfig",
    "IndexConfig",
    "LoRAConfig",
    "RefereeConfig",
    "RunConfig",
    "StopConfig",
    "StudentConfig",
    "TaskConfig",
    "TeacherConfig",
    "TrainConfig",
    "WhiteBoxTeacherConfig",
    "commented_yaml",
    "dump_config",
    "load_config",
    "parse_config",
]
