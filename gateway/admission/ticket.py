"""Admission as one stage: take from the tenant's buckets (and, for a stream, a slot), hand
back a `Ticket`, and settle it on the way out.

Reservation = prompt estimate + `max_tokens` (or `server.default_max_tokens`), clamped to
the bucket. `ticket.settle(usage)` charges what the answer really used; a request that ends
without settling (refused, shed, failed before any upstream answered) is refunded in full.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..config import Tenant
from ..dialects import Usage
from ..metrics import Metrics
from .limiter import Limiter, TenantLimits
from .queue import StreamQueue


def estimate_prompt_tokens(raw_body: bytes) -> int:
    """A cheap upper-ish estimate (~4 bytes a token) used only to reserve; settled later.
    Measured on the body's bytes: no re-encoding (which deep nesting could make fail)."""
    return max(1, len(raw_body) // 4)


@dataclass(slots=True)
class Ticket:
    headers: dict[str, str]  # the x-ratelimit-* headers of the decision
    prompt_estimate: int
    reserved: int
    queue_wait: float | None = None  # seconds waited for a stream slot
    usage: Usage | None = None  # what to charge: set by `settle`

    def settle(self, usage: Usage) -> None:
        """Charge `usage` when the ticket is given back (an upstream answered)."""
        self.usage = usage


class Gate:
    """The app's admission stage: limiter + stream queue."""

    def __init__(self, limiter: Limiter, queue: StreamQueue, metrics: Metrics, default_max_tokens: int):
        self.limiter = limiter
        self.queue = queue
        self._metrics = metrics
        self._default_max_tokens = default_max_tokens

    @asynccontextmanager
    async def admit(
        self, tenant: Tenant, body: dict[str, Any], raw: bytes, *, slot: bool,
    ) -> AsyncIterator[Ticket]:
        limits = TenantLimits(tenant.name, tenant.requests_per_minute, tenant.tokens_per_minute)
        prompt = estimate_prompt_tokens(raw)
        answer = body.get("max_tokens") or body.get("max_completion_tokens")
        reserve = prompt + (answer if isinstance(answer, int) else self._default_max_tokens)
        admission = await self.limiter.admit(limits, reserve)
        ticket = Ticket(admission.quota.headers(), prompt, admission.reserved_tokens)
        try:
            if slot:
                since = time.perf_counter()
                try:
                    ticket.queue_wait = await self.queue.acquire(tenant.priority)
                finally:  # admitted, shed or gone: every wait is observed
                    self._metrics.queue_wait.observe(time.perf_counter() - since)
                try:
                    yield ticket
                finally:
                    self.queue.release()
            else:
                yield ticket
        finally:
            used = ticket.usage.total if ticket.usage is not None else 0
            await self.limiter.settle(limits, admission.reserved_tokens, used,
                                      refund_request=ticket.usage is None and admission.took_request)
