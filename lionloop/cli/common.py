"""What every `lionloop` command shares: consoles, the error guard, logging, the Rich reporter."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from lionloop.errors import ConfigError, LionloopError
from lionloop.inspect.fmt import pct
from lionloop.loop.reporting import Reporter
from lionloop.rundir import RunDir
from lionloop.teacher.secrets import RedactingFilter, redact

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
        if pos := ref.get("position"):
            extra += (f", judge's first-slot bias {pos['first_slot_points']:+.1f} points"
                      f" ({pct(pos['order_flips'])} of calls flip with the order)")
        self.console.print(
            f"  [green]round {summary['round']} done[/]: eval {metric} {pct(score)}{extra}, hard "
            f"{ref.get('hard', '-')}, easy {ref.get('easy', '-')}, new instructions {cur.get('accepted', 0)}"
            + (f", stop: {summary['stop_reason']}" if summary.get("stop_reason") else "")
        )


def fail(err: Exception | str, code: int) -> None:
    err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False)  # "[redacted]" is no markup
    raise typer.Exit(code)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:  # no API key in a log line, even at debug level
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def guard(fn, *args, **kwargs):  # noqa: ANN001, ANN202
    """Turn lionloop errors into one red line and an exit code (2 = bad config); anything else
    is left to `GuardedGroup` (one line and a log file holding the traceback)."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as err:
        fail(redact(str(err)), 2)
    except LionloopError as err:
        if disk_full(err):  # e.g. a trainer's checkpoint cut short by a full disk
            crash(err)
        fail(redact(str(err)), 1)


# -- the last line of defence: no traceback reaches the user -----------------------------------------

_run_dir: Path | None = None


def note_run_dir(path: Path | str | None) -> None:
    """The run directory the command works on: a crash log goes there (when it is a run)."""
    global _run_dir
    _run_dir = Path(path) if path is not None else None


_FULL = ("No space left on device", "database or disk is full", "os error 28")
FREE_FLOOR = 1 << 20  # bytes: below this the run's disk counts as full


def disk_full(err: BaseException) -> bool:
    """The error, or one it came from, is a full disk; or a writer failed without saying why
    (torch's "unexpected pos") while the run's disk has no room left."""
    seen: set[int] = set()
    io_error = False
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC or any(s in str(e) for s in _FULL):
            return True
        io_error |= isinstance(e, (OSError, RuntimeError, sqlite3.Error)) and not isinstance(e, LionloopError)
        e = e.__cause__ or e.__context__
    if not io_error:  # a referee outage or a bad row on a nearly full disk is still what it is
        return False
    folder = _run_dir
    while folder is not None and not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        return folder is not None and shutil.disk_usage(folder).free < FREE_FLOOR
    except OSError:
        return False


def known_fault(err: BaseException) -> str | None:
    """A plain-words line for faults of the machine rather than of lionloop, else None."""
    if disk_full(err):
        again = f"; free some space, then `lionloop resume {_run_dir}` continues the run" if _is_run(_run_dir) else ""
        return f"disk full ({' '.join(str(err).split())[:200]}){again}"
    if isinstance(err, sqlite3.DatabaseError) and any(
        s in str(err) for s in ("not a database", "malformed", "disk I/O error")
    ):
        return f"a SQLite file of the run is damaged ({err}); restore it from a backup"
    if isinstance(err, MemoryError):
        return "out of memory (a smaller student, batch or eval batch needs less)"
    if isinstance(err, PermissionError):
        return f"permission denied: {err.filename or err}"
    return None


def _is_run(path: Path | None) -> bool:
    try:
        return path is not None and RunDir(path).is_run()
    except OSError:
        return False


def crash_log(err: BaseException) -> Path | None:
    """Write the traceback (secrets redacted) to the run's logs/ folder, else the temp folder."""
    text = redact("".join(traceback.format_exception(type(err), err, err.__traceback__)))
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    folders = ([RunDir(_run_dir).logs] if _is_run(_run_dir) else []) + [Path(tempfile.gettempdir()) / "lionloop"]
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text)
            return path
        except OSError:
            continue  # a full disk: try the next place
    return None


def crash(err: BaseException) -> NoReturn:
    """An exception nothing else handled: one red line naming it and where its traceback is."""
    path = crash_log(err)
    what = known_fault(err) or f"internal error: {type(err).__name__}: {' '.join(str(err).split())[:300]}"
    where = f" (traceback in {path})" if path else " (the traceback could not be written)"
    err_console.print(f"[red]error:[/] {escape(redact(what) + where)}", highlight=False)
    raise typer.Exit(1)


def reader_gone() -> NoReturn:
    """The reader of our output went away (`lionloop ... | head`): stop quietly with 1, as Rich
    does when its own write hits the closed pipe, and keep the interpreter's final flush from
    raising again (Python's documented recipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)


def _passes_through(err: BaseException) -> bool:
    # Typer's and click's own signals: exits, aborts, usage errors (click prints those itself).
    return isinstance(err, (typer.Exit, typer.Abort)) or type(err).__module__.split(".")[0] in ("typer", "click")


class GuardedGroup(TyperGroup):
    """The `lionloop` command group: whatever a command raises ends as one line (lionloop errors
    as `guard` prints them; anything else with the path of a log file holding its traceback), and
    a bad command line too (click's usage box made it five)."""

    def invoke(self, ctx: Any) -> Any:
        note_run_dir(None)  # a command names its run directory itself (a second in-process call too)
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            reader_gone()
        except KeyboardInterrupt:
            again = f"; `lionloop resume {_run_dir}` continues the run" if _is_run(_run_dir) else ""
            err_console.print(f"[red]error:[/] interrupted{again}", highlight=False)
            raise typer.Exit(130) from None
        except Exception as err:
            if _passes_through(err):
                raise
            if isinstance(err, LionloopError) and not disk_full(err):
                fail(redact(str(err)), 2 if isinstance(err, ConfigError) else 1)
            crash(err)

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        from typer._click.exceptions import ClickException

        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except ClickException as err:
            ctx = getattr(err, "ctx", None)
            hint = f" (`{ctx.command_path} --help`)" if ctx is not None else ""
            err_console.print(f"[red]error:[/] {escape(err.format_message() + hint)}", highlight=False)
            sys.exit(err.exit_code)
        except typer.Abort:
            err_console.print("[red]error:[/] aborted", highlight=False)
            sys.exit(1)
        except BrokenPipeError:
            reader_gone()
        sys.exit(rv if isinstance(rv, int) else 0)
