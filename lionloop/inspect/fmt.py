"""How figures are written for people: percentages and score gaps (tables, the report, cards)."""

from __future__ import annotations


def pct(x: float | None) -> str:
    """0.6932 -> '69.3%'; None -> '-'."""
    return "-" if x is None else f"{x:.1%}"


def gap(diff: float | None, hard: bool | None = None) -> str:
    """A teacher-minus-student score gap: '+3', or 'same' for identical answers (easy, not scored)."""
    if diff is not None:
        return f"{diff:+g}"
    return "same" if hard is False else "-"
