from __future__ import annotations

import random
from collections import Counter

from lionloop.plugins.lion import LionOptions, _requests, lionloop_generate
from lionloop.records import Case, Cases, Instruction, Verdict
from lionloop.teacher.requests import Rewrite


class Ctx:
    round = 2

    def rng(self, *parts):  # noqa: ANN002, ANN201
        return random.Random(str(parts))


def _cases(hard: dict[str, int], easy: int) -> Cases:
    def case(task: str, k: int, is_hard: bool) -> Case:
        ins = Instruction(text=f"{task} {k}", task=task, split="cache")
        return Case(ins, "t", "s", Verdict(ins.id, 1, 10.0, 2.0 if is_hard else 10.0, is_hard))

    return Cases(round=1, hard=[case(t, k, True) for t, n in hard.items() for k in range(n)],
                 easy=[case("copy", 100 + k, False) for k in range(easy)])


def test_uncapped_follows_the_hard_cases() -> None:
    pairs = _requests(_cases({"add": 30, "sort": 3}, easy=50), quota=40, per_hard=2, easy_ratio=0.25, ctx=Ctx())
    modes = Counter(r.mode for _, r in pairs)
    assert modes == {"hard": 30, "easy": 10}
    assert Counter(r.task for _, r in pairs if r.mode == "hard")["add"] >= 27
    # Variants move with the round, so next round's siblings are new requests.
    assert {r.variant for _, r in pairs if r.mode == "hard"} <= {2, 3}


def test_task_cap_spreads_the_hard_budget_and_gives_the_rest_to_easy() -> None:
    pairs = _requests(_cases({"add": 30, "sort": 3}, easy=50), quota=40, per_hard=2, easy_ratio=0.25,
                      ctx=Ctx(), max_task_share=0.3)
    hard = Counter(r.task for _, r in pairs if r.mode == "hard")
    assert hard["add"] == 9  # ceil(0.3 x 30 hard slots)
    assert hard["sort"] == 9  # 3 cases, more siblings each to use its share
    assert Counter(r.mode for _, r in pairs)["easy"] == 40 - 18
    assert len({(r.instruction, r.variant) for _, r in pairs}) == len(pairs)  # no request asked twice


def test_few_hard_cases_get_more_siblings_each_to_fill_the_quota() -> None:
    pairs = _requests(_cases({"sort": 5}, easy=4), quota=40, per_hard=2, easy_ratio=0.25, ctx=Ctx())
    hard = [r for _, r in pairs if r.mode == "hard"]
    # 4 easy rewrites, 36 hard: 2 siblings of each of the 5 cases, then 5-6 more each.
    assert len(hard) == 36 and set(Counter(r.instruction for r in hard).values()) == {7, 8}
    # Every (case, variant) is a new request: the first two siblings keep the usual variants.
    assert len({(r.instruction, r.variant) for r in hard}) == 36
    assert {r.variant for r in hard} & {2, 3} == {2, 3} and max(r.variant for r in hard) >= 2000


class Teacher:
    def __init__(self) -> None:
        self.asked: list[Rewrite] = []

    def ask(self, reqs: list[Rewrite]) -> list[object]:
        self.asked += reqs
        return [type("Res", (), {"ok": True, "output": Rewrite.Output(instruction=f"new {r.instruction} {r.mode}",
                                                                         input="")})() for r in reqs]


def test_simpler_below_rewrites_the_hard_cases_of_tasks_the_student_mostly_fails_one_step_simpler() -> None:
    class GenCtx(Ctx):
        max_candidates = 40
        plugin = "lion"

        def __init__(self, simpler_below: float | None) -> None:
            self.opts = LionOptions(simpler_below=simpler_below)

        def options(self) -> LionOptions:
            return self.opts

    def case(task: str, k: int, split: str, right: bool) -> Case:
        ins = Instruction(text=f"{task} {split} {k}", task=task, split=split)
        return Case(ins, "t", "s", Verdict(ins.id, 2, 10.0, 10.0 if right else 2.0, not right))

    # The round's judged cases: on the cache pool add is right 1 in 11 (9%), sort 6 in 10 (60%);
    # count's cases are all train instructions (no cache probe judged); copy is easy train cases.
    cases = Cases(round=2,
                  hard=[case("add", k, "cache", False) for k in range(10)]
                  + [case("sort", k, "cache", False) for k in range(4)] + [case("sort", k, "train", False) for k in range(6)]
                  + [case("count", k, "train", False) for k in range(2)],
                  easy=[case("add", 10, "cache", True)] + [case("sort", 10 + k, "cache", True) for k in range(6)]
                  + [case("copy", k, "train", True) for k in range(20)])
    asked, easy = {}, {}
    for below in (None, 0.5, 0.7):
        teacher = Teacher()
        made = lionloop_generate(cases=cases, teacher=teacher, ctx=GenCtx(below))
        asked[below] = Counter((r.task, r.mode) for r in teacher.asked if r.mode != "easy")
        easy[below] = Counter(r.instruction for r in teacher.asked if r.mode == "easy")
        assert len(made) == len(teacher.asked) == 40
        assert [c.instruction.meta["mode"] for c in made] == [r.mode for r in teacher.asked]
    # Below 0.5 only add goes simpler, below 0.7 both; a task with no judged probe stays as Lion
    # has it, and so do the easy rewrites (the same 10 in every run).
    assert asked[None] == {("add", "hard"): 18, ("sort", "hard"): 10, ("count", "hard"): 2}
    assert asked[0.5] == {("add", "simpler"): 18, ("sort", "hard"): 10, ("count", "hard"): 2}
    assert asked[0.7] == {("add", "simpler"): 18, ("sort", "simpler"): 10, ("count", "hard"): 2}
    assert sum(easy[None].values()) == 10 and easy[None] == easy[0.5] == easy[0.7]
