"""`lionloop report RUN_DIR`: write the run's self-contained HTML report (register with app.command)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lionloop.cli.common import console, guard


def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (read-only; may still be running).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("report.html"),
    projection: Annotated[str, typer.Option(help="Pool map projection: auto (t-SNE up to 3000 points, else PCA), tsne or pca.")] = "auto",
    top: Annotated[int, typer.Option(help="Hardest instructions to list with their lineage.")] = 25,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Write one self-contained HTML report: curves per round, score gaps, the pool map, hardest cases."""
    from lionloop.inspect.report import build_report

    if top < 0:
        console.print("[red]error:[/] --top must be >= 0", highlight=False)
        raise typer.Exit(1)
    res = guard(build_report, run_dir, out, projection, top)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    console.print(f"wrote {res['out']} ({res['bytes'] / 1e6:.1f} MB, {res['rounds']} rounds, "
                  f"{res['points']} points mapped with {res['projection'] or '-'}) in {res['seconds']:.1f}s")
