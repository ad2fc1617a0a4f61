"""The `vllm` teacher backend: `vllm.LLM` in this process, batched `chat`, JSON-schema guided decoding.

For a GPU machine where the teacher runs beside the loop. vLLM is an optional dependency and is
imported only when this backend is built: where it is not importable the config error says so
and points at `vllm serve` + the `openai` backend, which needs nothing but HTTP.

Options (`VLLMOptions`): `engine_args` (keyword arguments of `vllm.LLM`: dtype, max_model_len,
gpu_memory_utilization, tensor_parallel_size, ...); every other key is a `SamplingParams` field
(top_p, seed, ...) and part of the cache key, except the ones lionloop sets from the teacher
config (temperature, max_tokens, structured output). Each batch of `batch_size` prompts is yielded, and
so cached, before the next one starts; a batch that fails is retried one prompt at a time so a
single bad prompt (e.g. too long) fails alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from lionloop import (
    BackendEnv,
    ChatBackend,
    ConfigError,
    OptionError,
    PluginOptions,
    Registry,
    Reply,
    TeacherConfig,
    TeacherRequest,
    hookimpl,
    validate_options,
)

log = logging.getLogger(__name__)

# SamplingParams fields and vllm.LLM arguments lionloop sets itself, and where to set them instead.
SET_BY_LIONLOOP = {
    "temperature": "use teacher.temperature",
    "max_tokens": "use teacher.max_tokens",
    "structured_outputs": "use teacher.structured_output",
    "guided_decoding": "use teacher.structured_output",
}
ENGINE_SET_BY_LIONLOOP = {"model": "use teacher.model"}


class VLLMOptions(PluginOptions):
    """`teacher.options` of the vllm backend: `engine_args` for `vllm.LLM`; every other key is a
    `SamplingParams` field, passed through (and part of the cache key)."""

    model_config = ConfigDict(extra="allow")

    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of vllm.LLM (dtype, max_model_len, gpu_memory_utilization, ...).",
    )

    @field_validator("engine_args")
    @classmethod
    def _engine_not_set_by_lionloop(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if key in ENGINE_SET_BY_LIONLOOP:
                raise OptionError(key, f"set by lionloop: {ENGINE_SET_BY_LIONLOOP[key]}")
        return v

    @model_validator(mode="after")
    def _not_set_by_lionloop(self) -> VLLMOptions:
        for key in self.model_extra or {}:
            if key in SET_BY_LIONLOOP:
                raise OptionError(key, f"set by lionloop: {SET_BY_LIONLOOP[key]}")
        return self


def import_vllm(path: str = "teacher") -> Any:
    """`vllm`, or a ConfigError saying what to do instead."""
    try:
        import vllm
    except Exception as err:  # noqa: BLE001 - ImportError, or a broken install raising anything
        raise ConfigError(
            f"{path}.backend: vllm is not importable in this environment ({type(err).__name__}: {err}). "
            "Install it (pip install vllm; GPU) or serve the model with `vllm serve MODEL` and use "
            "backend: openai with base_urls: [http://HOST:PORT/v1]"
        ) from None
    return vllm


def structured_params(vllm: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """SamplingParams keyword for JSON-schema guided decoding, across vLLM versions."""
    sp = vllm.sampling_params
    if hasattr(sp, "StructuredOutputsParams"):  # vLLM >= 0.11
        return {"structured_outputs": sp.StructuredOutputsParams(json=schema)}
    return {"guided_decoding": sp.GuidedDecodingParams(json=schema)}  # older releases


class VLLMBackend(ChatBackend):
    """In-process vLLM: one engine per backend, started at the first call."""

    name = "vllm"
    structured_modes = ("json_schema", "none")

    def __init__(self, cfg: TeacherConfig, env: BackendEnv | None = None) -> None:
        super().__init__(cfg, env)
        given = getattr(env, "options", None)
        self.options: VLLMOptions = given if given is not None else validate_options(VLLMOptions, cfg.options, f"{self.path}.options")
        self.vllm = import_vllm(self.path)  # fail at config time, not mid-run
        self._llm: Any = None
        self._start_error: str | None = None
        self._lock = threading.Lock()

    def extra_params(self) -> dict[str, Any]:
        opts = {k: v for k, v in self.cfg.options.items() if k != "engine_args"}
        # dtype and the like change replies too; where the engine runs does not.
        engine = self.options.engine_args
        if "dtype" in engine:
            opts["dtype"] = engine["dtype"]
        return opts

    def engine(self) -> Any:
        """The engine, started once; a failed start is remembered, not retried per prompt."""
        with self._lock:
            if self._start_error is not None:
                raise RuntimeError(self._start_error)
            if self._llm is None:
                args = dict(self.options.engine_args)
                log.info("starting in-process vLLM engine for %s", self.model)
                try:
                    self._llm = self.vllm.LLM(model=self.model, **args)
                except Exception as err:
                    self._start_error = f"engine failed to start: {type(err).__name__}: {err}"
                    log.error("vllm %s: %s", self.model, self._start_error)
                    raise RuntimeError(self._start_error) from err
            return self._llm

    def sampling(self, prompt: dict[str, Any]) -> Any:
        extra = dict(self.options.model_extra or {})
        rf = prompt.get("response_format")
        if rf is not None:
            extra.update(structured_params(self.vllm, rf["json_schema"]["schema"]))
        return self.vllm.SamplingParams(temperature=self.cfg.temperature, max_tokens=self.cfg.max_tokens, **extra)

    def _run(self, prompts: list[dict[str, Any]]) -> list[Reply]:
        outs = self.engine().chat(
            [p["messages"] for p in prompts], sampling_params=[self.sampling(p) for p in prompts], use_tqdm=False,
        )
        replies = []
        for o in outs:
            c = o.outputs[0]
            replies.append(Reply(text=c.text, usage={
                "prompt_tokens": len(o.prompt_token_ids or []), "completion_tokens": len(c.token_ids),
                "finish_reason": c.finish_reason,
            }))
        return replies

    def complete(self, requests: Sequence[TeacherRequest], attempt: int) -> Iterator[tuple[int, Reply]]:
        prompts = [self.prompt_for(r, attempt) for r in requests]
        try:
            self.engine()
        except RuntimeError as err:  # every request fails with the reason; nothing is paid
            for i in range(len(prompts)):
                yield i, Reply(error=f"vllm: {err}")
            return
        bs = self.cfg.batch_size
        for start in range(0, len(prompts), bs):
            idx = list(range(start, min(start + bs, len(prompts))))
            try:
                replies = self._run([prompts[i] for i in idx])
            except Exception as err:  # noqa: BLE001 - isolate the prompt that broke the batch
                log.warning("vllm batch of %d failed (%s); retrying one by one", len(idx), err)
                for i in idx:
                    try:
                        (reply,) = self._run([prompts[i]])
                    except Exception as one_err:  # noqa: BLE001
                        reply = Reply(error=f"vllm: {type(one_err).__name__}: {one_err}")
                    yield i, reply
                continue
            yield from zip(idx, replies, strict=True)

    def close(self) -> None:
        self._llm = None


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_backend("vllm", VLLMBackend, options=VLLMOptions)
