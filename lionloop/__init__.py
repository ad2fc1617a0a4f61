"""lionloop: adversarial distillation loops in the style of Lion."""

from __future__ import annotations

__version__ = "0.1.0"
