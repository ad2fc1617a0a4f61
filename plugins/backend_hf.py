"""The `hf` teacher backend: a transformers causal LM in process, batched `generate`, chat template.

The CPU fallback for a real teacher (and what tests run with a tiny model). No constrained
decoding: JSON replies rely on the prompt and the tolerant parser. Options: `device`
(auto | cpu | cuda), `dtype` (e.g. bfloat16), and any `generate` keyword (top_p, ...).
Each batch of `batch_size` prompts is yielded, and so cached, before the next one starts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from lionloop.config import TeacherConfig
from lionloop.plugin.hookspecs import hookimpl
from lionloop.teacher.chat import ChatBackend
from lionloop.teacher.client import Reply
from lionloop.teacher.requests import TeacherRequest

log = logging.getLogger(__name__)

LOAD_OPTIONS = ("device", "dtype")


def _plain_chat(messages: list[dict[str, str]]) -> str:
    """For tokenizers without a chat template: role-tagged turns, then the assistant's."""
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "


class HFBackend(ChatBackend):
    """transformers `generate` on batches of chat prompts (sorted by length, left padding)."""

    name = "hf"
    structured_modes = ("none", "json_schema", "json_object")  # all mean "prompt only" here

    def __init__(self, cfg: TeacherConfig, env: Any = None) -> None:
        super().__init__(cfg, env)
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

                device = self.cfg.options.get("device", "auto")
                if device == "auto":
                    device = "cuda" if torch.cuda.is_available() else "cpu"
                kwargs: dict[str, Any] = {}
                if self.cfg.options.get("dtype"):
                    kwargs["dtype"] = getattr(torch, str(self.cfg.options["dtype"]))
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
        gen_kwargs = {k: v for k, v in self.cfg.options.items() if k not in LOAD_OPTIONS}
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
def lionloop_register(registry: Any) -> None:
    registry.add_backend("hf", HFBackend)
