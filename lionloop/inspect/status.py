"""The one status builder: every figure of a run, read from one snapshot of its pool and its call
cache. `lionloop status`, `lionloop pool stats`, the report and the benchmarks all read it.

Per round (round 0 is bootstrap) it joins what the stages wrote into the round's metrics (eval
accuracy, the generate and curate counts, teacher figures per stage, seconds) with what the
tables hold (instructions born, verdicts); the two views below only choose and name fields.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from lionloop.inspect.liveness import run_state
from lionloop.inspect.snapshot import snapshot
from lionloop.rundir import RunDir
from lionloop.stores.cache import paid_totals
from lionloop.stores.pool import Pool

ACCURACY = "accuracy"  # the metric of rounds that do not name theirs (lionloop.loop.scoring.ACCURACY)

# Per-stage teacher figures in round metrics (lionloop.teacher.client.Teacher.stats); cost is a float.
TEACHER_KEYS = ("calls", "hits", "failures", "requests", "reasks", "prompt_tokens", "completion_tokens", "cost", "saved")
MONEY = ("cost", "saved")  # floats; `saved`: what a batch API's discount saved against the list price


def grouped(pool: Pool, sql: str, params: tuple[Any, ...] = ()) -> dict[str, int]:
    return {str(r[0]): r[1] for r in pool.query(sql, params)}


def teacher_sums(per_stage: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One round's teacher figures summed over its stages: calls, hits, failures, tokens, cost."""
    return {
        "teacher_calls": int(sum(v.get("calls", 0) for v in per_stage.values())),
        "cache_hits": int(sum(v.get("hits", 0) for v in per_stage.values())),
        "teacher_failures": int(sum(v.get("failures", 0) for v in per_stage.values())),
        "teacher_tokens": {
            "prompt": int(sum(v.get("prompt_tokens", 0) for v in per_stage.values())),
            "completion": int(sum(v.get("completion_tokens", 0) for v in per_stage.values())),
        },
        "teacher_cost": round(float(sum(v.get("cost", 0.0) for v in per_stage.values())), 6),
        "teacher_saving": round(float(sum(v.get("saved", 0.0) for v in per_stage.values())), 6),
    }


REPLY_KEYS = ("requests", "parsed", "rejected", "parse_failures", "failures", "reasks")


def replies_by_kind(per_stage: dict[str, dict[str, Any]], into: dict[str, dict[str, int]] | None = None) -> dict[str, dict[str, Any]]:
    """Teacher replies per request type (judge, rewrite, answer, ...) over stages: requests,
    parsed, rejected (read but failing the request's check, e.g. a rewrite repeating its
    original), parse failures (unreadable after the re-asks), other failures, re-asks, and the
    parse-failure rate among the replies that came back (failures of transport excluded)."""
    out: dict[str, dict[str, Any]] = into if into is not None else {}
    for v in per_stage.values():
        for kind, c in (v.get("kinds") or {}).items():
            row = out.setdefault(kind, dict.fromkeys(REPLY_KEYS, 0))
            for k in REPLY_KEYS:
                row[k] += int(c.get(k) or 0)
    for row in out.values():
        came_back = row["parsed"] + row["rejected"] + row["parse_failures"]
        row["parse_failure_rate"] = round(row["parse_failures"] / came_back, 4) if came_back else None
    return out


def instruction_counts(pool: Pool) -> dict[str, Any]:
    """The instruction counts status shows, from one scan of the table (six GROUP BY scans took
    8 s of `pool stats` at a million instructions): totals by split, by round born, origin and task
    (eval excluded), generated train instructions by task and by round and group."""
    totals: dict[str, dict[Any, int]] = defaultdict(lambda: defaultdict(int))
    born_by_group: dict[int, dict[str, int]] = defaultdict(dict)
    n = 0
    for split, origin, task, born, group, count in pool.query(
            "SELECT split, origin, task, round_born, CASE WHEN origin != 'seed' AND split = 'train'"
            " THEN COALESCE(json_extract(meta, '$.group'), task) END, COUNT(*) FROM instructions GROUP BY 1, 2, 3, 4, 5"):
        n += count
        totals["by_split"][str(split)] += count
        if split != "eval":
            totals["by_round_born"][born] += count
            totals["by_origin"][str(origin)] += count
            totals["by_task"][str(task)] += count
        if origin != "seed" and split == "train":
            totals["generated_by_task"][str(task)] += count
            per = born_by_group[born]
            per[str(group)] = per.get(str(group), 0) + count
    out: dict[str, Any] = {k: {str(x): totals[k][x] for x in sorted(totals[k])}
                           for k in ("by_split", "by_round_born", "by_origin", "by_task", "generated_by_task")}
    out["instructions"] = n
    out["born_by_group"] = born_by_group
    return out


