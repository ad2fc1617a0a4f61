"""What every `lionloop` command shares: consoles, the error guard, logging, the Rich reporter."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lionloop.errors import ConfigError, LionloopError
from lionloop.inspect.fmt import pct
from lionloop.loop.reporting import Reporter

console = Console(stderr=False)
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line


def quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    from lionloop.student.model import quiet_hf

    quiet_hf()


class RichReporter(Reporter):
    """Stage lines, one progress bar at a time, and a row per finished round. When the output is
    not a terminal (piped, logged), a plain progress line every `every_s` seconds instead of a bar
    (`LIONLOOP_PROGRESS_SECONDS`, default 5) and one when the task ends."""

    def __init__(self, console: Console, plain: bool | None = None, every_s: float | None = None) -> None:
        self.console = console
        self.plain = (not console.is_terminal) if plain is None else plain
        self.every_s = every_s if every_s is not None else float(os.environ.get("LIONLOOP_PROGRESS_SECONDS", "5"))
        self.progress: Progress | None = None
        self.task_id: Any = None
        self._line: dict[str, Any] | None = None  # plain mode: the current task

    def stage_start(self, round: int, stage: str) -> None:
        label = "bootstrap" if round == 0 else f"round {round}"
        self.console.print(f"[bold cyan]{label}[/] · {stage}")

    def stage_end(self, round: int, stage: str, seconds: float) -> None:
        self.task_done()

    def task(self, description: str, total: int | None):  # noqa: ANN201
        self.task_done()
        if self.plain:
            line = {"task": description, "done": 0, "total": total, "note": None,
                    "t0": time.monotonic(), "shown": time.monotonic()}
            self._line = line

            def advance(n: int, note: str | None = None) -> None:
                line["done"] += n
                if note is not None:
                    line["note"] = note
                if time.monotonic() - line["shown"] >= self.every_s:
                    self._print_line(line)

            return advance
        self.progress = Progress(
            TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"), console=self.console, transient=True,
        )
        self.progress.start()
        self.task_id = self.progress.add_task(description, total=total, note="")
        progress, task_id = self.progress, self.task_id

        def advance_bar(n: int, note: str | None = None) -> None:
            if note is None:
                progress.advance(task_id, n)
            else:
                progress.update(task_id, advance=n, note=note)

        return advance_bar

    def _print_line(self, line: dict[str, Any], end: bool = False) -> None:
        line["shown"] = time.monotonic()
        total = line["total"]
        share = f" ({line['done'] / total:.0%})" if total else ""
        of = f"/{total}" if total is not None else ""
        note = f", {line['note']}" if line["note"] else ""
        done = line["done"]
        done = int(done) if float(done).is_integer() else round(done, 1)  # a judge pair counts halves
        took = f"{'done in ' if end else ''}{time.monotonic() - line['t0']:.0f}s"
        self.console.print(f"  {line['task']}: {done}{of}{share} {took}{note}", highlight=False, markup=False)

    def task_done(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self._line is not None:
            self._print_line(self._line, end=True)
            self._line = None

    def notice(self, message: str) -> None:
        self.console.print(f"  [yellow]{escape(message)}[/]", highlight=False)

    def round_end(self, summary: dict[str, Any]) -> None:
        ev = summary.get("eval", {})
        ref = summary.get("referee", {})
        cur = summary.get("curate", {})
        metric = ev.get("metric", "accuracy")
        score = ev.get("overall")
        extra = ""
        if metric == "accuracy" and ev.get("referee"):
            extra = f", relative score {pct(ev['referee'].get('overall'))}"
        agree = (ref.get("agreement") or {}).get("agreement")
        if agree is not None:
            extra += f", referee agrees with verifier {pct(agree)}"
        self.console.print(
            f"  [green]round {summary['round']} done[/]: eval {metric} {pct(score)}{extra}, hard "
            f"{ref.get('hard', '-')}, easy {ref.get('easy', '-')}, new instructions {cur.get('accepted', 0)}"
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
