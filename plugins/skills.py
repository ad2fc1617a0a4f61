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
from collections.abc import Callable
from dataclasses import dataclass, replace
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


# A small alphabet keeps the tiny student's job about structure, not about 26 symbols
# (measured: with a-z, reversal of 5+ letters stayed near 0% where a-h reached 40-90%).
ALPHABET = "abcdefgh"
LEVELS = (1, 2, 3, 4, 5)
# Instances per skill when `task.*_per_skill` is not set: seeds (train pool), cache (probes), eval.
DEFAULT_PER_SKILL = {"seeds": 40, "cache": 30, "eval": 40}


def _word(rng: random.Random, n: int, letters: str = ALPHABET) -> str:
    return "".join(rng.choice(letters) for _ in range(n))


def _shift(s: str) -> str:
    return "".join(ALPHABET[(ALPHABET.index(c) + 1) % len(ALPHABET)] for c in s)


@dataclass(frozen=True)
class Skill:
    name: str
    pattern: re.Pattern[str]
    make: Callable[[random.Random, int], str]
    solve: Callable[[re.Match[str]], str]
    level_of: Callable[[re.Match[str]], int]


def _word_skill(name: str, offset: int, solve: Callable[[str], str]) -> Skill:
    return Skill(
        name=name,
        pattern=re.compile(rf"^{name} ([{ALPHABET}]+)$"),
        make=lambda rng, lvl: f"{name} {_word(rng, lvl + offset)}",
        solve=lambda m: solve(m.group(1)),
        level_of=lambda m: max(1, min(5, len(m.group(1)) - offset)),
    )


def _add_digits(level: int) -> tuple[int, int]:
    return {1: (1, 1), 2: (2, 1), 3: (2, 2), 4: (3, 2), 5: (3, 3)}[level]


def _make_add(rng: random.Random, level: int) -> str:
    da, db = _add_digits(level)
    a = rng.randrange(10 ** (da - 1) if da > 1 else 0, 10**da)
    b = rng.randrange(10 ** (db - 1) if db > 1 else 0, 10**db)
    return f"add {a} {b}"


def _add_level(m: re.Match[str]) -> int:
    digits = (len(m.group(1)), len(m.group(2)))
    for lvl in LEVELS:
        if _add_digits(lvl) == tuple(sorted(digits, reverse=True)):
            return lvl
    return 5


SKILLS: dict[str, Skill] = {
    s.name: s
    for s in (
        _word_skill("copy", 2, lambda w: w),
        _word_skill("upper", 2, str.upper),
        _word_skill("shift", 1, _shift),
        _word_skill("reverse", 1, lambda w: w[::-1]),
        _word_skill("sort", 2, lambda w: "".join(sorted(w))),
        Skill(
            name="count",
            pattern=re.compile(rf"^count ([{ALPHABET}]) in ([{ALPHABET}]+)$"),
            make=lambda rng, lvl: f"count {rng.choice(ALPHABET[:4])} in {_word(rng, lvl + 3, ALPHABET[:5])}",
            solve=lambda m: str(m.group(2).count(m.group(1))),
            level_of=lambda m: max(1, min(5, len(m.group(2)) - 3)),
        ),
        Skill(
            name="add",
            pattern=re.compile(r"^add (\d{1,4}) (\d{1,4})$"),
            make=_make_add,
            solve=lambda m: str(int(m.group(1)) + int(m.group(2))),
            level_of=_add_level,
        ),
    )
}


# -- opt-in skills: multi-step problems and a labelled classification ----------------------------

OPS: dict[str, Callable[[str], str]] = {"reverse": lambda w: w[::-1], "shift": _shift, "sort": lambda w: "".join(sorted(w))}
_CHAIN_SHAPE = {1: (2, 3), 2: (2, 4), 3: (2, 5), 4: (3, 4), 5: (3, 5)}  # level -> (ops, letters)
_SUM_SHAPE = {1: (3, 1), 2: (4, 1), 3: (3, 2), 4: (4, 2), 5: (3, 3)}  # level -> (terms, digits)
POSITIVE = ("good", "nice", "fun", "calm")
NEGATIVE = ("bad", "sad", "dull", "grim")
NEUTRAL = ("cup", "door", "tree", "road")
MOOD_WORDS = POSITIVE + NEGATIVE + NEUTRAL
MOOD_LABELS = ("negative", "neutral", "positive")


