"""`lionloop pool ...`: inspect a run's instruction pool (read-only, safe while the run writes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

pool_app = typer.Typer(no_args_is_help=True, help="Inspect a run's instruction pool.")
console = Console()


@pool_app.command("stats")
def pool_stats(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Counts by round, split, origin and task; hard/easy; rejections; teacher calls."""
    from lionloop.cli import guard
    from lionloop.poolview import pool_stats as get_stats

    st = guard(get_stats, run_dir)
    if as_json:
        typer.echo(json.dumps(st, indent=2))
        return
    for name, table in st.items():
        if not isinstance(table, dict) or not table:
            continue
        t = Table(title=name)
        t.add_column("key")
        t.add_column("count", justify="right")
        for k, v in table.items():
            t.add_row(str(k), str(v))
        console.print(t)


