"""The four generator plugins (rationale, socratic, disco, finetune_cot) against the oracle's ground
truth: the pack's new skills and oracle requests, each plugin's candidates and rows, the student
chains of evaluation, the weighted trainer, and (slow) all four in a loop."""

from __future__ import annotations

import json
import random
import re
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import micro_config, pool_rows

from lionloop.config import TaskConfig, TeacherConfig
from lionloop.errors import ConfigError, Unsupported
from lionloop.loop.generation import BudgetedTeacher
from lionloop.plugin.context import RoundContext
from lionloop.plugin.hookspecs import hookimpl
from lionloop.plugin.manager import get_plugin_manager
from lionloop.plugin.plan import GeneratorSpec, plan_generators
from lionloop.records import Case, Cases, Example, Instruction, Verdict
from lionloop.stores.cache import CallCache
from lionloop.stores.pool import Pool
from lionloop.student.prompt import format_prompt
from lionloop.teacher.client import Reply, Teacher
from lionloop.teacher.requests import Answer

# The built-in plugins as a run reaches them: through the plugin manager and its registry.
PM = get_plugin_manager()
REGISTRY = PM.build_registry()
rationale, socratic, disco, finetune_cot, skills, trl = (
    PM.get_plugin(n) for n in ("rationale", "socratic", "disco", "finetune_cot", "skills", "trl")
)
SkillsPack = REGISTRY.get("task_pack", "skills", "task.pack")
OracleBackend = REGISTRY.get("backend", "oracle", "teacher.backend")
ALL_SKILLS, EXTRA_SKILLS, SKILLS, explain = skills.ALL_SKILLS, skills.EXTRA_SKILLS, skills.SKILLS, skills.explain

EXTRA = ["chain", "sum", "mood", "add", "reverse"]
PLUGINS = {"rationale": rationale, "socratic": socratic, "disco": disco, "finetune_cot": finetune_cot}


# -- the pack's new skills and oracle requests ------------------------------------------------------


def test_new_skills_are_opt_in_and_the_default_pack_is_unchanged() -> None:
    assert SkillsPack(TaskConfig(), 0).skills() == list(SKILLS)
    assert not set(EXTRA_SKILLS) & set(SKILLS)
    assert SkillsPack(TaskConfig(options={"extra_skills": True}), 0).skills() == list(ALL_SKILLS)
    assert SkillsPack(TaskConfig(skills=["mood", "sum"]), 0).skills() == ["mood", "sum"]
    with pytest.raises(ConfigError, match="task.skills"):
        SkillsPack(TaskConfig(skills=["chain", "juggle"]), 0)


@pytest.mark.parametrize("skill", sorted(EXTRA_SKILLS))
def test_new_skills_levels_and_answers(skill: str) -> None:
    pack = SkillsPack(TaskConfig(skills=[skill]), 0)
    for level in range(1, 6):
        ins = pack.make(skill, level, random.Random(level))
        assert pack.level_of(ins.text) == level
        assert pack.verify(ins, pack.solve(ins.text)) is True
        assert pack.verify(ins, pack.solve(ins.text) + "x") is False
    ev, seeds = pack.eval_set(10), pack.seeds(10)
    assert len(ev) == len(seeds) == 10 and not {i.id for i in ev} & {i.id for i in seeds}


def _resolve(question: str, answers: list[str]) -> str:
    return re.sub(r"#(\d+)", lambda m: answers[int(m[1]) - 1], question)


@pytest.mark.parametrize("text", ["chain reverse shift abcd", "chain sort shift sort hdbca", "sum 12 34 56", "sum 1 2 3 4"])
def test_decompositions_have_checkable_steps(text: str) -> None:
    """Each sub-question, its #k references filled in, is an instance the pack itself solves."""
    pack = SkillsPack(TaskConfig(skills=["chain", "sum"]), 0)
    steps = pack.steps(text)
    assert len(steps) == len(text.split()) - 2  # one op or one addition per step
    answers: list[str] = []
    for q, a in steps:
        assert pack.solve(_resolve(q, answers)) == a
        answers.append(a)
    assert answers[-1] == pack.solve(text)
    assert pack.steps("reverse abc") == [("reverse abc", "cba")]  # one-step problems


def test_rationales_end_in_the_gold_answer_in_every_style() -> None:
    pack = SkillsPack(TaskConfig(options={"extra_skills": True}), 0)
    for skill in ALL_SKILLS:
        for level in (1, 5):
            ins = pack.make(skill, level, random.Random(level))
            for style in (0, 1):
                r, a = explain(*pack.parse(ins.text), style=style)
                assert a == pack.solve(ins.text) and r and "\n" not in r
    assert explain(*pack.parse("sum 12 34 56"))[0] == "12+34=46; 46+56=102"
    assert explain(*pack.parse("sum 12 34 56"), style=1)[0] == "34+56=90; 12+90=102"
    assert explain(*pack.parse("add 47 85"))[0] == "7+5=12; 4+8+1=13"


def test_sampled_rationales_err_with_temperature_deterministically() -> None:
    pack = SkillsPack(TaskConfig(skills=["sum", "chain"], options={"sample_error_rate": 0.5}), 0)
    texts = [pack.make(s, lvl, random.Random(lvl)).text for s in ("sum", "chain") for lvl in range(1, 6)]

    def wrong(temperature: float) -> int:
        return sum(pack.sample_rationale(t, k, temperature)["answer"] != pack.solve(t) for t in texts for k in range(20))

    assert wrong(0.0) == 0
    assert 0.2 * 200 < wrong(1.0) < 0.8 * 200  # about half at T=1 with rate 0.5
    assert wrong(0.4) < wrong(1.0)
    assert pack.sample_rationale(texts[0], 3, 0.7) == pack.sample_rationale(texts[0], 3, 0.7)
    # Several samples of one question use more than one correct style (diverse reasoning).
    styles = {pack.sample_rationale("sum 12 34 56", k, 0.0)["rationale"] for k in range(10)}
    assert styles == {"12+34=46; 46+56=102", "34+56=90; 12+90=102"}


def test_counterfactual_edits_flip_the_label_except_the_lazy_ones() -> None:
    pack = SkillsPack(TaskConfig(skills=["mood"], options={"counterfactual_noise": 0.25}), 0)
    assert pack.labels("mood") == ["negative", "neutral", "positive"] and pack.labels("sum") is None
    flipped = lazy = 0
    for k in range(150):
        text = pack.make("mood", 1 + k % 5, random.Random(k)).text
        label = pack.solve(text)
        for target in {"negative", "neutral", "positive"} - {label}:
            out = pack.counterfactual(text, target, 0)
            assert out["span"] in text
            new = text.replace(out["span"], out["replacement"], 1)
            if pack.solve(new) == target:
                flipped += 1
            else:
                lazy += 1
                assert out["replacement"] == out["span"] or pack.solve(new) == label
    assert 0.15 < lazy / (flipped + lazy) < 0.35
    with pytest.raises(Unsupported):
        pack.counterfactual("sum 1 2 3", "positive", 0)


