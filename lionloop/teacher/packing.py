"""Packing requests k to a call (`teacher.rewrites_per_call`) and unpacking the replies.

A user pays per call, and a rewrite's prompt is mostly its rules: several rewrites of one mode
share one prompt and one call (batch prompting, Cheng et al. 2023). Packing happens inside
`Teacher.ask`, so every caller — generator plugins included — keeps asking for single requests and
gets one result per request back; the cache, the budget and the accounting see the packed calls.
A chunk of one stays a plain `Rewrite` (the same prompt, and cache key, as without packing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lionloop.teacher.requests import ParseError, Rejected, Rewrite, RewriteOut, TeacherRequest

# The client's `Result` dataclass (the client imports this module): each is copied with `replace`.
Result = Any


class Packed(TeacherRequest):
    """Several requests of one kind answered in one call (batch prompting: Cheng et al. 2023, "Batch
    Prompting: Efficient Inference with Large Language Model APIs"): the prompt holds every item,
    the reply one output per item, in order. A subclass sets `items` (the packed requests) and
    `Output` (a model whose `outputs` field lists the items' outputs). `split` turns a parsed reply
    into one output (or one reason it failed) per item; an offline backend answers each item on its
    own and `join`s them."""

    items: tuple[TeacherRequest, ...]

    def _untrusted_text(self) -> list[str]:
        return [t for item in self.items for t in item._untrusted_text()]

    def join(self, outputs: list[dict[str, Any]]) -> dict[str, Any]:
        """The packed reply made of the items' own outputs (as an offline backend makes them)."""
        return {"outputs": outputs}

    def split(self, out: BaseModel) -> list[BaseModel | ParseError]:
        """Per item, its output with the item's own `check` applied, or the error that check raised."""
        parts: list[BaseModel | ParseError] = []
        for item, one in zip(self.items, out.outputs, strict=True):  # type: ignore[attr-defined]
            try:
                parts.append(item.check(one))
            except ParseError as err:
                parts.append(err)
        return parts

    def check(self, out: BaseModel) -> BaseModel:
        got, want = len(out.outputs), len(self.items)  # type: ignore[attr-defined]
        if got != want:
            raise ParseError(f"{self.kind}: {got} outputs for {want} items")
        return out


class RewritesOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    outputs: list[RewriteOut]


class Rewrites(Packed):
    """Several `Rewrite`s of one mode in one call: one new instruction for each given one."""

    kind: ClassVar[str] = "rewrites"
    template: ClassVar[str] = "rewrites.j2"
    Output: ClassVar[type[BaseModel]] = RewritesOut

    items: tuple[Rewrite, ...] = Field(min_length=2)
    mode: Literal["hard", "easy", "simpler"] = "hard"

    @model_validator(mode="after")
    def _one_mode(self) -> Rewrites:
        if any(item.mode != self.mode for item in self.items):
            raise ValueError("every packed rewrite has the request's mode (the system message states it once)")
        return self

    def json_schema(self) -> dict[str, Any]:  # type: ignore[override]  # sized by the instance
        n = len(self.items)
        return {
            "type": "object",
            "properties": {"outputs": {"type": "array", "items": Rewrite.json_schema(), "minItems": n, "maxItems": n}},
            "required": ["outputs"],
            "additionalProperties": False,
        }

    def echoed(self, blob: str, out: BaseModel) -> bool:
        return False  # as for one rewrite: each item's `check` rejects a copy of its original


def pack(requests: Sequence[TeacherRequest], per_call: int) -> tuple[list[TeacherRequest], list[list[int]]]:
    """The requests to send, and for each the indices of the asked requests it carries.

    Rewrites are packed by mode, `per_call` to a call, in the order asked; every other request is
    sent as it is. The packing depends only on the requests and their order, so a resumed stage
    asking the same requests sends the same calls and finds them in the cache."""
    sent: list[TeacherRequest] = []
    members: list[list[int]] = []
    by_mode: dict[str, list[int]] = {}
    for i, req in enumerate(requests):
        if per_call > 1 and type(req) is Rewrite:
            by_mode.setdefault(req.mode, []).append(i)
        else:
            sent.append(req)
            members.append([i])
    for mode, idx in by_mode.items():
        for at in range(0, len(idx), per_call):
            chunk = idx[at : at + per_call]
            items = tuple(requests[i] for i in chunk)
            sent.append(items[0] if len(items) == 1 else Rewrites(items=items, mode=mode))  # type: ignore[arg-type]
            members.append(chunk)
    return sent, members


def unpack(requests: Sequence[TeacherRequest], members: list[list[int]],
           results: Sequence[Result]) -> tuple[list[Result], list[int]]:
    """One result per asked request: a packed call's outputs split over its items (each item's
    own check applied), or its failure given to every item; and the items of read replies that
    failed their own check (an item repeating its original), to be asked again."""
    out: list[Result | None] = [None] * len(requests)
    alone: list[int] = []
    for idx, res in zip(members, results, strict=True):
        if len(idx) == 1 and res.request is requests[idx[0]]:
            out[idx[0]] = res
            continue
        parts: list[object] = res.request.split(res.output) if res.ok else [None] * len(idx)  # type: ignore[attr-defined]
        for i, part in zip(idx, parts, strict=True):
            req = requests[i]
            if part is None:  # the call failed: so did each of its items, for its reason
                out[i] = replace(res, request=req)
            elif isinstance(part, ParseError):
                out[i] = replace(res, request=req, output=None, error=f"parse: {part}", rejected=isinstance(part, Rejected))
                alone.append(i)
            else:
                out[i] = replace(res, request=req, output=part)
    return [r for r in out if r is not None], alone


def item_progress(progress: Callable[[int], None] | None, asked: int, sent: int) -> Callable[[int], None] | None:
    """A progress callback counting asked requests while the packed calls finish: each finished
    call advances the mean number of requests a call carries (the last one tops up the rest)."""
    if progress is None or asked == sent:
        return progress
    done = [0, 0]  # calls finished, requests reported

    def step(n: int) -> None:
        done[0] += n
        upto = asked if done[0] >= sent else done[0] * asked // sent
        if upto > done[1]:
            progress(upto - done[1])
            done[1] = upto

    return step

