"""The student: a HF model directory, built tiny from a config offline, answering in batches."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from lionloop.config import StudentConfig
from lionloop.errors import RunError
from lionloop.records import Example
from lionloop.student.prompt import answer_from, render, resolve_format
from lionloop.thinking import split_reasoning

log = logging.getLogger(__name__)

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}
# The tiny student ships no chat template: it is trained and queried on plain prompts
# (`student.prompt_format` auto -> plain), and a template it was never trained on would only
# mislead whoever serves it. `lionloop export-model` writes one that matches (PLAIN_CHAT_TEMPLATE).


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
    return PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL_TOKENS)


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


def build_tiny_student(out_dir: Path, cfg: StudentConfig, seed: int, tokenizer: Any = None) -> Path:
    """Write a randomly initialised Llama-architecture student and its tokenizer (default: the
    byte tokenizer; the tests give a cross-tokenizer teacher another one) to out_dir."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    quiet_hf()
    tok = tokenizer if tokenizer is not None else build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=cfg.hidden_size,
        intermediate_size=4 * cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=max(128, cfg.train_max_length() + cfg.generate_max_new_tokens()),
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



ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(path: Path) -> bool:
    """A LoRA checkpoint: PEFT adapter weights over a base model named in its config."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(path: Path) -> Path:
    """The base model folder a LoRA checkpoint was trained on."""
    import json

    base = json.loads((Path(path) / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise RunError(f"{path}/{ADAPTER_CONFIG}: names no base model")
    if not Path(base).exists():
        raise RunError(f"{path}: its base model {base} is gone (a LoRA checkpoint needs it)")
    return Path(base)


def load(path: Path, device: str = "cpu", trainable: bool = False) -> tuple[Any, Any]:
    """A student checkpoint and its tokenizer. A LoRA checkpoint loads over its base: merged for
    inference, or as a trainable PEFT model (`trainable=True`: training continues the adapter)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_hf()
    path = Path(path)
    tok = AutoTokenizer.from_pretrained(path)
    if is_adapter(path):
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(adapter_base(path))
        model = PeftModel.from_pretrained(base, path, is_trainable=trainable)
        if not trainable:
            model = model.merge_and_unload()  # plain weights: generation at full speed
    else:
        model = AutoModelForCausalLM.from_pretrained(path)
    model = model.to(device)
    if not trainable:
        model.eval()
    return model, tok


def set_threads(cfg: StudentConfig) -> int | None:
    """torch's thread count for the student on CPU: `student.threads`, else OMP_NUM_THREADS, else
    torch's default. Returns the count set, or None when torch's own choice stands."""
    import torch

    n = cfg.threads
    if n is None and not os.environ.get("OMP_NUM_THREADS"):
        return None
    if n is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def generate(
    path: Path,
    prompts: Sequence[str],
    cfg: StudentConfig,
    progress: Callable[[int], None] | None = None,
    stats: dict[str, Any] | None = None,
) -> list[str]:
    """Greedy answers for prompt contents, batched (sorted by length to waste little padding).

    Each content is rendered by `student.prompt.render` (the format the student was trained on);
    generation stops at EOS (the end of turn in chat). `stats`, when given, receives `answers`,
    `truncated` (answers cut at max_new_tokens) and the `prompt_format` used, and where the student
    learns thinking (student.thinking: learn) `thinking`: each answer's thinking, cut from it (None
    where it wrote no block). With
    `student.engine: vllm` (a GPU and vLLM present) a full checkpoint answers from vLLM instead.
    """
    from lionloop.student.vllm_engine import generate_vllm, use_vllm

    if use_vllm(cfg) and not is_adapter(path):  # docs/scaling.md; a LoRA round answers through HF
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
        fmt = resolve_format(tok, cfg.prompt_format)
        raw = generate_vllm(path, [render(tok, p, fmt) for p in prompts], cfg, progress)
        if stats is not None:
            stats.update({"answers": len(raw), "prompt_format": fmt, "engine": "vllm"})
            _keep_thinking(stats, raw, cfg)
        return [answer_from(t, fmt, cfg.thinking == "learn") for t in raw]
    import torch

    device = pick_device(cfg.device)
    set_threads(cfg)
    model, tok = load(path, device)
    fmt = resolve_format(tok, cfg.prompt_format)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    texts = [render(tok, p, fmt) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    answers: list[str] = [""] * len(texts)
    said: list[str] = [""] * len(texts)
    bs = cfg.eval_batch_size
    max_new = cfg.generate_max_new_tokens()
    truncated = 0
    with torch.inference_mode():
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            # Rendered chat text carries its own special tokens: never add a second BOS.
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True,
                      add_special_tokens=fmt == "plain").to(device)
            out = model.generate(
                **enc,
                max_new_tokens=max_new,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
            new = out[:, enc["input_ids"].shape[1] :]
            texts_out = tok.batch_decode(new, skip_special_tokens=True)
            for row, (i, t) in enumerate(zip(idx, texts_out, strict=True)):
                ids = new[row].tolist()
                if len(ids) >= max_new and tok.eos_token_id not in ids:
                    truncated += 1
                answers[i], said[i] = answer_from(t, fmt, cfg.thinking == "learn"), t
            if progress:
                progress(len(idx))
    if stats is not None:
        stats.update({"answers": len(texts), "truncated": truncated, "prompt_format": fmt})
        _keep_thinking(stats, said, cfg)
    return answers


def _keep_thinking(stats: dict[str, Any], raw: Sequence[str], cfg: StudentConfig) -> None:
    """The thinking each raw output opened with, stripped (None where it wrote none), for `generate`'s
    stats (a student that learns it)."""
    if cfg.thinking == "learn":
        stats["thinking"] = [(split_reasoning(t)[0] or "").strip() or None for t in raw]


class Trainer(Protocol):
    """A trainer plugin: trains `base` on rows and writes a HF model directory to `out`."""

    def train(
        self,
        base: Path,
        out: Path,
        examples: Sequence[Example],
        seed: int,
        progress: Callable[..., None] | None = None,
    ) -> dict[str, Any]:
        """Return figures such as steps, final loss and seconds. Call `progress(step, total)` as
        steps finish, or `progress(step, total, loss)` to show the latest loss.

        A trainer may also take `checkpoint_dir: Path | None` (keyword): a folder for checkpoints
        inside this training, to resume from after a kill (`lionloop.resume_point`); the imitate
        stage passes it when the signature has it and removes the folder once the stage is done."""