def test_a_resumed_stage_charges_its_generators_for_the_calls_paid_before_the_crash(tmp_path: Path) -> None:
    """The replies a generate stage paid before a crash come back as `resumed` after it: the
    generator's cap counts them, so it affords what the first attempt did (a second ask, another
    group's, would otherwise get the crashed attempt's calls on top)."""

    pack = SkillsPack(TaskConfig(skills=["copy"]), 0)
    backend = OracleBackend(TeacherConfig(), SimpleNamespace(task_pack=pack))
    cache = CallCache(tmp_path / "cache.sqlite")
    asks = [Answer(instruction=f"copy {w}", task="copy") for w in ("ab", "cd", "ef")]
    first = BudgetedTeacher(Teacher(backend, cache, "run").at(1, "generate"), 8, "lion")
    first.ask(asks)  # paid, then the process is killed
    again = BudgetedTeacher(Teacher(backend, cache, "run").at(1, "generate"), 8, "lion")
    results = again.ask(asks)
    assert all(r.ok for r in results) and cache.total_paid("run") == 3  # nothing paid twice
    assert again.left == first.left == 5
    elsewhere = BudgetedTeacher(Teacher(backend, cache, "run").at(2, "generate"), 8, "lion")
    elsewhere.ask(asks)  # hits from another round's stage were never this stage's to pay
    assert elsewhere.left == 8


# -- each plugin on its own, with the oracle teacher ------------------------------------------------


def _env(tmp_path: Path, name: str, options: dict[str, Any] | None = None, pack_options: dict[str, Any] | None = None,
         limit: int = 1000, quota: int = 12) -> tuple[RoundContext, Any, SkillsPack]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = micro_config(
        tmp_path, task={"skills": EXTRA, "options": pack_options or {}},
        generate={"max_new_per_round": quota, "generators": {name: {"options": options or {}}}},
    )
    pack = SkillsPack(cfg.task, cfg.seed)
    plan = plan_generators(cfg.generate, get_plugin_manager().generator_specs())
    ctx = RoundContext(round=1, config=cfg, run_dir=tmp_path, task_pack=pack, pool=Pool(tmp_path / "pool.sqlite"),
                       plugin=name, max_candidates=quota, generators={g.name: g for g in plan})
    backend = OracleBackend(TeacherConfig(), SimpleNamespace(task_pack=pack))
    teacher = Teacher(backend, CallCache(tmp_path / "cache.sqlite"), "t")
    return ctx, BudgetedTeacher(teacher, limit, name), pack


def _cases(pack: SkillsPack, skills: list[str], n: int = 4) -> Cases:
    hard = []
    for skill in skills:
        for k in range(n):
            ins = pack.make(skill, 1 + k % 5, random.Random(f"{skill}{k}"), split="cache")
            hard.append(Case(ins, pack.solve(ins.text), "?", Verdict(ins.id, 1, 10.0, 2.0, True)))
    return Cases(round=1, hard=hard)


def _rows(mod: Any, ctx: RoundContext, cand: Any, pack: SkillsPack) -> list[Any]:
    ins = cand.instruction
    prompt = mod.__dict__.get("lionloop_student_prompt", lambda **_: None)(instruction=ins, ctx=ctx) or format_prompt(ins)
    return mod.lionloop_format_examples(instruction=ins, answer=pack.solve(ins.text), generator=mod.NAME, ctx=ctx, prompt=prompt)


def test_rationale_candidates_and_rows_match_the_oracle(tmp_path: Path) -> None:
    ctx, teacher, pack = _env(tmp_path, "rationale", {"alpha": 0.7})
    cases = _cases(pack, ["sum", "chain", "add"])
    out = rationale.lionloop_generate(cases=cases, teacher=teacher, ctx=ctx)
    assert len(out) == 12 and teacher.left == 1000 - 36  # rewrite + answer + rationale each
    parents = {c.instruction.id: c.instruction for c in cases.hard}
    for cand in out:
        ins = cand.instruction
        assert ins.origin == "rationale" and ins.split == "train" and ins.parent_id in parents
        assert pack.parse(ins.text)[0].name == parents[ins.parent_id].task  # a sibling of the same skill
        assert ins.meta["rationale"] == explain(*pack.parse(ins.text))[0] and "reject" not in ins.meta
        label, why = _rows(rationale, ctx, cand, pack)
        assert (label.kind, label.weight, why.kind, why.weight) == ("label", 0.7, "rationale", pytest.approx(0.3))
        assert label.prompt == "[label] " + format_prompt(ins) and label.completion == pack.solve(ins.text)
        assert why.prompt == "[rationale] " + format_prompt(ins) and why.completion == ins.meta["rationale"]
    # The label prefix is the student's prompt for every instruction while the plugin is on.
    seed = pack.make("add", 1, random.Random(0))
    assert rationale.lionloop_student_prompt(instruction=seed, ctx=ctx) == "[label] " + format_prompt(seed)


def test_rationale_joint_mode_and_disagreement(tmp_path: Path) -> None:
    ctx, teacher, pack = _env(tmp_path, "rationale", {"joint": True})
    cand = rationale.lionloop_generate(cases=_cases(pack, ["sum"], 1), teacher=teacher, ctx=ctx)[0]
    assert rationale.lionloop_student_prompt(instruction=cand.instruction, ctx=ctx) is None
    (row,) = _rows(rationale, ctx, cand, pack)
    answer, why = row.completion.split("\n")
    assert row.kind == "answer_rationale" and answer == pack.solve(cand.instruction.text) and why == cand.instruction.meta["rationale"]
    # A rationale whose own label is not the teacher's answer is rejected by the plugin's filter.
    bad = cand.instruction.__class__(**{**cand.instruction.__dict__, "meta": {**cand.instruction.meta, "reject": "x"}})
    assert rationale.lionloop_filter_candidate(candidate=cand.__class__(bad, "rationale"), ctx=ctx) == "x"
    assert rationale.lionloop_filter_candidate(candidate=cand, ctx=ctx) is None


class ThinkingOracle(OracleBackend):
    """The oracle replying to answers as a reasoning model does, in text after a thinking block (no
    reasoning model runs here; the Teacher client, cache and parser it goes through are the real ones)."""

    def complete(self, requests: Any, attempt: int) -> Any:
        for i, reply in super().complete(requests, attempt):
            req = requests[i]
            if isinstance(req, Answer) and reply.output is not None:
                reply = Reply(text=f"<think>\nWorking out {req.instruction!r}:\nstep by step.\n</think>\n\n"
                                   f"{reply.output['text']}")
            yield i, reply


