"""What the store holds and the one interface its backends (`sqlite.py`, `redis.py`) offer:
runtime tenants, keys (only their sha256), spend rows per UTC day, and a version that every
change to tenants or keys bumps (how other workers and replicas learn of it).

Rules:
- Every write happens whole or raises: `StoreUnavailable` (the backend can't be reached or
  failed), `TenantExists`, `NotFound`. Nothing is dropped silently.
- A tenant's fields are the `[[tenants]]` fields without its keys (keys are issued apart).
- Money is whole micro-dollars.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

#: fields of a spend row that name it (with the day), and the ones that are counted
SPEND_NAMES = ("tenant", "key_id", "model", "tag")
SPEND_COUNTS = ("requests", "prompt_tokens", "completion_tokens", "cost_micros")


class StoreError(Exception):
    """Base of the store's own errors (the admin routes turn each into its status)."""


class StoreUnavailable(StoreError):
    """The backend can't be reached or failed: an admin write answers 503."""


class TenantExists(StoreError):
    pass


class NotFound(StoreError):
    pass


def rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


#: 9999-12-31T23:59:59Z, the last moment a datetime holds (a row stored past it still reads)
_LAST_EPOCH = 253402300799.0


def from_epoch(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(min(seconds, _LAST_EPOCH), UTC)


@dataclass(frozen=True, slots=True)
class TenantRow:
    name: str
    fields: dict[str, Any]  # the [[tenants]] fields as JSON, without name and keys
    created_at: float


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: str
    tenant: str
    label: str
    sha256: str  # hex, lower case
    created_at: float  # epoch seconds, UTC
    expires_at: float | None = None
    last_used_at: float | None = None
    revoked: bool = False

    def public(self) -> dict[str, Any]:
        """The key as the admin API shows it: never its hash, never a secret."""
        return {"id": self.id, "tenant": self.tenant, "label": self.label,
                "created_at": rfc3339(from_epoch(self.created_at)),
                "expires_at": rfc3339(from_epoch(self.expires_at)),
                "last_used_at": rfc3339(from_epoch(self.last_used_at))}


@dataclass(frozen=True, slots=True)
class Loaded:
    """Everything the in-process view needs: tenants and the keys not revoked."""

    version: int
    tenants: tuple[TenantRow, ...]
    keys: tuple[KeyRow, ...]


#: (day "YYYY-MM-DD", tenant, key_id, model, tag) -> [requests, prompt, completion, micros]
SpendKey = tuple[str, str, str, str, str]
SpendBatch = dict[SpendKey, list[int]]


class Store(Protocol):
    #: how often a watcher reads `version()` (at most)
    poll_seconds: float

    async def open(self) -> None:
        """Connect and create what is missing; `StoreUnavailable` with one line if it can't."""

    async def close(self) -> None: ...

    async def version(self) -> int: ...

    async def wait_change(self, timeout: float) -> None:
        """Return when another process may have changed something, or after `timeout`."""

    async def load(self) -> Loaded: ...

    async def create_tenant(self, row: TenantRow) -> None: ...

    async def update_tenant(self, name: str, fields: dict[str, Any]) -> TenantRow: ...

    async def delete_tenant(self, name: str) -> None:
        """Remove it and revoke its keys, in one write."""

    async def add_key(self, key: KeyRow) -> None: ...

    async def keys_of(self, tenant: str) -> list[KeyRow]:
        """The tenant's keys that are not revoked, oldest first."""

    async def revoke_key(self, key_id: str) -> KeyRow: ...

    async def touch_keys(self, used: dict[str, float]) -> None:
        """`last_used_at` of each key id (epoch seconds)."""

    async def add_spend(self, batch: SpendBatch) -> None:
        """Add each row's counts to what is stored, all or nothing."""

    async def spend(self, first: date, last: date) -> list[tuple[SpendKey, list[int]]]:
        """The rows of the days `first`..`last` (inclusive)."""
