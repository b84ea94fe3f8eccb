"""The pass-through sink for an OpenAI-dialect stream whose usage the gateway asked for and the
client did not (`gateway.exact_usage`): the upstream's bytes as they are, minus the usage-only
last chunk. Reads that do not mention `"usage"` are written untouched, without parsing."""

from __future__ import annotations

from ..exact_usage import without_usage_only
from ..markers import Marker
from ..shapes import ErrorShape
from .sinks import PassThrough, Write


class HiddenUsage(PassThrough):
    passes = False  # `lines` may write less than it was given

    def __init__(self, write: Write, shape: ErrorShape, ends: tuple[Marker, ...],
                 errors: tuple[Marker, ...], end_bytes: bytes = b"") -> None:
        super().__init__(write, shape, ends, errors, end_bytes)
        self._after_dropped = False

    async def lines(self, complete: bytes) -> None:
        complete = self.watch(complete)
        forward, self._after_dropped = without_usage_only(complete, self._after_dropped)
        if forward:
            await self.write(forward)
