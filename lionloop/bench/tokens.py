"""What a run's teacher calls would cost in tokens (`lionloop bench tokens`).

An offline run's oracle reports no token counts, yet a user pays an LLM per token: a packed call
of k rewrites (`teacher.rewrites_per_call`) is one call but a longer prompt and reply than one
rewrite. Each cached call of the run is rendered as an LLM backend would send it (the request
type's template, through the tokenizer's chat template) and its output as the reply text (JSON
for structured requests, the text for answers), and both are counted with a real tokenizer (the
packaged SmolLM2's by default). Runs that are compared in calls can then be compared in tokens × price.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from lionloop.bench.arms import arm_of
from lionloop.rundir import RunDir
from lionloop.teacher.packing import Rewrites
from lionloop.teacher.requests import Answer, Judge, Rewrite, TeacherRequest
from lionloop.teacher.tokens import TokenCounter, reply_text


def request_types() -> dict[str, type[TeacherRequest]]:
    """The request types by kind: the built-in ones and those the plugins register."""
    from lionloop.plugin.manager import get_plugin_manager

    types: dict[str, type[TeacherRequest]] = {t.kind: t for t in (Answer, Judge, Rewrite, Rewrites)}
    types.update({kind: e.factory for kind, e in get_plugin_manager().build_registry().entries["request_type"].items()})
    return types


def _request(payload: dict[str, Any], types: dict[str, type[TeacherRequest]]) -> TeacherRequest | None:
    data = dict(payload)
    kind = data.pop("kind", None)
    cls = types.get(str(kind))
    return cls.model_validate(data) if cls is not None else None


def run_tokens(run_dir: Path, counter: TokenCounter) -> dict[str, dict[str, int]]:
    """Per stage of the run (and "total"): paid calls, prompt and completion tokens. A call whose
    request is no known type (a chat backend's run: its prompt is kept, not the request) is
    counted from what was sent, its messages."""
    from lionloop.stores.connection import connect

    types = request_types()
    db = connect(RunDir(run_dir).pool, readonly=True)  # a folder named `loop%60-0` is a file name, not an escape
    try:
        rows = db.execute("SELECT stage, request, response FROM llm_cache WHERE repaid = 0").fetchall()
    finally:
        db.close()
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
    for stage, request, response in rows:
        sent, reply = json.loads(request), json.loads(response)
        req = _request(sent, types) if isinstance(sent, dict) and "kind" in sent else None
        messages = counter.prompts.messages(req) if req is not None else sent.get("messages", [])
        output = reply.get("output")
        text = reply_text(req, output) if output is not None else reply.get("text") or ""
        usage = {"prompt_tokens": counter.prompt_tokens(messages), "completion_tokens": counter.text_tokens(text)}
        for key in (stage, "total"):
            out[key]["calls"] += 1
            for k, v in usage.items():
                out[key][k] += v
    return dict(out)


def main(run_dirs: list[Path], tokenizer_path: Path, price_in: float, price_out: float) -> str:
    """A table per run directory (named ARM-SEED by `bench effect`) and per arm: calls, tokens, cost."""
    tok = TokenCounter(tokenizer_path)
    by_arm: dict[str, list[dict[str, dict[str, int]]]] = defaultdict(list)
    head = "| calls | prompt tokens | completion tokens | tokens per call | cost |"
    lines = [f"| run {head}", "|---|---|---|---|---|---|"]
    for d in run_dirs:
        t = run_tokens(d, tok)
        by_arm[arm_of(d)].append(t)
        lines.append(_row(Path(d).name, t["total"], price_in, price_out))
    lines += ["", f"| arm (mean over its runs), stage {head}", "|---|---|---|---|---|---|"]
    for arm, runs in by_arm.items():
        stages = sorted({s for r in runs for s in r}, key=lambda s: (s == "total", s))
        for stage in stages:
            mean = {k: round(sum(r.get(stage, {}).get(k, 0) for r in runs) / len(runs))
                    for k in ("calls", "prompt_tokens", "completion_tokens")}
            lines.append(_row(f"{arm} ({len(runs)}), {stage}", mean, price_in, price_out))
    lines.append(f"\ncost = prompt tokens / 1e6 x {price_in:g} + completion tokens / 1e6 x {price_out:g}; "
                 f"tokens counted with {tokenizer_path.name}'s tokenizer and chat template")
    return "\n".join(lines)


def _row(name: str, t: dict[str, int], price_in: float, price_out: float) -> str:
    cost = t["prompt_tokens"] / 1e6 * price_in + t["completion_tokens"] / 1e6 * price_out
    per = (t["prompt_tokens"] + t["completion_tokens"]) / max(1, t["calls"])
    return f"| {name} | {t['calls']:,} | {t['prompt_tokens']:,} | {t['completion_tokens']:,} | {per:.0f} | {cost:.4f} |"
