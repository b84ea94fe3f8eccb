"""`workers = N`: each worker's exact share of the gateway-wide stream limits.

`[limits] max_concurrent_streams` and `max_queue` hold for the whole gateway, all workers
together: worker i of N gets `total // N` slots, plus one for the first `total % N` workers,
so the shares add up to the limit exactly and no sum of workers can exceed it. Shared through
each worker's own memory rather than through Redis: no round trip per stream, and a Redis
that is down neither lifts the limit nor stops every stream. The kernel spreads connections
over the workers (SO_REUSEPORT), so their shares fill evenly; the price is that a worker whose
share is full queues a stream while another may have a slot free (see docs/design.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry


def worker_share(total: int, workers: int, index: int) -> int:
    """Worker `index`'s (0-based) part of `total` split over `workers`: exact, as even as can be."""
    if not 0 <= index < workers:
        raise ValueError(f"worker {index} of {workers}")
    return total // workers + (1 if index < total % workers else 0)


def gauge_by_label(registry: CollectorRegistry, metric: str, label: str) -> Mapping[str, int]:
    """The values of gauge `metric` by `label`, as `registry` reports them (with workers:
    summed over the live workers by prometheus-client's multiprocess collector)."""
    found: dict[str, int] = {}
    for family in registry.collect():
        if family.name != metric:
            continue
        for sample in family.samples:
            name = sample.labels.get(label)
            if name is not None:
                found[name] = found.get(name, 0) + int(sample.value)
    return found
