"""The figures' arithmetic against hand-computed cases: accuracy, Lion's relative score with
win/tie/loss, and the LLM referee's agreement with a verifier; then judge.mode verifier and both in
a real micro loop, their figures recomputed from what the pool holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import micro_config, pool_rows

from lionloop.config import parse_config
from lionloop.loop.referee import referee_doubt
from lionloop.loop.scoring import (
    ACCURACY,
    RELATIVE,
    accuracy,
    agreement,
    mcnemar_exact,
    paired_difference,
    relative_score,
    resolve_scoring,
)
from lionloop.records import Verdict


def v(iid: str, t: float | None, s: float | None, hard: bool | None) -> Verdict:
    return Verdict(iid, 1, t, s, hard)


def test_accuracy_counts_only_checkable_rows() -> None:
    got = accuracy([("a", True), ("a", False), ("b", True), ("b", None), ("c", None)])
    assert got == {"overall": round(2 / 3, 4), "per_skill": {"a": 0.5, "b": 1.0}, "n": 3}


def test_paired_difference_by_hand_and_mirrored() -> None:
    a = {"1": True, "2": True, "3": True, "4": False, "5": False, "6": None, "7": True}
    b = {"1": True, "2": False, "3": False, "4": True, "5": False, "6": True}  # "7": not asked of b
    p = paired_difference(a, b)
    assert (p["n"], p["both"], p["a_only"], p["b_only"], p["neither"]) == (5, 1, 2, 1, 1)
    assert p["a"] == 3 / 5 and p["b"] == 2 / 5 and p["diff"] == pytest.approx(0.2)
    lo, hi = p["interval_95"]
    assert -1 <= lo < 0.2 < hi <= 1  # five pairs: the interval holds zero
    q = paired_difference(b, a)  # the other way round: the same interval, mirrored
    assert q["diff"] == pytest.approx(-0.2) and q["interval_95"] == pytest.approx([-hi, -lo])
    assert p["p_mcnemar"] == q["p_mcnemar"] == 1.0  # 2 against 1: no evidence either way
    assert paired_difference({"1": None}, {"1": True})["interval_95"] is None


def test_mcnemar_exact_is_the_two_sided_binomial_test() -> None:
    from scipy.stats import binomtest

    for b, c in ((0, 0), (3, 0), (10, 4), (4, 10), (25, 12), (60, 61)):
        expect = binomtest(min(b, c), b + c, 0.5).pvalue if b + c else 1.0
        assert mcnemar_exact(b, c) == pytest.approx(expect, rel=1e-9), (b, c)


def test_paired_interval_covers_the_true_difference_at_its_level() -> None:
    """Simulated pairs of correlated verdicts (two students agree on most instructions): the interval
    holds the true difference ~95% of the time. Ignoring the pairing (Newcombe's unpaired interval)
    would hold it ~99.9% of the time, 1.6x as wide: the pairing is what lets a small gain show."""
    import random

    rng = random.Random(0)
    cells = (0.45, 0.15, 0.05, 0.35)  # both right, only A, only B, neither: A − B = +0.10
    hits, widths = 0, []
    for _ in range(1000):
        a, b = {}, {}
        for k in range(150):
            u = rng.random()
            a[str(k)], b[str(k)] = (u < cells[0] + cells[1]), (u < cells[0] or cells[0] + cells[1] <= u < 1 - cells[3])
        lo, hi = paired_difference(a, b)["interval_95"]
        hits += lo <= 0.10 <= hi
        widths.append(hi - lo)
    assert 0.93 <= hits / 1000 <= 0.975
    assert sum(widths) / len(widths) < 0.16


def test_relative_score_by_hand() -> None:
    # Judged: (teacher, student) = (9, 6) x, (8, 8) y, (7, 9) y; identical answers on z: no scores.
    verdicts = [v("1", 9, 6, True), v("2", 8, 8, False), v("3", 7, 9, False), v("4", None, None, False),
                v("5", None, None, None)]  # a failed judgement
    tasks = {"1": "x", "2": "y", "3": "y", "4": "z", "5": "x"}
    got = relative_score(verdicts, tasks)
    # The identical pair adds the judged items' mean teacher score, (9 + 8 + 7) / 3 = 8, to both sides.
    assert got["overall"] == round((6 + 8 + 9 + 8) / (9 + 8 + 7 + 8), 4)  # 31 / 32 = 0.9688
    assert got["per_skill"] == {"x": round(6 / 9, 4), "y": round(17 / 15, 4), "z": 1.0}
    assert (got["wins"], got["ties"], got["losses"]) == (1, 2, 1)  # 3 beats 7; 8 = 8 and the identical pair
    assert (got["n"], got["identical"], got["unjudged"]) == (4, 1, 1)
    assert got["teacher_mean"] == 8.0 and got["student_mean"] == round(23 / 3, 3)


def test_relative_score_of_only_identical_answers_is_one() -> None:
    assert relative_score([v("1", None, None, False)], {"1": "x"})["overall"] == 1.0


def test_agreement_by_hand() -> None:
    llm = [
        v("a", 10, 2, True),   # hard, verifier: wrong  -> true positive
        v("b", 10, 3, True),   # hard, verifier: wrong  -> true positive
        v("c", 10, 9, True),   # hard, verifier: right  -> false positive
        v("d", 10, 10, False),  # easy, verifier: wrong -> false negative (a lenient referee)
        v("e", 9, 9, False),   # easy, verifier: right  -> true negative
        v("f", None, None, False),  # identical answers: easy without a call, not the referee's call
        v("g", None, None, None),   # a failed judgement
        v("h", 10, 1, True),   # the verifier cannot check it
    ]
    right = {"a": False, "b": False, "c": True, "d": False, "e": True, "f": True, "g": False, "h": None}
    got = agreement(llm, right)
    assert (got["tp"], got["fp"], got["fn"], got["tn"]) == (2, 1, 1, 1)
    assert got["n"] == 5 and got["agree"] == 3
    assert got["agreement"] == 0.6          # (2 + 1) / 5
    assert got["precision"] == round(2 / 3, 4)  # of 3 called hard, 2 are wrong
    assert got["recall"] == round(2 / 3, 4)     # of 3 wrong, 2 were called hard
    assert (got["identical"], got["unchecked"]) == (1, 1)


def test_agreement_without_calls_has_no_ratios() -> None:
    got = agreement([v("f", None, None, False)], {"f": True})
    assert got["n"] == 0 and got["agreement"] is got["precision"] is got["recall"] is None


@pytest.mark.parametrize(("scoring", "verifier", "referee", "metric"), [
    ("auto", True, False, ACCURACY),  # the skills pack verifies
    ("verifier", True, False, ACCURACY),
    ("referee", False, True, RELATIVE),
    ("both", True, True, ACCURACY),
])
def test_scoring_resolution(scoring: str, verifier: bool, referee: bool, metric: str) -> None:
    from lionloop.plugin.manager import get_plugin_manager

    cfg = parse_config({"evaluate": {"scoring": scoring}})
    pack = get_plugin_manager().build_registry().get("task_pack", "skills", "task.pack")(cfg.task, 0)
    got = resolve_scoring(cfg, pack)
    assert (got.verifier, got.referee, got.metric) == (verifier, referee, metric)


# -- judge.mode in a real loop ------------------------------------------------------------------


def _verdicts(run: Path, rnd: int) -> list[dict]:
    return [dict(r) for r in pool_rows(run, "SELECT * FROM verdicts WHERE round = ?", rnd, named=True)]


@pytest.mark.slow
def test_judge_mode_verifier_and_both_in_a_micro_loop(tmp_path: Path) -> None:
    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start
    from lionloop.plugin.manager import get_plugin_manager

    pack = get_plugin_manager().build_registry().get("task_pack", "skills", "task.pack")(
        micro_config(tmp_path).task, 0)

    # verifier: no judge call; hard exactly where the student's answer is wrong.
    out, _ = start(micro_config(tmp_path / "verifier", judge={"mode": "verifier"}, stop={"max_rounds": 1}))
    st = run_status(out)
    r1 = st["rounds"][0]
    assert "discriminate" not in r1["teacher_by_stage"]  # LLM2LLM's rule costs no teacher call
    rows = _verdicts(out, 1)
    student = dict(pool_rows(out, "SELECT instruction_id, text FROM responses WHERE role='student' AND round=1"))
    texts = dict(pool_rows(out, "SELECT id, text FROM instructions"))
    wrong = {iid for iid in student if iid in {r["instruction_id"] for r in rows}
             and student[iid] != pack.solve(texts[iid])}
    assert {r["instruction_id"] for r in rows if r["hard"] == 1} == wrong and r1["hard"] == len(wrong) > 0
    assert all(r["raw"] in ("verifier: right", "verifier: wrong") for r in rows)
    assert r1["judge_mode"] == "verifier" and r1["agreement"] is None
    # The verifier checks the cache probes itself: the bootstrap pays for the train seeds alone,
    # and the unanswered probes are judged all the same.
    boot = st["bootstrap"]
    assert boot["cache_unanswered"] == boot["cache"] == 18
    assert pool_rows(out, "SELECT COUNT(*) FROM llm_cache WHERE stage = 'bootstrap'")[0][0] == boot["seeds"]
    probes = {i for (i,) in pool_rows(out, "SELECT id FROM instructions WHERE split = 'cache'")}
    answered = {i for (i,) in pool_rows(out, "SELECT instruction_id FROM responses WHERE role = 'teacher'")}
    assert not probes & answered and probes <= {r["instruction_id"] for r in rows if r["hard"] is not None}

    # both: the oracle referee decides; its calls are audited against the verifier, per round.
    out, _ = start(micro_config(tmp_path / "both", judge={"mode": "both"}, stop={"max_rounds": 1}))
    r1 = run_status(out)["rounds"][0]
    a = r1["agreement"]
    rows = _verdicts(out, 1)
    called = [r for r in rows if r["hard"] is not None and r["teacher_score"] is not None]
    audit = [(bool(r["hard"]), r["raw"].endswith("verifier: wrong")) for r in called]
    assert a["n"] == len(called) > 0
    assert a["tp"] == sum(h and w for h, w in audit) and a["tn"] == sum(not h and not w for h, w in audit)
    assert a["agree"] == a["tp"] + a["tn"] and a["agreement"] == round(a["agree"] / a["n"], 4)
    assert a["identical"] == sum(1 for r in rows if r["hard"] == 0 and r["teacher_score"] is None)
    # The oracle judges exactly (any miss scores 2+ below), so it agrees with the exact verifier.
    assert a["agreement"] == 1.0 and r1["judge_mode"] == "both"
    metrics = json.loads(pool_rows(out, "SELECT metrics FROM rounds WHERE round = 1")[0][0])
    assert metrics["referee"]["agreement"] == a
    assert not _notices(out)


class Lenient:
    """A referee backend that finds both answers fine (8 and 8): what a small real judge did with
    a tiny student's wrong answers (SmolLM2-135M called all of them easy). A scripted stand-in: the
    real one needs the vLLM sidecar and minutes per round, and its leniency is not guaranteed."""

    from lionloop.plugin.hookspecs import hookimpl

    @hookimpl
    def lionloop_register(self, registry):  # noqa: ANN001, ANN201
        from lionloop.teacher.client import Reply
        from lionloop.teacher.requests import Judge
        from plugins.oracle_backend import OracleBackend

        class LenientBackend(OracleBackend):
            name = "lenient"

            def complete(self, requests, attempt):  # noqa: ANN001, ANN201
                for i, req in enumerate(requests):
                    if isinstance(req, Judge):
                        yield i, Reply(output={"explanation": "both fine", "score_1": 8, "score_2": 8})
                    else:
                        yield from ((i, reply) for _, reply in super().complete([req], attempt))

        registry.add_backend("lenient", LenientBackend)


@pytest.mark.slow
def test_a_referee_the_verifier_finds_no_better_than_chance_is_reported(tmp_path: Path) -> None:
    """judge.mode both: when the verifier agrees with fewer than half of the referee's calls, the
    round says so in one line (events.jsonl, the console), with the figures and the way out."""
    from lionloop.loop.graph import build_graph
    from lionloop.loop.runtime import Runtime
    from lionloop.plugin.manager import get_plugin_manager

    cfg = micro_config(tmp_path, judge={"mode": "both"}, referee={"backend": "lenient"}, stop={"max_rounds": 1})
    rt = Runtime(cfg=cfg, run_id="lenient-run", run_dir=tmp_path, pm=get_plugin_manager(extra=[("lenient", Lenient())]))
    build_graph().invoke({"run_id": "lenient-run", "round": 1}, {"recursion_limit": 100}, context=rt)
    rt.close()
    a = json.loads(pool_rows(tmp_path, "SELECT metrics FROM rounds WHERE round = 1")[0][0])["referee"]["agreement"]
    assert a["tp"] == a["fp"] == 0 and a["fn"] > a["n"] / 2
    assert [m for m in _notices(tmp_path) if "the verifier agrees with" in m] == [
        f"round 1: the verifier agrees with {a['agree']} of the referee's {a['n']} calls (0 called hard, "
        f"{a['fn']} wrong by the verifier): the referee is choosing the hard cases no better than chance; "
        "judge.mode: verifier lets the verifier decide"]
    assert referee_doubt({"n": 3, "agree": 0, "tp": 0, "fp": 0, "fn": 3}) is None  # too few calls to say
    assert referee_doubt({"n": 10, "agree": 5, "tp": 5, "fp": 0, "fn": 5}) is None  # half: not below


def _notices(run_dir: Path) -> list[str]:
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [e["message"] for e in map(json.loads, lines) if e.get("event") == "notice"]
