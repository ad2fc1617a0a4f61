from __future__ import annotations

import pytest

from lionloop.config import TaskConfig
from lionloop.errors import ConfigError, Unsupported
from lionloop.plugin.manager import get_plugin_manager
from lionloop.teacher.requests import Answer, Judge, Rewrite

# The pack as a run gets it: through the plugins' registry, by the name the config uses.
REGISTRY = get_plugin_manager().build_registry()
SkillsPack = REGISTRY.get("task_pack", "skills", "task.pack")
SKILLS = SkillsPack(TaskConfig(), 0).skills()


@pytest.fixture
def pack() -> SkillsPack:
    return SkillsPack(TaskConfig(), seed=0)


@pytest.mark.parametrize(
    ("text", "gold"),
    [("copy abc", "abc"), ("upper abch", "ABCH"), ("shift abh", "bca"), ("reverse abcd", "dcba"),
     ("sort dcab", "abcd"), ("count a in abaca", "3"), ("add 47 85", "132")],
)
def test_oracle_answers(pack: SkillsPack, text: str, gold: str) -> None:
    assert pack.oracle().handle(Answer(instruction=text))["text"] == gold


def test_oracle_judges_exactly_on_1_to_10(pack: SkillsPack) -> None:
    out = pack.oracle().handle(Judge(instruction="reverse abcd", answer_1="dcba", answer_2="dcab"))
    assert out["score_1"] == 10 and 1 <= out["score_2"] <= 8
    out = pack.oracle().handle(Judge(instruction="add 1 2", answer_1="", answer_2="3"))
    assert out["score_1"] == 1 and out["score_2"] == 10


def test_oracle_refuses_foreign_instructions(pack: SkillsPack) -> None:
    with pytest.raises(Unsupported):
        pack.oracle().handle(Answer(instruction="What is the capital of France?"))
    assert pack.verify(pack.make("copy", 1, __import__("random").Random(0)), "x") is False


def test_rewrites_stay_in_skill_and_level(pack: SkillsPack) -> None:
    oracle = pack.oracle()
    for skill in SKILLS:
        ins = pack.make(skill, 3, __import__("random").Random(1))
        hard = oracle.handle(Rewrite(instruction=ins.text, mode="hard", variant=0))["instruction"]
        hard2 = oracle.handle(Rewrite(instruction=ins.text, mode="hard", variant=1))["instruction"]
        easy = oracle.handle(Rewrite(instruction=ins.text, mode="easy"))["instruction"]
        assert hard.split()[0] == easy.split()[0] == skill
        assert pack.level_of(hard) == 3 and pack.level_of(easy) in (1, 5)
        assert hard != hard2 or skill == "add"  # variants differ (tiny add spaces may collide)
        # Deterministic: the same request gives the same sibling.
        assert oracle.handle(Rewrite(instruction=ins.text, mode="hard", variant=0))["instruction"] == hard
        # simpler: the same skill, one level down; level 1 has none lower and stays.
        simpler = oracle.handle(Rewrite(instruction=ins.text, mode="simpler"))["instruction"]
        assert simpler.split()[0] == skill and pack.level_of(simpler) == 2
        low = pack.make(skill, 1, __import__("random").Random(2)).text
        assert pack.level_of(oracle.handle(Rewrite(instruction=low, mode="simpler"))["instruction"]) == 1


def test_the_chat_double_rewrites_by_the_mode_its_prompt_asks_for() -> None:
    """SkillsChat reads the rendered prompt (the mode's rules are in the system message) like the oracle."""
    import json
    import random

    from lionloop.teacher.chat import Prompts
    from lionloop.testing.skills_teacher import SkillsChat

    chat = SkillsChat()
    for skill in SKILLS:
        ins = chat.pack.make(skill, 3, random.Random(1)).text
        level = {mode: chat.pack.level_of(json.loads(chat({"messages": Prompts().messages(
            Rewrite(instruction=ins, task=skill, mode=mode))}))["instruction"]) for mode in ("hard", "easy", "simpler")}
        assert level == {"hard": 3, "easy": level["easy"], "simpler": 2} and level["easy"] in (1, 5), (skill, level)


