"""What every `lionloop` command shares: consoles, the error guard, logging, the Rich reporter."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lionloop.errors import ConfigError, LionloopError
from lionloop.loop.runtime import Reporter

console = Console(stderr=False)
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line


def quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    from lionloop.student.model import quiet_hf

    quiet_hf()


class RichReporter(Reporter):
    """Stage lines, one progress bar at a time, and a row per finished round."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task_id: Any = None

    def stage_start(self, round: int, stage: str) -> None:
        label = "bootstrap" if round == 0 else f"round {round}"
        self.console.print(f"[bold cyan]{label}[/] · {stage}")

    def stage_end(self, round: int, stage: str, seconds: float) -> None:
        self.task_done()

    def task(self, description: str, total: int | None):  # noqa: ANN201
        self.task_done()
        self.progress = Progress(
            TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.console, transient=True,
        )
        self.progress.start()
        self.task_id = self.progress.add_task(description, total=total)
        progress, task_id = self.progress, self.task_id
        return lambda n: progress.advance(task_id, n)

    def task_done(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def round_end(self, summary: dict[str, Any]) -> None:
        ev = summary.get("eval", {})
        ref = summary.get("referee", {})
        cur = summary.get("curate", {})
        acc = ev.get("overall")
        self.console.print(
            f"  [green]round {summary['round']} done[/]: eval accuracy "
            f"{'-' if acc is None else f'{acc:.1%}'}, hard {ref.get('hard', '-')}, easy {ref.get('easy', '-')}, "
            f"new instructions {cur.get('accepted', 0)}"
            + (f", stop: {summary['stop_reason']}" if summary.get("stop_reason") else "")
        )


def fail(err: Exception, code: int) -> None:
    err_console.print(f"[red]error:[/] {err}", highlight=False)
    raise typer.Exit(code)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def guard(fn, *args, **kwargs):  # noqa: ANN001, ANN202
    """Turn lionloop errors into one red line and an exit code (2 = bad config)."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as err:
        fail(err, 2)
    except LionloopError as err:
        fail(err, 1)
