"""The in-process view of runtime tenants and keys: what the per-request key check reads
(no store round trip), replaced whole when the store's version changes.

The check looks a presented key's sha256 DIGEST up in a dict. Its timing depends only on
that digest, and a digest says nothing about the keys (finding a key from it is a sha256
preimage), so the lookup leaks nothing an attacker can use; comparing against every key in
turn, as the config's few keys are, would cost a loop per request that grows with the keys
issued. An expired key is refused like an unknown one; a revoked key is not in the view.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from ..config import Tenant
from .base import KeyRow, Loaded, TenantRow
from .tenants import tenant_of

#: `last_used_at` is written at most this often per key
USED_EVERY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class _Entry:
    key_id: str
    tenant: str
    expires_at: float | None


class KeyView:
    def __init__(self) -> None:
        self.version = -1  # never loaded
        self.rows: dict[str, TenantRow] = {}
        self.tenants: dict[str, Tenant] = {}
        self.keys: tuple[KeyRow, ...] = ()
        self._by_digest: dict[bytes, _Entry] = {}
        self._used: dict[str, float] = {}  # key id -> epoch seconds, not written yet
        self._noted: dict[str, float] = {}  # key id -> perf_counter() when last noted

    def replace(self, loaded: Loaded) -> list[str]:
        """Swap in what the store holds; the names of stored tenants the schema refuses
        (skipped, for the caller to log)."""
        rows, tenants, refused = {}, {}, []
        for row in loaded.tenants:
            try:
                tenants[row.name] = tenant_of(row.name, row.fields)
            except ValidationError:
                refused.append(row.name)
                continue
            rows[row.name] = row
        by_digest = {bytes.fromhex(k.sha256): _Entry(k.id, k.tenant, k.expires_at) for k in loaded.keys}
        # Each attribute is swapped whole: a request sees the old view or the new one.
        self.rows, self.tenants, self.keys, self._by_digest = rows, tenants, loaded.keys, by_digest
        self.version = loaded.version
        return refused

    def identify(self, digest: bytes, config_tenants: Mapping[str, Tenant]) -> tuple[Tenant, str] | None:
        """The tenant and key id of an issued key, or None (unknown, expired, or its tenant
        gone). A key issued to a config-file tenant finds that tenant as the file has it now."""
        entry = self._by_digest.get(digest)
        if entry is None:
            return None
        if entry.expires_at is not None and time.time() >= entry.expires_at:
            return None
        tenant = config_tenants.get(entry.tenant) or self.tenants.get(entry.tenant)
        if tenant is None:
            return None
        now = time.perf_counter()
        if now - self._noted.get(entry.key_id, -USED_EVERY_SECONDS) >= USED_EVERY_SECONDS:
            self._noted[entry.key_id] = now
            self._used[entry.key_id] = time.time()
        return tenant, entry.key_id

    def take_used(self) -> dict[str, float]:
        used, self._used = self._used, {}
        return used

    def give_back_used(self, used: dict[str, float]) -> None:
        for key_id, at in used.items():
            self._used.setdefault(key_id, at)
