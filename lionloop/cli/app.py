"""The `lionloop` command line (Typer + Rich)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lionloop.cli.bench import bench_app
from lionloop.cli.common import (
    RichReporter,
    console,
    err_console,
    fail,
    guard,
    quiet_libraries,
    setup_logging,
)
from lionloop.cli.pool import pool_app
from lionloop.cli.report import report
from lionloop.errors import LionloopError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Adversarial distillation loops.")


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


def _allocation_table(st: dict[str, Any]) -> Table | None:
    """Where each round's new data went, per task or cluster: accepted instructions, the
    allocation's share and the group's learning progress (None for a run without an allocation)."""
    rounds = [r for r in st["rounds"] if r.get("allocation") or r.get("accepted_by_group")]
    if not any(r.get("allocation") for r in rounds):
        return None
    by = next(r["allocation"]["group_by"] for r in rounds if r.get("allocation"))
    groups = sorted({g for r in rounds for g in (r.get("allocation") or {}).get("groups", {})}
                    | {g for r in rounds for g in r.get("accepted_by_group") or {}})
    t = Table(title=f"new data per {by}: accepted (share · progress, points per 100 examples)")
    t.add_column(by)
    for r in rounds:
        t.add_column(f"r{r['round']}", justify="right")
    for g in groups:
        cells = []
        for r in rounds:
            a = ((r.get("allocation") or {}).get("groups") or {}).get(g, {})
            n = (r.get("accepted_by_group") or {}).get(g, 0)
            lp = a.get("progress")
            why = f" ({a['share']:.0%}" + (f" · {lp:.1f}" if lp is not None else "") + ")" if "share" in a else ""
            cells.append(f"{n}{why}")
        t.add_row(g, *cells)
    return t


def _print_summary(run_dir: Path) -> None:
    from lionloop.inspect.status import run_status as status

    st = status(run_dir)
    console.print(_round_table(st))
    console.print(_skill_table(st))
    alloc = _allocation_table(st)
    if alloc is not None:
        console.print(alloc)
    rounds = [r for r in st["rounds"] if r["eval_accuracy"] is not None]
    if len(rounds) >= 2:
        console.print(
            f"eval accuracy: round {rounds[0]['round']} {rounds[0]['eval_accuracy']:.1%} -> "
            f"round {rounds[-1]['round']} {rounds[-1]['eval_accuracy']:.1%}"
        )
    pool = st["pool"]
    console.print(f"pool: {pool['by_split']} · by origin {pool['by_origin']} · {pool['examples']} training rows")
    console.print(f"run directory: {run_dir}  (lionloop status {run_dir})")


@app.command()
def demo(
    rounds: Annotated[int, typer.Option(help="Rounds to run.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same pool.")] = 0,
    run_dir: Annotated[Path | None, typer.Option(help="Run directory (default runs/demo-<time>).")] = None,
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
    setup_logging(verbose)
    from lionloop.config import load_config

    cfg = guard(load_config, config)
    if run_dir is not None:
        cfg = cfg.model_copy(update={"run_dir": run_dir})
    quiet_libraries()
    from lionloop.loop.runner import start

    out, _ = guard(start, cfg, RichReporter(console))
    _print_summary(out)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="Run directory to continue.")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Continue a crashed or stopped run; cached teacher calls are not paid again."""
    setup_logging(verbose)
    quiet_libraries()
    from lionloop.loop.runner import resume as do_resume

    out, _ = guard(do_resume, run_dir, RichReporter(console))
    _print_summary(out)


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Per-round figures of a run (works while it is running)."""
    from lionloop.inspect.status import run_status as get_status

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
        fail(LionloopError(f"{path} exists (use --force to overwrite)"), 1)
    path.write_text("# lionloop run configuration: `lionloop run " + str(path) + "`\n" + commented_yaml() + "\n")
    console.print(f"wrote {path}")


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
app.add_typer(bench_app, name="bench")


def main() -> None:
    # Before torch loads OpenMP: on shared or busy cores, spinning OpenMP threads made training
    # ~40x slower here (30 tiny-student steps: 153 s vs 4 s with PASSIVE). A user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
