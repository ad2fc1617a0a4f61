"""Export a run's training rows or instructions, with lineage columns: JSONL, Parquet, HF datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from lionloop.inspect.fmt import pct as _pct
from lionloop.inspect.lineage import lineage_columns
from lionloop.inspect.queries import as_hard, latest_verdicts, verdict_counts
from lionloop.inspect.snapshot import PoolQueryError, snapshot
from lionloop.inspect.status import build, stats_view
from lionloop.records import SPLITS
from lionloop.rundir import RunDir

FORMATS = ("jsonl", "parquet", "hf")
KINDS = ("examples", "instructions")

COLUMNS = {
    "examples": {
        "id": "training row id (hash of instruction, kind, prompt, completion)",
        "instruction_id": "id of the instruction the row teaches",
        "kind": "row kind: answer, rationale, decompose, ...",
        "prompt": "student prompt", "completion": "target completion (from the teacher)",
        "generator": "what produced the row (seed or a generator plugin)",
        "round": "round the row was written in", "weight": "loss weight",
    },
    "instructions": {
        "instruction_id": "content hash of task, text and input",
        "split": "train | cache | eval (eval is held out: never trained on)",
        "meta": "generator metadata (JSON string)",
        "teacher_answer": "the teacher's answer (null for eval/cache rows it never answered)",
    },
    "lineage": {
        "instruction": "instruction text", "input": "instruction input", "task": "task / skill",
        "origin": "seed or the generator that wrote it", "parent_id": "the instruction it was rewritten from",
        "round_born": "round it entered the pool (0 = bootstrap)",
        "root_id": "the seed at the top of its lineage", "depth": "rewrites between the seed and it",
        "lineage": "ancestor ids, root first",
        "latest_verdict_round": "last round the referee judged it", "latest_diff": "teacher - student score then",
        "latest_hard": "the referee's last hard/easy call", "times_judged": "rounds it was judged in",
        "times_hard": "rounds it was judged hard in",
    },
}


def export(
    run_dir: Path, fmt: str, out: Path, what: str = "examples", split: str | None = None, force: bool = False
) -> dict[str, Any]:
    """Write the rows to `out` (a file for jsonl/parquet, a directory for hf); returns a summary."""
    if fmt not in FORMATS:
        raise PoolQueryError(f"unknown format {fmt!r} (one of: {', '.join(FORMATS)})")
    if what not in KINDS:
        raise PoolQueryError(f"unknown export kind {what!r} (one of: {', '.join(KINDS)})")
    out = Path(out)
    _check_target(out, fmt, force)
    rows, stats = export_rows(run_dir, what, split)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        tmp.replace(out)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        tmp = out.with_name(out.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(rows, schema=_schema(what) if not rows else None), tmp)
        tmp.replace(out)
    else:
        import datasets
        from datasets import Dataset

        datasets.disable_progress_bars()

        ds = Dataset.from_list(rows) if rows else Dataset.from_dict({k: [] for k in _columns(what)})
        if out.exists():
            shutil.rmtree(out)
        ds.save_to_disk(str(out))
        (out / "README.md").write_text(dataset_card(run_dir, what, split, len(rows), stats), encoding="utf-8")
    return {"format": fmt, "what": what, "split": split, "rows": len(rows), "out": str(out)}


# -- the rows -----------------------------------------------------------------------------------


def export_rows(run_dir: Path, what: str = "examples", split: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Training rows (`examples`) or `instructions`, each with lineage columns; plus the stats."""
    if what not in ("examples", "instructions"):
        raise PoolQueryError(f"unknown export kind {what!r} (examples or instructions)")
    if split is not None and split not in SPLITS:
        raise PoolQueryError(f"unknown split {split!r} (one of: {', '.join(SPLITS)})")
    with snapshot(run_dir) as pool:
        lin = lineage_columns(pool)
        latest = latest_verdicts(pool)
        counts = verdict_counts(pool)
        params: tuple[Any, ...] = ()
        if what == "examples":
            # What the student trains on: rows of train-split instructions (as Pool.examples()).
            sql = ("SELECT e.id, e.instruction_id, e.kind, e.prompt, e.completion, e.generator, e.round,"
                   " e.weight, e.student, i.text AS instruction, i.input, i.task, i.origin, i.parent_id, i.round_born,"
                   " i.split FROM examples e JOIN instructions i ON i.id = e.instruction_id"
                   " WHERE i.split = 'train'")
            if split not in (None, "train"):
                raise PoolQueryError("training rows exist only for the train split")
            sql += " ORDER BY e.round, e.id"
        else:
            sql = ("SELECT i.id AS instruction_id, i.text AS instruction, i.input, i.task, i.origin,"
                   " i.parent_id, i.round_born, i.split, i.meta, t.text AS teacher_answer,"
                   " t.thinking AS teacher_thinking"  # '' where the teacher wrote none
                   " FROM instructions i LEFT JOIN (SELECT instruction_id, text, thinking, MAX(round) FROM responses"
                   " WHERE role = 'teacher' GROUP BY instruction_id) t ON t.instruction_id = i.id")
            if split is not None:
                sql += " WHERE i.split = ?"
                params = (split,)
            sql += " ORDER BY i.round_born, i.id"
        rows = []
        for r in pool.query(sql, params):
            d = dict(r)
            iid = d["instruction_id"]
            lv, cv = latest.get(iid, {}), counts.get(iid, {})
            d.update(lin.get(iid, {"root_id": iid, "depth": 0, "lineage": []}))
            d.update({
                "latest_verdict_round": lv.get("verdict_round"),
                "latest_diff": lv.get("diff"),
                "latest_hard": as_hard(lv.get("hard")),
                "times_judged": cv.get("times_judged", 0),
                "times_hard": cv.get("times_hard", 0) or 0,
            })
            rows.append(d)
        return rows, stats_view(build(pool, RunDir(run_dir)))