def test_rationale_from_a_reasoning_teachers_thinking_costs_no_call_of_its_own(tmp_path: Path) -> None:
    """`source: thinking`: the teacher's thinking before its answer is the rationale: two calls a
    sibling (rewrite, answer), the rows as with an asked rationale; a teacher that does not think
    has every sibling rejected, by name, at the same two calls."""
    ctx, plain, pack = _env(tmp_path, "rationale", {"source": "thinking"})
    backend = ThinkingOracle(TeacherConfig(), SimpleNamespace(task_pack=pack))
    teacher = BudgetedTeacher(Teacher(backend, CallCache(tmp_path / "thinking.sqlite"), "t"), 1000, "rationale")
    out = rationale.lionloop_generate(cases=_cases(pack, ["sum", "chain", "add"]), teacher=teacher, ctx=ctx)
    assert len(out) == 12 and teacher.left == 1000 - 24  # rewrite + answer each; no Rationale request
    for cand in out:
        ins = cand.instruction
        assert "reject" not in ins.meta and ins.meta["rationale"] == f"Working out {ins.text!r}: step by step."
        assert ins.meta["rationale_answer"] == pack.solve(ins.text)
        label, why = _rows(rationale, ctx, cand, pack)
        assert why.kind == "rationale" and why.completion == ins.meta["rationale"] and label.completion == pack.solve(ins.text)
    unthinking = rationale.lionloop_generate(cases=_cases(pack, ["sum"]), teacher=plain, ctx=ctx)
    assert len(unthinking) == 4 and plain.left == 1000 - 8
    assert all("came without thinking" in c.instruction.meta["reject"] for c in unthinking)


def test_socratic_steps_and_rows_match_the_oracle(tmp_path: Path) -> None:
    ctx, teacher, pack = _env(tmp_path, "socratic")
    out = socratic.lionloop_generate(cases=_cases(pack, ["sum", "chain"]), teacher=teacher, ctx=ctx)
    assert len(out) == 8
    for cand in out:
        ins = cand.instruction
        gold = pack.steps(ins.text)
        assert [tuple(s) for s in ins.meta["steps"]] == gold and len(gold) >= 2
        rows = _rows(socratic, ctx, cand, pack)
        kinds = [r.kind for r in rows]
        assert kinds == ["answer", "decompose"] + ["solve"] * len(gold)
        assert rows[0].prompt == format_prompt(ins) and rows[0].completion == pack.solve(ins.text)
        assert rows[1].prompt == "[decompose] " + format_prompt(ins)
        assert rows[1].completion == " ; ".join(q for q, _ in gold)
        for j, row in enumerate(rows[2:]):
            assert row.prompt.startswith("[solve] " + format_prompt(ins))
            assert row.prompt.endswith(f"{gold[j][0]} =\n") and row.completion == gold[j][1]
            assert all(f"{q} = {a}\n" in row.prompt for q, a in gold[:j])


def test_finetune_cot_keeps_only_rationales_that_reach_the_answer(tmp_path: Path) -> None:
    ctx, teacher, pack = _env(tmp_path, "finetune_cot", {"samples": 6, "temperature": 1.0},
                              pack_options={"sample_error_rate": 0.5})
    out = finetune_cot.lionloop_generate(cases=_cases(pack, ["sum", "chain", "add"]), teacher=teacher, ctx=ctx)
    assert len(out) == 12 and teacher.left == 1000 - 12 * 8
    wrong = sum(c.instruction.meta["wrong"] for c in out)
    assert wrong > 0  # the oracle erred sometimes: the filter had something to filter
    for cand in out:
        ins = cand.instruction
        gold = pack.solve(ins.text)
        kept = ins.meta.get("cot", [])
        assert len(kept) + ins.meta["wrong"] <= 6 and len(set(kept)) == len(kept)
        for r in kept:  # every kept rationale is one the oracle writes for a correct answer
            assert r in {explain(*pack.parse(ins.text), style=s)[0] for s in (0, 1)}
        if not kept:
            assert "no sampled rationale" in finetune_cot.lionloop_filter_candidate(candidate=cand, ctx=ctx)
            continue
        rows = _rows(finetune_cot, ctx, cand, pack)
        assert [r.kind for r in rows] == ["answer"] + ["cot"] * len(kept)
        for row in rows[1:]:
            assert row.prompt == "[cot] " + format_prompt(ins) and row.completion.endswith(f" => {gold}")
            assert finetune_cot.final_answer(row.completion) == gold


def test_finetune_cot_rejects_when_every_sample_is_wrong(tmp_path: Path) -> None:
    ctx, teacher, pack = _env(tmp_path, "finetune_cot", {"samples": 3, "temperature": 1.0},
                              pack_options={"sample_error_rate": 1.0})
    out = finetune_cot.lionloop_generate(cases=_cases(pack, ["sum"], 3), teacher=teacher, ctx=ctx)
    assert out and all(c.instruction.meta["cot"] == [] and c.instruction.meta["wrong"] == 3 for c in out)
    assert all(finetune_cot.lionloop_filter_candidate(candidate=c, ctx=ctx) for c in out)


@pytest.mark.parametrize("critic", ["teacher", "pack"])
def test_disco_keeps_only_real_flips(tmp_path: Path, critic: str) -> None:
    ctx, teacher, pack = _env(tmp_path, "disco", {"critic": critic, "per_case": 2}, pack_options={"counterfactual_noise": 0.3},
                              quota=40)
    cases = _cases(pack, ["mood", "sum"], 10)  # sum has no labels: not consumed
    out = disco.lionloop_generate(cases=cases, teacher=teacher, ctx=ctx)
    assert len(out) == 20 and all(c.instruction.task == "mood" for c in out)
    paid = 1000 - teacher.left
    assert paid == 20 + (sum(1 for c in out if not _lazy(c)) if critic == "teacher" else 0)
    parents = {c.instruction.id: c for c in cases.hard}
    kept = rejected = 0
    for cand in out:
        ins, parent = cand.instruction, parents[cand.instruction.parent_id]
        assert ins.meta["label"] == parent.teacher_answer != ins.meta["target"]
        reason = disco.lionloop_filter_candidate(candidate=cand, ctx=ctx)
        if reason is None:
            kept += 1
            assert pack.solve(ins.text) == ins.meta["target"]  # the label really flipped
            (row,) = _rows(disco, ctx, cand, pack)
            assert (row.kind, row.completion) == ("counterfactual", ins.meta["target"])
        else:
            rejected += 1
            assert reason in ("copied_span", "overlap_span", "overlap_text") or reason.startswith("critic")
            assert reason.startswith("critic") == (pack.solve(ins.text) != ins.meta["target"] and not _lazy(cand))
    assert kept > 10 and rejected > 0


def _lazy(cand: Any) -> bool:
    return cand.instruction.meta.get("reject", "").split(":")[0] in ("copied_span", "overlap_span", "overlap_text")


def test_disco_overlap_heuristics() -> None:
    ins = Instruction(text="x", input="the cat sat on the warm mat today")
    defaults = disco.DiscoOptions()
    assert disco.apply_edit(ins, "dog", "cat", defaults)[2] == "span_not_in_text"
    assert disco.apply_edit(ins, "warm", "Warm", defaults)[2] == "copied_span"
    assert disco.apply_edit(ins, "the warm mat", "the warm old mat", defaults)[2] == "overlap_span"
    assert disco.apply_edit(ins, "warm", "cold", disco.DiscoOptions(max_text_overlap=0.7))[2] == "overlap_text"
    text, inp, why = disco.apply_edit(ins, "warm", "cold", defaults)
    assert why is None and inp == "the cat sat on the cold mat today" and text == "x"


