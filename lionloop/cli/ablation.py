"""`lionloop bench ablation`: the generator plugins on/off at equal teacher budget (a Typer command
function for the bench group; also runnable alone: `python -m lionloop.cli.ablation`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()


def ablation(
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per arm (runs are seeds x arms).")] = 3,
    rounds: Annotated[int, typer.Option(min=2, help="Rounds per run (generation happens in all but the last).")] = 3,
    budget: Annotated[int, typer.Option(min=10, help="Teacher calls for new data per round, per arm.")] = 120,
    arm: Annotated[list[str] | None, typer.Option("--arm", help="Arm(s) to run (default: all): lion, +rationale, "
                                                  "+socratic, +disco, +finetune_cot, all.")] = None,
    out_dir: Annotated[Path, typer.Option(help="Run directories and ablation.json (resumable).")] = Path("runs/bench-ablation"),
    write: Annotated[bool, typer.Option(help="Write the table into BENCHMARKS.md (section 'Generator ablation').")] = True,
) -> None:
    """Held-out accuracy of the loop with each generator plugin on or off, at equal teacher budget,
    on the offline pack, mean ± std over seeds. Interrupted runs resume from OUT_DIR."""
    from lionloop.bench import ablation as ablation_bench
    from lionloop.student.model import quiet_hf

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    quiet_hf()
    arms = tuple(arm) if arm else ablation_bench.ARMS
    unknown = [a for a in arms if a not in ablation_bench.ARMS]
    if unknown:
        Console(stderr=True).print(f"[red]error:[/] --arm: unknown {unknown} (known: {', '.join(ablation_bench.ARMS)})")
        raise typer.Exit(2)
    _, text = ablation_bench.main(seeds=seeds, rounds=rounds, budget=budget, out_dir=out_dir, arms=arms, write=write)
    console.print(text, markup=False, highlight=False)


app = typer.Typer(add_completion=False)
app.command()(ablation)

if __name__ == "__main__":
    app()