def _make_chain(rng: random.Random, level: int) -> str:
    n_ops, n_letters = _CHAIN_SHAPE[level]
    ops: list[str] = []
    for _ in range(n_ops):  # no op twice in a row: "reverse reverse" is a no-op, not a chain
        ops.append(rng.choice([o for o in OPS if not ops or o != ops[-1]]))
    return f"chain {' '.join(ops)} {_word(rng, n_letters)}"


def _chain_steps(m: re.Match[str]) -> list[tuple[str, str]]:
    value, steps = m.group(2), []
    for k, op in enumerate(m.group(1).split()):
        steps.append((f"{op} {value if k == 0 else f'#{k}'}", OPS[op](value)))
        value = steps[-1][1]
    return steps


def _level_of_shape(shapes: dict[int, tuple[int, int]], shape: tuple[int, int]) -> int:
    return next((lvl for lvl, s in shapes.items() if s == shape), 5)


def _make_sum(rng: random.Random, level: int) -> str:
    n, d = _SUM_SHAPE[level]
    return "sum " + " ".join(str(rng.randrange(10 ** (d - 1) if d > 1 else 0, 10**d)) for _ in range(n))


def _sum_steps(m: re.Match[str]) -> list[tuple[str, str]]:
    terms = [int(t) for t in m.group(1).split()]
    total, steps = terms[0], []
    for k, t in enumerate(terms[1:]):
        steps.append((f"add {total if k == 0 else f'#{k}'} {t}", str(total + t)))
        total += t
    return steps


def _mood(words: list[str]) -> str:
    pos = sum(w in POSITIVE for w in words)
    neg = sum(w in NEGATIVE for w in words)
    return "positive" if pos > neg else "negative" if neg > pos else "neutral"


_MOOD_WORD = "(?:" + "|".join(MOOD_WORDS) + ")"

EXTRA_SKILLS: dict[str, Skill] = {
    s.name: s
    for s in (
        Skill(
            name="chain",
            pattern=re.compile(rf"^chain ((?:reverse|shift|sort)(?: (?:reverse|shift|sort)){{1,2}}) ([{ALPHABET}]+)$"),
            make=_make_chain,
            solve=lambda m: _chain_steps(m)[-1][1],
            level_of=lambda m: _level_of_shape(_CHAIN_SHAPE, (len(m.group(1).split()), len(m.group(2)))),
        ),
        Skill(
            name="sum",
            pattern=re.compile(r"^sum (\d{1,3}(?: \d{1,3}){2,3})$"),
            make=_make_sum,
            solve=lambda m: str(sum(int(t) for t in m.group(1).split())),
            level_of=lambda m: _level_of_shape(
                _SUM_SHAPE, (len(m.group(1).split()), max(len(t) for t in m.group(1).split()))
            ),
        ),
        Skill(
            name="mood",
            pattern=re.compile(rf"^mood ({_MOOD_WORD}(?: {_MOOD_WORD}){{2,6}})$"),
            make=lambda rng, lvl: "mood " + " ".join(rng.choice(MOOD_WORDS) for _ in range(lvl + 2)),
            solve=lambda m: _mood(m.group(1).split()),
            level_of=lambda m: max(1, min(5, len(m.group(1).split()) - 2)),
        ),
    )
}
ALL_SKILLS: dict[str, Skill] = {**SKILLS, **EXTRA_SKILLS}
LABELS: dict[str, tuple[str, ...]] = {"mood": MOOD_LABELS}


