"""The offline task pack `skills`: string and arithmetic skills of graded difficulty, with an oracle.

Each skill has levels 1-5 (longer strings, more digits). A ~1M-parameter student learns copy,
upper, shift and short reversals within minutes on 2 CPU cores; long sorts, counting and
multi-digit addition stay out of its reach for longer, so the loop has weak spots to find.
"""

from __future__ import annotations

import difflib
import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lionloop.config import TaskConfig
from lionloop.errors import ConfigError, Unsupported
from lionloop.hookspecs import hookimpl
from lionloop.records import Instruction
from lionloop.requests import Answer, Judge, Rewrite, TeacherRequest

# A small alphabet keeps the tiny student's job about structure, not about 26 symbols
# (measured: with a-z, reversal of 5+ letters stayed near 0% where a-h reached 40-90%).
ALPHABET = "abcdefgh"
LEVELS = (1, 2, 3, 4, 5)


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
            s1, s2 = _score(request.answer_1, gold), _score(request.answer_2, gold)
            return {"explanation": f"expected {gold!r}", "score_1": s1, "score_2": s2}
        if isinstance(request, Rewrite):
            return {"instruction": self.pack.rewrite(request.instruction, request.mode, request.variant), "input": ""}
        raise Unsupported(f"skills oracle cannot answer {request.kind!r} requests")


def _score(answer: str, gold: str) -> float:
    """10 when exactly right; otherwise 1-8 by character overlap, so any miss is >= 2 below."""
    a = answer.strip()
    if a == gold:
        return 10.0
    return float(1 + int(7 * difflib.SequenceMatcher(a=a, b=gold).ratio()))


class SkillsPack:
    """Seeds, eval set, verifier and oracle for the string/arithmetic skills."""

    name = "skills"

    def __init__(self, cfg: TaskConfig, seed: int) -> None:
        names = cfg.skills or list(SKILLS)
        unknown = [s for s in names if s not in SKILLS]
        if unknown:
            raise ConfigError(f"task.skills: unknown skill(s) {unknown} (known: {list(SKILLS)})")
        self._skills = names
        self.cfg = cfg
        self.seed = seed
        # The eval set does not move with the run seed, so runs with different seeds are
        # measured on the same held-out instructions.
        self.eval_seed = int(cfg.options.get("eval_seed", 1234))

    def skills(self) -> list[str]:
        return list(self._skills)

    def parse(self, text: str) -> tuple[Skill, re.Match[str]]:
        text = text.strip()
        for skill in SKILLS.values():
            m = skill.pattern.match(text)
            if m:
                return skill, m
        raise Unsupported(f"skills oracle does not recognise the instruction {text[:60]!r}")

    def solve(self, text: str) -> str:
        skill, m = self.parse(text)
        return skill.solve(m)

    def make(self, skill: str, level: int, rng: random.Random, origin: str = "seed",
             split: str = "train", parent_id: str | None = None, round_born: int = 0) -> Instruction:
        text = SKILLS[skill].make(rng, level)
        return Instruction(
            text=text, task=skill, origin=origin, split=split, parent_id=parent_id,
            round_born=round_born, meta={"skill": skill, "level": level},
        )

    def _sample(self, per_skill: int, stream: str, seed: int, exclude: set[str]) -> list[Instruction]:
        out: list[Instruction] = []
        for skill in self._skills:
            rng = _rng(stream, seed, skill)
            seen = set(exclude)
            tries = 0
            while sum(1 for i in out if i.task == skill) < per_skill and tries < per_skill * 50:
                level = LEVELS[len([i for i in out if i.task == skill]) % len(LEVELS)]
                ins = self.make(skill, level, rng, split="eval" if stream == "eval" else "train")
                tries += 1
                if ins.id in seen:
                    continue
                seen.add(ins.id)
                out.append(ins)
        return out

    def eval_set(self, per_skill: int) -> list[Instruction]:
        return self._sample(per_skill, "eval", self.eval_seed, set())

    def seeds(self, per_skill: int) -> list[Instruction]:
        held_out = {i.id for i in self.eval_set(self.cfg.eval_per_skill)}
        return self._sample(per_skill, "seeds", self.seed, held_out)

    def verify(self, instruction: Instruction, answer: str) -> bool | None:
        try:
            return answer.strip() == self.solve(instruction.text)
        except Unsupported:
            return None

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

    def oracle(self) -> SkillsOracle:
        return SkillsOracle(self)


@hookimpl
def lionloop_register(registry: Any) -> None:
    registry.add_task_pack("skills", SkillsPack)
