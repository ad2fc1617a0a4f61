"""The survey's later generator/format plugins against ground truth: scott, icl, mt_cot, fu_cot.

The teacher is the skills pack's oracle (an exact expert), so every rationale, perturbed answer
and demonstration is checked against what the pack computes. SCOTT's contrastive decoding is
checked on a real (tiny, randomly initialised) causal LM against the formula, token by token.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import micro_config, pool_rows
from test_generators import EXTRA, _cases, _env, _rows

from lionloop.errors import ConfigError
from lionloop.plugin.manager import get_plugin_manager
from lionloop.plugin.plan import plan_generators
from lionloop.plugins import fu_cot, icl, mt_cot, scott, skills, skills_methods
from lionloop.plugins.skills import LABELS, SkillsPack, explain
from lionloop.student.prompt import format_prompt

PLUGINS = {"scott": scott, "icl": icl, "mt_cot": mt_cot, "fu_cot": fu_cot}


# -- the oracle's new answers -----------------------------------------------------------------------


def test_oracle_perturbed_answers_are_wrong_and_their_rationales_reach_them() -> None:
    pack = SkillsPack(micro_config(Path("/tmp")).task, 0)
    for skill in ("add", "sum", "chain", "reverse", "count", "mood"):
        for level in (1, 3, 5):
            text = pack.make(skill, level, random.Random(f"{skill}{level}")).text
            gold = pack.solve(text)
            wrong = {skills_methods.wrong_answer(pack, skills, text, v) for v in range(3)}
            assert gold not in wrong and wrong
            if skill in LABELS:
                assert wrong <= set(LABELS[skill])
            assert skills_methods.rationale_for(pack, skills, text, gold) == explain(*pack.parse(text))[0]
            for w in wrong:  # the rationale of a wrong answer is a slipped solution that ends in it
                r = skills_methods.rationale_for(pack, skills, text, w)
                assert r != explain(*pack.parse(text))[0]
    with pytest.raises(Exception, match="no rationale"):
        skills_methods.rationale_for(pack, skills, "add 2 2", "999")


# -- scott ------------------------------------------------------------------------------------------


def test_scott_rows_follow_the_factual_and_counterfactual_objectives(tmp_path: Path) -> None:
    ctx, teacher, pack = _env(tmp_path, "scott")
    out = scott.lionloop_generate(cases=_cases(pack, ["sum", "chain", "mood"]), teacher=teacher, ctx=ctx)
    assert len(out) == 12
    # rewrite + answer + 2 rationales each, + a perturbed answer for the 8 unlabelled ones
    assert teacher.left == 1000 - 12 * 4 - 8
    for cand in out:
        ins, meta = cand.instruction, cand.instruction.meta
        gold, wrong = pack.solve(ins.text), meta["perturbed_answer"]
        assert "reject" not in meta and wrong != gold and meta["decoding"] == "plain"
        assert meta["rationale"] == explain(*pack.parse(ins.text))[0]
        assert meta["counter_rationale"] == skills_methods.rationale_for(pack, skills, ins.text, wrong)
        answer, fact, counter = _rows(scott, ctx, cand, pack)
        assert (answer.kind, answer.prompt, answer.completion) == ("answer", format_prompt(ins), gold)
        assert fact.kind == "factual" and fact.prompt == "[factual] " + format_prompt(ins)
        assert fact.completion == f"{meta['rationale']} => {gold}" and scott.final_answer(fact.completion) == gold
        # The counterfactual row: the perturbed rationale is given, the perturbed answer is the target.
        assert counter.kind == "counterfactual"
        assert counter.prompt == f"[counterfactual] {format_prompt(ins)}{meta['counter_rationale']} => "
        assert counter.completion == wrong
        if ins.task == "mood":
            assert wrong in LABELS["mood"]


def test_scott_rejects_a_perturbed_answer_equal_to_the_gold_one(tmp_path: Path) -> None:
    ctx, teacher, pack = _env(tmp_path, "scott")

    class Lazy:  # a teacher whose "wrong" answer is the right one
        left = teacher.left

        def ask(self, requests: list[Any]) -> list[Any]:
            from lionloop import Result

            out = teacher.ask(requests)
            return [Result(r.request, output=scott.PerturbOut(answer=pack.solve(r.request.instruction)))
                    if r.request.kind == "perturb_answer" else r for r in out]

    out = scott.lionloop_generate(cases=_cases(pack, ["sum"], 2), teacher=Lazy(), ctx=ctx)
    assert [scott.lionloop_filter_candidate(candidate=c, ctx=ctx) for c in out] == \
        ["the perturbed answer is the teacher's answer"] * 2


def test_scott_records_which_decoding_its_teacher_could_do(tmp_path: Path) -> None:
    """Contrastive where the generators' teacher reads token scores (hf), plain elsewhere."""
    ctx, teacher, pack = _env(tmp_path, "scott")
    ctx.config = ctx.config.model_copy(update={"generator_teacher": ctx.config.teacher.model_copy(
        update={"backend": "hf", "model": "some/model"})})
    out = scott.lionloop_generate(cases=_cases(pack, ["sum"], 2), teacher=teacher, ctx=ctx)
    assert [c.instruction.meta["decoding"] for c in out] == ["contrastive"] * 2


