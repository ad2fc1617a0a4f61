"""The loop's stages. Each is idempotent per round: a stage marker, written in the same
transaction as the stage's rows, makes a re-run after a crash return the stored result."""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from lionloop.context import Runtime
from lionloop.dedup import deduplicate, embed_text
from lionloop.errors import PluginError
from lionloop.generation import generator_spec, load_cases, run_generators
from lionloop.records import Example, Instruction
from lionloop.referee import judge_cases
from lionloop.requests import Answer
from lionloop.state import LoopState, stop_reason
from lionloop.student import build_tiny_student, format_prompt, generate

log = logging.getLogger(__name__)


def _done(rt: Runtime, round: int, stage: str) -> dict[str, Any] | None:
    result = rt.pool.stage_result(round, stage)
    if result is not None:
        log.info("round %d: %s already done; skipping", round, stage)
        rt.event(event="stage_skip", round=round, stage=stage)
    return result


def _once(rt: Runtime, r: int, stage: str, work: Callable[[Runtime, int], dict[str, Any]]) -> dict[str, Any]:
    """Run a stage's work unless its marker says it is done; either way return its result."""
    result = _done(rt, r, stage)
    if result is None:
        with rt.stage(r, stage):
            result = work(rt, r)
    return result


def answer_rows(rt: Runtime, ins: Instruction, answer: str, generator: str, round: int) -> list[Example]:
    """Training rows for an instruction: plugins first (firstresult), else one answer row.

    The answer row's prompt is the one the evaluate stage uses (`lionloop_student_prompt`).
    """
    ctx = rt.context(round)
    try:
        prompt = rt.pm.hook.lionloop_student_prompt(instruction=ins, ctx=ctx) or format_prompt(ins)
        rows = rt.pm.hook.lionloop_format_examples(
            instruction=ins, answer=answer, generator=generator, ctx=ctx, prompt=prompt
        )
    except Exception as err:
        raise PluginError(f"lionloop_format_examples failed for {ins.id}: {err}") from err
    if rows is None:
        rows = [Example(ins.id, prompt, answer, "answer", generator, round)]
    return rows


def _teacher_answers(rt: Runtime, items: list[Instruction], round: int, stage: str) -> tuple[dict[str, str], dict[str, str]]:
    """Ask the teacher to answer instructions; returns (answers, failures) by instruction id."""
    advance = rt.reporter.task(f"teacher answers ({stage})", len(items))
    results = rt.teacher.ask([Answer(instruction=i.text, input=i.input, task=i.task) for i in items], advance)
    rt.reporter.task_done()
    answers, failures = {}, {}
    for ins, res in zip(items, results, strict=True):
        if res.ok:
            answers[ins.id] = res.output.text
        else:
            failures[ins.id] = res.error or "unknown"
    return answers, failures


# -- bootstrap ----------------------------------------------------------------------------------


def bootstrap(state: LoopState, rt: Runtime) -> dict[str, Any]:
    if _done(rt, 0, "bootstrap") is None:
        with rt.stage(0, "bootstrap"):
            result = _bootstrap(rt)
        rt.event(event="bootstrap", **result)
    return {"round": max(1, state.get("round") or 1), "run_id": rt.run_id}


def split_seeds(seeds: list[Instruction], train_per_task: int) -> list[Instruction]:
    """First `train_per_task` seeds of each task go to the train pool, the rest to the cache pool."""
    seen: dict[str, int] = defaultdict(int)
    out = []
    for s in seeds:
        seen[s.task] += 1
        out.append(s if seen[s.task] <= train_per_task else replace(s, split="cache"))
    return out


