"""The `hf` teacher backend: a transformers causal LM in process, batched `generate`, chat template.

The CPU fallback for a real teacher (and what tests run with a tiny model). No constrained
decoding: JSON replies rely on the prompt and the tolerant parser. Options (`HFOptions`): `device`
(auto | cpu | cuda), `dtype` (e.g. bfloat16), and any other `generate` keyword (top_p, ...)
but the ones lionloop sets from the teacher config (max_new_tokens, temperature, ...).
Each batch of `batch_size` prompts is yielded, and so cached, before the next one starts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from lionloop import (
    BackendEnv,
    ChatBackend,
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

# `generate` keywords lionloop sets itself, and where to set them instead.
SET_BY_LIONLOOP = {
    "max_new_tokens": "use teacher.max_tokens",
    "temperature": "use teacher.temperature",
    "do_sample": "use teacher.temperature (above 0 samples)",
    "pad_token_id": "from the tokenizer (its pad token, else its eos token)",
    "eos_token_id": "from the tokenizer",
}


class HFOptions(PluginOptions):
    """`teacher.options` of the hf backend: where and how the model loads; every other key is a
    `generate` keyword, passed through (and part of the cache key)."""

    model_config = ConfigDict(extra="allow")

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the model runs (not part of the cache key).")
    dtype: str | None = Field(None, description="torch dtype to load the model in, e.g. bfloat16.")

    @model_validator(mode="after")
    def _not_set_by_lionloop(self) -> HFOptions:
        for key in self.model_extra or {}:
            if key in SET_BY_LIONLOOP:
                raise OptionError(key, f"set by lionloop: {SET_BY_LIONLOOP[key]}")
        return self


def _plain_chat(messages: list[dict[str, str]]) -> str:
    """For tokenizers without a chat template: role-tagged turns, then the assistant's."""
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "


class HFBackend(ChatBackend):
    """transformers `generate` on batches of chat prompts (sorted by length, left padding)."""

    name = "hf"
    structured_modes = ("none", "json_schema", "json_object")  # all mean "prompt only" here

    def __init__(self, cfg: TeacherConfig, env: BackendEnv | None = None) -> None:
        super().__init__(cfg, env)
        given = getattr(env, "options", None)
        self.options: HFOptions = given if given is not None else validate_options(HFOptions, cfg.options, f"{self.path}.options")
        self.structured_output = "none"  # no constrained decoding in plain transformers
        self._model: Any = None
        self._tok: Any = None
        self._lock = threading.Lock()

    def extra_params(self) -> dict[str, Any]:
        # Where the model runs is not part of the key; its dtype and generate options are.
        return {k: v for k, v in self.cfg.options.items() if k != "device"}

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer

                device = self.options.device
                if device == "auto":
                    device = "cuda" if torch.cuda.is_available() else "cpu"
                kwargs: dict[str, Any] = {}
                if self.options.dtype:
                    kwargs["dtype"] = getattr(torch, self.options.dtype)
                tok = AutoTokenizer.from_pretrained(self.model)
                tok.padding_side = "left"
                if tok.pad_token is None:
                    tok.pad_token = tok.eos_token
                model = AutoModelForCausalLM.from_pretrained(self.model, **kwargs).to(device).eval()
                self._model, self._tok = model, tok
                if not getattr(tok, "chat_template", None):
                    log.warning("hf teacher %s: tokenizer has no chat template; using plain role lines", self.model)
            return self._model, self._tok

    def chat_text(self, messages: list[dict[str, str]]) -> str:
        _, tok = self._load()
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return _plain_chat(messages)

    def complete(self, requests: Sequence[TeacherRequest], attempt: int) -> Iterator[tuple[int, Reply]]:
        import torch

        model, tok = self._load()
        texts = [self.chat_text(self.prompt_for(r, attempt)["messages"]) for r in requests]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        gen_kwargs = dict(self.options.model_extra or {})
        sample = self.cfg.temperature > 0
        if sample:
            gen_kwargs["temperature"] = self.cfg.temperature
        eos = tok.eos_token_id
        # A prompt that does not fit the context fails alone, with its reason (vLLM answers 400).
        ctx = getattr(model.config, "max_position_embeddings", None)
        if ctx:
            fits = []
            for i in order:
                n = len(tok(texts[i], add_special_tokens=False)["input_ids"])
                if n + self.cfg.max_tokens > ctx:
                    yield i, Reply(error=f"hf: prompt of {n} tokens + max_tokens {self.cfg.max_tokens} "
                                         f"exceeds the model's context of {ctx}")
                else:
                    fits.append(i)
            order = fits
        for start in range(0, len(order), self.cfg.batch_size):
            idx = order[start : start + self.cfg.batch_size]
            try:
                # Chat templates carry their own special tokens (bos); do not add them twice.
                enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(model.device)
                with torch.inference_mode():
                    out = model.generate(
                        **enc, max_new_tokens=self.cfg.max_tokens, do_sample=sample,
                        pad_token_id=tok.pad_token_id, eos_token_id=eos, **gen_kwargs,
                    )
            except Exception as err:  # noqa: BLE001 - a failed batch is data, not a crash
                for i in idx:
                    yield i, Reply(error=f"hf: generate failed: {type(err).__name__}: {err}")
                continue
            new = out[:, enc["input_ids"].shape[1] :]
            prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
            for row, i in enumerate(idx):
                ids = new[row].tolist()
                n = ids.index(eos) if eos in ids else len(ids)
                finish = "stop" if n < len(ids) else "length"
                text = tok.decode(ids[:n], skip_special_tokens=True)
                yield i, Reply(text=text, usage={"prompt_tokens": int(prompt_lens[row]),
                                                 "completion_tokens": n, "finish_reason": finish})

    def close(self) -> None:
        self._model = self._tok = None


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_backend("hf", HFBackend, options=HFOptions)
