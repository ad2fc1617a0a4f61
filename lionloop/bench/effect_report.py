"""The effectiveness benchmark's Markdown section and its plot of accuracy against paid calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lionloop.bench.common import machine_line, md_table, mean_std, recorded, run_commits

PLOT = "docs/bench-{name}.png"  # beside BENCHMARKS.md
COLOURS = {"loop": "tab:green", "uniform": "tab:blue", "lion": "tab:red"}


def section(referee: str, extra_skills: bool) -> str:
    """The BENCHMARKS.md section (and default run folder) of a configuration."""
    return "effect" + ("-10" if extra_skills else "") + ("-llm" if referee == "llm" else "")


def command_line(seeds: int, rounds: int, budget: int, referee: str, extra_skills: bool, arms: tuple[str, ...],
                 first_seed: int, default_arms: tuple[str, ...]) -> str:
    parts = [f"lionloop bench effect --seeds {seeds} --rounds {rounds} --budget {budget}"]
    if referee != "verifier":
        parts.append(f"--referee {referee}")
    if extra_skills:
        parts.append("--extra-skills")
    if first_seed:
        parts.append(f"--first-seed {first_seed}")
    if tuple(arms) != tuple(default_arms):
        parts += [f"--arm {a}" for a in arms]
    return " ".join(parts)


def _pct(ms: tuple[float, float]) -> str:
    m, s = ms
    return "-" if m != m else f"{100 * m:.1f} ± {100 * s:.1f}"


def _pts(ms: tuple[float, float]) -> str:
    m, s = ms
    return "-" if m != m else f"{100 * m:+.1f} ± {100 * s:.1f}"


def _interval(ci: tuple[float, float] | None) -> str:
    return "-" if ci is None else f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _order(arms: list[str], summary: dict[str, Any], seed: int) -> str:
    accs = {a: summary["arms"][a]["acc"].get(seed) for a in arms}
    ranked = sorted((a for a in arms if accs[a] is not None), key=lambda a: -accs[a])
    # Tied arms (the same held-out accuracy) are joined by "=", not ranked by their order in the table.
    return "".join(("" if k == 0 else " = " if accs[a] == accs[ranked[k - 1]] else " > ") + a
                   for k, a in enumerate(ranked))


def report(summary: dict[str, Any], results: dict[str, Any], command: str, seconds: float, plot_path: Path | None,
           referee: str, budget: float, figures: dict[str, Any] | None = None, title: str | None = None,
           about: str = "") -> str:
    arms = list(summary["arms"])
    base = summary["base"]
    money = summary.get("unit") == "cost"
    seeds = sorted({s for a in arms for s in summary["arms"][a]["seeds"]})
    n = len(seeds)
    who = ("the verifier (wrong = hard, no teacher call)" if referee == "verifier" else
           "the oracle's 1-10 judge, every judge call paid, each case judged in both orders (Lion's referee)"
           + ("; once, in the `one-order` arms" if any("one-order" in a for a in arms) else ""))
    lines = [
        f"## {title or _title(summary)}",
        "",
        f"Command: `{command}` ({seconds / 60:.0f} min of runs). Machine: {machine_line(run_commits(results), recorded(results, 'env'), recorded(results, 'kernels', 'not recorded'))}.",
        "",
        *([about, ""] if about else []),
        (f"Every arm gets the same budget of **{budget} paid teacher calls** (bootstrap answers, referee, "
         f"rewrites and answers together)" if not money else
         f"Every arm gets the same budget **in money, {budget:g}**: each paid call (bootstrap answers, referee, "
         "rewrites and answers together) priced by its tokens, the request rendered as an LLM backend sends it and "
         "counted with a real tokenizer (`teacher.options.tokenizer` of the oracle), at the prices of `bench.effect_arms.PRICE_PER_1K`; "
         "*calls spent* and *reach* are in money too")
        + f", enforced by the loop and paced over the rounds; the referee is {who}. "
        f"Held-out accuracy (%) after the last round, mean ± std over {n} seeds ({', '.join(map(str, seeds))}); "
        f"Δ is the paired difference to `{base}` (same seed), mean ± std, and the 95% interval of its mean "
        "(Student's t over the seeds: a lead is told from zero where it excludes 0); *reach* is the calls at which the arm's "
        f"mean accuracy-vs-calls curve first reaches `{base}`'s final accuracy (share of `{base}`'s calls), "
        "and the per-seed shares beside it."
        + (f" An arm named `ARM%P` is ARM given P% of the budget, paced over the same rounds (budget-to-match: "
           f"its Δ says whether that share of the calls buys `{base}`'s accuracy at the full budget)."
           if any("%" in a for a in arms) else ""),
        "",
    ]
    rows = []
    for arm in arms:
        s = summary["arms"][arm]
        calls = mean_std([c for c in s["calls"].values() if c is not None])[0]
        reach = summary.get("mean_reach", {}).get(arm)
        share = summary.get("mean_reach_share", {}).get(arm)
        per_seed = s.get("reach_share", {})
        # Paired figures need `base` run on the same seeds (`--arm loop-warmup` alone has none).
        paired = arm != base and "diff" in s
        spent = f"{calls:.4f}" if money else f"{calls:.0f}"
        reach_txt = "-" if not paired else (f"{reach:.4f}" if money else f"{reach:.0f}") + f" ({100 * share:.0f}%)" \
            if reach is not None else "not reached"
        seeds_txt = "-" if not paired else ", ".join("—" if v is None else f"{100 * v:.0f}%" for v in per_seed.values())
        ahead = "-" if not paired else f"{sum(d > 0 for d in s['diff'].values())}/{len(s['diff'])}"
        rows.append([f"`{arm}`", spent, f"**{_pct(s['acc_ms'])}**",
                     _pts(s["diff_ms"]) if paired else "", _interval(s.get("diff_ci")) if paired else "", ahead,
                     reach_txt, seeds_txt])
    lines += [md_table(["arm", "money spent" if money else "calls spent", "held-out acc", f"Δ vs {base}", "95% interval of Δ", "ahead on seeds",
                        "reach", "reach per seed"],
                       rows), ""]
    lines += ["Per seed, held-out accuracy (%) and the arms' order:", ""]
    lines += [md_table(["seed", *arms, "order"],
                       [[str(sd), *[_one(summary["arms"][a]["acc"].get(sd)) for a in arms], _order(arms, summary, sd)]
                        for sd in seeds]), ""]
    lines += ["Per skill (mean %):", "",
              md_table(["arm", *summary["skills"]],
                       [[f"`{a}`", *[f"{100 * summary['arms'][a]['per_skill'][k][0]:.0f}" for k in summary["skills"]]]
                        for a in arms]), ""]
    if summary.get("equal_examples"):
        ex = summary["equal_examples"]
        lines += [f"Equal examples: accuracy (%) of each arm's mean curve at **{ex:.0f}** training examples (the "
                  "fewest any arm ended with; teacher-answered, or with `generate.self_answers` the student's own "
                  "answers the verifier found right), beside the examples it ended with.", "",
                  md_table(["arm", "examples at the end", f"acc at {ex:.0f} examples"],
                           [[f"`{a}`", f"{summary['example_curves'][a][-1][0]:.0f}",
                             _one(summary["acc_at_equal_examples"].get(a))] for a in arms]), ""]
    lines += _allocation_lines(summary, arms)
    if plot_path is not None:
        lines += ["", f"![accuracy vs paid calls]({plot_path.as_posix()})"]
    return "\n".join(lines)


def _title(summary: dict[str, Any]) -> str:
    k = len(summary["skills"])
    return f"1. Effectiveness at equal cost: the loop vs. uniform expansion ({k} skills)"


# Each configuration's own section heading (the default one is section 1).
TITLES = {
    "effect-10": "1b. Effectiveness at equal cost, 10 skills (chain, sum, mood added)",
    "effect-llm": "1c. Effectiveness at equal cost with the LLM referee paid for",
    "effect-real": "1d. Effectiveness at equal cost with a pretrained student (LoRA)",
    "effect-priced": "1e. Effectiveness at equal cost in money (every call priced by its tokens), 7 skills",
    "effect-10-priced": "1f. Effectiveness at equal cost in money (every call priced by its tokens), 10 skills",
}


def _one(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _allocation_lines(summary: dict[str, Any], arms: list[str]) -> list[str]:
    alloc = summary["allocation"]
    groups = sorted({g for a in arms if a in alloc for g in alloc[a]["groups"]})
    if not groups:
        return []
    lines = ["Where the budget went: new instructions accepted per task over the run (mean over seeds).", "",
             md_table(["arm", *groups, "total"],
                      [[f"`{a}`", *[f"{alloc[a]['total'].get(g, 0):.0f}" for g in groups],
                        f"{sum(alloc[a]['total'].values()):.0f}"] for a in arms if a in alloc]), ""]
    for a in arms:
        if a not in alloc or not any(v is not None for r in alloc[a]["share"] for v in r.values()):
            continue
        rounds = len(alloc[a]["per_round"])
        lines += [f"`{a}` per round: new instructions accepted (the allocation's share · the task's learning "
                  "progress on the cache pool, accuracy points per 100 examples; means over seeds).", "",
                  md_table(["task", *[f"r{i + 1}" for i in range(rounds)]],
                           [[g, *[_cell(alloc[a], i, g) for i in range(rounds)]] for g in groups]), ""]
    return lines


def _cell(a: dict[str, Any], i: int, g: str) -> str:
    n = a["per_round"][i].get(g, 0)
    share, lp = a["share"][i].get(g), a["progress"][i].get(g)
    if share is None or share != share:
        return f"{n:.0f}"
    return f"{n:.0f} ({100 * share:.0f}%" + ("" if lp is None or lp != lp else f" · {lp:.1f}") + ")"


def plot(summary: dict[str, Any], results: dict[str, Any], path: Path, title: str = "") -> Path:
    """Accuracy against paid calls, one thin line per seed and a thick mean line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.4))
    extra = iter(["tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"])
    for arm in summary["arms"]:
        colour = COLOURS.get(arm) or next(extra, "black")
        for runs in results[arm].values():
            ax.plot([p[summary.get("unit", "calls")] for p in runs], [100 * p["acc"] for p in runs], "-", color=colour,
                    alpha=0.25, lw=1)
        curve = summary["curves"][arm]
        ax.plot([x for x, _ in curve], [100 * a for _, a in curve], "o-", color=colour, lw=2.5, label=arm)
    base = summary["arms"].get(summary["base"])
    if base:
        ax.axhline(100 * base["acc_ms"][0], color=COLOURS["uniform"], ls=":", lw=1,
                   label=f"{summary['base']} final")
    ax.set_xlabel("money spent before the round's training (calls priced by their tokens)" if summary.get("unit") == "cost"
                  else "paid teacher calls spent before the round's training")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(f"{title}: accuracy after each round (thin: one seed; thick: mean)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