def _bootstrap(rt: Runtime) -> dict[str, Any]:
    from lionloop.seeds import read_seed_file

    pack, tcfg = rt.task_pack, rt.cfg.task
    eval_set = pack.eval_set(tcfg.eval_per_skill)
    seeds = split_seeds(pack.seeds(tcfg.seeds_per_skill + tcfg.cache_per_skill), tcfg.seeds_per_skill)
    if rt.cfg.task.seed_file:
        seeds += read_seed_file(rt.cfg.task.seed_file)
    eval_ids = {e.id for e in eval_set}
    contaminated = [s for s in seeds if s.id in eval_ids]
    seeds = [s for s in seeds if s.id not in eval_ids]
    answers, failures = _teacher_answers(rt, seeds, 0, "bootstrap")
    answered = [s for s in seeds if s.id in answers]
    if not answered:
        raise PluginError(f"the teacher answered none of the {len(seeds)} seeds: {next(iter(failures.values()), '')}")
    if not rt.cfg.student.base:
        base = rt.student_dir(0)
        if not base.exists():
            build_tiny_student(base, rt.cfg.student, rt.cfg.seed)
    everything = eval_set + answered
    advance = rt.reporter.task("embedding seeds and eval set", len(everything))
    vectors = rt.embedder.encode([embed_text(i) for i in everything], advance)
    rt.reporter.task_done()
    rows = [r for s in answered if s.split == "train" for r in answer_rows(rt, s, answers[s.id], "seed", 0)]
    result = {
        "seeds": sum(1 for s in answered if s.split == "train"),
        "cache": sum(1 for s in answered if s.split == "cache"),
        "eval": len(eval_set), "seed_failures": len(failures),
        "seeds_in_eval": len(contaminated),
    }
    with rt.pool.transaction():
        rt.pool.add_instructions(everything)
        rt.pool.add_responses("teacher", rt.teacher.name, 0, answers)
        rt.pool.add_examples(rows)
        rt.pool.add_failures(0, "bootstrap", failures)
        rt.pool.add_embeddings(rt.embedder.name, {i.id: v.tobytes() for i, v in zip(everything, vectors, strict=True)})
        rt.pool.merge_metrics(0, {"bootstrap": result})
        rt.pool.mark_stage(0, "bootstrap", result)
    rt.index.rebuild()
    return result


# -- imitate -------------------------------------------------------------------------------------


def imitate(state: LoopState, rt: Runtime) -> dict[str, Any]:
    rt.pool.start_round(state["round"])
    _once(rt, state["round"], "imitate", _imitate)
    return {}


# A student role names a directory under RUN_DIR/student: a plain word, and not the base model's.
ROLE = re.compile(r"(?!base$)[a-z][a-z0-9_]*")


def _imitate(rt: Runtime, r: int) -> dict[str, Any]:
    by_role: dict[str, list[Example]] = defaultdict(list)
    for row in rt.pool.examples():
        by_role[row.student].append(row)
    for role in by_role:
        if role and not ROLE.fullmatch(role):
            raise PluginError(f"training rows name student role {role!r}: a role is lower-case letters, "
                              "digits and '_' (not 'base'); '' is the main student")
    t0 = time.perf_counter()
    figures = _train(rt, r, "", by_role.pop("", []))
    roles = {role: _train(rt, r, role, rows) for role, rows in sorted(by_role.items())}
    train_seconds = time.perf_counter() - t0  # load, tokenise, train, save: all the trainer's work
    metrics: dict[str, Any] = {"train": figures, "work_seconds": {"train": round(train_seconds, 3)}}
    if roles:
        metrics["train_roles"] = roles
    with rt.pool.transaction():
        rt.pool.merge_metrics(r, metrics)
        rt.pool.mark_stage(r, "imitate", figures)
    return figures


def _train(rt: Runtime, r: int, role: str, rows: list[Example]) -> dict[str, Any]:
    """Train one student (the main one, or a role's) on its rows, from its last round or the base."""
    prev = rt.student_dir(r - 1, role) if rt.cfg.train.policy != "retrain" and r > 1 else None
    start = prev if prev is not None and prev.exists() else rt.student_dir(0)
    total = rt.cfg.train.steps_per_round
    label = f" ({role})" if role else ""
    bar = rt.reporter.task(f"training{label} on {len(rows)} rows", total)
    seen = [0]

    def progress(step: int, _total: int) -> None:
        bar(step - seen[0])
        seen[0] = step

    figures = rt.trainer.train(start, rt.student_dir(r, role), rows, seed=rt.cfg.seed + r, progress=progress)
    rt.reporter.task_done()
    return figures


# -- evaluate ------------------------------------------------------------------------------------


def evaluate(state: LoopState, rt: Runtime) -> dict[str, Any]:
    result = _once(rt, state["round"], "evaluate", _evaluate)
    return {"last_eval": result["eval"]["overall"]}


def _evaluate(rt: Runtime, r: int) -> dict[str, Any]:
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
    answers = generate(rt.student_dir(r), prompts, rt.cfg.student, advance)
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
        rt.pool.merge_metrics(r, {"eval": ev, "work_seconds": {"student_generate": round(gen_seconds, 3)}})
        rt.pool.mark_stage(r, "evaluate", result)
    return result


# -- discriminate --------------------------------------------------------------------------------


def discriminate(state: LoopState, rt: Runtime) -> dict[str, Any]:
    result = _once(rt, state["round"], "discriminate", _discriminate)
    return {"hard": result["hard"], "teacher_calls": rt.cache.total_paid(rt.run_id)}