def test_contrastive_decoding_follows_the_formula_on_a_real_model(tmp_path: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lionloop.plugins.contrastive import contrastive_generate
    from lionloop.student.model import build_tokenizer

    tok = build_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                                         eos_token_id=tok.eos_token_id)).eval()
    pos, neg = "sum 1 2 3\nAnswer: 6\n", "sum 1 2 3\nAnswer: 7\n"

    def by_hand(strength: float, n: int) -> list[int]:  # full forward passes, no cache
        p = tok(pos, add_special_tokens=False)["input_ids"]
        q = tok(neg, add_special_tokens=False)["input_ids"]
        out: list[int] = []
        with torch.no_grad():
            for _ in range(n):
                lp = torch.log_softmax(model(torch.tensor([p + out])).logits[0, -1], -1)
                ln = torch.log_softmax(model(torch.tensor([q + out])).logits[0, -1], -1)
                t = int(((1 + strength) * lp - strength * ln).argmax())
                if t == tok.eos_token_id:
                    break
                out.append(t)
        return out

    runs = {}
    for strength in (0.0, 1.0, 4.0):
        text, n, _ = contrastive_generate(model, tok, pos, neg, 12, strength)
        want = by_hand(strength, 12)
        assert n == len(want) and text == tok.decode(want, skip_special_tokens=True)
        runs[strength] = text
    # strength 0 is greedy decoding of the positive prompt alone
    enc = tok(pos, return_tensors="pt", add_special_tokens=False)
    greedy = model.generate(**enc, max_new_tokens=12, do_sample=False, eos_token_id=tok.eos_token_id,
                            pad_token_id=tok.eos_token_id)[0, enc["input_ids"].shape[1]:].tolist()
    greedy = greedy[: greedy.index(tok.eos_token_id)] if tok.eos_token_id in greedy else greedy
    assert runs[0.0] == tok.decode(greedy, skip_special_tokens=True)


def test_hf_backend_decodes_scott_rationales_contrastively(tmp_path: Path) -> None:
    """The in-process hf teacher (a real, tiny chat model) runs contrastive decoding for SCOTT's
    requests, with the contrast prompt rendered from the same template, and plain batches for the rest."""
    from lionloop import Answer
    from lionloop.config import TeacherConfig
    from lionloop.plugins.backend_hf import HFBackend
    from lionloop.plugins.contrastive import contrastive_generate
    from lionloop.stores.cache import CallCache
    from lionloop.teacher.client import Teacher
    from lionloop.testing.tiny_chat_model import build_tiny_chat_model

    model_dir = build_tiny_chat_model(tmp_path / "tiny", max_position_embeddings=2048)
    backend = HFBackend(TeacherConfig(backend="hf", model=str(model_dir), max_tokens=10, temperature=0.0))
    req = scott.ContrastiveRationale(instruction="sum 1 2 3", answer="6", contrast="7", strength=2.0)
    plain = scott.ContrastiveRationale(instruction="sum 1 2 3", answer="6", contrast="7", strength=0.0)

    got = Teacher(backend, CallCache(tmp_path / "c.sqlite"), "run").ask([req, Answer(instruction="say 1"), plain])
    model, tok = backend._load()
    pos = backend.chat_text(backend.prompt_for(req, 0)["messages"])
    neg = backend.chat_text(backend.prompt_for(req.contrast_request(), 0)["messages"])
    assert "6" in pos and "7" in neg and pos != neg  # the contrast is the same prompt with the other answer
    for res, strength in ((got[0], 2.0), (got[2], 0.0)):
        text, _, _ = contrastive_generate(model, tok, pos, neg, 10, strength)
        assert res.raw == text  # what the backend decoded is the contrastive decoding of the two prompts
        # random weights may write only blanks: then a failure, never an invented rationale
        assert res.ok == bool(text.strip()) and (not res.ok or res.output.text == " ".join(text.split()))
    assert got[1].request.kind == "answer" and (got[1].ok or got[1].error)


