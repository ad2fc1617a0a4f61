"""A white-box teacher that runs on 2 CPU cores: a tiny student, wider and deeper than the one it
teaches, trained with the `trl` trainer on the `skills` pack's oracle answers. It has the tiny
student's byte tokenizer (lionloop.student.model.build_tokenizer), so the gkd and minillm trainers
can distil its token distribution into any tiny student.

    python -m lionloop.testing.white_box --out runs/white-box-teacher [--steps 1500] [--hidden 192]

`--tokenizer bpe` gives the teacher a tokenizer of its own instead (`bpe_tokenizer`: byte-level
BPE with merges, learnt from the pack's rows, without tokens for non-ASCII and most control bytes,
as SmolLM2's vocabulary lacks some control bytes): the gkd and minillm trainers then distil it
through TRL's GOLD (cross-tokenizer), as they do the packaged SmolLM2-135M (lionloop.testing.models)
into the tiny student.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def train_teacher(
    out: Path,
    hidden_size: int = 192,
    num_layers: int = 6,
    num_heads: int = 6,
    steps: int = 1500,
    per_skill: int = 400,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    skills: list[str] | None = None,
    extra_skills: bool = False,
    init: Path | None = None,
    tokenizer: str = "byte",
) -> dict[str, Any]:
    """Build and train the teacher into `out` (an HF folder); returns its training figures and its
    held-out accuracy on the pack's eval set (the instructions every run is measured on). `init`:
    continue from that teacher (its shape) instead of a fresh one, on a new sample of rows.
    `tokenizer`: `byte` (the tiny student's) or `bpe` (`bpe_tokenizer`, another tokenizer)."""
    from lionloop.config import StudentConfig, TaskConfig, TrainConfig
    from lionloop.plugins.skills import SkillsPack
    from lionloop.plugins.trainer_trl import TRLTrainer
    from lionloop.records import Example
    from lionloop.student.model import build_tiny_student, generate
    from lionloop.student.prompt import format_prompt

    out = Path(out)
    task = TaskConfig(skills=skills, options={"extra_skills": extra_skills})
    # Its own seed stream (never the runs' seeds 0, 1, 2); the pack keeps eval instances out.
    pack = SkillsPack(task, seed=10_000 + seed + (1 if init is not None else 0))
    rows = [Example(instruction_id=i.id, prompt=format_prompt(i), completion=pack.solve(i.text))
            for i in pack.seeds(per_skill)]
    student = StudentConfig(hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, max_length=80)
    base = out.with_name(out.name + ".init")
    if init is not None:
        shutil.copytree(init, base, dirs_exist_ok=True)
    else:
        tok = bpe_tokenizer([r.prompt + r.completion for r in rows]) if tokenizer == "bpe" else None
        build_tiny_student(base, student, seed, tokenizer=tok)
    train = TrainConfig(steps_per_round=steps, batch_size=batch_size, learning_rate=learning_rate, save_steps=0)
    t0 = time.time()
    figures = TRLTrainer(train, student).train(base, out, rows, seed)
    evals = pack.eval_set(40)
    answers = generate(out, [format_prompt(i) for i in evals], student)
    right = [a == pack.solve(i.text) for a, i in zip(answers, evals, strict=True)]
    per = {s: sum(r for r, i in zip(right, evals, strict=True) if i.task == s) / sum(i.task == s for i in evals)
           for s in pack.skills()}
    summary = {"path": str(out), "tokenizer": tokenizer, "hidden_size": hidden_size, "num_layers": num_layers, "steps": steps,
               "rows": len(rows), "final_loss": figures["last_loss"], "seconds": round(time.time() - t0, 1),
               "eval_accuracy": sum(right) / len(right), "eval_per_skill": per}
    if init is not None and (Path(init) / "white_box_teacher.json").is_file():
        before = json.loads((Path(init) / "white_box_teacher.json").read_text())
        summary.update(steps=before["steps"] + steps, rows=before["rows"] + len(rows),
                       seconds=round(before["seconds"] + summary["seconds"], 1))
    (out / "white_box_teacher.json").write_text(json.dumps(summary, indent=1))
    shutil.rmtree(base, ignore_errors=True)
    return summary


def bpe_tokenizer(texts: list[str], vocab_size: int = 320) -> Any:
    """A byte-level BPE tokenizer with merges learnt from `texts`: not the tiny student's byte
    tokenizer (other ids, merged tokens, other special tokens), and with tokens for tab, newline
    and printable ASCII only, so a byte-level student's sample may hold bytes it cannot read."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # Spelled through ByteLevel's own byte -> char map (a space is "Ġ", a newline "Ċ").
    ascii_text = "\t\n" + "".join(chr(b) for b in range(0x20, 0x7F))
    pieces = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(ascii_text)
    alphabet = sorted({ch for piece, _ in pieces for ch in piece})
    special = {"eos_token": "<|endoftext|>", "pad_token": "<|pad|>", "bos_token": "<|startoftext|>"}
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special.values()),
                                  initial_alphabet=alphabet, limit_alphabet=len(alphabet), show_progress=False)
    core.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, **special)


def main() -> None:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--hidden", type=int, default=192)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--per-skill", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--init", type=Path, default=None, help="continue training this teacher")
    p.add_argument("--tokenizer", choices=["byte", "bpe"], default="byte",
                   help="byte: the tiny student's (gkd/minillm through DistillationTrainer); bpe: its own (GOLD)")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    s = train_teacher(a.out, a.hidden, a.layers, a.heads, a.steps, a.per_skill, learning_rate=a.lr, seed=a.seed,
                      init=a.init, tokenizer=a.tokenizer)
    log.info("white-box teacher: %s", json.dumps(s))


if __name__ == "__main__":
    main()