def build(pool: Pool, run_dir: RunDir, cfg: Any = None, run_id: str | None = None) -> dict[str, Any]:
    """Every figure of a run from an open pool (inside the caller's snapshot).

    `cfg` and `run_id` (from `RunDir.read()`) add the run's identity and its call-cache totals;
    without them (a pool read on its own) those parts are left out.
    """
    metrics = {r["round"]: r for r in pool.rounds()}
    judged = {
        r["round"]: dict(r)
        for r in pool.query(
            # judged: decided hard or easy; a failed judge call is unjudged, never judged
            "SELECT round, SUM(hard IS NOT NULL) AS judged, SUM(hard = 1) AS hard, SUM(hard = 0) AS easy,"
            " SUM(hard IS NULL) AS unjudged FROM verdicts GROUP BY round"
        )
    }
    # Candidate counts from the table, for rounds whose curate stage has not run (a crash); only
    # those rounds' rows are read (all of them took seconds at a million candidates).
    uncurated = [r for r, row in metrics.items() if "curate" not in row["metrics"]]
    table: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in pool.query("SELECT round, status, reason, COUNT(*) AS n FROM candidates WHERE round > ?"
                        + (f" OR round IN ({','.join('?' * len(uncurated))})" if uncurated else "")
                        + " GROUP BY 1, 2, 3", (max(metrics, default=-1), *uncurated)):
        t = table[r["round"]]
        t["candidates"] += r["n"]
        if r["status"] == "accepted":
            t["accepted"] += r["n"]
        elif r["status"] != "pending":
            t[(r["reason"] or r["status"]).split(":")[0]] += r["n"]
    ins = instruction_counts(pool)
    born = ins["by_round_born"]
    born_by_group = ins["born_by_group"]
    teacher: dict[str, float] = defaultdict(int)
    by_stage: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(int))
    rejections: dict[str, int] = defaultdict(int)
    replies: dict[str, dict[str, Any]] = {}
    rounds = []
    size = 0
    for rnd in sorted(set(metrics) | set(judged) | set(table) | {int(k) for k in born}):
        row = metrics.get(rnd, {})
        m = row.get("metrics", {})
        per_stage = m.get("teacher", {})
        for stage, v in per_stage.items():
            for k in TEACHER_KEYS:
                x = float(v.get(k) or 0) if k in MONEY else int(v.get(k) or 0)
                teacher[k] += x
                by_stage[stage][k] += x
        size += born.get(str(rnd), 0)
        if "curate" in m:
            cur = m["curate"]
            cand, acc, rej = cur.get("candidates", 0), cur.get("accepted", 0), dict(cur.get("rejected", {}))
        else:
            t = dict(table.get(rnd, {}))
            cand, acc = t.pop("candidates", 0), t.pop("accepted", 0)
            rej = t
        for k, v in rej.items():
            rejections[k] += v
        replies_by_kind(per_stage, replies)
        j = judged.get(rnd, {})
        hard, easy = j.get("hard") or 0, j.get("easy") or 0
        ref = m.get("referee") or {}
        rounds.append({
            "round": rnd,
            "finished": row.get("finished") is not None,
            "born": born.get(str(rnd), 0),
            "pool_size": size,
            "judged": j.get("judged") or 0,
            "hard": hard,
            "easy": easy,
            "unjudged": j.get("unjudged") or 0,
            "hard_ratio": round(hard / (hard + easy), 4) if hard + easy else None,
            "referee": m.get("referee"),
            "judge_mode": ref.get("mode"),  # None: nobody judged this round (judge.last_round: false)
            "agreement": ref.get("agreement"),
            "judge_position": ref.get("position"),  # the judge's position bias
            **eval_figures(m.get("eval", {})),
            "eval_per_skill": m.get("eval", {}).get("per_skill", {}),
            "eval_methods": m.get("eval", {}).get("methods", {}),
            "generated": m.get("generate", {}).get("candidates", 0),
            # Per generator: candidates from pool instructions the referee did not judge (generate.fill).
            "filled": m.get("generate", {}).get("filled") or {},
            "candidates": cand,
            "accepted": acc,
            "rejected": dict(sorted(rej.items())),
            "accepted_by_generator": m.get("curate", {}).get("by_generator", {}),
            # Accepted with the verifier-checked student's answer, no teacher call (generate.self_answers).
            "self_answered": m.get("curate", {}).get("self_answered", 0),
            # Where the round's data went (per task or cluster) and why: the allocation's shares and
            # each group's learning progress, and the budget pacing (None where not used).
            "accepted_by_group": m.get("curate", {}).get("by_group") or born_by_group.get(rnd, {}),
            "allocation": m.get("allocation"),
            "pacing": m.get("pacing"),
            **teacher_sums(per_stage),
            "teacher_by_stage": per_stage,
            "teacher_replies": replies_by_kind(per_stage),
            "seconds": m.get("seconds", {}),
            "work_seconds": m.get("work_seconds", {}),
            "train": m.get("train", {}),
            **({"train_roles": m["train_roles"]} if m.get("train_roles") else {}),
            "plugin_errors": m.get("generate", {}).get("plugin_errors", {}),
            "stop_reason": m.get("stop_reason"),
            "bootstrap": m.get("bootstrap", {}),
        })
    stages = pool.query("SELECT round, stage FROM stages ORDER BY finished DESC LIMIT 1")
    out: dict[str, Any] = {
        "run_dir": str(run_dir),
        "last_stage": dict(stages[0]) if stages else None,
        "rounds": rounds,
        **{k: ins[k] for k in ("instructions", "by_split", "by_round_born", "by_origin", "by_task",
                               "generated_by_task")},
        "examples": pool.query("SELECT COUNT(*) FROM examples")[0][0],
        "examples_by_kind": grouped(pool, "SELECT kind, COUNT(*) FROM examples GROUP BY kind ORDER BY kind"),
        "verdicts": grouped(
            pool,
            "SELECT CASE hard WHEN 1 THEN 'hard' WHEN 0 THEN 'easy' ELSE 'unjudged' END AS h,"
            " COUNT(*) FROM verdicts GROUP BY h ORDER BY h",
        ),
        "rejections": dict(sorted(rejections.items())),
        "teacher_replies": dict(sorted(replies.items())),
        "teacher": {k: round(v, 6) if k in MONEY else v for k, v in ((k, teacher.get(k, 0)) for k in TEACHER_KEYS)},
        "teacher_by_stage": {s: {k: round(x, 6) if k in MONEY else x for k, x in v.items()}
                             for s, v in sorted(by_stage.items())},
    }
    if cfg is not None and run_id is not None:
        out["run_id"] = run_id
        out["name"] = cfg.name
        out["calls"] = paid_totals(run_dir.cache_path(cfg), run_id)
        out["budget"] = {"calls": cfg.stop.max_teacher_calls, "cost": cfg.stop.max_teacher_cost}
    return out


