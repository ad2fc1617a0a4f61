"""A real LLM as teacher, referee and rewriter: the packaged SmolLM2 served by vLLM CPU on loopback.

`run(...)` starts the sidecar server (`VLLMServer`) on the converted folder (`packaged_model`),
runs a small loop whose every teacher request goes to it, and returns what a person would ask of
it: the replies per request type (parsed, rejected, unreadable), the referee's agreement with the
task pack's verifier, and timings. The slow test runs it small; `python -m
lionloop.testing.real_teacher` runs the measured size and prints the figures quoted in
BENCHMARKS.md ("A real LLM as teacher and referee").

What worked with this 135M model (and is the config below): `structured_output: json_schema`
(vLLM enforces it), `max_tokens: 256` (the judge's bounded explanation plus its scores fit with
room to spare; rewrites are short), temperature 0, the skills pack's `answer_in_reply` (the model
answers in sentences).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def config(run_dir: Path, base_url: str, model: str, *, skills: list[str], seeds: int, cache: int, evals: int,
           new: int, rounds: int = 2, max_tokens: int = 256, structured_output: str = "json_schema",
           max_teacher_cost: float | None = None, price: tuple[float, float] = (0.15, 0.6)) -> Any:
    """The loop's config; with `max_teacher_cost` a budget in money at `price` (per 1k tokens in, out)."""
    from lionloop.config import parse_config

    llm = {"backend": "openai", "model": model, "base_urls": [base_url], "temperature": 0.0,
           "max_tokens": max_tokens, "concurrency": 16, "timeout_s": 300, "max_retries": 2,
           "parse_retries": 1, "structured_output": structured_output}
    if max_teacher_cost is not None:
        llm |= {"cost_per_1k_input": price[0], "cost_per_1k_output": price[1]}
    return parse_config({
        "name": "real-teacher", "seed": 0, "run_dir": str(run_dir),
        "task": {"pack": "skills", "skills": skills, "seeds_per_skill": seeds, "cache_per_skill": cache,
                 "eval_per_skill": evals, "options": {"answer_in_reply": True}},
        "teacher": llm,
        # The tiny student: this run is about the teacher's side.
        "student": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_length": 96, "max_new_tokens": 24},
        "train": {"steps_per_round": 20, "batch_size": 16, "warmup_steps": 2},
        "generate": {"max_new_per_round": new},
        "stop": {"max_rounds": rounds, "stop_when_no_hard": False, "max_teacher_cost": max_teacher_cost},
    }, "real-teacher")


def agreement(run_dir: Path) -> dict[str, Any]:
    """The LLM referee's hard/easy calls scored against the pack's verifier (LLM2LLM's rule: the
    student's answer is wrong -> hard): agreement, and precision and recall of "hard"."""
    from lionloop.inspect.snapshot import snapshot
    from lionloop.loop.preflight import resolve_task_pack
    from lionloop.plugin.manager import get_plugin_manager
    from lionloop.rundir import RunDir

    cfg, _ = RunDir(run_dir).read()
    pack = resolve_task_pack(get_plugin_manager().build_registry(), cfg).build(cfg.task, cfg.seed)
    tp = fp = fn = tn = 0
    teacher_right = teacher_n = 0
    with snapshot(run_dir) as pool:
        ins = {i.id: i for i in pool.instructions()}
        teacher = pool.teacher_answers()
        for row in pool.query("SELECT instruction_id, round, hard FROM verdicts WHERE hard IS NOT NULL"):
            student = pool.student_answers(row["round"]).get(row["instruction_id"])
            item = ins.get(row["instruction_id"])
            ok = pack.verify(item, student) if item is not None and student is not None else None
            if ok is None:
                continue
            llm_hard, ver_hard = bool(row["hard"]), not ok
            tp += llm_hard and ver_hard
            fp += llm_hard and not ver_hard
            fn += (not llm_hard) and ver_hard
            tn += (not llm_hard) and not ver_hard
        for iid, text in teacher.items():
            if iid in ins:
                v = pack.verify(ins[iid], text)
                if v is not None:
                    teacher_n += 1
                    teacher_right += bool(v)
    n = tp + fp + fn + tn
    return {
        "verdicts": n, "agreement": round((tp + tn) / n, 4) if n else None,
        "hard_precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "hard_recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "llm_hard": tp + fp, "verifier_hard": tp + fn,
        "teacher_right": teacher_right, "teacher_answers": teacher_n,
    }


def run(out: Path, *, python: Path | None = None, skills: list[str] | None = None, seeds: int = 4, cache: int = 2,
        evals: int = 4, new: int = 6, rounds: int = 2, max_tokens: int = 256,
        structured_output: str = "json_schema", max_teacher_cost: float | None = None) -> dict[str, Any]:
    """Serve the packaged model with vLLM and run the loop against it; its figures."""
    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start
    from lionloop.testing.models import packaged_model
    from lionloop.testing.vllm_server import COMPACT_JSON_ARGS, VLLMServer

    model_dir = packaged_model()
    out = Path(out)
    t0 = time.perf_counter()
    with VLLMServer(model_dir, python=python, max_model_len=2048, max_num_seqs=32, extra_args=COMPACT_JSON_ARGS,
                    served_model_name="smollm2", startup_timeout=600, log_path=out / "vllm-server.log") as srv:
        started = srv.startup_seconds
        cfg = config(out / "run", srv.base_url, srv.model, skills=skills or ["copy", "upper", "add"], seeds=seeds,
                     cache=cache, evals=evals, new=new, rounds=rounds, max_tokens=max_tokens,
                     structured_output=structured_output, max_teacher_cost=max_teacher_cost)
        t1 = time.perf_counter()
        run_dir, final = start(cfg)
        loop_seconds = time.perf_counter() - t1
    st = run_status(run_dir)
    return {
        "run_dir": str(run_dir), "stop_reason": final.get("stop_reason"),
        "server_start_s": round(started or 0, 1), "loop_s": round(loop_seconds, 1),
        "total_s": round(time.perf_counter() - t0, 1),
        "replies": st["teacher_replies"],
        "rounds": [{"round": r["round"], "eval": r["eval_accuracy"], "hard": r["hard"], "easy": r["easy"],
                    "candidates": r["candidates"], "accepted": r["accepted"], "rejected": r["dedup_rejected"],
                    "seconds": r["seconds"]} for r in st["rounds"]],
        "tokens": {k: sum(r["teacher_tokens"][k] for r in st["rounds"]) for k in ("prompt", "completion")},
        "paid": st["teacher_calls"], "budget": st["budget"],
        "referee_vs_verifier": agreement(run_dir),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/real-teacher"))
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--cache", type=int, default=4)
    ap.add_argument("--evals", type=int, default=6)
    ap.add_argument("--new", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--structured-output", default="json_schema")
    ap.add_argument("--skill", action="append", default=None)
    ap.add_argument("--max-teacher-cost", type=float, default=None,
                    help="a budget in money, at 0.15 / 0.6 per 1k tokens in / out")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    res = run(a.out, skills=a.skill, seeds=a.seeds, cache=a.cache, evals=a.evals, new=a.new, rounds=a.rounds,
              max_tokens=a.max_tokens, structured_output=a.structured_output, max_teacher_cost=a.max_teacher_cost)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
