"""The offline task pack `skills`: string and arithmetic skills of graded difficulty, with an oracle.

Each skill has levels 1-5 (longer strings, more digits). A ~1M-parameter student learns copy,
upper, shift and short reversals within minutes on 2 CPU cores; long sorts, counting and
multi-digit addition stay out of its reach for longer, so the loop has weak spots to find.

Opt-in skills (name them in `task.skills`, or set `task.options.extra_skills: true`) serve the
generator plugins: `chain` and `sum` are multi-step problems whose intermediate steps are checkable
(socratic, finetune_cot), `mood` is a labelled 3-class classification (disco). The oracle also
answers the plugins' requests: step-by-step rationales, decompositions into (sub-question, answer)
pairs, sampled rationales that are sometimes wrong (more often at higher temperature), and
label-flipping span edits that are sometimes lazy (so the plugins' filters have work to do).
"""

from __future__ import annotations

import difflib
import hashlib
import random
import re
import sys
from dataclasses import replace
from typing import Any

from pydantic import Field

from lionloop import (
    Answer,
    ConfigError,
    Instruction,
    Judge,
    PluginOptions,
    Registry,
    Rewrite,
    TaskConfig,
    TeacherRequest,
    Unsupported,
    hookimpl,
    validate_options,
)

# The skills and their worked solutions live beside this module; their names stay importable from
# here (the oracle hands this module to skills_methods as its kit: explain, STYLES, LABELS, ...).
from .skills_defs import (
    ALL_SKILLS,
    LABELS,
    LEVELS,
    NEGATIVE,
    NEUTRAL,
    POSITIVE,
    SKILLS,
    Skill,
    _mood,
)
from .skills_defs import EXTRA_SKILLS as EXTRA_SKILLS  # unused here: tests read it from this module
from .skills_explain import STYLES, decompose, explain, last_like


class SkillsOptions(PluginOptions):
    """`task.options` of the skills pack."""

    extra_skills: bool = Field(
        False, description="Add the opt-in skills (chain, sum, mood) to the default skill list.",
    )
    eval_seed: int = Field(1234, description="Seed of the held-out eval set (independent of the run seed).")
    sample_error_rate: float = Field(
        0.4, ge=0,
        description="The simulated teacher's error rate when it samples a rationale: P(wrong) = rate x "
        "temperature (capped at 1).",
    )
    counterfactual_noise: float = Field(
        0.2, ge=0, le=1,
        description="P(a counterfactual edit is lazy: it copies the span or keeps the label).",
    )
    answer_in_reply: bool = Field(
        False,
        description="Accept a right answer inside a longer reply (\"The sum is 17.\"): the last word of the "
        "reply shaped like the answer must equal it. For chatty real models; off, the reply must be the answer.",
    )


# Instances per skill when `task.*_per_skill` is not set: seeds (train pool), cache (probes), eval.
DEFAULT_PER_SKILL = {"seeds": 40, "cache": 30, "eval": 40}