def eval_figures(ev: dict[str, Any]) -> dict[str, Any]:
    """A round's held-out figures by name: the primary one (`eval_score`, named by `eval_metric`),
    the verifier's accuracy and the referee's relative score (None where not measured). Rounds
    written before metrics had names were scored by accuracy."""
    metric = ev.get("metric", ACCURACY) if ev else None
    acc = ev.get("accuracy", {}).get("overall") if "accuracy" in ev else ev.get("overall") if metric == ACCURACY else None
    n = ev.get("accuracy", {}).get("n") if "accuracy" in ev else ev.get("n") if metric == ACCURACY else None
    return {"eval_metric": metric, "eval_score": ev.get("overall"), "eval_accuracy": acc, "eval_n": n,
            "eval_relative": ev.get("referee")}


def status_view(full: dict[str, Any]) -> dict[str, Any]:
    """`lionloop status --json`: the run's identity, bootstrap, rounds 1.. and pool totals."""
    boot = next((r for r in full["rounds"] if r["round"] == 0), None)
    keep = ("round", "finished", "eval_metric", "eval_score", "eval_accuracy", "eval_n", "eval_relative", "eval_per_skill",
            "judge_mode", "agreement", "judge_position", "candidates", "accepted", "teacher_calls",
            "cache_hits", "teacher_failures", "teacher_tokens", "teacher_cost", "teacher_saving", "teacher_by_stage",
            "teacher_replies", "seconds", "work_seconds", "train", "train_roles", "plugin_errors", "stop_reason",
            "accepted_by_group", "self_answered", "allocation", "pacing", "filled")
    rounds = []
    for r in full["rounds"]:
        if r["round"] == 0:
            continue
        ref = r["referee"] or {}
        rounds.append({
            **{k: r[k] for k in keep if k in r},
            # The referee's own figures; None where the round was not judged (uniform selection,
            # or a last round left unjudged).
            "hard": ref.get("hard"),
            "easy": ref.get("easy"),
            # Cases the referee could judge with a call (judge.max_cases or budget_share); None: every one.
            "judge_sample": ref.get("sample"),
            # Whether that sample led with the cache probes (judge.probes_first, `auto` decided per round).
            "judge_probes_first": ref.get("probes_first"),
            "candidates": r["generated"],
            "dedup_rejected": r["rejected"],
        })
    return {
        "run_id": full.get("run_id"),
        "run_dir": full["run_dir"],
        "name": full.get("name"),
        "last_stage": full["last_stage"],
        "state": full.get("state"),
        "bootstrap": {**(boot or {}).get("bootstrap", {}),
                      **{k: (boot or {}).get(k, 0) for k in ("teacher_calls", "cache_hits", "teacher_failures")},
                      "teacher_tokens": (boot or {}).get("teacher_tokens", {"prompt": 0, "completion": 0}),
                      "teacher_cost": (boot or {}).get("teacher_cost", 0.0),
                      "teacher_saving": (boot or {}).get("teacher_saving", 0.0)},
        "rounds": rounds,
        "teacher_calls": full.get("calls"),
        "budget": full.get("budget"),  # stop.max_teacher_calls and max_teacher_cost (None: none)
        # Per request type over the whole run: how many replies could be read (parse-failure rate).
        "teacher_replies": full.get("teacher_replies", {}),
        "pool": {"by_split": full["by_split"], "by_origin": full["by_origin"], "examples": full["examples"]},
    }


