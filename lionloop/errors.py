"""The error hierarchy: one base class, built-in bases kept so callers can catch those too."""

from __future__ import annotations


class LionloopError(Exception):
    """Base class of every error lionloop raises on purpose."""


class ConfigError(LionloopError, ValueError):
    """A configuration value is missing, mistyped or out of range; the message names its path."""


class SeedError(LionloopError, ValueError):
    """A seed or eval file cannot be read or has a bad row; the message names file and line."""


class Unsupported(LionloopError, NotImplementedError):
    """A teacher backend cannot answer this request type (e.g. the oracle outside its domain)."""


class PluginError(LionloopError, RuntimeError):
    """A plugin raised; the message names the plugin and the hook."""


class RunError(LionloopError, RuntimeError):
    """A run directory is missing, foreign or inconsistent."""


class RefereeError(LionloopError, RuntimeError):
    """The referee decided too few cases of a round (an outage, a broken judge): the run stops,
    and `lionloop resume` judges the round again once it is back."""

