"""`python -m lionloop.cli.ablation`: the generator ablation on its own (the same command as
`lionloop bench ablation`, which `lionloop.cli.bench` defines)."""

from __future__ import annotations

import typer

from lionloop.cli.bench import ablation

app = typer.Typer(add_completion=False)
app.command()(ablation)

if __name__ == "__main__":
    app()
