"""lionloop: adversarial distillation loops in the style of Lion.

The package's top level is the plugin API (see `lionloop.plugin`): a third-party plugin imports
everything it needs from here, e.g. `from lionloop import hookimpl, Candidate, Instruction`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from lionloop.plugin import *  # noqa: E402, F403 - the plugin API, re-exported
from lionloop.plugin import __all__  # noqa: E402, F401
