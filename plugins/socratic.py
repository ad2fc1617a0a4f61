"""The `socratic` generator: SOCRATIC CoT (Shridhar et al. 2023) inside the loop.

For each hard case the teacher writes a sibling instruction (`Rewrite`), answers it, and
decomposes it (`Decompose`): a list of (sub-question, answer) pairs whose last answer is the final
one; a later sub-question may name an earlier answer as #1, #2, ... A decomposition whose last
answer is not the teacher's answer is rejected. Kept siblings become, for one student with two
task prefixes (the paper's unified mode), or for two (`mode: separate`, the paper's two-model
setup: the decompose rows train a separate "decomposer" student, the rest the main one, which
is the solver):

  <plain prompt>                                  -> <answer>                kind "answer"
  [decompose] <problem>                           -> "q1 ; q2 ; ..."         kind "decompose"
  [solve] <problem> + "q1 = a1" ... + "qk ="      -> ak  (one row per step)  kind "solve"

and the round's evaluation also asks the student(s) as a chain, decomposer then solver
(`lionloop_evaluate_student`), stored as `eval.methods.socratic` beside the direct accuracy.

Options (generate.generators.socratic.options):
  mode                "unified" (default: one student, two prefixes) or "separate" (a decomposer
                      student of its own; costs a second training run per round)
  decompose_prefix    default "[decompose] "
  solve_prefix        default "[solve] "
  max_steps           longest decomposition kept and longest chain asked (default 6)
  per_case            siblings per hard case (default 1)
  eval_max_new_tokens tokens the student may write for a decomposition (default 64)
  max_calls           paid teacher calls per round (default: quota x 3)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from lionloop.plugin.hookspecs import hookimpl
from lionloop.plugin.kit import affordable, enabled_options, meta_reject_filter, siblings
from lionloop.plugin.plan import GeneratorSpec
from lionloop.records import Candidate, Cases, Example, Instruction
from lionloop.student.prompt import format_prompt
from lionloop.teacher.requests import Answer, TeacherRequest

NAME = "socratic"
VARIANT_BASE = 2000  # rewrite variants apart from lion's and the other plugins'
SEP = " ; "  # between sub-questions in a decomposer target


class Step(BaseModel):
    model_config = ConfigDict(extra="ignore")

    question: str = Field(min_length=1)
    answer: str


class DecomposeOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    steps: list[Step] = Field(min_length=1)


class Decompose(TeacherRequest):
    """Break a problem into sub-questions, each with its answer; the last answer is the final one."""

    kind: ClassVar[str] = "decompose"
    template: ClassVar[str] = "socratic.j2"
    Output: ClassVar[type[BaseModel]] = DecomposeOut
    untrusted: ClassVar[tuple[str, ...]] = ("instruction", "input")

    instruction: str
    input: str = ""
    task: str = ""


MODES = ("unified", "separate")
DECOMPOSER = "decomposer"  # the student role of the decompose rows in separate mode


def decomposer_role(opts: dict[str, Any]) -> str:
    """The student the decompose rows train: "" (the main one) or the decomposer's own."""
    mode = opts.get("mode", "unified")
    if mode not in MODES:
        raise ValueError(f"generate.generators.{NAME}.options.mode: {mode!r} is not one of {', '.join(MODES)}")
    return DECOMPOSER if mode == "separate" else ""


def clean_question(q: str) -> str:
    """One line, and no separator inside: sub-questions are joined with ' ; ' for the student."""
    return " ".join(q.replace(";", ",").split())


def decompose_prompt(ins: Instruction, opts: dict[str, Any]) -> str:
    return str(opts.get("decompose_prefix", "[decompose] ")) + format_prompt(ins)


def solve_prompt(ins: Instruction, done: list[tuple[str, str]], question: str, opts: dict[str, Any]) -> str:
    """The problem, the sub-questions answered so far, then the one to answer now."""
    solved = "".join(f"{q} = {a}\n" for q, a in done)
    return f"{opts.get('solve_prefix', '[solve] ')}{format_prompt(ins)}{solved}{question} =\n"


