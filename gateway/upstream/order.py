"""The order in which a plan's targets are tried, with no I/O.

Rules:
- "fallback": the plan's order.
- "balance": targets whose circuit (per upstream and model) is open go last; the rest by
  in-flight requests, fewest first; among equals, a weighted random order (weight 3 is
  first three times as often as weight 1: Efraimidis-Spirakis keys `u ** (1 / weight)`, largest first).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..routing import Target


def order_targets(
    targets: Sequence[Target], strategy: str, *, in_flight: Mapping[str, int],
    is_open: Callable[[Target], bool], draw: Callable[[], float],
) -> list[Target]:
    if strategy != "balance":
        return list(targets)

    def key(target: Target) -> tuple[bool, int, float]:
        name = target.upstream.name
        lottery = draw() ** (1.0 / target.upstream.weight)
        return is_open(target), in_flight.get(name, 0), -lottery

    return sorted(targets, key=key)
