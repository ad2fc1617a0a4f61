"""The plugin API: everything a plugin needs, importable from `lionloop` alone.

    from lionloop import hookimpl, GeneratorSpec, GeneratorOptions, Candidate, Instruction, ...

Hook specifications are in `lionloop.plugin.hookspecs` (documented in docs/plugins.md). Nothing
here imports the loop's runtime.
"""

from __future__ import annotations

from lionloop.errors import ConfigError, LionloopError, PluginError, Unsupported
from lionloop.plugin.context import BackendEnv, GeneratorTeacher, RoundContext, Student
from lionloop.plugin.hookspecs import hookimpl
from lionloop.plugin.kit import affordable, enabled_options, meta_reject_filter, one_line, siblings
from lionloop.plugin.options import GeneratorOptions, PluginOptions
from lionloop.plugin.plan import GeneratorSpec
from lionloop.plugin.registry import Registry
from lionloop.plugin.taskpack import Oracle, TaskPack
from lionloop.records import (
    SPLITS,
    Candidate,
    Case,
    Cases,
    Example,
    Instruction,
    Verdict,
    content_id,
)
from lionloop.student.prompt import format_prompt
from lionloop.teacher.chat import ChatBackend
from lionloop.teacher.client import Backend, Reply, Result
from lionloop.teacher.requests import (
    Answer,
    AnswerOut,
    Judge,
    JudgeOut,
    ParseError,
    Rewrite,
    RewriteOut,
    TeacherRequest,
)

__all__ = [
    # hooks and what they exchange
    "hookimpl", "GeneratorSpec", "GeneratorOptions", "PluginOptions", "Registry",
    "RoundContext", "BackendEnv", "Student", "GeneratorTeacher", "TaskPack", "Oracle",
    # records
    "Instruction", "Example", "Candidate", "Case", "Cases", "Verdict", "content_id", "SPLITS",
    # teacher requests, replies and backends
    "TeacherRequest", "ParseError", "Answer", "AnswerOut", "Judge", "JudgeOut", "Rewrite", "RewriteOut",
    "Backend", "Reply", "Result", "ChatBackend",
    # the generator kit
    "siblings", "affordable", "enabled_options", "meta_reject_filter", "one_line", "format_prompt",
    # errors
    "LionloopError", "ConfigError", "PluginError", "Unsupported",
]
