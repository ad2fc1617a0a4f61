"""Machinery benchmarks: loop overhead, batched student evaluation, resume cost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from lionloop.bench.common import events, machine_line, md_table, paid_calls
from lionloop.config import RunConfig

# -- loop overhead -------------------------------------------------------------------------------


def overhead(run_dir: Path) -> dict[str, Any]:
    """Where a finished run's wall time went, per round: stages, and the work inside them.

    Work = teacher calls (time inside the backend), training, student generation, embeddings.
    Overhead = everything else (graph and checkpoint bookkeeping, SQLite, model load/save, dedup
    search, Python glue).
    """
    from lionloop.inspect.status import run_status as status

    st = status(run_dir)
    rounds = []
    for r in st["rounds"]:
        seconds = r["seconds"]
        total = sum(seconds.values())
        work = r.get("work_seconds", {})
        teacher = sum(v.get("seconds", 0.0) for v in r["teacher_by_stage"].values())
        train = work.get("train", 0.0)
        generate = work.get("student_generate", 0.0)
        embed = work.get("embed", 0.0)
        rest = total - teacher - train - generate - embed
        rounds.append({"round": r["round"], "total": total, "stages": seconds, "teacher": teacher,
                       "train": train, "student_generate": generate, "embed": embed, "overhead": rest})
    return {"rounds": rounds}


def _share(x: float, total: float) -> str:
    return f"{100 * x / total:.1f}%" if total else "-"


def overhead_report(data: dict[str, Any], command: str) -> str:
    rows = []
    for r in data["rounds"]:
        t = r["total"]
        rows.append([r["round"], f"{t:.1f}", _share(r["teacher"], t), _share(r["train"], t),
                     _share(r["student_generate"], t), _share(r["embed"], t), f"**{_share(r['overhead'], t)}**"])
    stages = sorted({s for r in data["rounds"] for s in r["stages"]},
                    key=["imitate", "evaluate", "discriminate", "generate", "curate", "decide"].index)
    stage_rows = [[r["round"], *[_share(r["stages"].get(s, 0.0), r["total"]) for s in stages]] for r in data["rounds"]]
    return "\n".join([
        "## 4. Loop overhead",
        "",
        f"Command: `{command}`. Machine: {machine_line()}.",
        "",
        "Share of each demo round's wall time spent in teacher calls (time inside the backend), training,",
        "student generation and embeddings; **overhead** is everything else (LangGraph checkpoints, SQLite,",
        "model load/save, FAISS search, glue). Target: overhead under 5%.",
        "",
        md_table(["round", "seconds", "teacher", "training", "student generation", "embeddings", "overhead"], rows),
        "",
        "Share of time per stage:",
        "",
        md_table(["round", *stages], stage_rows),
    ])


# -- batched vs one-by-one student evaluation ---------------------------------------------------


def student_eval(n: int = 200, seed: int = 0) -> dict[str, Any]:
    """Greedy answers for the same prompts, batched vs. one by one, on the demo's student."""
    import tempfile

    from lionloop.config import StudentConfig, TaskConfig
    from lionloop.plugin.manager import get_plugin_manager
    from lionloop.student.model import build_tiny_student, generate
    from lionloop.student.prompt import format_prompt

    # The demo's task pack, reached as the loop reaches it: through the plugins' registry.
    pack = get_plugin_manager().build_registry().get("task_pack", "skills", "task.pack")(TaskConfig(), seed)
    prompts = [format_prompt(i) for i in pack.eval_set(max(1, n // len(pack.skills())))][:n]
    cfg = StudentConfig()
    with tempfile.TemporaryDirectory() as d:
        path = build_tiny_student(Path(d) / "s", cfg, seed)
        generate(path, prompts[:8], cfg)  # warm-up: imports, first kernels
        out = {}
        for label, bs in (("batched", cfg.eval_batch_size), ("one_by_one", 1)):
            t0 = time.perf_counter()
            answers = generate(path, prompts, cfg.model_copy(update={"eval_batch_size": bs}))
            out[label] = {"seconds": time.perf_counter() - t0, "batch_size": bs, "answers": answers}
    same = sum(a == b for a, b in zip(out["batched"]["answers"], out["one_by_one"]["answers"], strict=True))
    return {"n": len(prompts), "batched": out["batched"]["seconds"], "one_by_one": out["one_by_one"]["seconds"],
            "batch_size": cfg.eval_batch_size, "same_answers": same}


def student_eval_report(d: dict[str, Any], command: str) -> str:
    ratio = d["one_by_one"] / d["batched"]
    return "\n".join([
        "## 5. Student evaluation: batched vs. one by one",
        "",
        f"Command: `{command}`. Machine: {machine_line()}.",
        "",
        md_table(["prompts", "batched (s)", "one by one (s)", "speed-up", "identical answers"],
                 [[d["n"], f"{d['batched']:.2f} (batch {d['batch_size']})", f"{d['one_by_one']:.2f}",
                   f"**{ratio:.0f}×**", f"{d['same_answers']}/{d['n']}"]]),
    ])


# -- resume cost ---------------------------------------------------------------------------------


def resume_cost(cfg: RunConfig, kill_at: list[tuple[int, str]], out_dir: Path, delay: float = 0.5) -> dict[str, Any]:
    """Run `cfg`, SIGKILL it once inside each (round, stage), resume each time; count repaid calls."""
    run = out_dir / "run"
    cfg_path = out_dir / "cfg.yaml"
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(cfg.model_copy(update={"run_dir": run}).model_dump(mode="json")))
    kills = []
    cmd = [sys.executable, "-m", "lionloop.cli", "run", str(cfg_path)]
    for target in kill_at:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        while proc.poll() is None:
            if any(e["event"] == "stage_start" and (e["round"], e["stage"]) == target for e in events(run)):
                time.sleep(delay)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.05)
        paid, _ = paid_calls(run)
        kills.append({"target": list(target), "paid_before_resume": paid})
        cmd = [sys.executable, "-m", "lionloop.cli", "resume", str(run)]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    paid, repaid = paid_calls(run)
    from lionloop.inspect.status import run_status as status

    st = status(run)
    hits = sum(r["cache_hits"] for r in st["rounds"]) + st["bootstrap"]["cache_hits"]
    return {"kills": kills, "paid": paid, "repaid": repaid, "cache_hits": hits, "final_seconds": time.time() - t0,
            "rounds": len(st["rounds"])}


def resume_report(d: dict[str, Any], baseline_paid: int | None, command: str) -> str:
    rows = [[f"round {k['target'][0]} · {k['target'][1]}", k["paid_before_resume"]] for k in d["kills"]]
    lines = [
        "## 6. Resume cost",
        "",
        f"Command: `{command}`. Machine: {machine_line()}.",
        "",
        "The demo config, killed with SIGKILL once inside each stage below (each kill hits the process",
        "resumed after the previous one), then resumed to the end:",
        "",
        md_table(["killed in", "paid calls so far"], rows),
        "",
        f"Teacher calls paid in total: {d['paid']}"
        + (f" (an uninterrupted run of the same config: {baseline_paid})" if baseline_paid is not None else "")
        + f"; **repaid: {d['repaid']}** (target 0); served from the cache after the kills: {d['cache_hits']}.",
    ]
    return "\n".join(lines)
