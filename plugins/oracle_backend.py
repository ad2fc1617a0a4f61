"""The `oracle` teacher backend: the task pack's programmatic expert behind the usual interface."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import model_validator

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
    Unsupported,
    hookimpl,
)


class OracleOptions(PluginOptions):
    """The oracle takes no `teacher.options`: a key there is meant for another backend."""

    @model_validator(mode="before")
    @classmethod
    def _none(cls, data: Any) -> Any:
        if isinstance(data, dict) and data:
            raise OptionError(next(iter(data)), "the oracle backend takes no options")
        return data


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
                    yield i, Reply(output=req.join([self.oracle.handle(item) for item in req.items]))
                    continue
                yield i, Reply(output=self.oracle.handle(req))
            except Unsupported as err:
                yield i, Reply(error=f"unsupported: {err}")


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_backend("oracle", OracleBackend, options=OracleOptions)
