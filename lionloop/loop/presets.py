"""Ready-made configs: the offline demo."""

from __future__ import annotations

from pathlib import Path

from lionloop.config import RunConfig, parse_config


def demo_config(rounds: int = 4, seed: int = 0, run_dir: Path | None = None, judge_mode: str = "llm") -> RunConfig:
    """The offline demo: oracle teacher on the `skills` pack, a tiny student trained from scratch.

    `judge_mode` (judge.mode) shows the three referees: llm (here the oracle's 1-10 judge),
    verifier (the pack's exact check: wrong = hard, no teacher call) and both (the judge audited)."""
    return parse_config(
        {
            "name": "demo",
            "seed": seed,
            "run_dir": str(run_dir) if run_dir else None,
            "stop": {"max_rounds": rounds},
            **({"judge": {"mode": judge_mode}} if judge_mode != "llm" else {}),
        },
        "--judge-mode",
    )
