"""The pass-through sink for an OpenAI-dialect stream whose usage the gateway asked for and the
client did not (`gateway.exact_usage`): the upstream's bytes as they are, minus the usage-only
last chunk. Reads that do not mention `"usage"` are written untouched, without parsing."""

from __future__ import annotations

from ..exact_usage import without_usage_only
from ..markers import Marker
from ..shapes import ErrorShape
from .sinks import PassThrough, Write


class HiddenUsage(PassThrough):
    """`passes` holds: what goes out is `watch(complete)` (the usage-only chunk taken out of
    it), which the relay writes itself; an empty write sends nothing."""

    __slots__ = ("_after_dropped",)

    def __init__(self, write: Write, shape: ErrorShape, ends: tuple[Marker, ...],
                 errors: tuple[Marker, ...], end_bytes: bytes = b"") -> None:
        super().__init__(write, shape, ends, errors, end_bytes)
        self._after_dropped = False

    def watch(self, complete: bytes) -> bytes:
        out = PassThrough.watch(self, complete)  # not `super()`: no proxy object per read
        # The meter searched the same read for `"usage"` just before (`stream.py` sets it).
        meter = self.usage_meter
        first = meter.usage_at if meter is not None and meter.seen is out else None
        if first is not None and first < 0 and not self._after_dropped:
            return out  # most reads: no `"usage"` in them, nothing dropped before (as below)
        forward, self._after_dropped = without_usage_only(out, self._after_dropped, first)
        return forward
