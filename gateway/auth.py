"""Auth: the client's gateway key -> its `Tenant` (and the key's id, for spend rows). Keys are
only ever held as sha256. The config file's keys are compared in constant time, every one;
keys issued at runtime are found in the store's in-process view (`store/view.py`), with no
store round trip."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Protocol

from aiohttp import web

from .config import Tenant
from .errors import Unauthorized


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def presented_key(request: web.Request) -> str | None:
    """`Authorization: Bearer <key>` or `x-api-key: <key>` (Anthropic clients send the latter)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = request.headers.get("x-api-key", "").strip()
    return api_key or None


class RuntimeKeys(Protocol):
    """Keys issued at runtime (`gateway.store.view.KeyView`)."""

    def identify(self, digest: bytes, config_tenants: Mapping[str, Tenant]) -> tuple[Tenant, str] | None:
        ...


def config_key_id(key_sha256: str) -> str:
    """A config-file key's id in spend rows: its hash's first 8 hex digits, as in the file."""
    return f"config:{key_sha256[:8].lower()}"


class Authenticator:
    def __init__(self, tenants: tuple[Tenant, ...], runtime: RuntimeKeys | None = None) -> None:
        # Every key of a tenant (`key_sha256` and `extra_key_sha256`, for rotation) finds it.
        self._tenants = tuple((bytes.fromhex(key), t, config_key_id(key)) for t in tenants for key in t.keys)
        self._by_name = {t.name: t for t in tenants}
        self.runtime = runtime

    def tenant_for(self, key: str | None) -> Tenant:
        return self.identify(key)[0]

    def identify(self, key: str | None) -> tuple[Tenant, str]:
        """The key's tenant and the key's id, or `Unauthorized` (also for an expired or
        revoked key)."""
        if not key:
            raise Unauthorized("missing API key: send `Authorization: Bearer <key>` or `x-api-key`")
        # aiohttp decodes header bytes as UTF-8 with surrogateescape: undo that, never fail.
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        found: tuple[Tenant, str] | None = None
        # Compare against every tenant, in constant time, so timing says nothing about keys.
        for stored, tenant, key_id in self._tenants:
            if hmac.compare_digest(stored, digest):
                found = (tenant, key_id)
        if found is None and self.runtime is not None:
            found = self.runtime.identify(digest, self._by_name)
        if found is None:
            raise Unauthorized("invalid API key")
        return found