# -- worked solutions: what rationales, CoT samples and decompositions are made of -----------------
#
# `explain(skill, match, style, slip)` returns (rationale, answer). `slip`, a random stream, makes
# the teacher err in one step and carry the error on, as a sampled chain of thought does; the
# answer then follows the faulty rationale (for every skill but `mood` it is then wrong).


def _slip_letter(rng: random.Random, s: str) -> str:
    i = rng.randrange(len(s))
    pool = ALPHABET.upper() if s[i].isupper() else ALPHABET
    return s[:i] + rng.choice([c for c in pool if c != s[i]]) + s[i + 1 :]


def _letterwise(w: str, f: Callable[[str], str], slip: random.Random | None) -> tuple[str, str]:
    out = [f(c) for c in w]
    if slip is not None:
        i = slip.randrange(len(out))
        out[i] = _slip_letter(slip, out[i])
    return " ".join(f"{c}>{o}" for c, o in zip(w, out, strict=True)), "".join(out)


def _explain_word(name: str, w: str, slip: random.Random | None) -> tuple[str, str]:
    if name == "copy":
        out = _slip_letter(slip, w) if slip else w
        return " ".join(out), out
    if name == "upper":
        return _letterwise(w, str.upper, slip)
    if name == "shift":
        return _letterwise(w, _shift, slip)
    if name == "reverse":
        out = w[::-1]
        out = _slip_letter(slip, out) if slip else out
        return "last to first: " + " ".join(out), out
    # sort: count each letter, then write them out in order
    counts = {c: w.count(c) for c in sorted(set(w))}
    if slip is not None:
        c = slip.choice(sorted(counts))
        counts[c] = max(0, counts[c] + slip.choice([-1, 1]) if counts[c] > 1 else counts[c] + 1)
    return " ".join(f"{c}:{n}" for c, n in counts.items()), "".join(c * n for c, n in counts.items())


def _explain_count(m: re.Match[str], slip: random.Random | None) -> tuple[str, str]:
    x, w = m.group(1), m.group(2)
    pos = [i + 1 for i, c in enumerate(w) if c == x]
    if slip is not None:
        others = [i + 1 for i, c in enumerate(w) if c != x]
        if pos and (not others or slip.random() < 0.5):
            pos.remove(slip.choice(pos))
        else:
            pos = sorted(pos + [slip.choice(others)])
    return f"{x} at " + (" ".join(map(str, pos)) or "none"), str(len(pos))


def _slipped(values: list[int], k: int, slip: random.Random | None, at: int) -> int:
    """values[k], off by one when the slip lands on step k (the error is then carried on)."""
    return values[k] + (slip.choice([-1, 1]) if slip is not None and k == at else 0)


def _explain_add(a: int, b: int, style: int, slip: random.Random | None) -> tuple[str, str]:
    if style == 1 and max(a, b) >= 10:  # place value: tens and units apart, then together
        hi_a, hi_b, lo_a, lo_b = a - a % 10, b - b % 10, a % 10, b % 10
        at = slip.randrange(3) if slip else -1
        hi = _slipped([hi_a + hi_b], 0, slip, at)
        lo = _slipped([0, lo_a + lo_b], 1, slip, at)
        total = _slipped([0, 0, hi + lo], 2, slip, at)
        return f"{hi_a}+{hi_b}={hi}; {lo_a}+{lo_b}={lo}; {hi}+{lo}={total}", str(total)
    da, db = str(a)[::-1], str(b)[::-1]
    cols = max(len(da), len(db))
    at = slip.randrange(cols) if slip else -1
    parts, digits, carry = [], [], 0
    for i in range(cols):
        x, y = int(da[i]) if i < len(da) else 0, int(db[i]) if i < len(db) else 0
        s = max(0, _slipped([x + y + carry] * cols, i, slip, at))
        parts.append(f"{x}+{y}{'+1' if carry else ''}={s}")
        digits.append(str(s % 10) if i < cols - 1 else str(s))
        carry = s // 10
    return "; ".join(parts), str(int("".join(reversed(digits))))


