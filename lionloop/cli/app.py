"""The `lionloop` command line (Typer + Rich)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lionloop.cli.bench import bench_app
from lionloop.cli.common import (
    GuardedGroup,
    RichReporter,
    console,
    err_console,
    fail,
    guard,
    note_run_dir,
    quiet_libraries,
    setup_logging,
)
from lionloop.cli.model import evaluate, export_model
from lionloop.cli.pool import pool_app
from lionloop.cli.report import report
from lionloop.cli.status import print_status, where
from lionloop.errors import LionloopError

app = typer.Typer(
    cls=GuardedGroup, add_completion=False, no_args_is_help=True, help="Adversarial distillation loops.",
    pretty_exceptions_enable=False,
)


def _print_summary(run_dir: Path, with_state: bool = False) -> None:
    from lionloop.inspect.status import run_status

    print_status(console, run_status(run_dir), run_dir, with_state)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # `kill PID` stops a run like Ctrl-C: where it stopped, how to resume


def _stopped(run_dir: Path) -> None:
    """After Ctrl-C (or SIGTERM): where the run stopped and the command that continues it."""
    from lionloop.inspect.liveness import run_state
    from lionloop.rundir import RunDir

    files = RunDir(run_dir)
    if not files.is_run():
        err_console.print("interrupted before the run started: nothing was written")
        _exit_now(130)
    at = where(run_state(files))
    err_console.print(f"[yellow]stopped[/]{' in ' + at if at else ''}. Paid teacher calls are kept; continue with: "
                      f"[bold]lionloop resume {run_dir}[/]", highlight=False)
    _exit_now(130)


def _exit_now(code: int) -> None:
    """Exit at once after a stop was reported. Everything the run wrote is committed (each stage in
    one transaction, the lock is the OS's); a normal shutdown joined the teacher's worker threads,
    and a Ctrl-C landing there turned exit 130 into death by SIGINT (-2), seen on a quiet machine."""
    import logging

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _loop(fn: Any, *args: Any, run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Run `fn` (start or resume) with one-line errors, and Ctrl-C / SIGTERM reported as a stop."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return guard(fn, *args)
    except KeyboardInterrupt:
        _stopped(run_dir)
        raise  # not reached: _stopped exits
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command()
def demo(
    rounds: Annotated[int, typer.Option(help="Rounds to run.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same pool.")] = 0,
    run_dir: Annotated[Path | None, typer.Option(help="Run directory (default runs/demo-<time>).")] = None,
    judge_mode: Annotated[str, typer.Option(
        "--judge-mode", help="Who calls a case hard: llm (the referee: here the oracle's), verifier "
        "(wrong = hard, no teacher call) or both (the referee, audited by the verifier).")] = "llm",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the offline demo: oracle teacher, built-in skills pack, tiny student trained from scratch."""
    import time

    setup_logging(verbose)
    quiet_libraries()
    from lionloop.loop.presets import demo_config
    from lionloop.loop.runner import start

    if run_dir is None:
        run_dir = Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    note_run_dir(run_dir)
    cfg = guard(demo_config, rounds, seed, run_dir, judge_mode)
    mode = "" if judge_mode == "llm" else f", judge mode {judge_mode}"
    console.print(f"[bold]lionloop demo[/]: {rounds} rounds, seed {seed}{mode}, run dir {run_dir}")
    out, _ = _loop(start, cfg, RichReporter(console), run_dir=run_dir)
    _print_summary(out)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    run_dir: Annotated[Path | None, typer.Option(help="Override the config's run_dir.")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Check the config as a run does before it starts (data, plugins, options, models, "
        "servers) and print the plan; write nothing, pay nothing.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a loop from a YAML config."""
    setup_logging(verbose)
    from lionloop.config import load_config
    from lionloop.loop.preflight import preflight
    from lionloop.plugin.manager import get_plugin_manager

    cfg = guard(load_config, config)
    if run_dir is not None:
        cfg = cfg.model_copy(update={"run_dir": run_dir})
    note_run_dir(cfg.resolved_run_dir())
    # Before the heavy imports: a bad config is refused in seconds.
    pm = get_plugin_manager()
    pack = guard(preflight, cfg, pm)
    if check:
        from lionloop.cli.plan import print_plan

        guard(print_plan, console, cfg, pack, pm)
        return
    quiet_libraries()
    from lionloop.loop.runner import start

    # the checked pack goes on: a dataset pack's files are read once
    out, _ = _loop(start, cfg, RichReporter(console), pack, run_dir=cfg.resolved_run_dir())
    _print_summary(out)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="Run directory to continue.")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Continue a crashed or stopped run; cached teacher calls are not paid again."""
    setup_logging(verbose)
    note_run_dir(run_dir)
    from lionloop.loop.preflight import preflight_resume
    from lionloop.plugin.manager import get_plugin_manager

    checked = guard(preflight_resume, run_dir, get_plugin_manager())  # before the heavy imports
    quiet_libraries()
    from lionloop.loop.runner import resume as do_resume

    out, final = _loop(do_resume, run_dir, RichReporter(console), checked, run_dir=run_dir)
    if final.get("already_finished"):
        console.print(f"{run_dir} has finished (stop: {final.get('stop_reason')} after round "
                      f"{final.get('round')}): nothing to resume")
    _print_summary(out)


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Whether the run is running (where, since when, progress), stopped, crashed or finished, and
    its per-round figures (works while it is running)."""
    from lionloop.inspect.status import run_status as get_status

    note_run_dir(run_dir)
    st = guard(get_status, run_dir)
    if as_json:
        typer.echo(json.dumps(st, indent=2))
        return
    print_status(console, st, run_dir)


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Config file to write.")] = Path("lionloop.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    pack: Annotated[str, typer.Option("--pack", help="Task pack: skills (offline demo) or dataset (your files).")] = "skills",
    data: Annotated[str | None, typer.Option("--data", help="With --pack dataset: your seed file (JSONL, CSV, "
                                             "Parquet, a save_to_disk folder); the config is written for it.")] = None,
) -> None:
    """Write a config file with every field, its default and what it does."""
    from lionloop.config import commented_yaml, parse_config
    from lionloop.plugin.manager import get_plugin_manager
    from lionloop.plugin.options import validate_options

    if path.exists() and not force:
        fail(LionloopError(f"{path} exists (use --force to overwrite)"), 1)
    entry = guard(guard(get_plugin_manager().build_registry).entry, "task_pack", pack, "--pack")
    fields: dict[str, Any] = {"task": {"pack": pack}}
    if data is not None:
        suggest = getattr(entry.factory, "init_config", None)
        if suggest is None:
            fail(LionloopError(f"--data: the task pack {pack!r} does not read data files (try --pack dataset)"), 2)
        fields = guard(suggest, data)
    elif pack == "dataset":
        fail(LionloopError("--pack dataset needs --data FILE (your seed instructions)"), 2)
    cfg = guard(parse_config, fields, "init")
    models = {"task": guard(validate_options, entry.options, cfg.task.options, "task.options")} if entry.options else None
    head = f"# lionloop run configuration: `lionloop run {path}`\n"
    if data is not None:
        head += (f"# Written for {data}. Point teacher.base_urls / teacher.model at your OpenAI-compatible server\n"
                 "# (vllm serve, SGLang, TGI, Ollama, OpenAI) before you run it.\n")
    path.write_text(head + commented_yaml(cfg, options=models) + "\n")
    console.print(f"wrote {path}" + (f" for {data}: lionloop run {path}" if data else ""))


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List loaded plugins with where they came from, and what they register, by kind."""
    from lionloop.errors import PluginError
    from lionloop.plugin.manager import get_plugin_manager
    from lionloop.plugin.registry import KINDS

    pm = get_plugin_manager()
    infos = [i.as_dict() for i in pm.plugin_list()]
    try:
        registry = pm.build_registry()
    except PluginError as err:  # e.g. two plugins registering one name: list the plugins anyway
        registry, registry_error = None, str(err)
    else:
        registry_error = None
    entries = [] if registry is None else [e for kind in KINDS for e in registry.entries[kind].values()]
    for info in infos:
        mine = [e for e in entries if e.plugin == info["name"]]
        info["registers"] = {k: sorted(e.name for e in mine if e.kind == k) for k in KINDS if any(e.kind == k for e in mine)}
    if as_json:
        typer.echo(json.dumps(infos, indent=2))
        if registry_error:
            fail(PluginError(registry_error), 1)
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
    if registry_error:
        fail(PluginError(registry_error), 1)
    c = Table(title="registered components (by kind; chosen by name in the config)")
    for col in ("kind", "name", "plugin", "options"):
        c.add_column(col)
    for e in sorted(entries, key=lambda e: (KINDS.index(e.kind), e.name)):
        if e.kind == "request_type":
            options = "-"
        elif e.options is None:
            options = "unchecked"
        else:
            names = sorted(e.options.model_fields)
            if e.options.model_config.get("extra") == "allow":
                names.append("+ keys passed through")
            options = ", ".join(names) or "none"
        c.add_row(e.kind.replace("_", " "), e.name, e.plugin, options)
    console.print(c)


app.add_typer(pool_app, name="pool")
app.command("report")(report)
app.command("export-model")(export_model)
app.command("evaluate")(evaluate)
app.add_typer(bench_app, name="bench")


def main() -> None:
    # Before torch loads OpenMP: on shared or busy cores, spinning OpenMP threads made training
    # ~40x slower here (30 tiny-student steps: 153 s vs 4 s with PASSIVE). A user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if sys.argv[1:2] == ["bench"]:  # before torch loads: a benchmark's figures repeat across machines
        from lionloop.bench.common import pin_kernels

        pin_kernels()
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
