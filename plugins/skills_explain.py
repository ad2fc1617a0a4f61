"""The `skills` oracle's worked solutions: rationales with optional slips, decompositions into
(sub-question, answer) steps, and the answer-shaped last word of a reply."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from lionloop import Unsupported

from .skills_defs import ALPHABET, NEGATIVE, OPS, POSITIVE, Skill, _chain_steps, _shift, _sum_steps

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
