"""lionloop-mirror: an example generator plugin that uses nothing but lionloop's public API.

Hooks: register (a request type and a backend), generator_spec (with a typed options model),
generate, filter_candidate, format_examples, round_end. See README.md.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from lionloop import (
    BackendEnv,
    Candidate,
    Cases,
    Example,
    GeneratorOptions,
    GeneratorSpec,
    GeneratorTeacher,
    Instruction,
    Registry,
    Reply,
    RoundContext,
    TeacherConfig,
    TeacherRequest,
    Unsupported,
    hookimpl,
)

NAME = "mirror"


class MirrorOptions(GeneratorOptions):
    """`generate.generators.mirror.options`: checked when the run starts (a typo is a config error
    naming its path), handed to the hooks as this model by `ctx.options()`."""

    max_per_task: int | None = Field(None, ge=1, description="Mirrors per task and round (default: no cap).")


class MirrorOut(BaseModel):
    instruction: str = Field(min_length=1)


class Mirror(TeacherRequest):
    """Write the mirror image of an instruction."""

    kind: ClassVar[str] = "mirror"
    template: ClassVar[str] = "mirror.j2"
    template_package: ClassVar[str] = "lionloop_mirror"  # the template ships with this package
    Output: ClassVar[type[BaseModel]] = MirrorOut
    untrusted: ClassVar[tuple[str, ...]] = ("instruction",)

    instruction: str


def mirror(text: str) -> str:
    """`add 12 5` -> `add 5 12`; any other `<skill> ... <word>` -> the word read backwards."""
    head, *args = text.split()
    if args and all(a.isdigit() for a in args):
        return " ".join([head, *reversed(args)])
    return " ".join([head, *args[:-1], args[-1][::-1]]) if args else text


class MirrorBackend:
    """An offline teacher: answers `Mirror` itself and hands the rest to the task pack's oracle."""

    name = "mirror_oracle"

    def __init__(self, cfg: TeacherConfig, env: BackendEnv) -> None:
        self.pack = env.task_pack
        self.oracle = env.task_pack.oracle()
        self.model = self.pack.name

    def params(self) -> dict[str, Any]:
        return {}

    def prompt_for(self, request: TeacherRequest, attempt: int) -> Any:
        return request.payload()

    def complete(self, requests: Sequence[TeacherRequest], attempt: int) -> Iterator[tuple[int, Reply]]:
        for i, req in enumerate(requests):
            try:
                if isinstance(req, Mirror):
                    yield i, Reply(output={"instruction": mirror(req.instruction)})
                else:
                    yield i, Reply(output=self.oracle.handle(req))
            except Unsupported as err:
                yield i, Reply(error=f"unsupported: {err}")


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_request_type(Mirror)
    registry.add_backend("mirror_oracle", MirrorBackend)


@hookimpl
def lionloop_generator_spec() -> GeneratorSpec:
    return GeneratorSpec(consumes=("hard",), calls_per_candidate=1, kinds=("mirror",), options=MirrorOptions)


@hookimpl
def lionloop_generate(cases: Cases, teacher: GeneratorTeacher, ctx: RoundContext) -> list[Candidate]:
    opts: MirrorOptions = ctx.options()
    picked, per_task = [], Counter()
    for case in cases.hard:
        if opts.max_per_task is None or per_task[case.instruction.task] < opts.max_per_task:
            per_task[case.instruction.task] += 1
            picked.append(case)
    picked = picked[: ctx.max_candidates]
    results = teacher.ask([Mirror(instruction=c.instruction.text) for c in picked])
    return [
        Candidate(
            instruction=Instruction(
                text=res.output.instruction, input=case.instruction.input, task=case.instruction.task,
                origin=NAME, parent_id=case.instruction.id, round_born=ctx.round, split="train",
                meta={"mirror_of": case.instruction.text},
            ),
            generator=NAME,
        )
        for case, res in zip(picked, results, strict=True)
        if res.ok
    ]


@hookimpl
def lionloop_filter_candidate(candidate: Candidate, ctx: RoundContext) -> str | None:
    if candidate.generator == NAME and candidate.instruction.text == candidate.instruction.meta.get("mirror_of"):
        return "palindrome: the mirror is the instruction itself"
    return None


@hookimpl
def lionloop_format_examples(
    instruction: Instruction, answer: str, generator: str, ctx: RoundContext, prompt: str
) -> list[Example] | None:
    if generator != NAME:
        return None
    return [Example(instruction.id, prompt, answer, kind="mirror", generator=NAME, round=ctx.round)]


@hookimpl
def lionloop_round_end(summary: dict[str, Any], ctx: RoundContext) -> None:
    accepted = summary.get("curate", {}).get("by_generator", {}).get(NAME, 0)
    with open(Path(ctx.run_dir) / "mirror.log", "a") as f:
        f.write(json.dumps({"round": summary["round"], "accepted": accepted}) + "\n")
