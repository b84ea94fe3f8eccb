"""Auth: the client's gateway key -> its `Tenant`. Keys are only ever held as sha256 hex."""

from __future__ import annotations

import hashlib
import hmac

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


class Authenticator:
    def __init__(self, tenants: tuple[Tenant, ...]) -> None:
        # Every key of a tenant (`key_sha256` and `extra_key_sha256`, for rotation) finds it.
        self._tenants = tuple((bytes.fromhex(key), t) for t in tenants for key in t.keys)

    def tenant_for(self, key: str | None) -> Tenant:
        if not key:
            raise Unauthorized("missing API key: send `Authorization: Bearer <key>` or `x-api-key`")
        # aiohttp decodes header bytes as UTF-8 with surrogateescape: undo that, never fail.
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        found: Tenant | None = None
        # Compare against every tenant, in constant time, so timing says nothing about keys.
        for stored, tenant in self._tenants:
            if hmac.compare_digest(stored, digest):
                found = tenant
        if found is None:
            raise Unauthorized("invalid API key")
        return found