# -- icl --------------------------------------------------------------------------------------------


def _seed_pool(ctx: Any, pack: SkillsPack, skills: list[str], n: int = 5) -> None:
    """Train instructions with teacher answers: what demonstrations are drawn from."""
    seeds = [pack.make(s, 1 + k % 3, random.Random(f"seed{s}{k}")) for s in skills for k in range(n)]
    ctx.pool.add_instructions(seeds)
    ctx.pool.add_responses("teacher", "oracle", 0, {i.id: pack.solve(i.text) for i in seeds})


@pytest.mark.parametrize("mode", ["multitask", "meta"])
def test_icl_rows_carry_k_demonstrations_of_the_intended_tasks(tmp_path: Path, mode: str) -> None:
    opts = {"mode": mode, "k": 3} | ({"target_tasks": ["chain"]} if mode == "meta" else {})
    ctx, teacher, pack = _env(tmp_path, "icl", opts)
    _seed_pool(ctx, pack, ["sum", "chain", "mood"])
    out = icl.lionloop_generate(cases=_cases(pack, ["sum", "chain", "mood"]), teacher=teacher, ctx=ctx)
    tasks = {c.instruction.task for c in out}
    assert tasks == ({"sum", "mood"} if mode == "meta" else {"sum", "chain", "mood"})  # meta: no target task
    for cand in out:
        ins = cand.instruction
        demos = ins.meta["demos"]
        assert len(demos) == 3 and "reject" not in ins.meta
        for q, _, a in demos:  # demonstrations of the instruction's own task, with the teacher's answers
            assert pack.parse(q)[0].name == ins.task and a == pack.solve(q) and q != ins.text
        rows = _rows(icl, ctx, cand, pack)
        assert [r.kind for r in rows] == ["answer", "icl", "lm"] and rows[2].weight == 0.5
        shot = "[icl] " + "".join(f"{q}\n{a}\n" for q, _, a in demos) + format_prompt(ins)
        assert rows[1].prompt == shot and rows[1].completion == pack.solve(ins.text)
        assert rows[2].prompt == "[lm] " and rows[2].completion == shot.removeprefix("[icl] ") + pack.solve(ins.text)


def test_icl_evaluates_in_the_same_few_shot_format(tmp_path: Path) -> None:
    ctx, _, pack = _env(tmp_path, "icl", {"k": 2, "lm_weight": 0})
    _seed_pool(ctx, pack, EXTRA)
    seen: list[str] = []

    def student(prompts: list[str], max_new_tokens: int | None = None, role: str = "") -> list[str]:
        seen.extend(prompts)
        return [pack.solve(p.strip().splitlines()[-1]) for p in prompts]

    instructions = pack.eval_set(2)
    out = icl.lionloop_evaluate_student(instructions=instructions, student=student, ctx=ctx)
    assert out == {i.id: pack.solve(i.text) for i in instructions}
    for ins, prompt in zip(instructions, seen, strict=True):
        lines = prompt.removeprefix("[icl] ").splitlines()
        assert prompt.startswith("[icl] ") and len(lines) == 5 and lines[-1] == ins.text
        assert all(pack.parse(q)[0].name == ins.task and a == pack.solve(q) for q, a in zip(lines[0:4:2], lines[1:4:2], strict=True))


def test_icl_meta_mode_needs_target_tasks(tmp_path: Path) -> None:
    cfg = micro_config(tmp_path, generate={"generators": {"icl": {"options": {"mode": "meta"}}}})
    with pytest.raises(ConfigError, match=r"^generate\.generators\.icl\.options\.target_tasks: meta mode needs"):
        plan_generators(cfg.generate, get_plugin_manager().generator_specs())


# -- mt_cot -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("strategy", "fmt", "kind"), [("cot", "mt_cot", "cot"), ("rationalize", "mt_re", "explain"),
                                                       ("crop", "mt_ra", "rationalize")])