def test_generators_stay_within_their_teacher_budget(tmp_path: Path) -> None:
    for name, per in (("rationale", 3), ("socratic", 3), ("finetune_cot", 6)):
        ctx, teacher, pack = _env(tmp_path / name, name, limit=10)
        out = PLUGINS[name].lionloop_generate(cases=_cases(pack, ["sum", "chain"]), teacher=teacher, ctx=ctx)
        assert len(out) == 10 // per and teacher.left == 10 - per * (10 // per)


def test_options_that_change_a_candidates_cost_change_the_plan_and_the_budget_check(tmp_path: Path) -> None:
    """`calls_for`: the cost under the run's options, not the spec's default figure, sets the
    paid-call cap, pacing's price and how many siblings a budget of 12 calls buys."""
    cases = (("rationale", {"source": "thinking"}, 2), ("finetune_cot", {"samples": 2}, 4),
             ("mt_cot", {"explanation": "cot"}, 3), ("rationale", {}, 3))
    for n, (name, options, per) in enumerate(cases):
        ctx, teacher, pack = _env(tmp_path / str(n), name, options, limit=12, quota=12)
        planned = ctx.generators[name]
        assert ctx.calls_per_candidate() == planned.calls_per_candidate == per
        assert planned.max_calls == 12 * per
        out = PM.get_plugin(name).lionloop_generate(cases=_cases(pack, ["sum", "chain", "add"]), teacher=teacher, ctx=ctx)
        assert len(out) == 12 // per and teacher.left == 12 - per * (12 // per)


def test_specs_declare_consumed_cases_and_costs() -> None:
    specs = {n: m.lionloop_generator_spec() for n, m in PLUGINS.items()}
    assert all(isinstance(s, GeneratorSpec) for s in specs.values())
    assert specs["disco"].consumes == ("hard", "easy") and specs["rationale"].consumes == ("hard",)
    assert specs["finetune_cot"].calls_per_candidate == 6 and "counterfactual" in specs["disco"].kinds


def test_hooks_stay_silent_for_other_generators_and_when_disabled(tmp_path: Path) -> None:
    ctx, _, pack = _env(tmp_path, "lion")
    ins = pack.make("sum", 2, random.Random(0))
    for mod in PLUGINS.values():
        assert mod.lionloop_format_examples(instruction=ins, answer="1", generator="lion", ctx=ctx, prompt="p") is None
        if hasattr(mod, "lionloop_evaluate_student"):
            assert mod.lionloop_evaluate_student(instructions=[ins], student=None, ctx=ctx) is None
    assert rationale.lionloop_student_prompt(instruction=ins, ctx=ctx) is None


# -- typed options -----------------------------------------------------------------------------------

OPTION_DEFAULTS = {
    "lion": {"per_hard": 2, "easy_ratio": 0.25, "max_task_share": None, "simpler_below": None},
    "rationale": {"alpha": 0.5, "label_prefix": "[label] ", "rationale_prefix": "[rationale] ", "joint": False,
                  "per_case": 1, "source": "ask"},
    "socratic": {"mode": "unified", "decompose_prefix": "[decompose] ", "solve_prefix": "[solve] ", "max_steps": 6,
                 "per_case": 1, "eval_max_new_tokens": 64},
    "disco": {"labels": None, "per_case": 1, "critic": "teacher", "max_span_overlap": 0.6, "max_text_overlap": 0.9},
    "finetune_cot": {"samples": 4, "temperature": 0.7, "cot_prefix": "[cot] ", "per_case": 1, "eval_max_new_tokens": 64},
}


def test_every_builtin_generator_declares_typed_options_with_the_old_defaults() -> None:
    from lionloop import GeneratorOptions

    specs = PM.generator_specs()
    for name, defaults in OPTION_DEFAULTS.items():
        model = specs[name].options
        assert model is not None and issubclass(model, GeneratorOptions), name
        assert model().model_dump() == {"max_calls": None, **defaults}, name
        assert all(f.description for f in model.model_fields.values()), name
        # Each module's docstring lists every option it takes.
        doc = PM.get_plugin(name).__doc__
        assert all(f"  {opt} " in doc for opt in model.model_fields), name


def test_hooks_get_the_validated_options_model(tmp_path: Path) -> None:
    ctx, _, _ = _env(tmp_path, "rationale", {"alpha": 0.7, "per_case": "2"})
    opts = ctx.options()
    assert isinstance(opts, rationale.RationaleOptions) and opts.alpha == 0.7 and opts.per_case == 2
    assert ctx.options_of("rationale") is opts and ctx.options_of("lion") is None


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("lion", {"max_task_shar": 0.25}, "lion.options.max_task_shar: Extra inputs are not permitted"),
        ("lion", {"per_hard": "two"}, "lion.options.per_hard: Input should be a valid integer"),
        ("lion", {"max_calls": -1}, "lion.options.max_calls: Input should be greater than or equal to 0"),
        ("rationale", {"alpha": 1.5}, "rationale.options.alpha: Input should be less than or equal to 1"),
        ("socratic", {"mode": "both"}, "socratic.options.mode: Input should be 'unified' or 'separate'"),
        ("disco", {"critic": "judge"}, "disco.options.critic: Input should be 'teacher' or 'pack'"),
        ("disco", {"labels": ["a", "b"]}, "disco.options.labels: Input should be a valid dictionary"),
        ("finetune_cot", {"samples": 0}, "finetune_cot.options.samples: Input should be greater than or equal to 1"),
    ],
)
def test_bad_generator_options_are_one_config_error_with_their_path(tmp_path: Path, name: str, options: dict,
                                                                     message: str) -> None:
    cfg = micro_config(tmp_path, generate={"generators": {name: {"options": options}}})
    with pytest.raises(ConfigError) as err:
        plan_generators(cfg.generate, PM.generator_specs())
    assert str(err.value).startswith(f"generate.generators.{message}") and "\n" not in str(err.value)


def test_disco_labels_may_be_numbers(tmp_path: Path) -> None:
    ctx, _, _ = _env(tmp_path, "disco", {"labels": {"mood": [0, 1]}})
    assert ctx.options().labels == {"mood": ["0", "1"]}


# -- the generator kit ------------------------------------------------------------------------------


class FailingAnswers:
    """A teacher that fails every `Answer` about an instruction in `fail`, else asks the oracle."""

    def __init__(self, teacher: Any, fail: set[str]) -> None:
        self.teacher, self.fail, self.left = teacher, fail, teacher.left
        self.batches: list[int] = []

    def ask(self, requests: list[Any]) -> list[Any]:
        from lionloop import Result

        self.batches.append(len(requests))
        out = self.teacher.ask(requests)
        return [Result(r.request, error="boom") if r.request.kind == "answer" and r.request.instruction in self.fail
                else r for r in out]


