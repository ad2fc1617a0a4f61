"""The base of every config section: unknown keys, NaN and booleans-as-numbers refused."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

# numpy's seed range: transformers.set_seed passes the run's seed (plus the round) to numpy.
MAX_SEED = 2**32 - 1


def _is_number_field(annotation: Any) -> bool:
    """True for `int`, `float` and their optional forms (not `bool`, which is an int subclass)."""
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(a in (int, float) for a in typing.get_args(annotation))
    return False


class _Section(BaseModel):
    # Unknown keys are typos far more often than intent: reject them with their path. NaN and
    # infinities are never a setting: `judge.tau: .inf` made every case easy without a word.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        # pydantic reads `true` as 1 for an int field: `steps_per_round: true` trained 1 step.
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(v, bool) and field is not None and _is_number_field(field.annotation):
            raise ValueError(f"expected a number, got {str(v).lower()}")
        return v
