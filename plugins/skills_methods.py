"""The skills oracle's answers to the requests of the survey's later generators: `scott`, `icl`,
`mt_cot` and `fu_cot`. Kept apart from `skills.py` (the pack itself), which hands every request
kind it does not know to `handle` here.

What the oracle can and cannot stand in for:
  perturb_answer         a plausible wrong answer: what the worked solution gives when one step
                         slips (for labelled skills: another label)
  contrastive_rationale  a rationale that ends in the answer it is given, gold or perturbed. The
                         oracle writes exact rationales for any answer, so SCOTT's contrastive
                         decoding has nothing to fix here; the decoding itself runs on a model
                         with token scores (the `hf` backend, `plugins/contrastive.py`).
  rationalize            MT-CoT's rationalisation: a rationale for the answer it is given
  cot_explain            MT-CoT's chain of thought (no answer given): wrong with
                         P = sample_error_rate x temperature, like `cot_sample`
  few_shot_answer        the answer, whatever demonstrations precede it (an exact teacher)
  few_shot_cot           Fu et al.'s in-context chain of thought: like `cot_explain`
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from lionloop import TeacherRequest, Unsupported

# Slipped worked solutions tried per instruction: every skill has many ways to slip, and the
# perturbed answers and the rationales for them are read from the same list, so a rationale is
# always found for a perturbed answer the oracle gave.
SLIPS = 48


def _slipped(pack: Any, kit: ModuleType, text: str) -> list[tuple[str, str]]:
    """(rationale, answer) of every slipped solution of `text` whose answer is not the gold one,
    first occurrence of each answer only, in a fixed order."""
    skill, m = pack.parse(text)
    gold = skill.solve(m)
    seen: dict[str, str] = {}
    for j in range(SLIPS):
        rng = kit._rng("slip", text.strip(), j)
        style = rng.randrange(kit.STYLES.get(skill.name, 1))
        rationale, answer = kit.explain(skill, m, style, rng)
        if answer != gold and answer not in seen:
            seen[answer] = rationale
    return [(r, a) for a, r in seen.items()]


def wrong_answer(pack: Any, kit: ModuleType, text: str, variant: int) -> str:
    """A plausible wrong answer to `text` (the `variant`-th distinct one, cycling)."""
    skill, m = pack.parse(text)
    if skill.name in kit.LABELS:
        others = [x for x in kit.LABELS[skill.name] if x != skill.solve(m)]
        return others[variant % len(others)]
    wrong = _slipped(pack, kit, text)
    if not wrong:
        raise Unsupported(f"skills oracle: no plausible wrong answer to {text!r}")
    return wrong[variant % len(wrong)][1]


def rationale_for(pack: Any, kit: ModuleType, text: str, answer: str) -> str:
    """A worked solution of `text` that ends in `answer` (the gold one, or a slipped one)."""
    skill, m = pack.parse(text)
    answer = answer.strip()
    if answer == skill.solve(m):
        return kit.explain(skill, m)[0]
    for rationale, got in _slipped(pack, kit, text):
        if got == answer:
            return rationale
    if skill.name == "mood" and answer in kit.LABELS["mood"]:
        return _mood_towards(kit, m.group(1).split(), answer)
    raise Unsupported(f"skills oracle: no rationale of {text!r} ends in {answer!r}")


def _mood_towards(kit: ModuleType, words: list[str], label: str) -> str:
    """A mood rationale that misreads words, one after another, until the tally gives `label`."""
    signs = ["+" if w in kit.POSITIVE else "-" if w in kit.NEGATIVE else "0" for w in words]
    want = {"positive": "+", "negative": "-", "neutral": "0"}[label]
    for i, sign in enumerate(signs):
        pos, neg = signs.count("+"), signs.count("-")
        if ("positive" if pos > neg else "negative" if neg > pos else "neutral") == label:
            break
        if sign != want:
            signs[i] = want if want != "0" else ("-" if pos > neg else "+") if sign == "0" else "0"
    pos, neg = signs.count("+"), signs.count("-")
    return " ".join(f"{w}{s}" for w, s in zip(words, signs, strict=True)) + f": {pos}+ {neg}-"


def handle(pack: Any, request: TeacherRequest, kit: ModuleType) -> dict[str, Any]:
    """The oracle's reply to one of the survey generators' requests (by kind), else Unsupported.

    `pack` is the skills pack, `kit` its module (`plugins/skills.py`: `explain`, `LABELS`, ...),
    passed in rather than imported, so the two modules do not import each other."""
    text = getattr(request, "instruction", "")
    kind = request.kind
    if kind == "perturb_answer":
        return {"answer": wrong_answer(pack, kit, text, request.variant)}
    if kind == "contrastive_rationale":
        return {"text": rationale_for(pack, kit, text, request.answer)}
    if kind == "rationalize":
        return {"rationale": rationale_for(pack, kit, text, request.answer)}
    if kind in ("cot_explain", "few_shot_cot"):
        return pack.sample_rationale(text, getattr(request, "sample", 0), request.temperature)
    if kind == "few_shot_answer":
        return {"text": pack.solve(text)}
    raise Unsupported(f"skills oracle cannot answer {kind!r} requests")