def test_answered_siblings_asks_answer_and_own_requests_in_one_batch_and_drops_failed_answers(tmp_path: Path) -> None:
    from lionloop import Answer, answered_siblings, siblings

    ctx, teacher, pack = _env(tmp_path, "rationale")
    cases = _cases(pack, ["sum", "chain"], 3)
    sibs = siblings(cases, teacher, ctx, 6, 1, rationale.VARIANT_BASE, "x")  # the same (cached) siblings
    failing = FailingAnswers(teacher, {sibs[0][1].text})
    got = answered_siblings(cases, failing, ctx, per_case=1, variant_base=rationale.VARIANT_BASE, origin="x",
                            calls_per_candidate=4,
                            requests=lambda ins: [Answer(instruction=ins.text, task=ins.task)] * 2)
    assert failing.batches == [6, 6 * 3]  # the rewrites, then answer + 2 own requests per sibling
    assert [a.instruction for a in got] == [ins for _, ins in sibs[1:]]
    for a in got:
        assert a.answer == pack.solve(a.instruction.text) and len(a.results) == 2 and all(r.ok for r in a.results)
        assert a.instruction.meta == {"parent_diff": 8.0} and a.instruction.origin == "x"


def test_sibling_requests_cap_per_task_and_variants_per_round() -> None:
    from lionloop import sibling_requests

    class Ctx:
        round = 3

    hard = [Case(Instruction(text=f"{t} {k}", task=t), "t", "s", Verdict("i", 1, 10.0, 2.0, True))
            for t in ("add", "add", "sort") for k in range(2)]
    pairs = sibling_requests(hard, Ctx(), n=10, per_case=2, variant_base=100, max_per_task=3)
    tasks = [r.task for _, r in pairs]
    assert tasks.count("add") == 3 and tasks.count("sort") == 3
    assert {r.variant for _, r in pairs} == {104, 105}  # base + (round - 1) x per_case + k
    assert sibling_requests(hard, Ctx(), n=2, per_case=2)[1][0] is hard[1]  # every case once before any twice


# -- evaluation chains with a scripted student ------------------------------------------------------


class OracleStudent:
    """A perfect student for the plugins' prompt formats (decompose, solve, cot); records calls."""

    def __init__(self, pack: SkillsPack) -> None:
        self.pack = pack
        self.calls: list[tuple[int, int | None]] = []
        self.roles: list[str] = []

    def __call__(self, prompts: list[str], max_new_tokens: int | None = None, role: str = "") -> list[str]:
        self.calls.append((len(prompts), max_new_tokens))
        self.roles.append(role)
        return [self.answer(p) for p in prompts]

    def answer(self, prompt: str) -> str:
        lines = prompt.rstrip("\n").split("\n")
        head, problem = lines[0].split("] ", 1)
        if head == "[decompose":
            return " ; ".join(q for q, _ in self.pack.steps(problem))
        if head == "[cot":
            r, a = explain(*self.pack.parse(problem))
            return f"{r} => {a}"
        answers = [ln.rsplit(" = ", 1)[1] for ln in lines[1:-1]]
        return self.pack.solve(_resolve(lines[-1].removesuffix(" ="), answers))


def test_socratic_chain_evaluation_runs_decomposer_then_solver(tmp_path: Path) -> None:
    ctx, _, pack = _env(tmp_path, "socratic")
    instructions = pack.eval_set(3)
    student = OracleStudent(pack)
    out = socratic.lionloop_evaluate_student(instructions=instructions, student=student, ctx=ctx)
    assert {i.id: pack.solve(i.text) for i in instructions} == out
    longest = max(len(pack.steps(i.text)) for i in instructions)
    assert student.calls[0] == (len(instructions), 64) and len(student.calls) == 1 + longest
    assert set(student.roles) == {""}  # unified mode: one student decomposes and solves
    # A student that cannot decompose gets an empty final answer, not an exception.
    out = socratic.lionloop_evaluate_student(instructions=instructions, student=lambda p, n=None, role="": [""] * len(p),
                                             ctx=ctx)
    assert set(out.values()) == {""}


def test_socratic_separate_mode_routes_decompositions_to_a_decomposer(tmp_path: Path) -> None:
    ctx, teacher, pack = _env(tmp_path, "socratic", options={"mode": "separate"})
    out = socratic.lionloop_generate(cases=_cases(pack, ["chain"]), teacher=teacher, ctx=ctx)
    cand = next(c for c in out if not c.instruction.meta.get("reject"))
    rows = _rows(socratic, ctx, cand, pack)
    assert {r.kind: r.student for r in rows} == {"answer": "", "decompose": "decomposer", "solve": ""}
    student = OracleStudent(pack)
    instructions = pack.eval_set(2)
    socratic.lionloop_evaluate_student(instructions=instructions, student=student, ctx=ctx)
    assert student.roles[0] == "decomposer" and set(student.roles[1:]) == {""}
    # A bad mode is refused with the generator plan, before the run starts (nothing paid).
    with pytest.raises(ConfigError, match=r"^generate\.generators\.socratic\.options\.mode: Input should be 'unified' or 'separate'$"):
        _env(tmp_path / "bad", "socratic", options={"mode": "both"})


def test_finetune_cot_evaluation_reads_the_answer_after_the_arrow(tmp_path: Path) -> None:
    ctx, _, pack = _env(tmp_path, "finetune_cot")
    instructions = pack.eval_set(2)
    out = finetune_cot.lionloop_evaluate_student(instructions=instructions, student=OracleStudent(pack), ctx=ctx)
    assert out == {i.id: pack.solve(i.text) for i in instructions}
    assert finetune_cot.final_answer("no arrow here") == "" and finetune_cot.final_answer("a => b => 7 ") == "7"


# -- the trainer honours kind and weight -----------------------------------------------------------


def test_weighted_row_loss_is_alpha_label_plus_one_minus_alpha_rationale() -> None:
    import torch

    row_weights, weighted_row_loss = trl.row_weights, trl.weighted_row_loss

    per_token = torch.tensor([[1.0, 3.0, 0.0, 0.0], [2.0, 2.0, 2.0, 6.0], [5.0, 5.0, 5.0, 5.0]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])  # row 3: truncated away
    loss = weighted_row_loss(per_token, mask, torch.tensor([0.5, 0.5, 1.0]))
    assert loss.item() == pytest.approx(0.5 * 2.0 + 0.5 * 3.0)  # per-row means, lengths do not matter
    loss = weighted_row_loss(per_token, mask, torch.tensor([0.8, 0.2, 1.0]))
    assert loss.item() == pytest.approx(0.8 * 2.0 + 0.2 * 3.0)
    from lionloop.records import Example

    rows = [Example("a", "p", "c", "label", weight=0.5), Example("a", "q", "r", "rationale", weight=0.5)]
    assert row_weights(rows, {"rationale": 0.0}) == [0.5, 0.0] and row_weights(rows) == [0.5, 0.5]


