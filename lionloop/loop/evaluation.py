"""The evaluate stage: the student answers the pool and the held-out set; the verifier scores the
held-out answers, and plugins may ask the student other ways (scored beside the direct answer)."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from lionloop.errors import PluginError
from lionloop.loop.runtime import Runtime
from lionloop.student.model import generate
from lionloop.student.prompt import format_prompt

log = logging.getLogger(__name__)


def evaluate_stage(rt: Runtime, r: int) -> dict[str, Any]:
    cache_pool = rt.pool.instructions(["train", "cache"])
    eval_set = rt.pool.instructions(["eval"])
    items = cache_pool + eval_set
    ctx = rt.context(r)
    try:
        prompts = [rt.pm.hook.lionloop_student_prompt(instruction=i, ctx=ctx) or format_prompt(i) for i in items]
    except Exception as err:
        raise PluginError(f"lionloop_student_prompt failed: {type(err).__name__}: {err}") from err
    advance = rt.reporter.task(f"student answers ({len(cache_pool)} pool + {len(eval_set)} eval)", len(items))
    t0 = time.perf_counter()
    gen_stats: dict[str, Any] = {}
    answers = generate(rt.student_dir(r), prompts, rt.cfg.student, advance, stats=gen_stats)
    gen_seconds = time.perf_counter() - t0
    rt.reporter.task_done()
    by_id = {i.id: a for i, a in zip(items, answers, strict=True)}

    def score(answered: dict[str, str]) -> dict[str, Any]:
        per_skill: dict[str, list[bool]] = defaultdict(list)
        for ins in eval_set:
            ok = rt.task_pack.verify(ins, answered[ins.id]) if ins.id in answered else None
            if ok is not None:
                per_skill[ins.task].append(ok)
        checked = [x for v in per_skill.values() for x in v]
        return {
            "overall": round(sum(checked) / len(checked), 4) if checked else None,
            "per_skill": {k: round(sum(v) / len(v), 4) for k, v in sorted(per_skill.items())},
            "n": len(checked),
        }

    ev = score(by_id)
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
        rt.pool.add_responses("student", str(rt.student_dir(r).name), r, by_id)
        rt.finish_stage(r, "evaluate", result, {"eval": ev, "work_seconds": {"student_generate": round(gen_seconds, 3)}})
    return result
