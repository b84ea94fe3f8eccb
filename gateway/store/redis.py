"""The shared store: Redis (`[ratelimit].redis_url`, keys under `key_prefix` + "store:"), for
workers and replicas. Each change to tenants or keys is ONE Lua script that writes it, bumps
the version and publishes it, so a reader sees all of a change or none, and a killed Redis
leaves no half-written tenant. Spend rows are added in one MULTI/EXEC.

Layout: `tenants` (hash name -> fields JSON), `created` (hash name -> epoch), `keys` (hash id ->
key JSON), `tkeys:<tenant>` (set of ids), `revoked` (set of ids), `used` (hash id -> epoch),
`spend:<day>` (hash "tenant\\x1fkey\\x1fmodel\\x1ftag\\x1f<n>" -> count), `spend-days` (a set of
the days that hold spend), `version`, and the
channel `changed`.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import orjson

from ..admission.redis import REDIS_DOWN, connect
from .base import KeyRow, Loaded, NotFound, SpendBatch, SpendKey, StoreUnavailable, TenantExists, TenantRow

SEP = "\x1f"

_NOTIFY = """
local v = redis.call('INCR', KEYS[#KEYS])
redis.call('PUBLISH', ARGV[#ARGV], v)
return v
"""
_CREATE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return -1 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
""" + _NOTIFY
_UPDATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
""" + _NOTIFY
_DELETE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return -1 end
redis.call('HDEL', KEYS[2], ARGV[1])
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do redis.call('SADD', KEYS[4], id) end
""" + _NOTIFY
_ADD_KEY = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
""" + _NOTIFY
_REVOKE = """
local row = redis.call('HGET', KEYS[1], ARGV[1])
if not row or redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return -1 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[2], 1)
return row
"""


def _key_json(key: KeyRow) -> bytes:
    return orjson.dumps({"id": key.id, "tenant": key.tenant, "label": key.label, "sha256": key.sha256,
                         "created_at": key.created_at, "expires_at": key.expires_at})


def _key_row(raw: bytes, used: float | None = None, revoked: bool = False) -> KeyRow:
    d = orjson.loads(raw)
    return KeyRow(d["id"], d["tenant"], d["label"], d["sha256"], d["created_at"], d["expires_at"],
                  used, revoked)


class RedisStore:
    poll_seconds = 1.0  # the version is read at most once a second; pub/sub says it sooner

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self._p = prefix + "store:"
        self._redis = connect(url, max_connections=16, timeout=2.0)
        self._pubsub: Any = None
        self._scripts = {name: self._redis.register_script(text) for name, text in (
            ("create", _CREATE), ("update", _UPDATE), ("delete", _DELETE), ("add_key", _ADD_KEY),
            ("revoke", _REVOKE))}

    def _k(self, *names: str) -> list[str]:
        return [self._p + n for n in names]

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._scripts[name](keys=keys, args=[*args, self._p + "changed"])
        except REDIS_DOWN as exc:
            raise StoreUnavailable(f"redis store {self.url}: {type(exc).__name__}: {exc}") from None

    async def open(self) -> None:
        try:
            await self._redis.ping()
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.subscribe(self._p + "changed")
        except REDIS_DOWN as exc:
            await self._redis.aclose()
            raise StoreUnavailable(f"store: redis at {self.url} can't be reached: {exc}") from None

    async def close(self) -> None:
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._redis.aclose()

    async def version(self) -> int:
        try:
            return int(await self._redis.get(self._p + "version") or 0)
        except REDIS_DOWN as exc:
            raise StoreUnavailable(f"redis store: {type(exc).__name__}") from None

    async def wait_change(self, timeout: float) -> None:
        try:
            await self._pubsub.get_message(timeout=timeout)
        except (*REDIS_DOWN, RuntimeError):  # gone: wait, and let `version()` say what is wrong
            await asyncio.sleep(timeout)

    async def load(self) -> Loaded:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(self._p + "version")
                for name in ("tenants", "created", "keys", "used"):
                    pipe.hgetall(self._p + name)
                pipe.smembers(self._p + "revoked")
                version, tenants, created, keys, used, revoked = await pipe.execute()
        except REDIS_DOWN as exc:
            raise StoreUnavailable(f"redis store: {type(exc).__name__}") from None
        rows = tuple(sorted((TenantRow(n.decode(), orjson.loads(f), float(created.get(n, 0)))
                             for n, f in tenants.items()), key=lambda t: t.created_at))
        live = tuple(sorted((_key_row(raw, _float(used.get(i)))
                             for i, raw in keys.items() if i not in revoked), key=lambda k: k.created_at))
        return Loaded(int(version or 0), rows, live)

    async def create_tenant(self, row: TenantRow) -> None:
        done = await self._call("create", self._k("tenants", "created", "version"),
                                [row.name, orjson.dumps(row.fields), row.created_at])
        if done == -1:
            raise TenantExists(row.name)

    async def update_tenant(self, name: str, fields: dict[str, Any]) -> TenantRow:
        done = await self._call("update", self._k("tenants", "version"), [name, orjson.dumps(fields)])
        if done == -1:
            raise NotFound(name)
        try:
            created = await self._redis.hget(self._p + "created", name)
        except REDIS_DOWN:
            created = None
        return TenantRow(name, fields, float(created or 0))

    async def delete_tenant(self, name: str) -> None:
        keys = self._k("tenants", "created", f"tkeys:{name}", "revoked", "version")
        done = await self._call("delete", keys, [name])
        if done == -1:
            raise NotFound(name)

    async def add_key(self, key: KeyRow) -> None:
        keys = self._k("keys", f"tkeys:{key.tenant}", "version")
        await self._call("add_key", keys, [key.id, _key_json(key)])

    async def keys_of(self, tenant: str) -> list[KeyRow]:
        loaded = await self.load()
        return [k for k in loaded.keys if k.tenant == tenant]

    async def revoke_key(self, key_id: str) -> KeyRow:
        row = await self._call("revoke", self._k("keys", "revoked", "version"), [key_id])
        if row == -1:
            raise NotFound(key_id)
        return _key_row(row, revoked=True)

    async def touch_keys(self, used: dict[str, float]) -> None:
        try:
            await self._redis.hset(self._p + "used", mapping=used)  # type: ignore[arg-type]
        except REDIS_DOWN as exc:
            raise StoreUnavailable(f"redis store: {type(exc).__name__}") from None

    async def add_spend(self, batch: SpendBatch) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                days = set()
                for (day, *names), counts in batch.items():
                    field = SEP.join(names)
                    days.add(day)
                    for i, n in enumerate(counts):
                        if n:
                            pipe.hincrby(f"{self._p}spend:{day}", f"{field}{SEP}{i}", n)
                if days:  # the days that hold spend: a long range reads only those
                    pipe.sadd(f"{self._p}spend-days", *days)
                await pipe.execute()
        except REDIS_DOWN as exc:
            raise StoreUnavailable(f"redis store: {type(exc).__name__}") from None

    async def spend(self, first: date, last: date) -> list[tuple[SpendKey, list[int]]]:
        try:
            if (last - first).days < 62:
                days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
            else:  # a `total` budget's period starts in 1970: not 20,000 reads, only the days spent
                held = await self._redis.smembers(f"{self._p}spend-days")
                low, high = first.isoformat(), last.isoformat()
                days = sorted(d for raw in held if low <= (d := _text(raw)) <= high)
            async with self._redis.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.hgetall(f"{self._p}spend:{day}")
                hashes = await pipe.execute()
        except REDIS_DOWN as exc:
            raise StoreUnavailable(f"redis store: {type(exc).__name__}") from None
        rows: dict[SpendKey, list[int]] = {}
        for day, fields in zip(days, hashes, strict=True):
            for field, value in fields.items():
                tenant, key_id, model, tag, index = field.decode().split(SEP)
                counts = rows.setdefault((day, tenant, key_id, model, tag), [0, 0, 0, 0])
                counts[int(index)] += int(value)
        return sorted(rows.items())


def _float(raw: bytes | None) -> float | None:
    return None if raw is None else float(raw)



def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
