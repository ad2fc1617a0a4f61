"""The `skills` pack's skills: each one's instruction pattern, instance maker, solver and level,
the default seven and the opt-in three (chain, sum, mood)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

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