def _check_target(out: Path, fmt: str, force: bool) -> None:
    if not out.exists():
        return
    if not force:
        raise PoolQueryError(f"{out} already exists (use --force to replace it)")
    if fmt == "hf":
        if not out.is_dir() or not ((out / "state.json").exists() or not any(out.iterdir())):
            raise PoolQueryError(f"{out} is not a saved dataset directory; refusing to replace it")
    elif out.is_dir():
        raise PoolQueryError(f"{out} is a directory; {fmt} export writes a file")


LINEAGE = ["root_id", "depth", "lineage", "latest_verdict_round", "latest_diff", "latest_hard",
           "times_judged", "times_hard"]


def _columns(what: str) -> list[str]:
    """Column order of an export (what `export_rows` returns)."""
    base = ["instruction", "input", "task", "origin", "parent_id", "round_born", "split"]
    if what == "examples":
        return [*COLUMNS["examples"], *base, *LINEAGE]
    return ["instruction_id", *base, "meta", "teacher_answer", *LINEAGE]


def _schema(what: str):  # noqa: ANN202 - pyarrow is imported lazily
    import pyarrow as pa

    types = {"round": pa.int64(), "round_born": pa.int64(), "depth": pa.int64(), "weight": pa.float64(),
             "latest_verdict_round": pa.int64(), "latest_diff": pa.float64(), "latest_hard": pa.bool_(),
             "times_judged": pa.int64(), "times_hard": pa.int64(), "lineage": pa.list_(pa.string())}
    return pa.schema([(c, types.get(c, pa.string())) for c in _columns(what)])


def dataset_card(run_dir: Path, what: str, split: str | None, n: int, stats: dict[str, Any]) -> str:
    """A Hugging Face dataset card (README.md) summarising the run round by round."""
    run_id = RunDir(run_dir).run_id()
    metric = next((r["eval_metric"] for r in stats["rounds"] if r.get("eval_metric")), "accuracy")
    size = ("n<1K" if n < 1_000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000 else "100K<n<1M")
    lines = [
        "---",
        f"pretty_name: lionloop {run_id} ({what})",
        "tags:", "- lionloop", "- adversarial-distillation", "- synthetic",
        "size_categories:", f"- {size}",
        "---", "",
        f"# lionloop run `{run_id}`: {what}", "",
        f"{n} {'training rows' if what == 'examples' else 'instructions'}"
        + (f" of the `{split}` split" if split else "")
        + " exported by `lionloop pool export` from an adversarial distillation run (Lion-style:"
        " the referee finds instructions the student gets wrong, generators write harder ones"
        " there). Every row carries its lineage: the seed it descends from, its parent and the"
        " referee's verdicts.", "",
        "```python", "from datasets import load_from_disk", "", 'ds = load_from_disk("<this directory>")', "```", "",
        "## Rounds", "",
        f"| round | eval {metric} | judged | hard | easy | hard ratio | candidates | accepted | rejected | new | pool size | teacher calls |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in stats["rounds"]:
        rej = ", ".join(f"{k} {v}" for k, v in r["rejected"].items()) or "0"
        lines.append(
            f"| {r['round']}{' (bootstrap)' if r['round'] == 0 else ''} | {_pct(r['eval_score'])} | {r['judged']}"
            f" | {r['hard']} | {r['easy']} | {_pct(r['hard_ratio'])} | {r['candidates']} | {r['accepted']}"
            f" | {rej} | {r['born']} | {r['pool_size']} | {r['teacher_calls']} |"
        )
    lines += ["", f"Eval {metric} is the student's on the held-out eval split after that round's training;"
              " hard/easy are the referee's calls on the train and cache pools; the pool size excludes eval.", ""]
    lines += ["## The pool", ""]
    for key, title in (("by_split", "split"), ("by_origin", "origin (train + cache)"), ("by_task", "task (train + cache)")):
        lines.append(f"- by {title}: " + ", ".join(f"{k} {v}" for k, v in stats[key].items()))
    t = stats["teacher"]
    lines += [f"- teacher calls: {t['calls']} ({t['hits']} cache hits, {t['failures']} failures),"
              f" tokens {t['prompt_tokens']} prompt + {t['completion_tokens']} completion"
              + (f", estimated cost {t['cost']:.4g}" if t.get("cost") else ""), ""]
    lines += ["## Columns", ""]
    desc = {**COLUMNS["examples"], **COLUMNS["instructions"], **COLUMNS["lineage"]}
    lines += [f"- `{c}`: {desc.get(c, '')}" for c in _columns(what)]
    return "\n".join(lines) + "\n"