def _discriminate(rt: Runtime, r: int) -> dict[str, Any]:
    if rt.cfg.generate.case_selection == "uniform":
        # Baseline mode: no referee, so no verdicts and no "no hard cases" stop.
        result = {"hard": None, "easy": None, "unjudged": 0, "judged": 0, "hard_ratio": None, "mean_diff": None}
        with rt.pool.transaction():
            rt.pool.merge_metrics(r, {"referee": result})
            rt.pool.mark_stage(r, "discriminate", result)
        return result
    pool = rt.pool.instructions(["train", "cache"])
    teacher = rt.pool.teacher_answers()
    student = rt.pool.student_answers(r)
    items = [i for i in pool if i.id in teacher and i.id in student]
    cap = rt.cfg.judge.max_cases
    if cap and len(items) > cap:
        items = sorted(rt.context(r).rng("judge-sample").sample(items, cap), key=lambda i: i.id)
    advance = rt.reporter.task(f"referee judging {len(items)} cases", len(items))
    verdicts = judge_cases(rt.referee, items, teacher, student, r, rt.cfg.judge, advance)
    rt.reporter.task_done()
    hard = sum(1 for v in verdicts if v.hard is True)
    easy = sum(1 for v in verdicts if v.hard is False)
    unjudged = sum(1 for v in verdicts if v.hard is None)
    diffs = [v.diff for v in verdicts if v.diff is not None]
    result = {
        "hard": hard, "easy": easy, "unjudged": unjudged, "judged": len(verdicts),
        "hard_ratio": round(hard / max(1, hard + easy), 4),
        "mean_diff": round(sum(diffs) / len(diffs), 4) if diffs else None,
    }
    with rt.pool.transaction():
        rt.pool.add_verdicts(verdicts)
        rt.pool.add_failures(r, "discriminate", {v.instruction_id: v.raw for v in verdicts if v.hard is None})
        rt.pool.merge_metrics(r, {"referee": result})
        rt.pool.mark_stage(r, "discriminate", result)
    return result


# -- generate ------------------------------------------------------------------------------------


def generate_node(state: LoopState, rt: Runtime) -> dict[str, Any]:
    _once(rt, state["round"], "generate", _generate)
    return {}


def _generate(rt: Runtime, r: int) -> dict[str, Any]:
    cases = load_cases(rt, r)
    out = run_generators(rt, r, cases)
    result = {"candidates": len(out.candidates), "by_generator": out.by_generator, "plugin_errors": out.errors,
              "teacher_failures": len(out.failures),
              "hard_cases": len(cases.hard), "easy_cases": len(cases.easy), "calls_by_generator": out.calls}
    with rt.pool.transaction():
        rt.pool.replace_candidates(r, out.candidates)
        rt.pool.add_failures(r, "generate", out.failures)
        rt.pool.merge_metrics(r, {"generate": result})
        rt.pool.mark_stage(r, "generate", result)
    return result


# -- curate --------------------------------------------------------------------------------------


def curate(state: LoopState, rt: Runtime) -> dict[str, Any]:
    _once(rt, state["round"], "curate", _curate)
    return {}


