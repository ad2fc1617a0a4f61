"""A scripted chat "LLM" for the own-data example (`examples/own-data/`), behind `ScriptedServer`.

It reads lionloop's own rendered prompts, like `skills_teacher.SkillsChat`, and knows five kinds of
question: arithmetic, capitals, unit conversions, spelling backwards and multiple choice. It answers
the way chat models do (a sentence, not the bare reference: "The capital of Japan is Tokyo."),
rewrites a question into a new one of its kind, and judges two answers like a plausible but
imperfect LLM referee: a right answer scores 10 unless it is much terser than the other (8: "less
helpful"), a wrong one scores by its likeness to the right one, and a near miss fools it (10): a
number within 20% of the right one, or text a letter off. So the verifier and this referee
disagree now and then, as real ones do.

Serve it for the example (prints "READY http://127.0.0.1:PORT/v1")::

    python -m lionloop.testing.dataset_teacher --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import hashlib
import json
import random
import re
from typing import Any

from lionloop.plugin.verifiers import normalize, numbers
from lionloop.testing.fault_server import ScriptedServer
from lionloop.testing.skills_teacher import fenced_blocks

CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin",
    "Canada": "Ottawa", "Australia": "Canberra", "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima",
    "Norway": "Oslo", "Poland": "Warsaw", "Greece": "Athens", "Portugal": "Lisbon", "Ireland": "Dublin",
    "Austria": "Vienna", "Sweden": "Stockholm", "Finland": "Helsinki", "Chile": "Santiago", "Cuba": "Havana",
    "Thailand": "Bangkok", "Vietnam": "Hanoi", "Hungary": "Budapest", "Denmark": "Copenhagen",
    "Argentina": "Buenos Aires", "Mexico": "Mexico City", "India": "New Delhi", "China": "Beijing",
    "Russia": "Moscow", "Turkey": "Ankara", "Iran": "Tehran", "Ghana": "Accra", "Nepal": "Kathmandu",
    "Belgium": "Brussels", "Iceland": "Reykjavik", "Morocco": "Rabat", "Colombia": "Bogota",
}
UNITS = {  # (small unit, big unit): how many small in one big
    ("centimetres", "metres"): 100, ("grams", "kilograms"): 1000, ("minutes", "hours"): 60,
    ("seconds", "minutes"): 60, ("millimetres", "centimetres"): 10, ("hours", "days"): 24,
}
WORDS = ("lion", "river", "stone", "cloud", "garden", "planet", "window", "candle", "forest", "mirror",
         "pencil", "rocket", "silver", "tiger", "orange", "bridge", "castle", "dragon", "engine", "falcon",
         "ginger", "harbor", "island", "jungle", "kettle", "lemon", "meadow", "needle", "oyster", "parrot")
CHOICES = {  # question -> (options, the right letter)
    "Which planet is known as the red planet?": (("Venus", "Mars", "Jupiter", "Saturn"), "B"),
    "Which gas do plants take in for photosynthesis?": (("Oxygen", "Nitrogen", "Carbon dioxide", "Helium"), "C"),
    "How many legs does a spider have?": (("Six", "Eight", "Ten", "Four"), "B"),
    "Which ocean is the largest?": (("Pacific", "Atlantic", "Indian", "Arctic"), "A"),
    "What is the boiling point of water at sea level in Celsius?": (("90", "110", "100", "120"), "C"),
    "Which animal is the largest mammal?": (("Elephant", "Blue whale", "Giraffe", "Hippo"), "B"),
    "Which instrument has 88 keys?": (("Guitar", "Violin", "Flute", "Piano"), "D"),
    "Which metal is liquid at room temperature?": (("Mercury", "Iron", "Copper", "Tin"), "A"),
    "How many continents are there?": (("Five", "Six", "Seven", "Eight"), "C"),
    "Which language has the most native speakers?": (("English", "Mandarin", "Spanish", "Hindi"), "B"),
    "Which shape has three sides?": (("Square", "Circle", "Triangle", "Hexagon"), "C"),
    "What do bees make?": (("Milk", "Honey", "Silk", "Wax paper"), "B"),
    "Which season comes after winter?": (("Autumn", "Summer", "Spring", "Monsoon"), "C"),
    "Which bird cannot fly?": (("Eagle", "Penguin", "Sparrow", "Parrot"), "B"),
    "What is frozen water called?": (("Steam", "Ice", "Fog", "Dew"), "B"),
    "Which organ pumps blood?": (("Lungs", "Liver", "Heart", "Kidney"), "C"),
}
OPS = {"+": lambda a, b: a + b, "plus": lambda a, b: a + b, "-": lambda a, b: a - b,
       "minus": lambda a, b: a - b, "times": lambda a, b: a * b}

_ARITH = re.compile(r"What is (\d+) (\+|plus|-|minus|times) (\d+)\?")
_CAPITAL = re.compile(r"What is the capital of ([A-Z][A-Za-z ]+)\?")
_UNIT = re.compile(r"How many (\w+) are in (\d+) (\w+)\?")
_SPELL = re.compile(r"Spell the word '(\w+)' backwards\.")


def mc_text(question: str) -> str:
    options, _ = CHOICES[question]
    return question + " " + " ".join(f"{'ABCD'[k]}) {o}" for k, o in enumerate(options))


_MC = {mc_text(q): q for q in CHOICES}


def _rng(*parts: Any) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big"))


def solve(text: str) -> tuple[str, str] | None:
    """(category, the bare answer) of a question this teacher knows, else None."""
    text = " ".join(text.split())
    if m := _ARITH.fullmatch(text):
        return "arithmetic", str(OPS[m[2]](int(m[1]), int(m[3])))
    if (m := _CAPITAL.fullmatch(text)) and m[1] in CAPITALS:
        return "capitals", CAPITALS[m[1]]
    if (m := _UNIT.fullmatch(text)) and (m[1], m[3]) in UNITS:
        return "units", str(int(m[2]) * UNITS[(m[1], m[3])])
    if m := _SPELL.fullmatch(text):
        return "spelling", m[1][::-1]
    if text in _MC:
        return "choice", CHOICES[_MC[text]][1]
    return None


def say(text: str) -> str:
    """The teacher's answer, worded as a chat model would."""
    solved = solve(text)
    if solved is None:
        return "I am not sure about that one."
    kind, answer = solved
    if kind == "arithmetic":
        return f"The answer is {answer}."
    if kind == "capitals":
        country = _CAPITAL.fullmatch(" ".join(text.split()))[1]
        return f"The capital of {country} is {answer}."
    if kind == "units":
        return f"That is {answer}."
    if kind == "choice":
        options, _ = CHOICES[_MC[" ".join(text.split())]]
        return f"{answer}) {options['ABCD'.index(answer)]}"
    return answer


