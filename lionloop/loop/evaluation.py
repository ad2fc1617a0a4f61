"""The evaluate stage: the student answers the pool and the held-out set; the held-out answers are
scored by the verifier (accuracy) and/or the referee (Lion's relative score: the student's answer
judged against the teacher's, paid calls of this stage), and plugins may ask the student other ways
(scored by the verifier beside the direct answer)."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from lionloop.loop.answers import student_prompts
from lionloop.loop.referee import judge_cases
from lionloop.loop.runtime import Runtime
from lionloop.loop.scoring import accuracy, relative_score, resolve_scoring
from lionloop.records import Instruction
from lionloop.student.model import generate

log = logging.getLogger(__name__)


def evaluate_stage(rt: Runtime, r: int) -> dict[str, Any]:
    cache_pool = rt.pool.instructions(["train", "cache"])
    eval_set = rt.pool.instructions(["eval"])
    items = cache_pool + eval_set
    prompts = student_prompts(rt, r, items)
    advance = rt.reporter.task(f"student answers ({len(cache_pool)} pool + {len(eval_set)} eval)", len(items))
    t0 = time.perf_counter()
    gen_stats: dict[str, Any] = {}
    answers = generate(rt.student_dir(r), prompts, rt.cfg.student, advance, stats=gen_stats)
    gen_seconds = time.perf_counter() - t0
    rt.reporter.task_done()
    by_id = {i.id: a for i, a in zip(items, answers, strict=True)}
    # A student that learns thinking: what it thought before each answer, kept beside it.
    thought = {i.id: t for i, t in zip(items, gen_stats.get("thinking") or [None] * len(items), strict=True) if t}

    def score(answered: dict[str, str]) -> dict[str, Any]:
        return accuracy((ins.task, rt.task_pack.verify(ins, answered[ins.id]) if ins.id in answered else None)
                        for ins in eval_set)

    scoring = resolve_scoring(rt.cfg, rt.task_pack)
    ev: dict[str, Any] = {"metric": scoring.metric}
    judge_failures: dict[str, str] = {}
    if scoring.verifier:
        ev["accuracy"] = score(by_id)
    if scoring.referee:
        ev["referee"], judge_failures = referee_score(rt, r, eval_set, by_id)
    primary = ev["accuracy"] if scoring.verifier else ev["referee"]
    ev.update(overall=primary["overall"], per_skill=primary["per_skill"], n=primary["n"])
    # Answers cut at student.max_new_tokens (no end of sequence): counted, never silent.
    ev["truncated"] = gen_stats.get("truncated", 0)
    ev["prompt_format"] = gen_stats.get("prompt_format")

    # Other ways of asking the student (e.g. decomposer then solver), scored beside the direct one.
    def student(prompts: Any, max_new_tokens: int | None = None, role: str = "") -> list[str]:
        scfg = rt.cfg.student
        if max_new_tokens is not None:
            scfg = scfg.model_copy(update={"max_new_tokens": int(max_new_tokens)})
        path = rt.student_dir(r, role)
        # A role with no rows yet has no model of its own: the main student stands in.
        return generate(path if path.exists() else rt.student_dir(r), list(prompts), scfg)

    methods: dict[str, Any] = {}
    method_errors: dict[str, str] = {}
    for impl in rt.pm.hook.lionloop_evaluate_student.get_hookimpls() if eval_set else []:
        name = impl.plugin_name
        try:
            out = impl.function(instructions=eval_set, student=student, ctx=rt.context(r, plugin=name))
        except Exception as err:  # noqa: BLE001 - reported by name, never fatal
            method_errors[name] = f"{type(err).__name__}: {err}"
            log.error("plugin %r failed in lionloop_evaluate_student: %s", name, method_errors[name])
            continue
        if out:
            methods[name] = score({k: str(v) for k, v in out.items()})
    if methods:
        ev["methods"] = methods
    if method_errors:
        ev["method_errors"] = method_errors
    result = {"eval": ev, "answered": len(items)}
    with rt.pool.transaction():
        rt.pool.add_responses("student", str(rt.student_dir(r).name), r, by_id, thought)
        rt.pool.add_failures(r, "evaluate", judge_failures)
        rt.finish_stage(r, "evaluate", result, {"eval": ev, "work_seconds": {"student_generate": round(gen_seconds, 3)}})
    return result


def referee_score(rt: Runtime, r: int, eval_set: list[Instruction], student: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Lion's relative score of the round: the referee judges the student's eval answers against
    the teacher's (both orders, `judge.*` rules). Rows without a teacher answer are counted, not
    judged; `evaluate.max_referee_cases` judges the same seeded sample every round."""
    teacher = rt.pool.teacher_answers(i.id for i in eval_set)
    items = [i for i in eval_set if i.id in teacher and i.id in student]
    cap = rt.cfg.evaluate.max_referee_cases
    if cap and len(items) > cap:
        rng = random.Random(f"{rt.cfg.seed}:eval-referee")  # not the round: the same rows every round
        items = sorted(rng.sample(sorted(items, key=lambda i: i.id), cap), key=lambda i: i.id)
    advance = rt.reporter.task(f"referee scoring {len(items)} eval answers", len(items))
    verdicts = judge_cases(rt.referee, items, teacher, student, r, rt.cfg.judge, advance)
    rt.reporter.task_done()
    figures = relative_score(verdicts, {i.id: i.task for i in items})
    figures["no_teacher_answer"] = sum(1 for i in eval_set if i.id not in teacher)
    failures = {v.instruction_id: v.raw for v in verdicts if v.hard is None}
    return figures, failures
