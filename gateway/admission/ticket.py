"""Admission as one stage: take from the tenant's buckets and budget (and, for a stream, a
slot), hand back a `Ticket`, and settle the books when the handler leaves with its `Charge`.

Reservation = prompt estimate + the largest of `max_tokens`, `max_completion_tokens` and
`max_output_tokens` (or `server.default_max_tokens`) times the answers asked for (the larger
of `n` and `best_of`), clamped to the bucket; with a `budget_usd`, also that request's
worst-case cost at the dearest of its targets' prices (its overflow plan's included). An API
with no answer of its own (embeddings) reserves the prompt only; one admitted by request
count only (count_tokens) reserves no tokens and no budget.

`leave(Charge(...))` charges what the answer really used; a request that leaves with no
charge (refused, shed, failed before any upstream answered) is refunded in full. The handler
works the charge out (usage clamped, the model that answered, its cost) and passes it as a
value: nothing is left on the ticket for admission to read back.

    admitted = gate.admit(...)
    ticket = await admitted.enter()      # refused: raises, and has settled itself
    try: ... finally: await admitted.leave(charge)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from structlog.typing import FilteringBoundLogger

from ..body import CHOICE_FIELDS, TOKEN_LIMITS
from ..config import Tenant
from ..dialects import Usage
from ..errors import GatewayError, Shed
from ..metrics import Metrics
from ..prices import require_prices
from ..spend import PriceTable, micros_to_usd
from .anomaly import MAX_USAGE_TOKENS
from .budget import Budget, MemoryBudget, Reservation
from .limiter import Admission, Limiter, MemoryLimiter, TenantLimits
from .queue import SlotQueue
from .share import gauge_by_label

#: how long the whole gateway's per-tenant stream counts (read from every worker's metrics
#: files) are reused: an admin page lists many tenants
STREAMS_READ_SECONDS = 0.25


def estimate_prompt_tokens(raw_body: bytes) -> int:
    """A cheap upper-ish estimate (~4 bytes a token) used only to reserve; settled later.
    Measured on the body's bytes: no re-encoding (which deep nesting could make fail)."""
    return max(1, len(raw_body) // 4)


@dataclass(slots=True)
class Ticket:
    """Admission's decision, for the handler to read: nothing is written back into it."""

    headers: dict[str, str]  # the x-ratelimit-* headers of the decision
    prompt_estimate: int
    reserved: int
    queue_wait: float | None = None  # seconds waited for a stream slot
    prices: PriceTable | None = None  # the request's snapshot's


@dataclass(frozen=True, slots=True)
class Charge:
    """What an answered request used and costs (whole micro-dollars; None: its model is not
    priced, charged as zero), worked out by the handler and given to `Admitted.leave`."""

    usage: Usage  # clamped (`anomaly.clamp_usage`)
    cost_micros: int | None  # clamped (`anomaly.clamp_cost`)
    model: str  # the model of the attempt that answered
    #: the counts as the upstream reported them, when one was past what any model reaches
    #: (then `usage` is the clamp, and leaving logs a `usage_anomaly` line)
    reported: dict[str, int] | None = None


class Gate:
    """The app's admission stage: limiter + spend budget + stream queue."""

    def __init__(self, limiter: Limiter, queue: SlotQueue, metrics: Metrics, default_max_tokens: int,
                 budget: Budget | None = None, logger: FilteringBoundLogger | None = None):
        self.limiter = limiter
        self.queue = queue
        #: every backend in this process's memory (settling never waits on I/O)
        self.local = isinstance(limiter, MemoryLimiter) and (
            budget is None or isinstance(budget, MemoryBudget))
        self.budget = budget
        self.metrics = metrics
        self.default_max_tokens = default_max_tokens
        self.logger = logger  # for the anomalies settling finds (usage no model reaches)
        #: tenant name -> its upstream calls holding a slot now (streams and non-stream calls
        #: alike; `gateway_tenant_active_streams` keeps its name)
        self.holding: dict[str, int] = {}
        self._gateway_streams: tuple[float, Mapping[str, int]] = (-STREAMS_READ_SECONDS, {})

    def holding_by_tenant(self) -> Mapping[str, int]:
        """Upstream calls holding a slot now per tenant, for the whole gateway: this process's, or
        with workers every live worker's (`gateway_tenant_active_streams`, summed)."""
        if not self.metrics.multiprocess:
            return self.holding
        read_at, streams = self._gateway_streams
        now = time.perf_counter()
        if now - read_at >= STREAMS_READ_SECONDS:
            streams = gauge_by_label(self.metrics.exposed, "gateway_tenant_active_streams", "tenant")
            self._gateway_streams = (now, streams)
        return streams

    def admit(
        self, tenant: Tenant, body: dict[str, Any], raw: bytes, *, slot: bool,
        prices: PriceTable | None = None, models: Sequence[str] = (), tokens: bool = True,
        answer: bool = True,
    ) -> Admitted:
        """`async with gate.admit(...) as ticket:`. `prices`: the request's snapshot's (the
        worst case is reserved and the answer charged at them; None: nothing is priced).
        `models`: every model the request may be charged at (its targets'); by default the
        one the body names. The worst case is reserved at the dearest of them.
        `tokens=False`: admitted by request count only (reserves no tokens and no budget).
        `answer=False`: the API answers no generated tokens (embeddings): the prompt only."""
        return Admitted(self, tenant, body, raw, slot, prices, models, tokens, answer)

    async def settle_books(self, tenant: Tenant, limits: TenantLimits, admission: Admission,
                           used: int, unanswered: bool, reservation: Reservation | None,
                           cost_micros: int) -> None:
        # A request that no upstream answered (refused, shed, failed) is refunded in full.
        await self.limiter.settle(limits, admission.reserved_tokens, used,
                                  refund_request=unanswered and admission.took_request)
        if reservation is not None:
            await self._settle_budget(tenant, reservation, cost_micros)

    async def _settle_budget(self, tenant: Tenant, reservation: Reservation, cost_micros: int) -> None:
        assert self.budget is not None and tenant.budget_usd is not None
        await self.budget.settle(reservation, micros_to_usd(cost_micros))
        try:
            remaining = await self.budget.remaining(tenant.name, tenant.budget_usd, tenant.budget_period)
        except Shed:  # the backend is down: the gauge keeps its last honest value
            return
        self.metrics.budget_remaining.labels(self.metrics.tenant(tenant.name)).set(remaining)


class Admitted:
    """One admission: `enter()` takes from the buckets, the budget and (with `slot`) the
    stream queue and gives the `Ticket`; `leave(charge)` (or a refusal on the way in) gives
    back the slot and settles the books with the handler's `Charge`. A plain object rather
    than an `asynccontextmanager`: a stream holds it for its whole life (no generator frame),
    and leaving takes a value."""

    __slots__ = ("_gate", "_tenant", "_slot", "_prices", "_tokens", "_prompt", "_answer_tokens",
                 "_models", "_limits", "_admission", "_reservation", "_holding")

    def __init__(self, gate: Gate, tenant: Tenant, body: dict[str, Any], raw: bytes, slot: bool,
                 prices: PriceTable | None, models: Sequence[str], tokens: bool,
                 answer: bool = True) -> None:
        self._gate, self._tenant, self._slot, self._tokens = gate, tenant, slot, tokens
        self._prices = prices
        self._prompt = estimate_prompt_tokens(raw)
        # The largest answer-length field given (an upstream may honour any of them), else the
        # default; `body.check_token_limits` has made them positive integers.
        given = [v for k in TOKEN_LIMITS if isinstance(v := body.get(k), int) and v > 0]
        # Each of the `n` (or `best_of`) answers may be that long: the worst case is all of them
        # (`body.check_token_limits` has bounded them to MAX_CHOICES).
        choices = max([v for k in CHOICE_FIELDS if isinstance(v := body.get(k), int) and v > 0],
                      default=1)
        self._answer_tokens = (max(given) if given else gate.default_max_tokens) * choices if answer else 0
        named = body.get("model")
        self._models = tuple(models) or ((named,) if isinstance(named, str) else ())
        self._limits = TenantLimits(tenant.name, tenant.requests_per_minute, tenant.tokens_per_minute)
        self._admission: Admission | None = None
        self._reservation: Reservation | None = None
        self._holding = False  # a stream slot is held

    async def enter(self) -> Ticket:
        gate, tenant, models = self._gate, self._tenant, self._models
        prompt, answer_tokens = self._prompt, self._answer_tokens
        admission = self._admission = await gate.limiter.admit(
            self._limits, prompt + answer_tokens if self._tokens else 0)
        ticket = Ticket(admission.quota.headers(), prompt, admission.reserved_tokens, prices=self._prices)
        try:
            if gate.budget is not None and tenant.budget_usd is not None and self._tokens:
                prices = ticket.prices if ticket.prices is not None else PriceTable({})
                try:  # a budget can't be enforced on an unpriced model: 403
                    require_prices(prices, models)
                except GatewayError as exc:
                    raise self._refused(exc) from None
                worst = max((prices.worst_case_micros(m, prompt, answer_tokens) for m in models), default=0)
                try:
                    self._reservation = await gate.budget.reserve(
                        tenant.name, tenant.budget_usd, tenant.budget_period, micros_to_usd(worst))
                except GatewayError as exc:
                    raise self._refused(exc) from None
            if self._slot:
                since = time.perf_counter()
                try:
                    ticket.queue_wait = await gate.queue.acquire(tenant.priority)
                except GatewayError as exc:
                    raise self._refused(exc) from None
                finally:  # admitted, shed or gone: every wait is observed
                    gate.metrics.queue_wait.observe(time.perf_counter() - since)
                gate.holding[tenant.name] = gate.holding.get(tenant.name, 0) + 1
                gate.metrics.child(gate.metrics.tenant_streams, tenant.name).inc()
                self._holding = True
        except BaseException:
            await self._settle(None)
            raise
        return ticket

    def _refused(self, exc: GatewayError) -> GatewayError:
        """A refusal after the buckets' decision (budget, queue) still says where they stand,
        as they will be once this request is refunded (on the way out of `enter`)."""
        admission = self._admission
        assert admission is not None
        quota = admission.quota.refunded(self._limits, 1 if admission.took_request else 0,
                                         admission.reserved_tokens)
        for name, value in quota.headers().items():
            exc.headers.setdefault(name, value)
        return exc

    async def leave(self, charge: Charge | None) -> None:
        """Give the slot back and settle: `charge` is what the answer used and costs (None:
        no upstream answered, refunded in full)."""
        if self._holding:
            self._holding = False
            self._gate.queue.release()
            self._gate.holding[self._tenant.name] -= 1
            self._gate.metrics.child(self._gate.metrics.tenant_streams, self._tenant.name).dec()
        await self._settle(charge)

    async def _settle(self, charge: Charge | None) -> None:
        gate, admission = self._gate, self._admission
        assert admission is not None
        if charge is not None and charge.reported is not None and gate.logger is not None:
            gate.logger.warning("usage_anomaly", tenant=self._tenant.name, model=charge.model,
                                reported=charge.reported, clamped_to=MAX_USAGE_TOKENS)
        used = charge.usage.total if charge is not None else 0
        settling = gate.settle_books(self._tenant, self._limits, admission, used, charge is None,
                                     self._reservation, (charge.cost_micros or 0) if charge else 0)
        if gate.local:  # in memory: done without a pause, nothing can cancel it midway
            await settling
        else:  # over the network: a client that closes its connection once it has its
            # answer cancels the handler, maybe right here; the books are settled all the same
            await asyncio.shield(settling)
