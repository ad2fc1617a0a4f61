"""The plugin API: everything a plugin needs, importable from `lionloop` alone.

    from lionloop import hookimpl, GeneratorSpec, GeneratorOptions, Candidate, Instruction, ...

Hook specifications are in `lionloop.plugin.hookspecs` (documented in docs/plugins.md). Nothing
here imports the loop's runtime.
"""

from __future__ import annotations

from lionloop.config import RunConfig, StudentConfig, TaskConfig, TeacherConfig, TrainConfig
from lionloop.errors import ConfigError, LionloopError, PluginError, SeedError, Unsupported
from lionloop.plugin.context import BackendEnv, GeneratorTeacher, RoundContext, Student
from lionloop.plugin.hookspecs import hookimpl
from lionloop.plugin.kit import (
    AnsweredSibling,
    affordable,
    answered_siblings,
    enabled_options,
    meta_reject_filter,
    one_line,
    sibling_instruction,
    sibling_requests,
    siblings,
)
from lionloop.plugin.manager import get_plugin_manager
from lionloop.plugin.options import GeneratorOptions, OptionError, PluginOptions, validate_options
from lionloop.plugin.plan import GeneratorSpec
from lionloop.plugin.registry import Registry
from lionloop.plugin.taskpack import Oracle, TaskPack, with_reference
from lionloop.plugin.verifiers import (
    Verifier,
    VerifierSpec,
    build_verifier,
    normalize,
    numbers,
    reference_problem,
)
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
from lionloop.student.checkpoints import checkpoint_step, resume_point
from lionloop.student.checks import tokenizer_mismatch
from lionloop.student.model import is_adapter, pick_device, save_atomically, set_threads
from lionloop.student.model import load as load_student
from lionloop.student.prompt import format_prompt, render, resolve_format
from lionloop.teacher.batch import (
    BatchBackend,
    BatchError,
    BatchGone,
    BatchLedger,
    BatchRunner,
    JobState,
)
from lionloop.teacher.chat import AsyncRunner, ChatBackend
from lionloop.teacher.client import Backend, Reply, Result
from lionloop.teacher.packing import Packed, Rewrites
from lionloop.teacher.requests import (
    Answer,
    AnswerOut,
    Judge,
    JudgeOut,
    ParseError,
    Rejected,
    Rewrite,
    RewriteOut,
    TeacherRequest,
)
from lionloop.teacher.tokens import TokenCounter
from lionloop.thinking import fold_thinking, split_reasoning, with_thinking

__all__ = [
    # hooks and what they exchange
    "hookimpl", "get_plugin_manager", "GeneratorSpec", "GeneratorOptions", "PluginOptions", "OptionError", "validate_options", "Registry",
    "RoundContext", "BackendEnv", "Student", "GeneratorTeacher", "TaskPack", "Oracle",
    # verifiers: checking answers against references (any task pack)
    "VerifierSpec", "Verifier", "build_verifier", "normalize", "numbers", "reference_problem",
    "with_reference",
    # the config sections components are built from
    "RunConfig", "TaskConfig", "TeacherConfig", "TrainConfig", "StudentConfig",
    # records
    "Instruction", "Example", "Candidate", "Case", "Cases", "Verdict", "content_id", "SPLITS",
    # teacher requests, replies and backends
    "TeacherRequest", "ParseError", "Rejected", "Answer", "AnswerOut", "Judge", "JudgeOut", "Rewrite", "RewriteOut",
    "Packed", "Rewrites", "TokenCounter", "Backend", "Reply", "Result", "ChatBackend", "AsyncRunner",
    # batch backends (OpenAI Batch API, vllm run-batch)
    "BatchBackend", "BatchRunner", "BatchLedger", "JobState", "BatchError", "BatchGone",
    # a reasoning model's thinking (<think>...</think> before the answer)
    "split_reasoning", "fold_thinking", "with_thinking",
    # the generator kit
    "siblings", "sibling_requests", "sibling_instruction", "answered_siblings", "AnsweredSibling",
    "affordable", "enabled_options", "meta_reject_filter", "one_line", "format_prompt",
    # trainers: the student's model directories
    "load_student", "is_adapter", "pick_device", "save_atomically", "set_threads", "resume_point", "checkpoint_step",
    "tokenizer_mismatch",
    # the student's prompt format (one function for training rows and evaluation prompts)
    "render", "resolve_format",
    # errors
    "LionloopError", "ConfigError", "PluginError", "SeedError", "Unsupported",
]