def test_trainer_raises_lionloop_errors_never_a_bare_value_error(tmp_path: Path) -> None:
    """A bad setting is a ConfigError with its path, a failed training a LionloopError: the CLI
    prints either as one line (no traceback)."""
    from lionloop import LionloopError
    from lionloop.config import StudentConfig, TrainConfig
    from lionloop.student.model import build_tiny_student

    TRLTrainer = REGISTRY.get("trainer", "trl", "train.trainer")
    scfg = StudentConfig(hidden_size=16, num_layers=1, num_heads=2, max_length=32)
    rows = [Example("a", "copy ab\n", "ab", "label"), Example("a", "[r] copy ab\n", "a b", "rationale")]
    with pytest.raises(LionloopError, match="no training rows: the train pool is empty") as err:
        TRLTrainer(TrainConfig(), scfg).train(tmp_path, tmp_path / "out", [], seed=0)
    assert not isinstance(err.value, ConfigError)
    zero = TRLTrainer(TrainConfig(options={"kind_weights": {"label": 0, "rationale": 0}}), scfg)
    with pytest.raises(ConfigError, match=r"^train\.options\.kind_weights: every training row weighs 0$"):
        zero.train(tmp_path, tmp_path / "out", rows, seed=0)
    base = build_tiny_student(tmp_path / "base", scfg, 0)
    bad = TRLTrainer(TrainConfig(steps_per_round=1, options={"optim": "no_such_optimizer"}), scfg)
    with pytest.raises(ConfigError, match=r"^train\.options: TRL's SFTConfig refused it: ") as err:
        bad.train(base, tmp_path / "out", rows, seed=0)
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()
    # Built by hand, the trainer checks the config's options itself.
    with pytest.raises(ConfigError, match=r"^train\.options\.report_to: set by lionloop"):
        TRLTrainer(TrainConfig(options={"report_to": ["wandb"]}), scfg)


@pytest.mark.slow
def test_trainer_weights_change_training_and_stay_deterministic(tmp_path: Path) -> None:
    import torch

    from lionloop.config import StudentConfig, TrainConfig
    from lionloop.records import Example

    TRLTrainer = REGISTRY.get("trainer", "trl", "train.trainer")
    from lionloop.student.model import build_tiny_student, load

    scfg = StudentConfig(hidden_size=32, num_layers=1, num_heads=2, max_length=32)
    base = build_tiny_student(tmp_path / "base", scfg, 0)
    words = ["abc", "bcd", "cde", "def", "efg", "fgh", "ghb", "hab"]
    label = [Example(f"a{i}", f"[label] copy {w}\n", w, "label", weight=0.5) for i, w in enumerate(words)]
    why = [Example(f"a{i}", f"[rationale] copy {w}\n", " ".join(w), "rationale", weight=0.5) for i, w in enumerate(words)]
    trainer = TRLTrainer(TrainConfig(steps_per_round=12, batch_size=8, warmup_steps=1), scfg)
    f1 = trainer.train(base, tmp_path / "w1", label + why, seed=3)
    f2 = trainer.train(base, tmp_path / "w2", label + why, seed=3)
    assert f1["weighted"] and f1["rows"] == 16 and f1["train_loss"] == f2["train_loss"]
    m1, _ = load(tmp_path / "w1")
    m2, _ = load(tmp_path / "w2")
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True))
    # kind_weights 0 leaves the rationale rows out entirely (and the rest then weighs 0.5 each).
    t0 = TRLTrainer(TrainConfig(steps_per_round=12, batch_size=8, warmup_steps=1, options={"kind_weights": {"rationale": 0}}), scfg)
    f3 = t0.train(base, tmp_path / "w3", label + why, seed=3)
    assert f3["rows"] == 8 and f3["train_loss"] != f1["train_loss"]


# -- all four in a loop (slow) --------------------------------------------------------------------


class Recorder:
    """A third-party generator that only consumes easy cases: checks the core honours its spec."""

    seen: list[tuple[int, int]] = []

    @hookimpl
    def lionloop_generator_spec(self) -> GeneratorSpec:
        return GeneratorSpec(consumes=("easy",), calls_per_candidate=1)

    @hookimpl
    def lionloop_generate(self, cases: Cases, teacher: Any, ctx: Any) -> list[Any]:
        Recorder.seen.append((len(cases.hard), len(cases.easy)))
        Recorder.limit = teacher.left
        return []


class BrokenEval:
    """A third-party evaluation method that raises: reported by name, the direct eval stands."""

    @hookimpl
    def lionloop_evaluate_student(self, instructions: list[Instruction], student: Any, ctx: Any) -> dict[str, str]:
        raise RuntimeError("eval boom")



@pytest.fixture(scope="module")
def four_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-round micro loop with the four plugins (and lion) sharing the round's budget."""
    from lionloop.loop.graph import build_graph
    from lionloop.loop.runtime import Runtime
    from lionloop.plugin.manager import get_plugin_manager

    run = tmp_path_factory.mktemp("four")
    gens = {n: {"share": 0.2} for n in PLUGINS}
    gens["lion"] = {"share": 0.1}  # shares sum to at most 1 (they split max_new_per_round)
    gens["recorder"] = {"share": 0.1}
    cfg = micro_config(
        run, task={"seeds_per_skill": 6, "cache_per_skill": 6, "eval_per_skill": 6, "skills": EXTRA},
        student={"hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_length": 96, "max_new_tokens": 8},
        generate={"max_new_per_round": 40, "generators": gens}, stop={"max_rounds": 2},
    )
    Recorder.seen = []
    rt = Runtime(cfg=cfg, run_dir=run, run_id="four", pm=get_plugin_manager(extra=[("recorder", Recorder()), ("brokeneval", BrokenEval())]))
    final = build_graph().invoke({"run_id": "four", "round": 1}, {"recursion_limit": 100}, context=rt)
    rt.close()
    assert final["stop_reason"] == "max_rounds"
    return run


@pytest.mark.slow
def test_each_plugin_adds_rows_to_the_pool_with_its_origin(four_run: Path) -> None:
    pack = SkillsPack(TaskConfig(skills=EXTRA), 0)
    origins = dict(pool_rows(four_run, "SELECT origin, COUNT(*) FROM instructions GROUP BY origin"))
    assert all(origins.get(n, 0) > 0 for n in PLUGINS), origins
    kinds = {(g, k) for g, k in pool_rows(four_run, "SELECT generator, kind FROM examples")}
    assert {("rationale", "label"), ("rationale", "rationale"), ("socratic", "decompose"), ("socratic", "solve"),
            ("disco", "counterfactual"), ("finetune_cot", "cot")} <= kinds
    rows = pool_rows(four_run, "SELECT i.text, i.origin, e.generator, i.meta, e.kind, e.prompt, e.completion, e.weight,"
                       " i.split FROM examples e JOIN instructions i ON i.id = e.instruction_id WHERE i.origin != 'seed'")
    for text, origin, generator, meta, kind, prompt, completion, weight, split in rows:
        meta = json.loads(meta)
        gold = pack.solve(text)
        assert origin == generator and split == "train" and "reject" not in meta
        assert prompt.startswith("[label] ") if kind in ("answer", "label", "counterfactual") else True
        if kind in ("answer", "label", "counterfactual"):
            assert completion == gold
        if kind == "rationale":
            assert completion == explain(*pack.parse(text))[0] and weight == 0.5
        if kind == "decompose":
            assert completion == " ; ".join(q_ for q_, _ in pack.steps(text))
        if kind == "solve":
            assert completion in {a for _, a in pack.steps(text)}
        if kind == "cot":
            assert completion.endswith(f" => {gold}")
        if kind == "counterfactual":
            assert gold == meta["target"] != meta["label"]
    # Every plugin instruction has a teacher answer (curate asked; the cache paid nothing twice).
    answered = {r[0] for r in pool_rows(four_run, "SELECT instruction_id FROM responses WHERE role = 'teacher'")}
    born = {r[0] for r in pool_rows(four_run, "SELECT id FROM instructions WHERE origin IN ('rationale','socratic','disco','finetune_cot')")}
    assert born <= answered


