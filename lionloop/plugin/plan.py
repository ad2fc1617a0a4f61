"""The generator plan of a run: for each enabled generator, its spec, typed options, candidate quota,
paid-call cap and dedup threshold, resolved once and read by generate, curate and `lionloop plugins`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lionloop.config import GenerateConfig
from lionloop.errors import ConfigError
from lionloop.plugin.hookspecs import GeneratorSpec
from lionloop.plugin.options import validate_options


@dataclass(frozen=True)
class PlannedGenerator:
    """One enabled generator as the round runs it."""

    name: str
    spec: GeneratorSpec
    options: Any  # the plugin's options model instance (a dict when it declares none)
    quota: int  # candidates it may propose per round: share x max_new_per_round
    max_calls: int  # paid teacher calls it may spend per round
    dedup_threshold: float | None  # pool/batch threshold for its candidates (None: dedup.threshold)


def plan_generators(gcfg: GenerateConfig, specs: dict[str, GeneratorSpec]) -> list[PlannedGenerator]:
    """The enabled generators of `generate.generators`, in config order, with what each may spend.

    `specs` are the loaded generator plugins' specs (`PluginManager.generator_specs()`). An
    enabled generator with no such plugin, or options its model refuses, is a ConfigError.
    """
    plan = []
    for name, gen in gcfg.generators.items():
        if not gen.enabled:
            continue
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            raise ConfigError(f"generate.generators.{name}: no such generator plugin is loaded (loaded: {known})")
        options = validate_options(spec.options, gen.options, f"generate.generators.{name}.options")
        quota = int(gen.share * gcfg.max_new_per_round)
        explicit = getattr(options, "max_calls", None) if spec.options else options.get("max_calls")
        max_calls = int(explicit) if explicit is not None else int(quota * spec.calls_per_candidate)
        threshold = gen.dedup_threshold if gen.dedup_threshold is not None else spec.dedup_threshold
        plan.append(PlannedGenerator(name, spec, options, quota, max_calls, threshold))
    return plan
