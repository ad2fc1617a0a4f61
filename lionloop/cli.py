"""The `lionloop` command line (Typer + Rich)."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lionloop.context import Reporter
from lionloop.errors import ConfigError, LionloopError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Adversarial distillation loops.")
console = Console(stderr=False)
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    from lionloop.student import quiet_hf

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


def _fail(err: Exception, code: int) -> None:
    err_console.print(f"[red]error:[/] {err}", highlight=False)
    raise typer.Exit(code)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _round_table(st: dict[str, Any]) -> Table:
    t = Table(title=f"run {st['run_id']}")
    for col in ["round", "eval acc", "hard", "easy", "cand.", "new", "dedup rej.", "calls", "hits", "s"]:
        t.add_column(col, justify="right")
    for r in st["rounds"]:
        acc = r["eval_accuracy"]
        t.add_row(
            str(r["round"]),
            "-" if acc is None else f"{acc:.1%}",
            str(r["hard"] if r["hard"] is not None else "-"),
            str(r["easy"] if r["easy"] is not None else "-"),
            str(r["candidates"]),
            str(r["accepted"]),
            str(sum(v for k, v in r["dedup_rejected"].items() if k.startswith("dup_"))),
            str(r["teacher_calls"]),
            str(r["cache_hits"]),
            f"{sum(r['seconds'].values()):.0f}",
        )
    return t


def _skill_table(st: dict[str, Any]) -> Table:
    """Held-out accuracy per skill (rows) by round (columns)."""
    skills = sorted({k for r in st["rounds"] for k in r["eval_per_skill"]})
    t = Table(title="eval accuracy per skill")
    t.add_column("skill")
    for r in st["rounds"]:
        t.add_column(f"r{r['round']}", justify="right")
    for sk in skills:
        t.add_row(sk, *[f"{r['eval_per_skill'][sk]:.0%}" if sk in r["eval_per_skill"] else "-" for r in st["rounds"]])
    return t


def _print_summary(run_dir: Path) -> None:
    from lionloop.runner import status

    st = status(run_dir)
    console.print(_round_table(st))
    console.print(_skill_table(st))
    rounds = [r for r in st["rounds"] if r["eval_accuracy"] is not None]
    if len(rounds) >= 2:
        console.print(
            f"eval accuracy: round {rounds[0]['round']} {rounds[0]['eval_accuracy']:.1%} -> "
            f"round {rounds[-1]['round']} {rounds[-1]['eval_accuracy']:.1%}"
        )
    pool = st["pool"]
    console.print(f"pool: {pool['by_split']} · by origin {pool['by_origin']} · {pool['examples']} training rows")
    console.print(f"run directory: {run_dir}  (lionloop status {run_dir})")


def guard(fn, *args, **kwargs):  # noqa: ANN001, ANN202
    """Turn lionloop errors into one red line and an exit code (2 = bad config)."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as err:
        _fail(err, 2)
    except LionloopError as err:
        _fail(err, 1)


@app.command()
def demo(
    rounds: Annotated[int, typer.Option(help="Rounds to run.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same pool.")] = 0,
    run_dir: Annotated[Path | None, typer.Option(help="Run directory (default runs/demo-<time>).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the offline demo: oracle teacher, built-in skills pack, tiny student trained from scratch."""
    import time

    _setup_logging(verbose)
    _quiet_libraries()
    from lionloop.runner import demo_config, start

    if run_dir is None:
        run_dir = Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = guard(demo_config, rounds, seed, run_dir)
    console.print(f"[bold]lionloop demo[/]: {rounds} rounds, seed {seed}, run dir {run_dir}")
    out, _ = guard(start, cfg, RichReporter(console))
    _print_summary(out)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    run_dir: Annotated[Path | None, typer.Option(help="Override the config's run_dir.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a loop from a YAML config."""
    _setup_logging(verbose)
    from lionloop.config import load_config

    cfg = guard(load_config, config)
    if run_dir is not None:
        cfg = cfg.model_copy(update={"run_dir": run_dir})
    _quiet_libraries()
    from lionloop.runner import start

    out, _ = guard(start, cfg, RichReporter(console))
    _print_summary(out)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="Run directory to continue.")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Continue a crashed or stopped run; cached teacher calls are not paid again."""
    _setup_logging(verbose)
    _quiet_libraries()
    from lionloop.runner import resume as do_resume

    out, _ = guard(do_resume, run_dir, RichReporter(console))
    _print_summary(out)


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Per-round figures of a run (works while it is running)."""
    from lionloop.runner import status as get_status

    st = guard(get_status, run_dir)
    if as_json:
        typer.echo(json.dumps(st, indent=2))
        return
    _print_summary(run_dir)


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Config file to write.")] = Path("lionloop.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a config file with every field, its default and what it does."""
    from lionloop.config import commented_yaml

    if path.exists() and not force:
        _fail(LionloopError(f"{path} exists (use --force to overwrite)"), 1)
    path.write_text("# lionloop run configuration: `lionloop run " + str(path) + "`\n" + commented_yaml() + "\n")
    console.print(f"wrote {path}")


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List loaded plugins with where they came from."""
    from lionloop.plugin_manager import get_plugin_manager

    pm = get_plugin_manager()
    infos = [i.as_dict() for i in pm.plugin_list()]
    if as_json:
        typer.echo(json.dumps(infos, indent=2))
        return
    t = Table(title="lionloop plugins")
    for col in ("name", "version", "hooks", "origin"):
        t.add_column(col)
    for i in infos:
        hooks = ", ".join(h.removeprefix("lionloop_") for h in i["hooks"]) or "-"
        if i["generator"]:
            g = i["generator"]
            hooks += f"\n[dim]consumes {'+'.join(g['consumes'])}, {g['calls_per_candidate']:g} calls/candidate, rows {', '.join(g['kinds'])}[/]"
        t.add_row(
            i["name"], f"{i['dist'] or '-'} {i['version'] or ''}".strip(), hooks,
            i["origin"] + (f"  [red]failed: {i['error']}[/]" if i["error"] else ""),
        )
    console.print(t)


from lionloop.cli_pool import pool_app  # noqa: E402 - sub-commands register on import

app.add_typer(pool_app, name="pool")
from lionloop.cli_report import report  # noqa: E402

app.command("report")(report)
from lionloop.cli_bench import bench_app  # noqa: E402

app.add_typer(bench_app, name="bench")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