def _rng(*parts: Any) -> random.Random:
    """A private random stream per purpose, so sampling never depends on call order."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class SkillsOracle:
    """Exact expert for the pack: answers, judges, and rewrites instances into siblings."""

    def __init__(self, pack: SkillsPack) -> None:
        self.pack = pack

    def handle(self, request: TeacherRequest) -> dict[str, Any]:
        if isinstance(request, Answer):
            return {"text": self.pack.solve(request.instruction)}
        if isinstance(request, Judge):
            gold = self.pack.solve(request.instruction)
            s1, s2 = self.pack.score(request.answer_1, gold), self.pack.score(request.answer_2, gold)
            return {"explanation": f"expected {gold!r}", "score_1": s1, "score_2": s2}
        if isinstance(request, Rewrite):
            return {"instruction": self.pack.rewrite(request.instruction, request.mode, request.variant), "input": ""}
        # The generator plugins' requests, known by kind (the pack does not import the plugins).
        text = getattr(request, "instruction", "")
        if request.kind == "rationale":
            rationale, answer = explain(*self.pack.parse(text))
            return {"rationale": rationale, "answer": answer}
        if request.kind == "decompose":
            steps = decompose(*self.pack.parse(text))
            return {"steps": [{"question": q, "answer": a} for q, a in steps]}
        if request.kind == "cot_sample":
            return self.pack.sample_rationale(text, request.sample, request.temperature)
        if request.kind == "counterfactual":
            return self.pack.counterfactual(text, request.target_label, request.variant)
        # The later survey generators' requests (scott, icl, mt_cot, fu_cot): in a module of their
        # own, handed this module's worked solutions (so it need not import this one back).
        from . import skills_methods

        return skills_methods.handle(self.pack, request, sys.modules[__name__])


class SkillsPack:
    """Seeds, eval set, verifier and oracle for the string/arithmetic skills."""

    name = "skills"

    def __init__(self, cfg: TaskConfig, seed: int, options: SkillsOptions | None = None) -> None:
        opts = options if options is not None else validate_options(SkillsOptions, cfg.options, "task.options")
        default = list(ALL_SKILLS) if opts.extra_skills else list(SKILLS)
        names = cfg.skills or default
        unknown = [s for s in names if s not in ALL_SKILLS]
        if unknown:
            raise ConfigError(f"task.skills: unknown skill(s) {unknown} (known: {list(ALL_SKILLS)})")
        self._skills = names
        self.cfg = cfg
        self.seed = seed
        self.options = opts
        # The eval set does not move with the run seed, so runs with different seeds are
        # measured on the same held-out instructions.
        self.eval_seed = opts.eval_seed
        # How error-prone the simulated teacher is where it samples or edits (0 = never):
        # P(a sampled rationale goes wrong) = sample_error_rate * temperature (capped at 1);
        # P(a counterfactual edit is lazy: copies the span or keeps the label) = counterfactual_noise.
        self.sample_error_rate = opts.sample_error_rate
        self.counterfactual_noise = opts.counterfactual_noise

    def skills(self) -> list[str]:
        return list(self._skills)

    def parse(self, text: str) -> tuple[Skill, re.Match[str]]:
        text = text.strip()
        for skill in ALL_SKILLS.values():
            m = skill.pattern.match(text)
            if m:
                return skill, m
        raise Unsupported(f"skills oracle does not recognise the instruction {text[:60]!r}")

    def solve(self, text: str) -> str:
        skill, m = self.parse(text)
        return skill.solve(m)

    def make(self, skill: str, level: int, rng: random.Random, origin: str = "seed",
             split: str = "train", parent_id: str | None = None, round_born: int = 0) -> Instruction:
        text = ALL_SKILLS[skill].make(rng, level)
        return Instruction(
            text=text, task=skill, origin=origin, split=split, parent_id=parent_id,
            round_born=round_born, meta={"skill": skill, "level": level},
        )

    def _sample(self, per_skill: int, stream: str, seed: int, exclude: set[str]) -> list[Instruction]:
        out: list[Instruction] = []
        for skill in self._skills:
            rng = _rng(stream, seed, skill)
            seen = set(exclude)
            tries = have = 0  # a count, not a scan of `out` per try: 10k seeds took minutes
            while have < per_skill and tries < per_skill * 50:
                level = LEVELS[have % len(LEVELS)]
                ins = self.make(skill, level, rng, split="eval" if stream == "eval" else "train")
                tries += 1
                if ins.id in seen:
                    continue
                seen.add(ins.id)
                out.append(ins)
                have += 1
        return out

    def eval_set(self, per_skill: int | None = None) -> list[Instruction]:
        """`per_skill` held-out instances per skill (default: `task.eval_per_skill`, else 40)."""
        return self._sample(self._count("eval", per_skill), "eval", self.eval_seed, set())

    def seeds(self, per_skill: int | None = None) -> list[Instruction]:
        """The run's seeds: `task.seeds_per_skill + cache_per_skill` per skill, the first
        `seeds_per_skill` of each in the train pool and the rest in the cache pool. With
        `per_skill`, that many per skill instead, all with split 'train' (for tools and tests)."""
        held_out = {i.id for i in self.eval_set()}
        if per_skill is not None:
            return self._sample(per_skill, "seeds", self.seed, held_out)
        train = self._count("seeds")
        seen: dict[str, int] = {}
        out = []
        for ins in self._sample(train + self._count("cache"), "seeds", self.seed, held_out):
            seen[ins.task] = seen.get(ins.task, 0) + 1
            out.append(ins if seen[ins.task] <= train else replace(ins, split="cache"))
        return out

    def _count(self, kind: str, given: int | None = None) -> int:
        """A per-skill count: `given`, else `task.<kind>_per_skill`, else the pack's default."""
        if given is not None:
            return given
        configured = getattr(self.cfg, f"{kind}_per_skill")
        return DEFAULT_PER_SKILL[kind] if configured is None else configured

    @staticmethod
    def score(answer: str, gold: str) -> float:
        """The oracle referee's 1-10 score of an answer against the gold one: 10 when exactly
        right; otherwise 1-8 by character overlap, so any miss is at least 2 below."""
        a = answer.strip()
        if a == gold:
            return 10.0
        return float(1 + int(7 * difflib.SequenceMatcher(a=a, b=gold).ratio()))

    def reference(self, instruction: Instruction) -> str | None:
        """The exact answer `verify` checks against (None: not one of the pack's skills)."""
        try:
            return self.solve(instruction.text)
        except Unsupported:
            return None

    def verify(self, instruction: Instruction, answer: str) -> bool | None:
        gold = self.reference(instruction)
        if gold is None:
            return None
        if answer.strip() == gold:
            return True
        return self.options.answer_in_reply and last_like(answer, gold) == gold

    def rewrite(self, text: str, mode: str, variant: int) -> str:
        """hard: a sibling of the same skill and level; easy: the same skill at a rarer level;
        simpler: the same skill one level lower (level 1 stays at 1)."""
        skill, m = self.parse(text)
        level = skill.level_of(m)
        rng = _rng("rewrite", text, mode, variant)
        if mode == "easy":
            # "Rarer" for this pack: the extreme levels, which uniform sampling visits least.
            level = rng.choice([lv for lv in (1, 5) if lv != level] or [1])
        elif mode == "simpler":
            level = max(1, level - 1)
        return skill.make(rng, level)

    def level_of(self, text: str) -> int:
        skill, m = self.parse(text)
        return skill.level_of(m)

    def labels(self, task: str) -> list[str] | None:
        """The label set of a classification skill (what disco flips between), else None."""
        return list(LABELS[task]) if task in LABELS else None

    def steps(self, text: str) -> list[tuple[str, str]]:
        """The gold (sub-question, answer) steps of an instance."""
        return decompose(*self.parse(text))

    def sample_rationale(self, text: str, sample: int, temperature: float) -> dict[str, str]:
        """One sampled chain of thought: a style drawn per sample, wrong with P = rate * temperature."""
        skill, m = self.parse(text)
        rng = _rng("cot", text, sample, temperature)
        style = rng.randrange(STYLES.get(skill.name, 1))
        slip = rng if rng.random() < min(1.0, self.sample_error_rate * temperature) else None
        rationale, answer = explain(skill, m, style, slip)
        return {"rationale": rationale, "answer": answer}

    def counterfactual(self, text: str, target: str, variant: int) -> dict[str, str]:
        """A span of a `mood` instance and its rewrite meant to make the label `target`.

        Shortest span first; with P = counterfactual_noise the edit is lazy instead (the span
        copied, or swapped for a word of the same polarity), as LLM editors sometimes are.
        """
        skill, m = self.parse(text)
        if skill.name not in LABELS:
            raise Unsupported(f"skills oracle: {skill.name!r} has no labels to flip")
        if target not in LABELS[skill.name]:
            raise Unsupported(f"skills oracle: {target!r} is not a label of {skill.name!r}")
        words = m.group(1).split()
        rng = _rng("counterfactual", text, target, variant)
        if rng.random() < self.counterfactual_noise:
            i = rng.randrange(len(words))
            if rng.random() < 0.5:
                return {"span": words[i], "replacement": words[i]}
            group = next(g for g in (POSITIVE, NEGATIVE, NEUTRAL) if words[i] in g)
            return {"span": words[i], "replacement": rng.choice([w for w in group if w != words[i]])}
        for length in range(1, len(words) + 1):
            starts = list(range(len(words) - length + 1))
            rng.shuffle(starts)
            for st in starts:
                rest = words[:st] + words[st + length :]
                p0, n0 = sum(w in POSITIVE for w in rest), sum(w in NEGATIVE for w in rest)
                fits = [(p, n) for p in range(length + 1) for n in range(length + 1 - p)
                        if _mood(["good"] * (p0 + p) + ["bad"] * (n0 + n)) == target]
                if not fits:
                    continue
                p, n = min(fits, key=lambda f: (f[0] + f[1], f))
                new = [rng.choice(POSITIVE) for _ in range(p)] + [rng.choice(NEGATIVE) for _ in range(n)]
                new += [rng.choice(NEUTRAL) for _ in range(length - p - n)]
                rng.shuffle(new)
                span = " ".join(words[st : st + length])
                if " ".join(new) != span:
                    return {"span": span, "replacement": " ".join(new)}
        raise Unsupported(f"skills oracle: no span edit turns {text!r} into {target!r}")

    def oracle(self) -> SkillsOracle:
        return SkillsOracle(self)


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_task_pack("skills", SkillsPack, options=SkillsOptions)
