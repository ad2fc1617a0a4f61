"""A 2-round micro loop end to end: what it writes, and that it is consistent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import pool_rows

from lionloop.inspect.status import run_status as status
from lionloop.loop.runner import resume


def test_micro_loop_figures(micro_run: Path) -> None:
    st = status(micro_run)
    r1, r2 = st["rounds"]
    assert r1["finished"] and r2["finished"] and r2["stop_reason"] == "max_rounds"
    for r in (r1, r2):
        assert 0.0 <= r["eval_accuracy"] <= 1.0
        assert set(r["eval_per_skill"]) == {"copy", "reverse", "add"}
        assert r["hard"] + r["easy"] > 0
        assert {"imitate", "evaluate", "discriminate", "decide"} <= set(r["seconds"])
    # Round 1 generated and curated; the last round skips both (no data nobody trains on).
    assert r1["candidates"] > 0 and 0 < r1["accepted"] <= r1["candidates"]
    assert r1["candidates"] == r1["accepted"] + sum(r1["dedup_rejected"].values())
    assert r2["candidates"] == 0 and "generate" not in r2["seconds"]
    assert st["bootstrap"]["seeds"] == 18 and st["bootstrap"]["cache"] == 18
    assert st["bootstrap"]["teacher_calls"] == 36
    assert st["teacher_calls"]["repaid"] == 0
    # Replies per request type, per round and over the run; the oracle's always parse.
    replies = st["teacher_replies"]
    assert {"answer", "judge", "rewrite"} <= set(replies)
    assert replies["judge"]["requests"] == sum(r["teacher_replies"].get("judge", {}).get("requests", 0)
                                              for r in (r1, r2))
    for row in replies.values():
        assert row["requests"] == row["parsed"] + row["rejected"] + row["parse_failures"] + row["failures"]
        assert row["parse_failure_rate"] == 0.0
    # The training loss and what the trainer saw, per round.
    for r in (r1, r2):
        t = r["train"]
        assert t["train_loss"] > 0 and t["losses"] and t["prompt_format"] == "plain"
        assert t["truncated_rows"] == 0 and t["tokens_per_s"] > 0
    assert r1["train"]["train_loss"] > r2["train"]["train_loss"]


def test_pool_lineage_and_splits(micro_run: Path) -> None:
    rows = pool_rows(micro_run, "SELECT id, origin, parent_id, round_born, split FROM instructions")
    by_id = {r[0]: r for r in rows}
    born = [r for r in rows if r[1] == "lion"]
    assert born and all(r[3] == 1 and r[4] == "train" for r in born)
    for r in born:
        parent = by_id[r[2]]
        assert parent[4] != "eval"  # eval is never a generation seed
    # Every train instruction has a training row; eval and cache instructions have none.
    trained = {r[0] for r in pool_rows(micro_run, "SELECT DISTINCT instruction_id FROM examples")}
    assert trained == {r[0] for r in rows if r[4] == "train"}
    # Every pool instruction has a teacher answer and an embedding in the index.
    answered = {r[0] for r in pool_rows(micro_run, "SELECT instruction_id FROM responses WHERE role='teacher'")}
    assert answered >= {r[0] for r in rows if r[4] != "eval"}
    import faiss

    from lionloop.stores.vectors import to_id

    index = faiss.read_index(str(micro_run / "index.faiss"))
    assert sorted(to_id(x) for x in faiss.vector_to_array(index.id_map)) == sorted(by_id)


def test_candidates_are_accounted_for(micro_run: Path) -> None:
    cands = pool_rows(micro_run, "SELECT id, status, reason FROM candidates WHERE round = 1")
    accepted = {c[0] for c in cands if c[1] == "accepted"}
    assert accepted == {r[0] for r in pool_rows(micro_run, "SELECT id FROM instructions WHERE origin='lion'")}
    assert all(c[2] for c in cands if c[1] != "accepted")  # every rejection has a reason
    assert {c[1] for c in cands} <= {"accepted", "rejected", "failed"}


def test_checkpoints_events_and_resume_of_a_finished_run(micro_run: Path) -> None:
    assert (micro_run / "student" / "round-1" / "config.json").exists()
    assert (micro_run / "student" / "round-2" / "config.json").exists()
    events = [json.loads(line) for line in (micro_run / "events.jsonl").read_text().splitlines()]
    started = [(e["round"], e["stage"]) for e in events if e["event"] == "stage_start"]
    assert started[:3] == [(0, "bootstrap"), (1, "imitate"), (1, "evaluate")]
    before = pool_rows(micro_run, "SELECT COUNT(*) FROM instructions")
    _, final = resume(micro_run)  # already finished: nothing runs, nothing changes
    assert final["stop_reason"] == "max_rounds"
    assert pool_rows(micro_run, "SELECT COUNT(*) FROM instructions") == before


class Boom:
    """A third-party generator that always raises."""

    from lionloop.plugin.hookspecs import hookimpl

    @hookimpl
    def lionloop_generate(self, cases, teacher, ctx):  # noqa: ANN001, ANN201
        raise RuntimeError("kaboom")


class Foreign:
    """A generator asking the oracle something outside its domain: the failure is recorded."""

    from lionloop.plugin.hookspecs import hookimpl

    @hookimpl
    def lionloop_generate(self, cases, teacher, ctx):  # noqa: ANN001, ANN201
        from lionloop.teacher.requests import Answer

        (res,) = teacher.ask([Answer(instruction="What is the capital of France?")])
        assert not res.ok
        return []


class Echo:
    """A generator whose candidate repeats the user's own rewrite prompt (teacher.prompts_dir), as a
    small real teacher does with the prompt it was sent."""

    from lionloop.plugin.hookspecs import hookimpl

    @hookimpl
    def lionloop_generate(self, cases, teacher, ctx):  # noqa: ANN001, ANN201
        from lionloop.records import Candidate, Instruction

        return [Candidate(instruction=Instruction(text="Invent a riddle about penguins wearing tuxedos"),
                          generator="echo")]


@pytest.mark.slow
def test_plugin_that_raises_is_reported_by_name_and_pool_stays_consistent(tmp_path: Path) -> None:
    from conftest import micro_config

    from lionloop.loop.graph import build_graph
    from lionloop.loop.runtime import Runtime
    from lionloop.plugin.manager import get_plugin_manager

    prompts = tmp_path / "prompts"  # the user's own rewrite prompt: its wording is an echo too
    prompts.mkdir()
    (prompts / "rewrite.j2").write_text(
        "{% block user %}Invent a riddle about penguins wearing tuxedos, then {{ instruction }}{% endblock %}")
    cfg = micro_config(tmp_path, teacher={"prompts_dir": str(prompts)}, generate={"max_new_per_round": 20, "generators": {
        "boom": {"share": 0.4}, "lion": {"share": 0.4}, "foreign": {"share": 0.1}, "echo": {"share": 0.1}}})
    pm = get_plugin_manager(extra=[("boom", Boom()), ("foreign", Foreign()), ("echo", Echo())])
    rt = Runtime(cfg=cfg, run_dir=tmp_path, run_id="boom-run", pm=pm)
    final = build_graph().invoke({"run_id": "boom-run", "round": 1}, {"recursion_limit": 100}, context=rt)
    rt.close()
    assert final["stop_reason"] == "max_rounds"
    metrics = json.loads(pool_rows(tmp_path, "SELECT metrics FROM rounds WHERE round = 1")[0][0])
    assert metrics["generate"]["plugin_errors"] == {"boom": "RuntimeError: kaboom"}
    echoes = metrics["generate"]["by_generator"].pop("echo")  # one per group the generator ran for
    assert metrics["generate"]["by_generator"] == {"lion": 8, "foreign": 0}
    assert {r[0] for r in pool_rows(tmp_path, "SELECT DISTINCT origin FROM instructions")} == {"seed", "lion"}
    rows = pool_rows(tmp_path, "SELECT status, reason FROM candidates WHERE generator = 'echo'")
    assert len(rows) == echoes >= 1
    assert all(st == "rejected" and "echoes the prompt" in why and "penguins" in why for st, why in rows)
    # A generator's failed teacher request is recorded with its reason, not lost.
    (fail,) = pool_rows(tmp_path, "SELECT item_id, reason FROM failures WHERE stage = 'generate'")
    assert fail[0].startswith("foreign/answer/") and "unsupported" in fail[1] and "France" in fail[1]
    assert metrics["generate"]["teacher_failures"] == 1


@pytest.mark.slow
def test_uniform_case_selection_judges_nothing(tmp_path: Path) -> None:
    from conftest import micro_config

    from lionloop.loop.runner import start

    out, final = start(micro_config(tmp_path / "u", generate={"case_selection": "uniform", "max_new_per_round": 20}))
    assert final["stop_reason"] == "max_rounds"
    assert pool_rows(out, "SELECT COUNT(*) FROM verdicts") == [(0,)]
    st = status(out)
    assert "discriminate" not in st["rounds"][0]["teacher_by_stage"]  # no judge call paid
    assert st["rounds"][0]["accepted"] > 0
    # Parents are pool instructions (train or cache), never eval.
    parents = pool_rows(out, "SELECT p.split FROM instructions c JOIN instructions p ON p.id = c.parent_id")
    assert parents and {p[0] for p in parents} <= {"train", "cache"}


@pytest.mark.slow
def test_accepted_cap_fixes_the_data_budget(tmp_path: Path) -> None:
    from conftest import micro_config

    from lionloop.loop.runner import start

    out, _ = start(micro_config(tmp_path / "cap", generate={"max_new_per_round": 20, "max_accepted_per_round": 5}))
    r1 = status(out)["rounds"][0]
    assert r1["accepted"] == 5
    assert r1["dedup_rejected"].get("over_budget", 0) == r1["candidates"] - 5 - sum(
        v for k, v in r1["dedup_rejected"].items() if k != "over_budget")
    # Over-budget candidates were never answered by the teacher.
    assert r1["teacher_by_stage"]["curate"]["calls"] == 5


class Picky:
    """A generator that makes one candidate from the referee's cases and raises on the fill's."""

    from lionloop.plugin.hookspecs import hookimpl

    @hookimpl
    def lionloop_generate(self, cases, teacher, ctx):  # noqa: ANN001, ANN201
        from lionloop.records import Candidate

        if any(c.verdict.hard is None for c in cases.hard):  # the fill: pool instructions nobody judged
            raise RuntimeError("no verdict")
        case = (cases.hard or cases.easy)[0]
        return [Candidate(instruction=case.instruction, generator="picky")]


@pytest.mark.slow
@pytest.mark.parametrize("fill", ["uniform", "group"])
def test_a_generator_raising_while_filling_keeps_what_it_made_before(tmp_path: Path, fill: str) -> None:
    """generate.fill runs a generator a second time; if that raises, the error is reported by name
    and the candidates of its first pass still reach the curate stage."""
    from conftest import micro_config

    from lionloop.loop.graph import build_graph
    from lionloop.loop.runtime import Runtime
    from lionloop.plugin.manager import get_plugin_manager

    cfg = micro_config(tmp_path, generate={"max_new_per_round": 40, "fill": fill, "generators": {"picky": {"share": 1.0}}},
                       judge={"max_cases": 2, "last_round": False},
                       stop={"max_rounds": 2, "max_teacher_calls": 200, "stop_when_no_hard": False})
    pm = get_plugin_manager(extra=[("picky", Picky())])
    rt = Runtime(cfg=cfg, run_id="picky-run", run_dir=tmp_path, pm=pm)
    build_graph().invoke({"run_id": "picky-run", "round": 1}, {"recursion_limit": 100}, context=rt)
    rt.close()
    metrics = json.loads(pool_rows(tmp_path, "SELECT metrics FROM rounds WHERE round = 1")[0][0])
    assert metrics["generate"]["plugin_errors"] == {"picky": "RuntimeError (filling): no verdict"}
    made = metrics["generate"]["by_generator"]["picky"]
    # One candidate from the judged cases of each group that has any (the generator runs per group).
    judged_groups = pool_rows(tmp_path, "SELECT COUNT(DISTINCT i.task) FROM verdicts v JOIN instructions i"
                                        " ON i.id = v.instruction_id WHERE v.round = 1 AND v.hard IS NOT NULL")[0][0]
    assert judged_groups >= 1 and made == judged_groups
    assert metrics["generate"]["filled"] == {"picky": 0}
    assert metrics["curate"]["candidates"] == made
