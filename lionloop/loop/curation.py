"""The curate stage: filter hooks, dedup against the pool and the eval set, the data cap, teacher
answers for the survivors, and the new instructions with their rows, vectors and lineage."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

from lionloop.embedding import embed_text
from lionloop.loop.answers import answer_rows, student_prompts, teacher_answers
from lionloop.loop.dedup import deduplicate
from lionloop.loop.quality import instruction_problem
from lionloop.loop.runtime import Runtime
from lionloop.records import Candidate, Example, Instruction
from lionloop.student.model import generate


def curate_stage(rt: Runtime, r: int) -> dict[str, Any]:
    candidates = rt.pool.candidates(r)
    # One call per candidate position (seq): the same instruction proposed twice gets two calls.
    status: list[tuple[str, str | None]] = [("pending", None)] * len(candidates)
    survivors: list[int] = []
    parents = rt.pool.instructions_by_id(c.instruction.parent_id for c in candidates if c.instruction.parent_id)
    for k, cand in enumerate(candidates):
        # A real, new task first (not a placeholder, an echo of the prompt or its parent again).
        problem = instruction_problem(
            cand.instruction, parents.get(cand.instruction.parent_id or ""), rt.cfg.teacher.prompts_dir)
        if problem:
            status[k] = ("rejected", f"quality: {problem}")
            continue
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
    # Splits of the candidates and of their neighbours only: reading every instruction's split
    # made a round's curate grow with the pool.
    splits: dict[str, str] = {}

    def search(vecs: Any, k: int) -> Any:
        sims, names = rt.index.search(vecs, k)
        splits.update(rt.pool.splits_of([n for row in names for n in row if n] + [candidates[j].id for j in survivors]))
        return sims, names

    own = {g.name: g.dedup_threshold for g in rt.plan}
    dd = deduplicate(
        [candidates[k].instruction for k in survivors], vectors, search, splits.get,
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
    own = self_answers(rt, r, [candidates[k] for k in kept if not candidates[k].examples])
    need_answer = [candidates[k].instruction for k in kept if not candidates[k].examples and candidates[k].id not in own]
    answers, failures, thinking = teacher_answers(rt, need_answer, r, "curate")
    given = {**answers, **own}  # each candidate's answer: the teacher's, or the student's verified one
    rows: list[Example] = []
    new: list[Instruction] = []
    new_rows: list[int] = []
    for j, k in enumerate(kept):
        cand = candidates[k]
        if cand.examples:
            rows.extend(cand.examples)
        elif cand.id in given:
            rows.extend(answer_rows(rt, cand.instruction, given[cand.id], cand.generator, r, thinking.get(cand.id)))
        else:
            status[k] = ("failed", f"teacher: {failures.get(cand.id, 'no answer')}")
            continue
        status[k] = ("accepted", None)
        # Lineage says who answered: the verifier-checked student, or (no mark) the teacher.
        new.append(replace(cand.instruction, meta={**cand.instruction.meta, "answered_by": "student"})
                   if cand.id in own else cand.instruction)
        new_rows.append(j)
    new_vectors = kept_vectors[new_rows] if new_rows else kept_vectors[:0]
    reasons: dict[str, int] = defaultdict(int)
    for st, reason in status:
        if st != "accepted":
            reasons[(reason or st).split(":")[0]] += 1
    result = {
        "candidates": len(candidates), "accepted": len(new), "rejected": dict(reasons),
        "self_answered": sum(1 for i in new if i.id in own),
        "by_generator": _count_by(candidates[k].generator for k, (st, _) in enumerate(status) if st == "accepted"),
    }
    groups = [candidates[k].instruction.meta.get("group") for k, (st, _) in enumerate(status) if st == "accepted"]
    if any(g is not None for g in groups):  # generated under an allocation: what each group bought
        result["by_group"] = _count_by(g for g in groups if g is not None)
    new_ids = {i.id for i in new}
    with rt.pool.transaction():
        rt.pool.add_instructions(new)
        rt.pool.add_responses("teacher", rt.teacher.name, r, {k: v for k, v in answers.items() if k in new_ids}, thinking)
        rt.pool.add_responses("student", str(rt.student_dir(r).name), r, {k: v for k, v in own.items() if k in new_ids})
        rt.pool.add_examples(rows)
        rt.pool.add_embeddings(rt.embedder.name, {i.id: v.tobytes() for i, v in zip(new, new_vectors, strict=True)})
        rt.pool.add_failures(r, "curate", {candidates[k].id: st[1] or "" for k, st in enumerate(status) if st[0] == "failed"})
        rt.pool.set_candidate_status(r, dict(enumerate(status)))
        rt.finish_stage(r, "curate", result, {"curate": result, "work_seconds": {"embed": round(embed_seconds, 3)}})
    rt.index.add([i.id for i in new], new_vectors)
    return result


def self_answers(rt: Runtime, r: int, cands: list[Candidate]) -> dict[str, str]:
    """`generate.self_answers`: the student's answers the verifier finds right, by candidate id (those
    candidates need no teacher call). Only where the verifier is trusted to judge (judge.mode:
    verifier), the candidate's generator makes plain answer rows and the student does not learn the
    teacher's thinking (its own rows would hold none); empty otherwise."""
    cfg = rt.cfg
    if not (cfg.generate.self_answers and cfg.judge.mode == "verifier" and cfg.student.thinking != "learn"):
        return {}
    plain = {g.name for g in rt.plan if tuple(g.spec.kinds) == ("answer",)}
    cands = [c for c in cands if c.generator in plain]
    if not cands:
        return {}
    prompts = student_prompts(rt, r, [c.instruction for c in cands])
    advance = rt.reporter.task(f"student answers ({len(cands)} candidates)", len(cands))
    said = generate(rt.student_dir(r), prompts, cfg.student, advance)
    rt.reporter.task_done()
    return {c.id: a.strip() for c, a in zip(cands, said, strict=True)
            if rt.task_pack.verify(c.instruction, a) is True}


def _count_by(names: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for n in names:
        out[n] += 1
    return dict(out)
