"""`lionloop run CONFIG --check`: the config checked as `run` checks it before it writes anything
(lionloop.loop.preflight: paths, data files and rows, plugins and their options, model folders,
API keys, teacher servers), then the plan the run would follow: the data, who teaches and judges,
the student and its training, when it stops, and what each generator may spend a round under this
config's options. Nothing is written, no model is loaded and no teacher call is paid."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lionloop.config import RunConfig, TeacherConfig
from lionloop.loop.preflight import resolve_backend, teacher_sections
from lionloop.plugin.manager import PluginManager
from lionloop.plugin.plan import PlannedGenerator, plan_generators


def _teacher(tcfg: TeacherConfig) -> str:
    out = tcfg.backend + (f" · {tcfg.model}" if tcfg.model else "")
    if tcfg.base_urls:
        out += f" at {', '.join(tcfg.base_urls)}"
    if tcfg.cost_per_1k_input or tcfg.cost_per_1k_output:
        out += f" · ${tcfg.cost_per_1k_input:g} / ${tcfg.cost_per_1k_output:g} per 1k tokens in / out"
    return out


def _stop(cfg: RunConfig) -> str:
    s = cfg.stop
    parts = [f"after {s.max_rounds} round{'s' if s.max_rounds != 1 else ''}"]
    if s.max_teacher_calls is not None:
        parts.append(f"at {s.max_teacher_calls:,} paid teacher calls")
    if s.max_teacher_cost is not None:
        parts.append(f"at ${s.max_teacher_cost:g} of teacher cost")
    if s.patience is not None:
        parts.append(f"after {s.patience} round(s) without a held-out gain of {s.min_delta:g}")
    if s.stop_when_no_hard:
        parts.append("when a round finds no hard case")
    return "; ".join(parts)


def _pacing(cfg: RunConfig) -> str | None:
    g = cfg.generate
    if cfg.stop.max_teacher_calls is None and cfg.stop.max_teacher_cost is None:
        return None
    if not g.pace:
        return "not paced: rounds spend until the budget is gone"
    return (f"paced over the rounds left, each later round's part {g.pace_ratio:g} of the one before "
            f"(a candidate priced at the {g.pace_price} of earlier rounds; recomputed each round from what is left)")


def _judge(cfg: RunConfig) -> str:
    j = cfg.judge
    if j.mode == "verifier":
        return "verifier (wrong = hard, no referee call)"
    if j.max_cases is not None:
        sample = f"at most {j.max_cases} cases a round"
    elif j.budget_share is not None and cfg.stop.max_teacher_calls is not None:
        sample = f"a sample of at most {j.budget_share:g} of the round's part of the budget"
    else:
        sample = "every case"
    return f"{j.mode}, tau {j.tau:g}: {sample}"


def _student(cfg: RunConfig) -> str:
    s, t = cfg.student, cfg.train
    who = str(s.base) if s.base is not None else \
        f"tiny, from scratch ({s.hidden_size} wide, {s.num_layers} layers)"
    steps = f"{t.epochs_per_round:g} epochs of its rows a round" if t.epochs_per_round is not None else \
        f"{t.steps_per_round} steps a round"
    lora = f", LoRA r{t.lora.rank}" if t.lora.enabled else ""
    return f"{who} · trainer {t.trainer}, {steps}, batch {t.batch_size}{lora} · thinking: {s.thinking}"


def generator_table(plan: list[PlannedGenerator], cfg: RunConfig) -> Table:
    t = Table("generator", "share", "candidates / round", "calls / candidate", "call cap / round", "consumes",
              "dedup", title="generators (what each may spend a round under this config's options)")
    for g in plan:
        share = cfg.generate.generators[g.name].share
        threshold = g.dedup_threshold if g.dedup_threshold is not None else cfg.dedup.threshold
        t.add_row(g.name, f"{share:g}", str(g.quota), f"{g.calls_per_candidate:g}", f"{g.max_calls:,}",
                  ", ".join(g.spec.consumes), f"{threshold:g}")
    return t


def print_plan(console: Console, cfg: RunConfig, pack: Any, pm: PluginManager) -> list[PlannedGenerator]:
    """Print what a run of `cfg` would do (`pack`: what preflight built); returns the generator plan."""
    seeds = pack.seeds()
    splits = Counter(i.split for i in seeds)
    tasks = pack.skills()
    shown = ", ".join(tasks[:10]) + (f", ... ({len(tasks)} in all)" if len(tasks) > 10 else "")
    plan = plan_generators(cfg.generate, pm.generator_specs())
    p = console.print
    p(f"[green]config ok[/]: nothing written, no model loaded, no call paid · run directory "
      f"{escape(str(cfg.resolved_run_dir()))}", highlight=False)
    p(f"task     {escape(cfg.task.pack)}: {escape(shown)} · {splits.get('train', 0)} seeds to train on, "
      f"{splits.get('cache', 0)} in the cache pool, {len(pack.eval_set())} held out", highlight=False)
    registry = pm.build_registry()
    for path, tcfg in teacher_sections(cfg):
        p(f"{path.replace('_', ' ')}  {escape(_teacher(tcfg))}", highlight=False)
        # A backend that can ask its servers what they serve (openai: GET /models; nothing paid).
        status = getattr(resolve_backend(registry, tcfg, path).entry.factory, "server_status", None)
        for line in status(tcfg) if status is not None else []:
            p(f"         {escape(line)}", highlight=False)
    p(f"judge    {_judge(cfg)} · case selection {cfg.generate.case_selection}, "
      f"allocation {cfg.generate.allocation.mode}", highlight=False)
    p(f"student  {escape(_student(cfg))}", highlight=False)
    p(f"stop     {_stop(cfg)}", highlight=False)
    if (pacing := _pacing(cfg)) is not None:
        p(f"budget   {pacing}", highlight=False)
    if plan:
        p(generator_table(plan, cfg))
    else:
        p("[yellow]no generator is enabled[/]: the loop trains on its seeds and adds nothing")
    return plan