@hookimpl
def lionloop_register(registry: Any) -> None:
    registry.add_request_type(Decompose)


@hookimpl
def lionloop_generator_spec() -> GeneratorSpec:
    return GeneratorSpec(consumes=("hard",), calls_per_candidate=3, kinds=("answer", "decompose", "solve"))


@hookimpl
def lionloop_generate(cases: Cases, teacher: Any, ctx: Any) -> list[Candidate]:
    opts = ctx.options()
    decomposer_role(opts)  # a bad mode is this plugin's error, reported before any call is paid
    max_steps = int(opts.get("max_steps", 6))
    quota = ctx.max_candidates if ctx.max_candidates is not None else len(cases.hard)
    sibs = siblings(cases, teacher, ctx, affordable(teacher, quota, 3), int(opts.get("per_case", 1)), VARIANT_BASE, NAME)
    asks: list[TeacherRequest] = []
    for _, ins in sibs:
        asks += [Answer(instruction=ins.text, input=ins.input, task=ins.task),
                 Decompose(instruction=ins.text, input=ins.input, task=ins.task)]
    results = teacher.ask(asks)
    out = []
    for k, (_, ins) in enumerate(sibs):
        ans, dec = results[2 * k], results[2 * k + 1]
        if not ans.ok:
            continue
        meta = dict(ins.meta)
        if not dec.ok:
            meta["reject"] = f"no decomposition ({dec.error})"
        else:
            steps = [[clean_question(s.question), " ".join(s.answer.split())] for s in dec.output.steps]
            meta["steps"] = steps
            if len(steps) > max_steps:
                meta["reject"] = f"decomposition has {len(steps)} steps (max_steps {max_steps})"
            elif steps[-1][1] != ans.output.text.strip():
                meta["reject"] = "decomposition does not end in the teacher's answer"
        out.append(Candidate(instruction=replace(ins, meta=meta), generator=NAME))
    return out


lionloop_filter_candidate = meta_reject_filter(NAME)


@hookimpl
def lionloop_format_examples(instruction: Instruction, answer: str, generator: str, ctx: Any, prompt: str) -> list[Example] | None:
    if generator != NAME or not instruction.meta.get("steps"):
        return None
    opts = enabled_options(ctx, NAME) or {}
    steps = [(q, a) for q, a in instruction.meta["steps"]]
    rows = [
        Example(instruction.id, prompt, answer, "answer", NAME, ctx.round),
        Example(instruction.id, decompose_prompt(instruction, opts), SEP.join(q for q, _ in steps), "decompose", NAME,
                ctx.round, student=decomposer_role(opts)),
    ]
    for j, (q, a) in enumerate(steps):
        rows.append(Example(instruction.id, solve_prompt(instruction, steps[:j], q, opts), a, "solve", NAME, ctx.round))
    return rows


@hookimpl
def lionloop_evaluate_student(instructions: list[Instruction], student: Any, ctx: Any) -> dict[str, str] | None:
    """Decomposer, then the solver once per sub-question with the answers so far: the final
    answer is the solver's last one (no decomposition: an empty answer)."""
    opts = enabled_options(ctx, NAME)
    if opts is None:
        return None
    max_steps = int(opts.get("max_steps", 6))
    plans_out = student([decompose_prompt(i, opts) for i in instructions], int(opts.get("eval_max_new_tokens", 64)),
                        role=decomposer_role(opts))
    plans = {i.id: [q.strip() for q in p.split(";") if q.strip()][:max_steps] for i, p in zip(instructions, plans_out, strict=True)}
    done: dict[str, list[tuple[str, str]]] = {i.id: [] for i in instructions}
    for j in range(max_steps):
        todo = [i for i in instructions if len(plans[i.id]) > j]
        if not todo:
            break
        outs = student([solve_prompt(i, done[i.id], plans[i.id][j], opts) for i in todo])
        for i, a in zip(todo, outs, strict=True):
            done[i.id].append((plans[i.id][j], a.strip()))
    return {i.id: (done[i.id][-1][1] if done[i.id] else "") for i in instructions}
