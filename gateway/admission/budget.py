"""Per-tenant spend budgets: reserve a request's worst-case cost, settle it to the real cost.

Money is whole micro-dollars (see `gateway.spend`). An account is one tenant in one period
(a UTC day, a UTC month, or all time) and holds `spent` (settled costs) and `reserved`
(worst cases of requests in flight). A reservation is admitted only if
`spent + reserved + amount <= budget`, so concurrent requests can never spend more than the
budget between them unless one costs more than it reserved. Settling releases what the request
reserved and charges what it really cost, to the period it was reserved in (a stream that
crosses midnight is billed to the day it started). `RedisBudget` is in `budget_redis`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from ..errors import BudgetExceeded
from ..spend import micros_to_usd, usd_to_micros

Period = Literal["day", "month", "total"]
PERIODS: tuple[Period, ...] = ("day", "month", "total")


def _utc(now: datetime) -> datetime:
    # A naive datetime is a bug waiting for a server in another zone: refuse it.
    if now.tzinfo is None:
        raise ValueError("budget periods need a timezone-aware datetime")
    return now.astimezone(UTC)


def period_key(period: Period, now: datetime) -> str:
    """The account a spend at `now` belongs to: "2025-03-07", "2025-03" or "total" (UTC)."""
    if period == "total":
        return "total"
    now = _utc(now)
    if period == "day":
        return now.strftime("%Y-%m-%d")
    if period == "month":
        return now.strftime("%Y-%m")
    raise ValueError(f"unknown budget period {period!r}")


def period_reset(period: Period, now: datetime) -> datetime | None:
    """When the period containing `now` ends (next UTC midnight / 1st of next month); None for
    "total", which never resets."""
    if period == "total":
        return None
    now = _utc(now)
    if period == "day":
        return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    if period == "month":
        year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
        return datetime(year, month, 1, tzinfo=UTC)
    raise ValueError(f"unknown budget period {period!r}")


def refusal(tenant: str, budget_micros: int, period: Period, now: datetime) -> BudgetExceeded:
    """The 429 for a tenant whose budget cannot hold a reservation at `now`."""
    reset = period_reset(period, now)
    per = "in total" if period == "total" else f"per {period}"
    whole, _, cents = f"{micros_to_usd(budget_micros):.6f}".partition(".")
    budget = f"{whole}.{cents.rstrip('0').ljust(2, '0')}"  # $1.00, $0.0001
    message = f"spend budget of ${budget} {per}: what remains does not cover this request's worst-case cost"
    if reset is None:
        return BudgetExceeded(message, tenant=tenant, retry_after=None)
    message += f"; it resets at {reset.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    return BudgetExceeded(message, tenant=tenant, retry_after=(reset - _utc(now)).total_seconds())


@dataclass(frozen=True, slots=True)
class Reservation:
    """An admitted request's hold on its tenant's budget; settle it exactly once.

    `remaining_micros` is what was left for other requests right after this one reserved
    (None when the backend was unreachable and the request was let through unchecked: then
    `amount_micros` is 0 and settling charges the real cost when it can).
    """

    tenant: str
    period: Period
    key: str
    amount_micros: int
    remaining_micros: int | None

    @property
    def amount_usd(self) -> float:
        return micros_to_usd(self.amount_micros)

    @property
    def remaining_usd(self) -> float | None:
        return None if self.remaining_micros is None else micros_to_usd(self.remaining_micros)


def to_micros(usd: float, what: str) -> int:
    """`usd` as whole micro-dollars; a negative amount is a caller's bug."""
    micros = usd_to_micros(usd)
    if micros < 0:
        raise ValueError(f"{what} must be >= 0, not {usd!r}")
    return micros


class Budget(Protocol):
    async def reserve(self, tenant: str, budget_usd: float, period: Period, amount_usd: float) -> Reservation:
        """Hold `amount_usd` of the tenant's budget this period, or raise BudgetExceeded."""
        ...

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Release the reservation and charge `actual_usd` to the period it was made in."""
        ...

    async def remaining(self, tenant: str, budget_usd: float, period: Period) -> float:
        """`budget - spent - reserved` this period; negative when settled costs overran it."""
        ...

    async def spent(self, tenant: str, period: Period) -> float:
        """Settled costs this period."""
        ...

    async def close(self) -> None: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Account:
    key: str
    spent: int = 0
    reserved: int = 0


class MemoryBudget:
    """The embedded backend: one account per (tenant, period), for the current period only.

    No awaits inside `reserve`, so each reservation is atomic on the event loop. When a new
    period starts the account starts from zero; settling a reservation of a period already
    replaced changes nothing (that period is over, there is nothing left to admit against).
    """

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._accounts: dict[tuple[str, Period], _Account] = {}

    def _account(self, tenant: str, period: Period) -> _Account:
        key = period_key(period, self._clock())
        account = self._accounts.get((tenant, period))
        if account is None or account.key != key:
            account = self._accounts[(tenant, period)] = _Account(key)
        return account

    async def reserve(self, tenant: str, budget_usd: float, period: Period, amount_usd: float) -> Reservation:
        amount, budget = to_micros(amount_usd, "amount_usd"), usd_to_micros(budget_usd)
        account = self._account(tenant, period)
        if account.spent + account.reserved + amount > budget:
            raise refusal(tenant, budget, period, self._clock())
        account.reserved += amount
        remaining = budget - account.spent - account.reserved
        return Reservation(tenant, period, account.key, amount, remaining)

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        actual = to_micros(actual_usd, "actual_usd")
        account = self._accounts.get((reservation.tenant, reservation.period))
        if account is None or account.key != reservation.key:
            return
        account.reserved = max(0, account.reserved - reservation.amount_micros)
        account.spent += actual

    async def remaining(self, tenant: str, budget_usd: float, period: Period) -> float:
        account = self._account(tenant, period)
        return micros_to_usd(usd_to_micros(budget_usd) - account.spent - account.reserved)

    async def spent(self, tenant: str, period: Period) -> float:
        return micros_to_usd(self._account(tenant, period).spent)

    def seed(self, tenant: str, period: Period, spent_micros: int) -> None:
        """At start: what the tenant already spent this period (the store's spend rows)."""
        self._account(tenant, period).spent += max(0, spent_micros)

    async def close(self) -> None:
        self._accounts.clear()