@pytest.mark.slow
def test_socratic_separate_mode_trains_a_decomposer_beside_the_student(tmp_path: Path) -> None:
    """Two models, as in the paper: decompose rows train `student/decomposer/round-N`, the rest
    the main student; the chain evaluation asks the decomposer, then the main student."""
    from lionloop.inspect.status import run_status as status
    from lionloop.loop.runner import start

    cfg = micro_config(
        tmp_path, task={"seeds_per_skill": 6, "cache_per_skill": 6, "eval_per_skill": 4, "skills": ["chain", "sum"]},
        student={"hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_length": 96, "max_new_tokens": 8},
        generate={"max_new_per_round": 12, "generators": {"socratic": {"share": 1.0, "options": {"mode": "separate"}}}},
        stop={"max_rounds": 2, "stop_when_no_hard": False},
    )
    start(cfg)
    roles = dict(pool_rows(tmp_path, "SELECT kind, GROUP_CONCAT(DISTINCT student) FROM examples GROUP BY kind"))
    assert roles["decompose"] == "decomposer" and roles["solve"] == "" and roles["answer"] == ""
    n_decompose = pool_rows(tmp_path, "SELECT COUNT(*) FROM examples WHERE student = 'decomposer'")[0][0]
    n_main = pool_rows(tmp_path, "SELECT COUNT(*) FROM examples WHERE student = ''")[0][0]
    assert n_decompose > 0
    m1, m2 = (json.loads(pool_rows(tmp_path, "SELECT metrics FROM rounds WHERE round = ?", r)[0][0]) for r in (1, 2))
    assert "train_roles" not in m1  # no socratic rows before round 1's curate
    assert m2["train_roles"]["decomposer"]["rows"] == n_decompose and m2["train"]["rows"] == n_main
    assert (tmp_path / "student" / "decomposer" / "round-2" / "config.json").exists()
    assert not (tmp_path / "student" / "decomposer" / "round-1").exists()
    assert m2["eval"]["methods"]["socratic"]["n"] == m2["eval"]["n"] > 0
    assert status(tmp_path)["rounds"][1]["train_roles"]["decomposer"]["rows"] == n_decompose


class BadRole:
    """Seed rows routed to a student role that is not a safe name."""

    @hookimpl
    def lionloop_format_examples(self, instruction: Instruction, answer: str, generator: str, ctx: Any,
                                 prompt: str) -> list[Example]:
        return [Example(instruction.id, prompt, answer, student="../Main")]


def test_a_bad_student_role_ends_the_run_with_its_name_and_keeps_the_pool(tmp_path: Path) -> None:
    from lionloop.errors import PluginError
    from lionloop.loop.graph import build_graph
    from lionloop.loop.runtime import Runtime
    from lionloop.plugin.manager import get_plugin_manager

    rt = Runtime(cfg=micro_config(tmp_path), run_dir=tmp_path, run_id="bad",
                 pm=get_plugin_manager(extra=[("badrole", BadRole())]))
    with pytest.raises(PluginError, match=r"student role '\.\./Main'"):
        build_graph().invoke({"run_id": "bad", "round": 1}, {"recursion_limit": 50}, context=rt)
    rt.close()
    # Bootstrap's rows are committed; nothing was trained or written outside the run's student dir.
    assert pool_rows(tmp_path, "SELECT COUNT(*) FROM examples WHERE student = '../Main'")[0][0] > 0
    assert not (tmp_path / "student" / "round-1").exists() and not (tmp_path.parent / "Main").exists()


def test_pool_written_before_student_roles_opens_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "pool.sqlite"
    with sqlite3.connect(db) as c:  # the examples table as it was before `student` existed
        c.execute("CREATE TABLE examples(id TEXT PRIMARY KEY, instruction_id TEXT NOT NULL, kind TEXT NOT NULL,"
                  " prompt TEXT NOT NULL, completion TEXT NOT NULL, generator TEXT NOT NULL, round INTEGER NOT NULL,"
                  " weight REAL NOT NULL DEFAULT 1.0)")
        c.execute("INSERT INTO examples VALUES ('e1', 'i1', 'answer', 'p', 'c', 'seed', 0, 1.0)")
    pool = Pool(db)
    pool.add_examples([Example("i1", "p2", "c2", "decompose", "socratic", 1, student="decomposer")])
    got = {r[0]: r[1] for r in pool.conn.execute("SELECT prompt, student FROM examples")}
    pool.close()
    assert got == {"p": "", "p2": "decomposer"}


@pytest.mark.slow
def test_loop_metrics_carry_chains_budgets_and_filters(four_run: Path) -> None:
    m = json.loads(pool_rows(four_run, "SELECT metrics FROM rounds WHERE round = 1")[0][0])
    assert set(m["eval"]["methods"]) == {"socratic", "finetune_cot"}
    assert m["eval"]["method_errors"] == {"brokeneval": "RuntimeError: eval boom"} and m["eval"]["n"] > 0
    assert m["eval"]["methods"]["socratic"]["n"] == m["eval"]["n"]
    gen = m["generate"]
    assert gen["plugin_errors"] == {} and gen["by_generator"]["recorder"] == 0
    assert set(gen["calls_by_generator"]) == {"lion", *PLUGINS, "recorder"}
    for name, per in (("rationale", 3), ("socratic", 3), ("finetune_cot", 6)):
        assert gen["calls_by_generator"][name] <= 8 * per  # share 0.2 of 40 = 8 candidates
    # The recorder consumed easy cases only, with its declared budget (4 candidates x 1 call).
    assert Recorder.seen and all(hard == 0 for hard, _ in Recorder.seen) and Recorder.limit == 4
    # The curate stage paid no answers for the plugins that asked them already (cache hits).
    cands = pool_rows(four_run, "SELECT generator, status, reason FROM candidates WHERE round = 1")
    assert {g for g, s, _ in cands if s == "accepted"} >= set(PLUGINS)
    assert all(r for _, s, r in cands if s != "accepted")


# -- the LLM-teacher path: templates rendered, replies parsed, bad replies recorded -----------------


