"""The bootstrap stage: seeds and the eval set from the task pack (and a user seed file), answered by
the teacher, embedded and stored."""

from __future__ import annotations

from typing import Any

from lionloop.embedding import embed_text
from lionloop.errors import PluginError, RunError
from lionloop.loop.answers import answer_rows, teacher_answers
from lionloop.loop.runtime import Runtime
from lionloop.loop.scoring import resolve_scoring
from lionloop.loop.seedfile import read_seed_file
from lionloop.loop.selection import referee_selects
from lionloop.plugin.taskpack import pack_report, with_reference
from lionloop.student.model import build_tiny_student


def bootstrap_stage(rt: Runtime, r: int = 0) -> dict[str, Any]:
    """Seeds (train and cache) and the eval set into the pool, answered by the teacher and embedded.

    Referee scoring of the eval set needs the teacher's answers to it: they are asked here too.
    Rows the teacher cannot answer are left out of the pool, counted, named on the console and in
    the bootstrap figures (and the failures table); a run left with no eval row to score stops."""
    pack = rt.task_pack
    eval_set = pack.eval_set()
    seeds = pack.seeds()
    if rt.cfg.task.seed_file:
        seeds += read_seed_file(rt.cfg.task.seed_file)
    eval_ids = {e.id for e in eval_set}
    contaminated = [s for s in seeds if s.id in eval_ids]
    unique = {s.id: s for s in reversed(seeds) if s.id not in eval_ids}  # the first of twins wins
    duplicates = len(seeds) - len(contaminated) - len(unique)
    seeds = [s for s in seeds if unique.get(s.id) is s]
    scoring = resolve_scoring(rt.cfg, pack)
    free = unpaid_probes(rt, pack, seeds)
    asked = [s for s in seeds if s.id not in free] + (eval_set if scoring.referee else [])
    answers, failures, thinking = teacher_answers(rt, asked, 0, "bootstrap")
    answered = [s for s in seeds if s.id in answers or s.id in free]
    if not answered:
        why = next(iter(failures.values()), "")
        hint = " (is the teacher's server up at teacher.base_urls?)" if why.startswith("connection:") else ""
        raise PluginError(f"the teacher answered none of the {len(seeds)} seeds: {why}{hint}")
    lost_eval = [e for e in eval_set if e.id in failures]
    if scoring.referee and not scoring.verifier and len(lost_eval) == len(eval_set):
        raise RunError(f"every one of the {len(eval_set)} eval rows was lost: the teacher answered none of them "
                       f"({failures[lost_eval[0].id]}), so the referee has nothing to score the student against")
    dropped = [{"id": i.id, "text": i.text, "split": i.split, "reason": failures[i.id]}
               for i in asked if i.id in failures]
    _tell(rt, dropped, len(seeds), len(eval_set) if scoring.referee else 0)
    if rt.cfg.student.thinking == "learn" and answers and not thinking:
        rt.reporter.notice(f"student.thinking: learn, but none of the teacher's {len(answers)} answers opened with "
                           "thinking (<think>...</think>): the student learns the answers alone")
    if not rt.cfg.student.base:
        base = rt.student_dir(0)
        if not base.exists():
            build_tiny_student(base, rt.cfg.student, rt.cfg.seed)
    everything = eval_set + answered
    advance = rt.reporter.task("embedding seeds and eval set", len(everything))
    vectors = rt.embedder.encode([embed_text(i) for i in everything], advance)
    rt.reporter.task_done()
    rows = [r for s in answered if s.split == "train" for r in answer_rows(rt, s, answers[s.id], "seed", 0, thinking.get(s.id))]
    result = {
        "seeds": sum(1 for s in answered if s.split == "train"),
        "cache": sum(1 for s in answered if s.split == "cache"), "cache_unanswered": len(free),
        "eval": len(eval_set), "seed_failures": sum(1 for d in dropped if d["split"] != "eval"),
        "eval_failures": len(lost_eval), "seeds_in_eval": len(contaminated), "seed_duplicates": duplicates,
        "eval_scoring": scoring.metric if not (scoring.verifier and scoring.referee) else "both",
    }
    figures = {**result, "dropped": dropped[:DROPPED_KEPT], "data": pack_report(pack)}
    with rt.pool.transaction():
        rt.pool.add_instructions(everything)
        rt.pool.add_responses("teacher", rt.teacher.name, 0, answers, thinking)
        rt.pool.add_examples(rows)
        rt.pool.add_failures(0, "bootstrap", failures)
        rt.pool.add_embeddings(rt.embedder.name, {i.id: v.tobytes() for i, v in zip(everything, vectors, strict=True)})
        rt.finish_stage(0, "bootstrap", result, {"bootstrap": figures})
    rt.index.rebuild()
    return result


def unpaid_probes(rt: Runtime, pack: Any, seeds: list[Any]) -> set[str]:
    """Cache-pool instructions worth no teacher call: nobody judges them (uniform case selection),
    or the verifier judges them (`judge.mode: verifier`) and can check an answer to them without the
    teacher's (the pack solves them, or they carry a reference). Probes are never trained on, so
    such an answer would be paid for and never read."""
    cache = [s for s in seeds if s.split == "cache"]
    if not referee_selects(rt.cfg):
        return {s.id for s in cache}
    if rt.cfg.judge.mode != "verifier":
        return set()
    return {s.id for s in cache if _checkable(pack, s)}


def _checkable(pack: Any, ins: Any) -> bool:
    """Can the verifier check an answer to `ins` without the teacher's? (A verifier that fails
    here is asked again in the discriminate stage, which reports it: here it only costs the call.)"""
    try:
        return pack.verify(with_reference(ins, None), "") is not None
    except Exception:  # noqa: BLE001 - see above
        return False


DROPPED_KEPT = 500  # rows named in the bootstrap figures (all of them are in the failures table)


def _tell(rt: Runtime, dropped: list[dict[str, Any]], n_seeds: int, n_eval: int) -> None:
    """Name the rows the teacher could not answer on the console (and in events.jsonl)."""
    for split, total in (("seed", n_seeds), ("eval", n_eval)):
        mine = [d for d in dropped if (d["split"] == "eval") == (split == "eval")]
        if not mine:
            continue
        names = "; ".join(f"{d['text'][:50]!r} ({d['reason'][:60]})" for d in mine[:3])
        more = f"; and {len(mine) - 3} more" if len(mine) > 3 else ""
        rt.reporter.notice(f"{len(mine)} of {total} {split} rows got no teacher answer and are left out: "
                           f"{names}{more} (all in `lionloop report`)")