def rewrite(text: str, variant: int, easy: bool) -> str:
    """A new question of the same kind (easy: a rarer form of it)."""
    solved = solve(text)
    rng = _rng("rewrite", text, variant, easy)
    kind = solved[0] if solved else rng.choice(["arithmetic", "capitals", "units", "spelling", "choice"])
    if kind == "arithmetic":
        op = rng.choice(["times", "minus"] if easy else ["+", "plus", "-"])
        a, b = rng.randrange(10, 100), rng.randrange(2, 10 if op == "times" else 60)
        return f"What is {a} {op} {b}?"
    if kind == "capitals":
        return f"What is the capital of {rng.choice(sorted(CAPITALS))}?"
    if kind == "units":
        small, big = rng.choice(sorted(UNITS))
        return f"How many {small} are in {rng.randrange(2, 30 if not easy else 200)} {big}?"
    if kind == "spelling":
        return f"Spell the word '{rng.choice(WORDS)}' backwards."
    return mc_text(rng.choice(sorted(CHOICES)))


def _right(answer: str, gold: str) -> bool:
    a, g = normalize(answer), normalize(gold)
    return bool(g) and f" {g} " in f" {a} "


def score(answer: str, gold: str, other: str) -> int:
    """This referee's 1-10 score. A right answer: 10, or 8 when it is far terser than the other
    answer (it rates helpfulness too). A wrong number within 20% of the right one fools it (10), a
    farther one scores 1-4. Other wrong answers score by their likeness to a right one, and a near
    miss (a letter off) fools it too."""
    if _right(answer, gold):
        return 8 if len(answer.strip()) * 2 < len(other.strip()) else 10
    a = normalize(answer)
    likeness = difflib.SequenceMatcher(a=a, b=normalize(gold)).ratio()
    if _right(other, gold):
        likeness = max(likeness, difflib.SequenceMatcher(a=a, b=normalize(other)).ratio())
    if numbers(gold):
        # Like many LLM judges it does not redo the sums: a number close to the right one passes.
        got, want = numbers(answer), numbers(gold)[-1]
        close = bool(got) and got[-1] != want and abs(got[-1] - want) <= 0.2 * max(1.0, abs(want))
        return 10 if close else 1 + int(3 * likeness)
    return 10 if likeness >= 0.85 else 1 + int(6 * likeness)


class ExampleChat:
    """`responder(body) -> content` for `ScriptedServer`: the example's teacher and referee."""

    def __init__(self) -> None:
        self.kinds: dict[str, int] = {}

    def __call__(self, body: dict[str, Any]) -> str:
        user = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        blocks = fenced_blocks(user)
        kind = "judge" if "ASSISTANT 1 ANSWER" in blocks else "rewrite" if "GIVEN INSTRUCTION" in blocks else "answer"
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if kind == "answer":
            return say(user)
        if kind == "rewrite":
            m = re.search(r"variation #(\d+)", user)
            new = rewrite(blocks["GIVEN INSTRUCTION"], int(m[1]) - 1 if m else 0, "even rarer" in user)
            return json.dumps({"instruction": new, "input": ""})
        solved = solve(blocks["INSTRUCTION"])
        one, two = blocks["ASSISTANT 1 ANSWER"], blocks["ASSISTANT 2 ANSWER"]
        if solved is None:
            return json.dumps({"explanation": "I cannot tell which is right.", "score_1": 5, "score_2": 5})
        gold = solved[1]
        return json.dumps({"explanation": f"The right answer is {gold}.",
                           "score_1": score(one, gold, two), "score_2": score(two, gold, one)})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Serve the own-data example's scripted teacher (OpenAI-compatible).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default="teacher")
    args = p.parse_args(argv)
    srv = ScriptedServer(responder=ExampleChat(), model=args.model, host=args.host, port=args.port)

    async def run() -> None:
        task = asyncio.create_task(srv.serve_forever())
        while not srv._ready.is_set():  # noqa: SLF001
            await asyncio.sleep(0.01)
        print(f"READY {srv.base_url}", flush=True)
        await task

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