class PluginChat:
    """A scripted chat "LLM" for the plugins' request types, reading the prompts the templates
    render (their fenced blocks), answering with the skills oracle; everything else (answer,
    judge, rewrite) goes to the scripted `SkillsChat`. Kinds in `garbage` get unparseable replies."""

    def __init__(self, garbage: tuple[str, ...] = ()) -> None:
        from lionloop.testing.skills_teacher import SkillsChat

        self.base = SkillsChat()
        self.pack = SkillsPack(TaskConfig(options={"extra_skills": True}), 0)
        self.garbage = garbage
        self.kinds: dict[str, int] = {}

    def __call__(self, body: dict[str, Any]) -> str:
        from lionloop.testing.skills_teacher import fenced_blocks

        rf = body.get("response_format") or {}
        kind = rf.get("json_schema", {}).get("name") if rf.get("type") == "json_schema" else None
        if kind not in ("rationale", "decompose", "cot_sample", "counterfactual"):
            return self.base(body)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if kind in self.garbage:
            return "Sure! Step one, think about it; step two, the answer is probably fine."
        user = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        blocks = fenced_blocks(user)
        if kind == "rationale":
            r, a = explain(*self.pack.parse(blocks["TASK"]))
            return json.dumps({"rationale": r, "answer": a})
        if kind == "decompose":
            steps = self.pack.steps(blocks["PROBLEM"])
            return "Here you go:\n" + json.dumps({"steps": [{"question": q, "answer": a} for q, a in steps]})
        if kind == "cot_sample":
            m = re.search(r"attempt #(\d+)", user)
            return json.dumps(self.pack.sample_rationale(blocks["QUESTION"], int(m[1]) - 1 if m else 0, 1.0))
        target = re.search(r'label of the whole text becomes "([^"]+)"', user)[1]
        m = re.search(r"variation #(\d+)", user)
        return "```json\n" + json.dumps(self.pack.counterfactual(blocks["TEXT"], target, int(m[1]) - 1 if m else 0)) + "\n```"


def _llm_env(tmp_path: Path, name: str, srv: Any, options: dict[str, Any] | None = None) -> tuple[RoundContext, Any, SkillsPack]:
    OpenAIBackend = REGISTRY.get("backend", "openai", "teacher.backend")
    ctx, _, pack = _env(tmp_path, name, options)
    backend = OpenAIBackend(TeacherConfig(backend="openai", model="plugin-chat", base_urls=[srv.base_url],
                                          timeout_s=5.0, max_retries=1, retry_backoff_s=0.01))
    teacher = Teacher(backend, CallCache(tmp_path / "llm-cache.sqlite"), "llm", parse_retries=1).at(1, "generate")
    return ctx, BudgetedTeacher(teacher, 1000, name), pack


LLM_CASES = {"rationale": ["sum", "add"], "socratic": ["sum", "chain"], "finetune_cot": ["sum", "chain"], "disco": ["mood"]}
KIND = {"rationale": "rationale", "socratic": "decompose", "finetune_cot": "cot_sample", "disco": "counterfactual"}


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_llm_path_renders_the_template_and_parses_the_reply(tmp_path: Path, name: str) -> None:
    from lionloop.testing.fault_server import ScriptedServer

    chat = PluginChat()
    with ScriptedServer(responder=chat, keep_bodies=400) as srv:
        ctx, teacher, pack = _llm_env(tmp_path, name, srv, {"samples": 3} if name == "finetune_cot" else None)
        cases = _cases(pack, LLM_CASES[name], 3)
        try:
            out = PLUGINS[name].lionloop_generate(cases=cases, teacher=teacher, ctx=ctx)
        finally:
            teacher.backend.close()
    kind = KIND[name]
    assert chat.kinds.get(kind, 0) > 0
    mine = [b for b in srv.stats.bodies if (b.get("response_format") or {}).get("json_schema", {}).get("name") == kind]
    schema = mine[0]["response_format"]["json_schema"]["schema"]
    assert set(schema["properties"]) == set(PLUGINS[name].__dict__[
        {"rationale": "RationaleOut", "socratic": "DecomposeOut", "finetune_cot": "CotOut", "disco": "CounterfactualOut"}[name]
    ].model_fields)
    user = mine[0]["messages"][-1]["content"]
    assert "<<<" in user and "reply with one json object" in user.lower()  # the fenced template
    assert out and all(c.generator == name for c in out)
    kept = [c for c in out if PLUGINS[name].lionloop_filter_candidate(candidate=c, ctx=ctx) is None]
    assert kept  # parsed replies made usable candidates, checked against the oracle:
    for c in kept:
        ins = c.instruction
        if name == "rationale":
            assert ins.meta["rationale"] == explain(*pack.parse(ins.text))[0]
        elif name == "socratic":
            assert [tuple(s) for s in ins.meta["steps"]] == pack.steps(ins.text)
        elif name == "finetune_cot":
            assert ins.meta["cot"] and all(r in {explain(*pack.parse(ins.text), style=s)[0] for s in (0, 1)} for r in ins.meta["cot"])
        else:
            assert pack.solve(ins.text) == ins.meta["target"]


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_llm_path_bad_replies_are_recorded_not_raised(tmp_path: Path, name: str) -> None:
    from lionloop.testing.fault_server import ScriptedServer

    chat = PluginChat(garbage=(KIND[name],))
    with ScriptedServer(responder=chat) as srv:
        ctx, teacher, pack = _llm_env(tmp_path, name, srv, {"samples": 2} if name == "finetune_cot" else None)
        try:
            out = PLUGINS[name].lionloop_generate(cases=_cases(pack, LLM_CASES[name], 2), teacher=teacher, ctx=ctx)
            stats = teacher._teacher.stats()[(1, "generate")]
        finally:
            teacher.backend.close()
    n_asked = chat.kinds[KIND[name]]
    assert stats["failure_reasons"]["parse"] > 0 and stats["reasks"] > 0  # re-asked once, then recorded
    assert n_asked == 2 * stats["failure_reasons"]["parse"]
    if name == "disco":
        assert out == []  # no usable edit: nothing proposed
        return
    assert out  # the siblings are kept as candidates, each with the reason it is unusable
    reasons = {PLUGINS[name].lionloop_filter_candidate(candidate=c, ctx=ctx) for c in out}
    assert all(r and ("parse:" in r or "no sampled rationale" in r) for r in reasons), reasons


@pytest.mark.slow
def test_llm_path_all_four_in_a_loop_over_a_scripted_server(tmp_path: Path) -> None:
    """The whole loop over HTTP: every request type of the four plugins rendered, sent, parsed."""
    from lionloop.loop.runner import start
    from lionloop.testing.fault_server import ScriptedServer

    chat = PluginChat(garbage=())
    with ScriptedServer(responder=chat) as srv:
        teacher = {"backend": "openai", "model": "plugin-chat", "base_urls": [srv.base_url], "timeout_s": 5.0,
                   "max_retries": 1, "retry_backoff_s": 0.01, "concurrency": 8}
        out, final = start(micro_config(
            tmp_path / "run", teacher=teacher,
            task={"seeds_per_skill": 4, "cache_per_skill": 4, "eval_per_skill": 4, "skills": EXTRA},
            student={"hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_length": 96, "max_new_tokens": 8},
            generate={"max_new_per_round": 20, "generators": {n: {"share": 0.25} for n in PLUGINS}},
        ))
    assert final["stop_reason"] == "max_rounds"
    assert set(chat.kinds) == {"rationale", "decompose", "cot_sample", "counterfactual"}
    assert {"answer", "judge", "rewrite"} <= set(chat.base.kinds)
    origins = dict(pool_rows(out, "SELECT origin, COUNT(*) FROM instructions GROUP BY origin"))
    assert all(origins.get(n, 0) > 0 for n in PLUGINS), origins
