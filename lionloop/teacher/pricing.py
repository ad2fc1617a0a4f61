"""What a teacher's calls cost by request kind, and how many of the next calls a sum pays for.

Under a cost budget calls go out in chunks the money left allows. A judge or a rewrite prompt costs
five to ten answers, so a chunk is priced by its calls' kinds (the mean price of each kind's calls so
far), not at the run's mean price: chunks sized at the mean overspent a budget by up to that factor.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence


class KindPrices:
    """Running (calls, cost) per request kind; thread-safe (a teacher's backend may answer from
    several threads)."""

    def __init__(self) -> None:
        self._sums: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def add(self, kind: str, cost: float) -> None:
        """One paid call of `kind` (or one paid before a crash and served from the cache)."""
        with self._lock:
            n, total = self._sums.get(kind, (0, 0.0))
            self._sums[kind] = (n + 1, total + cost)

    def affordable(self, kinds: Sequence[str], money: float) -> int:
        """How many of the next calls (their request kinds, in order) `money` pays for, each at the
        mean price of its kind so far; a kind not yet priced goes first and alone (its price is
        learnt from it), or ends the chunk."""
        with self._lock:
            prices = {k: total / n for k, (n, total) in self._sums.items()}
        n, spent = 0, 0.0
        for kind in kinds:
            price = prices.get(kind)
            if price is None:
                return 1 if n == 0 and money > 0 else n
            if spent + price > money + 1e-9:  # float sums of prices: a cent is not lost to rounding
                break
            spent, n = spent + price, n + 1
        return n