def _curate(rt: Runtime, r: int) -> dict[str, Any]:
    candidates = rt.pool.candidates(r)
    # One call per candidate position (seq): the same instruction proposed twice gets two calls.
    status: list[tuple[str, str | None]] = [("pending", None)] * len(candidates)
    survivors: list[int] = []
    for k, cand in enumerate(candidates):
        ctx = rt.context(r, plugin=cand.generator)
        try:
            reason = rt.pm.hook.lionloop_filter_candidate(candidate=cand, ctx=ctx)
        except Exception as err:  # noqa: BLE001
            reason = f"filter error: {type(err).__name__}: {err}"
        if reason:
            status[k] = ("rejected", f"filter: {reason}")
        else:
            survivors.append(k)
    advance = rt.reporter.task(f"dedup {len(survivors)} candidates", len(survivors))
    t0 = time.perf_counter()
    vectors = rt.embedder.encode([embed_text(candidates[k].instruction) for k in survivors], advance)
    embed_seconds = time.perf_counter() - t0
    rt.reporter.task_done()
    splits = {i.id: i.split for i in rt.pool.instructions()}
    own: dict[str, float | None] = {}
    for name in {c.generator for c in candidates}:
        try:
            own[name] = generator_spec(rt, name).dedup_threshold
        except Exception:  # noqa: BLE001 - reported in generate already; default threshold here
            own[name] = None
    for name, gen in rt.cfg.generate.generators.items():
        if gen.dedup_threshold is not None:
            own[name] = gen.dedup_threshold
    dd = deduplicate(
        [candidates[k].instruction for k in survivors], vectors, rt.index.search, splits.get,
        rt.cfg.dedup.threshold, [own.get(candidates[k].generator) for k in survivors],
    )
    for pos, reason in dd.rejected.items():
        status[survivors[pos]] = ("rejected", reason)
    kept = [survivors[pos] for pos in dd.accepted]  # candidate positions, dedup order
    kept_vectors = dd.vectors
    cap = rt.cfg.generate.max_accepted_per_round
    if cap is not None and len(kept) > cap:
        for k in kept[cap:]:
            status[k] = ("rejected", "over_budget")
        kept, kept_vectors = kept[:cap], kept_vectors[:cap]
    need_answer = [candidates[k].instruction for k in kept if not candidates[k].examples]
    answers, failures = _teacher_answers(rt, need_answer, r, "curate")
    rows: list[Example] = []
    new: list[Instruction] = []
    new_rows: list[int] = []
    for j, k in enumerate(kept):
        cand = candidates[k]
        if cand.examples:
            rows.extend(cand.examples)
        elif cand.id in answers:
            rows.extend(answer_rows(rt, cand.instruction, answers[cand.id], cand.generator, r))
        else:
            status[k] = ("failed", f"teacher: {failures.get(cand.id, 'no answer')}")
            continue
        status[k] = ("accepted", None)
        new.append(cand.instruction)
        new_rows.append(j)
    new_vectors = kept_vectors[new_rows] if new_rows else kept_vectors[:0]
    reasons: dict[str, int] = defaultdict(int)
    for st, reason in status:
        if st != "accepted":
            reasons[(reason or st).split(":")[0]] += 1
    result = {
        "candidates": len(candidates), "accepted": len(new), "rejected": dict(reasons),
        "by_generator": _count_by(candidates[k].generator for k, (st, _) in enumerate(status) if st == "accepted"),
    }
    new_ids = {i.id for i in new}
    with rt.pool.transaction():
        rt.pool.add_instructions(new)
        rt.pool.add_responses("teacher", rt.teacher.name, r, {k: v for k, v in answers.items() if k in new_ids})
        rt.pool.add_examples(rows)
        rt.pool.add_embeddings(rt.embedder.name, {i.id: v.tobytes() for i, v in zip(new, new_vectors, strict=True)})
        rt.pool.add_failures(r, "curate", {candidates[k].id: st[1] or "" for k, st in enumerate(status) if st[0] == "failed"})
        rt.pool.set_candidate_status(r, dict(enumerate(status)))
        rt.pool.merge_metrics(r, {"curate": result, "work_seconds": {"embed": round(embed_seconds, 3)}})
        rt.pool.mark_stage(r, "curate", result)
    rt.index.add([i.id for i in new], new_vectors)
    return result


def _count_by(names: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for n in names:
        out[n] += 1
    return dict(out)


# -- decide --------------------------------------------------------------------------------------


def decide(state: LoopState, rt: Runtime) -> dict[str, Any]:
    r = state["round"]
    last = state.get("last_eval")
    best = state.get("best_eval")
    stale = state.get("stale_rounds", 0)
    if last is not None:
        improved = best is None or (last > best and last - best >= rt.cfg.stop.min_delta)
        if improved:
            best, stale = last, 0
        else:
            stale += 1
    update = {"best_eval": best, "stale_rounds": stale, "teacher_calls": rt.cache.total_paid(rt.run_id)}
    reason = stop_reason({**state, **update}, rt.cfg.stop)
    if _done(rt, r, "decide") is None:
        with rt.stage(r, "decide"):
            pass
        summary = rt.pool.merge_metrics(r, {"stop_reason": reason, "pool": rt.pool.count_instructions()})
        rt.pool.finish_round(r)
        rt.pool.mark_stage(r, "decide", {"stop_reason": reason})
        summary = {"round": r, **summary}
        rt.reporter.round_end(summary)
        for impl in rt.pm.hook.lionloop_round_end.get_hookimpls():
            try:
                impl.function(summary=summary, ctx=rt.context(r, plugin=impl.plugin_name))
            except Exception as err:  # noqa: BLE001
                log.error("plugin %r failed in lionloop_round_end: %s", impl.plugin_name, err)
    if reason:
        rt.event(event="stop", round=r, reason=reason)
        return {**update, "stop_reason": reason}
    return {**update, "round": r + 1}
