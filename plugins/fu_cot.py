"""The `fu_cot` generator: specialising smaller models towards multi-step reasoning (Fu et al. 2023).

For each hard case the teacher writes a sibling (`Rewrite`), answers it, and solves it step by step
after up to k worked chain-of-thought examples (`FewShotCot`, in-context CoT prompting; the
examples are earlier fu_cot instructions of the same task, none in the first round). A chain of
thought is kept only when it reaches the teacher's answer. Kept siblings become rows in the
paper's mixed formats (`formats`; the default mixes in-context and zero-shot chain of thought):

  zero_shot_cot      [cot] <question>                              -> "<cot> => <answer>"  kind "cot"
  in_context_cot     [cot] <q1>\n<cot1> => <a1>\n ... <question>   -> "<cot> => <answer>"  kind "icl_cot"
  zero_shot_answer   <plain prompt>                                -> <answer>             kind "answer"
  in_context_answer  [cot] <q1>\n<a1>\n ... <question>             -> <answer>             kind "icl_answer"

The in-context rows' demonstrations are k other kept chains of the same task (from the pool and
this round's batch); a sibling with none gets its zero-shot rows only.

**Checkpoint choice by held-out reasoning accuracy.** Each round's student is a checkpoint. The
round's evaluation asks it for a zero-shot chain of thought on the eval set (`eval.methods.fu_cot`)
and on a dev set: `dev_per_task` probes per task from the cache pool (never trained on, the same
every round). Their accuracy per round and the round with the best dev accuracy (earliest on a
tie) are kept in `RUN_DIR/fu_cot/checkpoints.json` (`chosen_round(run_dir)`); export that round
with `lionloop export-model RUN_DIR --round N`. The eval set never chooses.

What is not the paper's: Fu et al. distil the teacher's token distribution (distribution
matching); from a text teacher only its sampled text is matched.

Options (generate.generators.fu_cot.options, `FuCotOptions`):
  formats             row formats, any of in_context_cot, zero_shot_cot, in_context_answer,
                      zero_shot_answer (default: in_context_cot and zero_shot_cot)
  k                   worked examples in the teacher's prompt and in in-context rows (default 2)
  temperature         the teacher's sampling temperature asked for (default 0)
  cot_prefix          prompt prefix of the reasoning rows (default "[cot] ")
  dev_per_task        dev probes per task for the checkpoint choice (default 8; 0: none)
  per_case            siblings per hard case (default 1)
  eval_max_new_tokens tokens the student may write for a chain of thought (default 64)
  max_calls           paid teacher calls per round (default: quota x 3)
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from lionloop import (
    Candidate,
    Cases,
    Example,
    GeneratorOptions,
    GeneratorSpec,
    GeneratorTeacher,
    Instruction,
    Registry,
    RoundContext,
    Student,
    TeacherRequest,
    answered_siblings,
    enabled_options,
    format_prompt,
    hookimpl,
    meta_reject_filter,
    one_line,
)

NAME = "fu_cot"
VARIANT_BASE = 8000
ARROW = " => "
Format = Literal["in_context_cot", "zero_shot_cot", "in_context_answer", "zero_shot_answer"]
KIND = {"zero_shot_cot": "cot", "in_context_cot": "icl_cot", "zero_shot_answer": "answer", "in_context_answer": "icl_answer"}


class FuCotOptions(GeneratorOptions):
    formats: list[Format] = Field(
        default_factory=lambda: ["in_context_cot", "zero_shot_cot"], min_length=1,
        description="Row formats (Fu et al. mix in-context and zero-shot chain of thought).")
    k: int = Field(2, ge=1, description="Worked examples in the teacher's prompt and in in-context rows.")
    temperature: float = Field(0.0, ge=0, le=2, description="The teacher's sampling temperature asked for.")
    cot_prefix: str = Field("[cot] ", description="Prompt prefix of the reasoning rows.")
    dev_per_task: int = Field(8, ge=0, description="Dev probes per task (cache pool) for the checkpoint choice.")
    per_case: int = Field(1, ge=1, description="Siblings per hard case.")
    eval_max_new_tokens: int = Field(64, ge=1, description="Tokens the student may write for a chain of thought.")


class CotDemo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    instruction: str
    input: str = ""
    rationale: str
    answer: str


class CotOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    rationale: str = Field(min_length=1)
    answer: str


class FewShotCot(TeacherRequest):
    """Solve step by step after worked chain-of-thought examples (in-context CoT prompting)."""

    kind: ClassVar[str] = "few_shot_cot"
    template: ClassVar[str] = "fu_cot.j2"
    Output: ClassVar[type[BaseModel]] = CotOut
    untrusted: ClassVar[tuple[str, ...]] = ("instruction", "input", "demos")

    instruction: str
    input: str = ""
    task: str = ""
    demos: tuple[CotDemo, ...] = ()
    temperature: float = Field(0.0, ge=0, le=2)


def final_answer(text: str) -> str:
    return text.rsplit("=>", 1)[-1].strip() if "=>" in text else ""


def cot_prompt(ins: Instruction, opts: FuCotOptions, demos: list[CotDemo] | None = None, with_cot: bool = True) -> str:
    shots = "".join(f"{format_prompt(d.instruction, d.input)}{d.rationale + ARROW if with_cot else ''}{d.answer}\n"
                    for d in demos or [])
    return opts.cot_prefix + shots + format_prompt(ins)


def pool_chains(ctx: RoundContext) -> dict[str, list[CotDemo]]:
    """Kept chains of earlier fu_cot instructions in the pool, by task."""
    out: dict[str, list[CotDemo]] = {}
    for ins in ctx.pool.instructions(["train"]):
        if ins.origin == NAME and ins.meta.get("cot"):
            out.setdefault(ins.task, []).append(CotDemo(instruction=ins.text, input=ins.input,
                                                        rationale=ins.meta["cot"], answer=ins.meta["answer"]))
    return out


def _pick(chains: list[CotDemo], ins: Instruction, k: int, seed: str) -> list[CotDemo]:
    others = [d for d in chains if (d.instruction, d.input) != (ins.text, ins.input)]
    return random.Random(f"{seed}:{ins.id}").sample(others, min(k, len(others)))


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_request_type(FewShotCot)


@hookimpl
def lionloop_generator_spec() -> GeneratorSpec:
    return GeneratorSpec(consumes=("hard",), calls_per_candidate=3, kinds=tuple(KIND.values()), options=FuCotOptions)


@hookimpl
def lionloop_generate(cases: Cases, teacher: GeneratorTeacher, ctx: RoundContext) -> list[Candidate]:
    opts: FuCotOptions = ctx.options()
    earlier = pool_chains(ctx)
    seed = f"{ctx.config.seed}:{ctx.round}"

    def own(ins: Instruction) -> list[TeacherRequest]:
        demos = _pick(earlier.get(ins.task, []), ins, opts.k, f"teacher:{seed}")
        return [FewShotCot(instruction=ins.text, input=ins.input, task=ins.task, demos=tuple(demos),
                           temperature=opts.temperature)]

    sibs = answered_siblings(cases, teacher, ctx, per_case=opts.per_case, variant_base=VARIANT_BASE, origin=NAME,
                             requests=own)
    metas: list[dict[str, Any]] = []
    kept: dict[str, list[CotDemo]] = {t: list(v) for t, v in earlier.items()}
    for sib in sibs:
        (res,) = sib.results
        meta: dict[str, Any] = dict(sib.instruction.meta)
        if not res.ok:
            meta["reject"] = f"no chain of thought ({res.error})"
        elif res.output.answer.strip() != sib.answer:
            meta["reject"] = "the chain of thought does not reach the teacher's answer"
        else:
            meta.update(cot=one_line(res.output.rationale), answer=sib.answer)
            ins = sib.instruction
            kept.setdefault(ins.task, []).append(CotDemo(instruction=ins.text, input=ins.input,
                                                         rationale=meta["cot"], answer=sib.answer))
        metas.append(meta)
    out = []
    for sib, meta in zip(sibs, metas, strict=True):
        if "cot" in meta:  # the student's in-context examples: other kept chains of the task
            demos = _pick(kept.get(sib.instruction.task, []), sib.instruction, opts.k, f"student:{seed}")
            meta["demos"] = [[d.instruction, d.input, d.rationale, d.answer] for d in demos]
        out.append(Candidate(instruction=replace(sib.instruction, meta=meta), generator=NAME))
    return out


lionloop_filter_candidate = meta_reject_filter(NAME)


@hookimpl
def lionloop_format_examples(
    instruction: Instruction, answer: str, generator: str, ctx: RoundContext, prompt: str
) -> list[Example] | None:
    if generator != NAME or not instruction.meta.get("cot"):
        return None
    opts: FuCotOptions = enabled_options(ctx, NAME) or FuCotOptions()
    demos = [CotDemo(instruction=q, input=i, rationale=r, answer=a) for q, i, r, a in instruction.meta.get("demos", [])]
    chain = f"{instruction.meta['cot']}{ARROW}{answer}"
    rows = []
    for fmt in opts.formats:
        if fmt.startswith("in_context") and not demos:
            continue  # no other chain of this task yet: zero-shot rows only
        if fmt == "zero_shot_cot":
            rows.append((cot_prompt(instruction, opts), chain))
        elif fmt == "in_context_cot":
            rows.append((cot_prompt(instruction, opts, demos), chain))
        elif fmt == "zero_shot_answer":
            rows.append((prompt, answer))
        else:
            rows.append((cot_prompt(instruction, opts, demos, with_cot=False), answer))
        rows[-1] = (*rows[-1], KIND[fmt])
    return [Example(instruction.id, p, c, kind, NAME, ctx.round) for p, c, kind in rows] or None


# -- evaluation and the checkpoint choice ------------------------------------------------------------


def checkpoints_path(run_dir: Path) -> Path:
    return Path(run_dir) / NAME / "checkpoints.json"


def chosen_round(run_dir: Path) -> int | None:
    """The round whose student has the best dev reasoning accuracy so far (None: no record)."""
    path = checkpoints_path(run_dir)
    return json.loads(path.read_text()).get("best_round") if path.exists() else None


def dev_set(ctx: RoundContext, per_task: int) -> list[Instruction]:
    """`per_task` cache-pool probes per task (never trained on), the same every round."""
    by_task: dict[str, list[Instruction]] = {}
    for ins in ctx.pool.instructions(["cache"]):
        if ins.round_born == 0:  # seed probes only: the set must not move with generated ones
            by_task.setdefault(ins.task, []).append(ins)
    rng = random.Random(f"{ctx.config.seed}:{NAME}:dev")
    return [i for t in sorted(by_task) for i in rng.sample(by_task[t], min(per_task, len(by_task[t])))]


def record_checkpoint(run_dir: Path, round_: int, correct: int, n: int) -> dict[str, Any]:
    """Store one round's dev accuracy and the best round so far (idempotent per round)."""
    path = checkpoints_path(run_dir)
    data = json.loads(path.read_text()) if path.exists() else {"rounds": {}}
    data["rounds"][str(round_)] = {"dev_cot_accuracy": correct / n if n else None, "n": n}
    scored = [(v["dev_cot_accuracy"], -int(r)) for r, v in data["rounds"].items() if v["dev_cot_accuracy"] is not None]
    data["best_round"] = -max(scored)[1] if scored else None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)
    return data


@hookimpl
def lionloop_evaluate_student(instructions: list[Instruction], student: Student, ctx: RoundContext) -> dict[str, str] | None:
    """Zero-shot chain of thought on the eval set, and on the dev set for the checkpoint choice."""
    opts: FuCotOptions | None = enabled_options(ctx, NAME)
    if opts is None:
        return None
    dev = dev_set(ctx, opts.dev_per_task) if opts.dev_per_task else []
    items = list(instructions) + dev
    outs = [final_answer(o) for o in student([cot_prompt(i, opts) for i in items], opts.eval_max_new_tokens)]
    if dev:
        correct = sum(ctx.task_pack.verify(i, a) is True for i, a in zip(dev, outs[len(instructions):], strict=True))
        record_checkpoint(ctx.run_dir, ctx.round, correct, len(dev))
    return {i.id: a for i, a in zip(instructions, outs[: len(instructions)], strict=True)}