def stats_view(full: dict[str, Any]) -> dict[str, Any]:
    """`lionloop pool stats --json`: counts by round (bootstrap included), split, origin, task, kind."""
    keep = ("round", "born", "pool_size", "judged", "hard", "easy", "unjudged", "hard_ratio", "eval_metric",
            "eval_score", "eval_accuracy", "eval_relative", "agreement", "candidates", "accepted", "rejected",
            "teacher_calls")
    known = [r["round"] for r in full["rounds"]]
    return {
        "run_dir": full["run_dir"],
        **{k: full[k] for k in ("instructions", "by_split", "by_round_born", "by_origin", "by_task",
                                 "examples_by_kind", "verdicts")},
        "rounds": [{k: r[k] for k in keep} for r in full["rounds"]],
        "last_round": known[-1] if known else None,
        **{k: full[k] for k in ("rejections", "teacher", "teacher_by_stage")},
        "teacher_replies": full.get("teacher_replies", {}),
    }


def run_figures(run_dir: Path) -> dict[str, Any]:
    """Every figure of a run directory (`build` with the run's identity and call-cache totals),
    read-only: what the benchmarks read."""
    rd = RunDir(run_dir)
    cfg, run_id = rd.read()
    with snapshot(run_dir) as pool:
        out = build(pool, rd, cfg, run_id)
        out["state"] = run_state(rd, pool)
    return out


def run_status(run_dir: Path) -> dict[str, Any]:
    """`lionloop status --json` of a run directory, read-only (safe while the run writes)."""
    return status_view(run_figures(run_dir))
