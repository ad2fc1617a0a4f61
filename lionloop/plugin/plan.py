"""What a generator declares (`GeneratorSpec`, returned by its `lionloop_generator_spec` hook) and
the generator plan of a run built from it: for each enabled generator its spec, typed options,
candidate quota, paid-call cap and dedup threshold, resolved once and read by generate, curate and
`lionloop plugins`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from lionloop.config import GenerateConfig
from lionloop.errors import ConfigError
from lionloop.plugin.options import validate_options


@dataclass(frozen=True)
class GeneratorSpec:
    """What a generator plugin consumes and costs (returned by `lionloop_generator_spec`).

    `consumes`: the case kinds it is handed ("hard", "easy"); the others arrive empty.
    `calls_per_candidate`: paid teacher calls one candidate costs it; its default teacher cap per
    round is `share * generate.max_new_per_round * calls_per_candidate` (an explicit
    `options.max_calls` wins), and pacing's price of a candidate until one is measured.
    `calls_for`: where the options change that cost (samples per sibling, a request left out), a
    function of the validated options that gives it; the plan then uses its figure, and
    `calls_per_candidate` is the figure under the default options (what `lionloop plugins` shows).
    `kinds`: the training-row kinds it makes (for documentation).
    `dedup_threshold`: cosine threshold against the pool and the batch for its candidates
    (`generate.generators.<name>.dedup_threshold` wins); the eval guard keeps `dedup.threshold`.
    `options`: a pydantic model of its `generate.generators.<name>.options` (subclass
    `GeneratorOptions`); the run validates the config against it at start-up and `ctx.options()`
    returns the validated instance. None: the options arrive as an unchecked dict.
    """

    consumes: tuple[str, ...] = ("hard", "easy")
    calls_per_candidate: float = 4.0
    calls_for: Callable[[Any], float] | None = None
    kinds: tuple[str, ...] = ("answer",)
    # Near-duplicates of the pool by design (e.g. minimal-edit counterfactuals) need a looser
    # pool threshold; None keeps `dedup.threshold`. The eval-set guard never loosens.
    dedup_threshold: float | None = None
    options: type[BaseModel] | None = None


@dataclass(frozen=True)
class PlannedGenerator:
    """One enabled generator as the round runs it."""

    name: str
    spec: GeneratorSpec
    options: Any  # the plugin's options model instance (a dict when it declares none)
    quota: int  # candidates it may propose per round: share x max_new_per_round
    calls_per_candidate: float  # paid calls one candidate costs under these options
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
        calls = spec.calls_per_candidate if spec.calls_for is None else float(spec.calls_for(options))
        max_calls = int(explicit) if explicit is not None else int(quota * calls)
        threshold = gen.dedup_threshold if gen.dedup_threshold is not None else spec.dedup_threshold
        plan.append(PlannedGenerator(name, spec, options, quota, calls, max_calls, threshold))
    return plan