def test_mt_cot_strategies_and_formats_make_the_right_rows(tmp_path: Path, strategy: str, fmt: str, kind: str) -> None:
    ctx, teacher, pack = _env(tmp_path, "mt_cot", {"explanation": strategy, "task_format": fmt, "temperature": 1.0,
                                                   "alpha": 0.3}, pack_options={"sample_error_rate": 0.5})
    out = mt_cot.lionloop_generate(cases=_cases(pack, ["sum", "chain", "add"]), teacher=teacher, ctx=ctx)
    sources = [c.instruction.meta.get("source") for c in out]
    missed = [c for c in out if "cot_missed" in c.instruction.meta]
    if strategy == "rationalize":
        assert set(sources) == {"rationalize"} and not missed and teacher.left == 1000 - 12 * 3
    elif strategy == "cot":
        assert missed and all(mt_cot.lionloop_filter_candidate(candidate=c, ctx=ctx) for c in missed)
        assert set(sources) == {"cot", None} and teacher.left == 1000 - 12 * 3
    else:  # crop: the rationalisation is asked (and paid) only where the chain of thought missed
        assert missed and {c.instruction.meta["source"] for c in missed} == {"rationalize"}
        assert "cot" in sources and teacher.left == 1000 - 12 * 3 - len(missed)
    for cand in out:
        ins = cand.instruction
        if "explanation" not in ins.meta:
            continue
        gold = pack.solve(ins.text)
        assert ins.meta["explanation"] in {explain(*pack.parse(ins.text), style=s)[0] for s in (0, 1)}
        answer, why = _rows(mt_cot, ctx, cand, pack)
        assert (answer.kind, answer.completion, answer.weight) == ("answer", gold, 0.3)
        assert why.kind == kind and why.weight == pytest.approx(0.7)
        if fmt == "mt_cot":
            assert why.prompt == "[explain] " + format_prompt(ins) and mt_cot.final_answer(why.completion) == gold
        elif fmt == "mt_re":
            assert why.prompt == "[explain] " + format_prompt(ins) and why.completion == ins.meta["explanation"]
        else:
            assert why.prompt == f"[rationalize] {format_prompt(ins)}Answer: {gold}\n"
    evals = pack.eval_set(1)
    student = lambda prompts, n=None, role="": [f"r => {pack.solve(p.removeprefix('[explain] ').strip())}" for p in prompts]  # noqa: E731
    evaluated = mt_cot.lionloop_evaluate_student(instructions=evals, student=student, ctx=ctx)
    assert evaluated == ({i.id: pack.solve(i.text) for i in evals} if fmt == "mt_cot" else None)


# -- fu_cot -----------------------------------------------------------------------------------------


def test_fu_cot_mixes_in_context_and_zero_shot_chains(tmp_path: Path) -> None:
    ctx, teacher, pack = _env(tmp_path, "fu_cot", {"k": 2, "formats": ["in_context_cot", "zero_shot_cot",
                                                                        "in_context_answer", "zero_shot_answer"]})
    out = fu_cot.lionloop_generate(cases=_cases(pack, ["sum", "chain"]), teacher=teacher, ctx=ctx)
    assert len(out) == 8 and teacher.left == 1000 - 8 * 3
    for cand in out:
        ins, meta = cand.instruction, cand.instruction.meta
        gold = pack.solve(ins.text)
        styles = {explain(*pack.parse(ins.text), style=s)[0] for s in (0, 1)}
        assert meta["cot"] in styles and meta["answer"] == gold
        assert len(meta["demos"]) == 2  # other kept chains of the same task from this batch
        for q, _, r, a in meta["demos"]:
            assert pack.parse(q)[0].name == ins.task and q != ins.text and a == pack.solve(q)
            assert r in {explain(*pack.parse(q), style=s)[0] for s in (0, 1)}
        rows = _rows(fu_cot, ctx, cand, pack)
        assert [r.kind for r in rows] == ["icl_cot", "cot", "icl_answer", "answer"]
        shots = "".join(f"{q}\n{r} => {a}\n" for q, _, r, a in meta["demos"])
        assert rows[0].prompt == "[cot] " + shots + format_prompt(ins) and rows[0].completion == f"{meta['cot']} => {gold}"
        assert rows[1].prompt == "[cot] " + format_prompt(ins) and rows[1].completion == rows[0].completion
        assert rows[2].prompt == "[cot] " + "".join(f"{q}\n{a}\n" for q, _, _, a in meta["demos"]) + format_prompt(ins)
        assert rows[3].prompt == format_prompt(ins) and rows[2].completion == rows[3].completion == gold