def _explain_chain(m: re.Match[str], slip: random.Random | None) -> tuple[str, str]:
    ops, value = m.group(1).split(), m.group(2)
    at = slip.randrange(len(ops)) if slip else -1
    parts = []
    for k, op in enumerate(ops):
        out = OPS[op](value)
        if k == at:
            out = _slip_letter(slip, out)
        parts.append(f"{op} {value}={out}")
        value = out
    return "; ".join(parts), value


def _explain_sum(m: re.Match[str], style: int, slip: random.Random | None) -> tuple[str, str]:
    terms = [int(t) for t in m.group(1).split()]
    if style == 1:
        terms = terms[::-1]  # the same sum, added from the right
    at = slip.randrange(len(terms) - 1) if slip else -1
    total, parts = terms[0], []
    for k, t in enumerate(terms[1:]):
        new = _slipped([total + t] * len(terms), k, slip, at)
        parts.append(f"{total}+{t}={new}" if style == 0 else f"{t}+{total}={new}")
        total = new
    return "; ".join(parts), str(total)


def _explain_mood(m: re.Match[str], slip: random.Random | None) -> tuple[str, str]:
    words = m.group(1).split()
    signs = ["+" if w in POSITIVE else "-" if w in NEGATIVE else "0" for w in words]
    if slip is not None:
        i = slip.randrange(len(signs))
        signs[i] = slip.choice([s for s in "+-0" if s != signs[i]])
    pos, neg = signs.count("+"), signs.count("-")
    label = "positive" if pos > neg else "negative" if neg > pos else "neutral"
    return " ".join(f"{w}{s}" for w, s in zip(words, signs, strict=True)) + f": {pos}+ {neg}-", label


STYLES = {"add": 2, "sum": 2}  # skills with more than one correct way to write the work


def explain(skill: Skill, m: re.Match[str], style: int = 0, slip: random.Random | None = None) -> tuple[str, str]:
    """(rationale, answer) for a parsed instance; `slip` makes one step go wrong."""
    name = skill.name
    if name in ("copy", "upper", "shift", "reverse", "sort"):
        return _explain_word(name, m.group(1), slip)
    if name == "count":
        return _explain_count(m, slip)
    if name == "add":
        return _explain_add(int(m.group(1)), int(m.group(2)), style, slip)
    if name == "chain":
        return _explain_chain(m, slip)
    if name == "sum":
        return _explain_sum(m, style, slip)
    if name == "mood":
        return _explain_mood(m, slip)
    raise Unsupported(f"skills oracle has no worked solution for {name!r}")


def decompose(skill: Skill, m: re.Match[str]) -> list[tuple[str, str]]:
    """(sub-question, answer) pairs; later sub-questions refer to earlier answers as #1, #2, ..."""
    if skill.name == "chain":
        return _chain_steps(m)
    if skill.name == "sum":
        return _sum_steps(m)
    return [(m.group(0), skill.solve(m))]  # a one-step problem is its own only sub-question


def last_like(reply: str, gold: str) -> str | None:
    """The last word of a reply with the gold answer's shape (digits, or letters of its case)."""
    shape = r"-?\d+" if gold.lstrip("-").isdigit() else r"[A-Z]+" if gold.isupper() else r"[a-z]+"
    words = re.findall(rf"(?<![\w]){shape}(?![\w])", reply)
    return words[-1] if words else None


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

    def verify(self, instruction: Instruction, answer: str) -> bool | None:
        try:
            gold = self.solve(instruction.text)
        except Unsupported:
            return None
        if answer.strip() == gold:
            return True
        return self.options.answer_in_reply and last_like(answer, gold) == gold

    def rewrite(self, text: str, mode: str, variant: int) -> str:
        """hard: a sibling of the same skill and level; easy: the same skill at a rarer level."""
        skill, m = self.parse(text)
        level = skill.level_of(m)
        rng = _rng("rewrite", text, mode, variant)
        if mode == "easy":
            # "Rarer" for this pack: the extreme levels, which uniform sampling visits least.
            level = rng.choice([lv for lv in (1, 5) if lv != level] or [1])
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
