"""Typed plugin options: each plugin declares a pydantic model for its `options` block, and the run
validates it at start-up, so a typo is a one-line config error with its path, not a silent no-op.

Generators declare theirs in `GeneratorSpec(options=...)`; task packs, backends and trainers pass
`options=` to `registry.add_task_pack/add_backend/add_trainer`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lionloop.errors import ConfigError


class PluginOptions(BaseModel):
    """Base of a plugin's options model: unknown keys are refused (they are typos far more often
    than intent), values are checked by type."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GeneratorOptions(PluginOptions):
    """Base of a generator plugin's options: every generator accepts `max_calls`."""

    max_calls: int | None = Field(
        None, ge=0,
        description="Cap on this generator's paid teacher calls per round (default: its share of "
        "generate.max_new_per_round times the plugin's calls per candidate).",
    )


class OptionError(ValueError):
    """Raise it from a validator of an options model to refuse one key: the config error then names
    `<path>.<key>` (a model validator's own errors name only the options block).

        @model_validator(mode="after")
        def _known(self):
            for key in self.model_extra or {}:
                if key not in ALLOWED:
                    raise OptionError(key, "not a field of ...")
            return self
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def validate_options(model: type[BaseModel] | None, data: dict[str, Any], path: str) -> Any:
    """`data` checked against `model` (None: the plugin declares no model and gets the dict as is).

    A bad value raises ConfigError naming its full path, e.g.
    `generate.generators.lion.options.max_task_shar: Extra inputs are not permitted`.
    """
    if model is None:
        return dict(data)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = [str(p) for p in first["loc"]]
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, OptionError):
            loc.append(cause.key)
        where = ".".join([path, *loc])
        more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
        raise ConfigError(f"{where}: {first['msg'].removeprefix('Value error, ')}{more}") from None


def describe(model: type[BaseModel] | None) -> list[str] | None:
    """The names of a model's options, for `lionloop plugins` (None: no model declared)."""
    return None if model is None else sorted(model.model_fields)
