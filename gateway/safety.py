"""Start-up refusals: a config that would serve with a key printed in the docs, or serve
a non-loopback address with no tenant to check keys against."""

from __future__ import annotations

import hashlib
import ipaddress

from .config import Config

#: sha256 of keys printed in the docs and deploy files: anyone who read them holds the key.
PUBLISHED_KEY_HASHES = frozenset({
    "e256cb66cfe86089db8521b7c249048dd5891d7cf7d301424d6f238ec97dce13",
    hashlib.sha256(b"gw-demo-key").hexdigest(),  # the demo key: fine under --demo only
})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unsafe_to_serve(config: Config) -> str | None:
    """One line saying why `serve` (without --demo) must not start with `config`, or None."""
    for i, tenant in enumerate(config.tenants):
        for key in tenant.keys:
            if key in PUBLISHED_KEY_HASHES:
                return (f"tenants[{i}] ({tenant.name}): its key is one printed in the docs; "
                        "make a new one (llm-gateway hash-key)")
    if not config.tenants and not is_loopback(config.server.host):
        return f"server.host = {config.server.host!r} is not loopback and no tenant is configured"
    return None
