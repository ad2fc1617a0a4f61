"""The bootstrap stage: seeds and the eval set from the task pack (and a user seed file), answered by
the teacher, embedded and stored; user seed files are read with one clear error per bad row."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from lionloop.embedding import embed_text
from lionloop.errors import PluginError
from lionloop.loop.answers import answer_rows, teacher_answers
from lionloop.loop.runtime import Runtime
from lionloop.loop.seedfile import read_seed_file
from lionloop.records import Instruction
from lionloop.student.model import build_tiny_student


def split_seeds(seeds: list[Instruction], train_per_task: int) -> list[Instruction]:
    """First `train_per_task` seeds of each task go to the train pool, the rest to the cache pool."""
    seen: dict[str, int] = defaultdict(int)
    out = []
    for s in seeds:
        seen[s.task] += 1
        out.append(s if seen[s.task] <= train_per_task else replace(s, split="cache"))
    return out


def bootstrap_stage(rt: Runtime, r: int = 0) -> dict[str, Any]:
    """Seeds (train and cache) and the eval set into the pool, answered by the teacher and embedded."""
    pack, tcfg = rt.task_pack, rt.cfg.task
    eval_set = pack.eval_set(tcfg.eval_per_skill)
    seeds = split_seeds(pack.seeds(tcfg.seeds_per_skill + tcfg.cache_per_skill), tcfg.seeds_per_skill)
    if rt.cfg.task.seed_file:
        seeds += read_seed_file(rt.cfg.task.seed_file)
    # One instruction, one row and one teacher call: a row repeated in the seed file, or a user
    # row equal to a pack seed, is kept once (the first, so a pack seed keeps its split).
    seen: set[str] = set()
    unique = [s for s in seeds if not (s.id in seen or seen.add(s.id))]
    duplicates, seeds = len(seeds) - len(unique), unique
    eval_ids = {e.id for e in eval_set}
    contaminated = [s for s in seeds if s.id in eval_ids]
    seeds = [s for s in seeds if s.id not in eval_ids]
    answers, failures = teacher_answers(rt, seeds, 0, "bootstrap")
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
        "seeds_in_eval": len(contaminated), "duplicate_seeds": duplicates,
    }
    with rt.pool.transaction():
        rt.pool.add_instructions(everything)
        rt.pool.add_responses("teacher", rt.teacher.name, 0, answers)
        rt.pool.add_examples(rows)
        rt.pool.add_failures(0, "bootstrap", failures)
        rt.pool.add_embeddings(rt.embedder.name, {i.id: v.tobytes() for i, v in zip(everything, vectors, strict=True)})
        rt.finish_stage(0, "bootstrap", result, {"bootstrap": result})
    rt.index.rebuild()
    return result
