"""The `oracle` teacher backend: the task pack's programmatic expert behind the usual interface."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from lionloop import (
    BackendEnv,
    ConfigError,
    OptionError,
    Packed,
    PluginOptions,
    Registry,
    Reply,
    TeacherConfig,
    TeacherRequest,
    TokenCounter,
    Unsupported,
    hookimpl,
)


class OracleOptions(PluginOptions):
    """The oracle's `teacher.options`: `tokenizer` alone (any other key is meant for another backend)."""

    tokenizer: Path | None = Field(
        None, description="An HF model folder whose tokenizer counts each call's tokens as an LLM backend would "
        "send and receive it: the oracle's calls then have a price (cost_per_1k_*) and stop.max_teacher_cost works offline.",
    )

    @model_validator(mode="before")
    @classmethod
    def _only_tokenizer(cls, data: Any) -> Any:
        other = [k for k in data if k != "tokenizer"] if isinstance(data, dict) else []
        if other:
            raise OptionError(other[0], "the oracle backend takes no options but tokenizer")
        return data

    @field_validator("tokenizer")
    @classmethod
    def _a_folder(cls, v: Path | None) -> Path | None:
        if v is not None and not (Path(v) / "tokenizer_config.json").is_file():
            raise ValueError(f"{v} is not a model folder with a tokenizer (no tokenizer_config.json)")
        return v


class OracleBackend:
    """Answers typed requests exactly; raises nothing, returns Unsupported as a failed reply."""

    name = "oracle"

    def __init__(self, cfg: TeacherConfig, env: BackendEnv) -> None:
        oracle = env.task_pack.oracle()
        if oracle is None:
            raise ConfigError(f"{env.section}.backend: task pack {env.task_pack.name!r} has no oracle")
        self.oracle = oracle
        self.model = env.task_pack.name
        self.latency_s = cfg.latency_ms / 1000.0
        tokenizer = getattr(getattr(env, "options", None), "tokenizer", None)
        # Token counts (and with them a price) only where a tokenizer says what a call would weigh.
        self.counter = TokenCounter(tokenizer) if tokenizer is not None else None
        self.cost_per_1k = (cfg.cost_per_1k_input, cfg.cost_per_1k_output)

    def params(self) -> dict[str, Any]:
        return {}

    def prompt_for(self, request: TeacherRequest, attempt: int) -> Any:
        return request.payload()

    def complete(self, requests: Sequence[TeacherRequest], attempt: int) -> Iterator[tuple[int, Reply]]:
        for i, req in enumerate(requests):
            if self.latency_s:
                time.sleep(self.latency_s)
            try:
                if isinstance(req, Packed):  # each packed item answered on its own
                    output = req.join([self.oracle.handle(item) for item in req.items])
                else:
                    output = self.oracle.handle(req)
                yield i, Reply(output=output, usage=self.counter.usage(req, output) if self.counter else {})
            except Unsupported as err:
                yield i, Reply(error=f"unsupported: {err}")


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_backend("oracle", OracleBackend, options=OracleOptions)