def test_seeds_and_eval_are_disjoint_balanced_and_stable(pack: SkillsPack) -> None:
    ev = pack.eval_set(20)
    seeds = pack.seeds(30)
    assert not {i.id for i in ev} & {i.id for i in seeds}
    assert len(ev) == 20 * len(SKILLS) and len(seeds) == 30 * len(SKILLS)
    assert all(i.split == "eval" for i in ev) and all(i.split == "train" for i in seeds)
    levels = [i.meta["level"] for i in ev if i.task == "reverse"]
    assert sorted(set(levels)) == [1, 2, 3, 4, 5] and levels.count(1) == levels.count(5)
    assert [i.id for i in SkillsPack(TaskConfig(), seed=0).seeds(30)] == [i.id for i in seeds]
    assert [i.id for i in SkillsPack(TaskConfig(), seed=1).seeds(30)] != [i.id for i in seeds]
    # The eval set does not move with the run seed.
    assert [i.id for i in SkillsPack(TaskConfig(), seed=1).eval_set(20)] == [i.id for i in ev]


def test_unknown_skill_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="task.skills"):
        SkillsPack(TaskConfig(skills=["copy", "juggle"]), seed=0)


def test_judge_scores_come_from_the_packs_public_score(pack: SkillsPack) -> None:
    out = pack.oracle().handle(Judge(instruction="reverse abcd", answer_1="dcba", answer_2="dcab"))
    assert (out["score_1"], out["score_2"]) == (pack.score("dcba", "dcba"), pack.score("dcab", "dcba"))
    assert pack.score(" 132 ", "132") == 10.0 and 1.0 <= pack.score("", "132") <= 8.0


def test_pack_options_are_typed_and_checked() -> None:
    resolved = REGISTRY.resolve("task_pack", "skills", "task.pack", {"eval_seed": "7", "sample_error_rate": 0}, "task.options")
    pack = resolved.build(TaskConfig(), 0)
    assert pack.eval_seed == 7 and pack.sample_error_rate == 0.0 and pack.counterfactual_noise == 0.2
    # Built by hand, the pack checks the config's dict itself.
    assert SkillsPack(TaskConfig(options={"eval_seed": 7}), 0).eval_set(2)[0].id == pack.eval_set(2)[0].id
    for options, message in (({"extra_skill": True}, "task.options.extra_skill: Extra inputs are not permitted"),
                             ({"counterfactual_noise": 2}, "task.options.counterfactual_noise: Input should be less")):
        with pytest.raises(ConfigError, match=f"^{message}"):
            SkillsPack(TaskConfig(options=options), 0)
        with pytest.raises(ConfigError, match=f"^{message}"):
            REGISTRY.resolve("task_pack", "skills", "task.pack", options, "task.options")


def test_a_right_answer_inside_a_chatty_reply_counts_only_where_allowed() -> None:
    strict = SkillsPack(TaskConfig(), 0)
    lenient = SkillsPack(TaskConfig(options={"answer_in_reply": True}), 0)
    add, rev, up = (strict.make(s, 2, __import__("random").Random(1)) for s in ("add", "reverse", "upper"))
    gold = {i.id: strict.solve(i.text) for i in (add, rev, up)}
    for ins in (add, rev, up):
        reply = f"Sure! The answer to '{ins.text}' is {gold[ins.id]}."
        assert strict.verify(ins, reply) is False and lenient.verify(ins, reply) is True
        assert lenient.verify(ins, f"  {gold[ins.id]}\n") is True
    # The last word shaped like the answer decides: an echo of the question with a wrong answer,
    # or a right answer followed by a wrong one, is wrong.
    a, b = add.text.split()[1:]
    assert lenient.verify(add, f"{a} + {b} = {int(a) + int(b) + 1}") is False
    assert lenient.verify(add, f"{gold[add.id]}? No: {int(gold[add.id]) + 1}") is False
