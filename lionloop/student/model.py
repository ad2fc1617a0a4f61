"""The student: a HF model directory, built tiny from a config offline, answering in batches."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from lionloop.config import StudentConfig
from lionloop.records import Example

log = logging.getLogger(__name__)

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}
# Used by chat-style servers (e.g. vLLM) when this tokenizer serves a model; the student
# itself is trained and queried on plain prompts.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def build_tokenizer() -> Any:
    """A byte-level tokenizer with no merges: one token per byte, any text encodable.

    Built locally with `tokenizers` (no download). Character tokens are what a tiny student
    needs for string skills; digits come out one per token by construction.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for tok in SPECIAL_TOKENS.values():
        vocab[tok] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL_TOKENS)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def quiet_hf() -> None:
    """Silence library progress bars and info logs: lionloop reports progress itself."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def pick_device(pref: str) -> str:
    import torch

    if pref == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return pref


def build_tiny_student(out_dir: Path, cfg: StudentConfig, seed: int) -> Path:
    """Write a randomly initialised Llama-architecture student and its tokenizer to out_dir."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    quiet_hf()
    tok = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=cfg.hidden_size,
        intermediate_size=4 * cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=max(128, cfg.max_length + cfg.max_new_tokens),
        tie_word_embeddings=True,  # halves the parameters of a byte-vocab model
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    save_atomically(out_dir, lambda tmp: (model.save_pretrained(tmp), tok.save_pretrained(tmp)))
    log.info("built tiny student: %d parameters -> %s", sum(p.numel() for p in model.parameters()), out_dir)
    return out_dir


def save_atomically(out_dir: Path, write: Callable[[Path], Any]) -> None:
    """Write into a temporary sibling, then rename: a crash never leaves half a checkpoint."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)



def load(path: Path, device: str = "cpu") -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_hf()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).to(device)
    model.eval()
    return model, tok


def generate(
    path: Path,
    prompts: Sequence[str],
    cfg: StudentConfig,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy answers for prompts, batched (sorted by length to waste little padding)."""
    from lionloop.student.vllm_engine import generate_vllm, use_vllm

    if use_vllm(cfg):  # student.engine: vLLM with a GPU, the same answers (docs/scaling.md)
        return generate_vllm(path, prompts, cfg, progress)
    import torch

    device = pick_device(cfg.device)
    model, tok = load(path, device)
    tok.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[str] = [""] * len(prompts)
    bs = cfg.eval_batch_size
    with torch.inference_mode():
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True).to(device)
            out = model.generate(
                **enc,
                max_new_tokens=cfg.max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
            texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for i, t in zip(idx, texts, strict=True):
                answers[i] = t.split("\n")[0].strip()
            if progress:
                progress(len(idx))
    return answers


class Trainer(Protocol):
    """A trainer plugin: trains `base` on rows and writes a HF model directory to `out`."""

    def train(
        self,
        base: Path,
        out: Path,
        examples: Sequence[Example],
        seed: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Return figures such as steps, final loss and seconds."""