def test_fu_cot_chooses_the_checkpoint_by_dev_reasoning_accuracy(tmp_path: Path) -> None:
    ctx, _, pack = _env(tmp_path, "fu_cot", {"dev_per_task": 3})
    probes = [pack.make(s, 2, random.Random(f"probe{s}{k}"), split="cache") for s in ("sum", "chain") for k in range(5)]
    ctx.pool.add_instructions(probes)
    instructions = pack.eval_set(1)
    wrong_on: set[str] = set()

    def student(prompts: list[str], max_new_tokens: int | None = None, role: str = "") -> list[str]:
        out = []
        for p in prompts:
            q = p.removeprefix("[cot] ").strip()
            r, a = explain(*pack.parse(q))
            out.append(f"{r} => {'x' if q in wrong_on else a}")
        return out

    # round 1: right on every dev probe; round 2: wrong on four; round 3: right again (a tie: the earlier wins)
    ctx.round = 1
    got = fu_cot.lionloop_evaluate_student(instructions=instructions, student=student, ctx=ctx)
    assert got == {i.id: pack.solve(i.text) for i in instructions}
    dev = fu_cot.dev_set(ctx, 3)
    assert len(dev) == 6 and {i.task for i in dev} == {"sum", "chain"} and all(i.split == "cache" for i in dev)
    wrong_on.update(i.text for i in dev[:4])
    ctx.round = 2
    fu_cot.lionloop_evaluate_student(instructions=instructions, student=student, ctx=ctx)
    data = json.loads(fu_cot.checkpoints_path(tmp_path).read_text())
    assert data["rounds"]["1"]["dev_cot_accuracy"] == 1.0 and data["rounds"]["2"]["dev_cot_accuracy"] == pytest.approx(2 / 6)
    assert fu_cot.chosen_round(tmp_path) == 1
    wrong_on.clear()
    ctx.round = 3
    fu_cot.lionloop_evaluate_student(instructions=instructions, student=student, ctx=ctx)
    assert fu_cot.chosen_round(tmp_path) == 1
    # the eval set never chooses: the dev probes are cache instructions, not eval ones
    assert not {i.id for i in dev} & {i.id for i in instructions}


def test_hooks_stay_silent_when_their_generator_is_off(tmp_path: Path) -> None:
    ctx, _, pack = _env(tmp_path, "lion")
    ins = pack.make("sum", 2, random.Random(0))
    for mod in PLUGINS.values():
        assert mod.lionloop_format_examples(instruction=ins, answer="1", generator="lion", ctx=ctx, prompt="p") is None
        assert mod.lionloop_evaluate_student(instructions=[ins], student=None, ctx=ctx) is None


def test_options_are_typed_documented_and_listed_in_the_docstring() -> None:
    from lionloop import GeneratorOptions

    pm = get_plugin_manager()
    specs = pm.generator_specs()
    for name in PLUGINS:
        model = specs[name].options
        assert model is not None and issubclass(model, GeneratorOptions), name
        assert all(f.description for f in model.model_fields.values()), name
        assert all(f"  {opt} " in pm.get_plugin(name).__doc__ for opt in model.model_fields), name


# -- each in a 2-round loop -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PLUGINS))
def test_each_plugin_runs_in_a_two_round_loop(tmp_path: Path, name: str) -> None:
    from lionloop.loop.runner import start

    options = {"icl": {"k": 1, "lm_weight": 0}, "fu_cot": {"k": 1, "dev_per_task": 2}}.get(name, {})
    cfg = micro_config(
        tmp_path, task={"seeds_per_skill": 4, "cache_per_skill": 4, "eval_per_skill": 3, "skills": ["sum", "mood", "copy"]},
        student={"hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_length": 96, "max_new_tokens": 8},
        train={"steps_per_round": 6, "batch_size": 16, "warmup_steps": 1},
        generate={"max_new_per_round": 12, "generators": {name: {"share": 1.0, "options": options}}},
    )
    run_dir, final = start(cfg)
    assert final["stop_reason"] == "max_rounds"
    kinds = {k for (k,) in pool_rows(run_dir, "SELECT DISTINCT kind FROM examples WHERE generator = ?", name)}
    want = {"scott": {"answer", "factual", "counterfactual"}, "icl": {"answer", "icl"},
            "mt_cot": {"answer", "cot"}, "fu_cot": {"cot"}}[name]
    assert want <= kinds, kinds
    metrics = json.loads(pool_rows(run_dir, "SELECT metrics FROM rounds WHERE round = 2")[0][0])
    methods = metrics["eval"].get("methods", {})
    assert name in methods and 0 <= methods[name]["overall"] <= 1  # the plugin's own evaluation ran
    if name == "fu_cot":
        assert fu_cot.chosen_round(run_dir) in (1, 2)

