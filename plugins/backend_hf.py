"""The `hf` teacher backend: a transformers causal LM in process, batched `generate`, chat template.

The CPU fallback for a real teacher (and what tests run with a tiny model). JSON replies are
constrained while they are generated (llguidance masks every token that would leave the request's
JSON schema): `structured_output: json_schema` (or json_object) constrains to the schema, `none`
leaves it to the prompt and the tolerant parser. Unconstrained, SmolLM2-135M closed its JSON in
0 of 8 judge replies. Options (`HFOptions`): `device`
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
    structured_modes = ("none", "json_schema", "json_object")

    def __init__(self, cfg: TeacherConfig, env: BackendEnv | None = None) -> None:
        super().__init__(cfg, env)
        given = getattr(env, "options", None)
        self.options: HFOptions = given if given is not None else validate_options(HFOptions, cfg.options, f"{self.path}.options")
        # Our own decoder enforces the schema in both JSON modes.
        if self.structured_output == "json_object_schema":
            self.structured_output = "json_schema"
        self._lltok: Any = None
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

    def grammar(self, request: TeacherRequest) -> str | None:
        """The llguidance grammar a request's reply is held to, or None (free text)."""
        rf = self.prompt_for(request, 0)["response_format"]
        if rf is None:
            return None
        from llguidance import LLMatcher

        # Compact JSON (no free whitespace): a small model otherwise pads it with newlines.
        return LLMatcher.grammar_from_json_schema(request.json_schema(), overrides={"whitespace_flexible": False})

    def _constraint(self, model: Any, tok: Any, grammars: list[str | None]) -> Any:
        if not any(grammars):
            return None
        if self._lltok is None:
            import llguidance.hf

            self._lltok = llguidance.hf.from_tokenizer(tok, n_vocab=model.config.get_text_config().vocab_size)
        return JSONConstraint(self._lltok, grammars, tok.eos_token_id)

    def complete(self, requests: Sequence[TeacherRequest], attempt: int) -> Iterator[tuple[int, Reply]]:
        # A request that offers a contrast (SCOTT's rationales) is decoded contrastively, alone;
        # the rest in batches.
        plain = [i for i, r in enumerate(requests) if not callable(getattr(r, "contrast_request", None))]
        for i in range(len(requests)):
            if i not in plain:
                yield i, self._contrastive(requests[i], attempt)
        for j, reply in self._complete_plain([requests[i] for i in plain], attempt):
            yield plain[j], reply

    def _contrastive(self, request: Any, attempt: int) -> Reply:
        from .contrastive import contrastive_generate

        model, tok = self._load()
        pos = self.chat_text(self.prompt_for(request, attempt)["messages"])
        neg = self.chat_text(self.prompt_for(request.contrast_request(), attempt)["messages"])
        try:
            text, n, stopped = contrastive_generate(model, tok, pos, neg, self.cfg.max_tokens,
                                                    float(getattr(request, "strength", 1.0)))
        except Exception as err:  # noqa: BLE001 - a failed decode is data, not a crash
            return Reply(error=f"hf: contrastive decoding failed: {type(err).__name__}: {err}")
        return Reply(text=text, usage={"prompt_tokens": len(tok(pos, add_special_tokens=False)["input_ids"]),
                                       "completion_tokens": n, "finish_reason": "stop" if stopped else "length"})

    def _complete_plain(self, requests: Sequence[TeacherRequest], attempt: int) -> Iterator[tuple[int, Reply]]:
        import torch

        if not requests:
            return
        model, tok = self._load()
        texts = [self.chat_text(self.prompt_for(r, attempt)["messages"]) for r in requests]
        grammars = [self.grammar(r) for r in requests]
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
                constraint = self._constraint(model, tok, [grammars[i] for i in idx])
                if constraint is not None:
                    from transformers import LogitsProcessorList

                    gen_kwargs["logits_processor"] = LogitsProcessorList([constraint])
                else:
                    gen_kwargs.pop("logits_processor", None)
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


class JSONConstraint:
    """A transformers logits processor holding each row of a batch to its grammar (None: free).

    Each step it feeds every row's last token to the row's llguidance matcher and masks the
    tokens the grammar forbids next; a row that ended (EOS) or whose matcher failed is left free.
    """

    def __init__(self, lltok: Any, grammars: list[str | None], eos: int) -> None:
        from llguidance import LLMatcher

        self.matchers = [LLMatcher(lltok, g, log_level=0) if g else None for g in grammars]
        self.eos = eos
        self.started = False
        self.done = [m is None for m in self.matchers]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch
        from llguidance.torch import allocate_token_bitmask, fill_next_token_bitmask

        if self.started:
            for i, m in enumerate(self.matchers):
                if m is None or self.done[i]:
                    continue
                last = int(input_ids[i, -1])
                if last == self.eos or m.is_stopped():
                    self.done[i] = True
                elif not m.consume_token(last):
                    self.done[i] = True  # left the grammar (cannot happen when masked): free
        self.started = True
        vocab = scores.shape[-1]
        mask = allocate_token_bitmask(len(self.matchers), vocab)
        for i, m in enumerate(self.matchers):
            if m is not None and not self.done[i] and not m.is_error():
                fill_next_token_bitmask(m, mask, i)
        # Bit j of word w allows token 32*w + j.
        bits = (mask.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1
        allowed = bits.reshape(mask.shape[0], -1)[:, :vocab].to(scores.device).bool()
        return scores.masked_fill(~allowed, float("-inf"))


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_backend("hf", HFBackend, options=HFOptions)
