"""The embedded store: one SQLite file in WAL mode (other workers on the host may open the
same file), every statement on one dedicated thread, so the event loop never waits on disk.

Each change is one transaction that also bumps `meta.version`: another process sees either
none of it or all of it, and learns of it by reading the version (`poll_seconds`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import orjson

from .base import KeyRow, Loaded, NotFound, SpendBatch, SpendKey, StoreUnavailable, TenantExists, TenantRow

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (k, v) VALUES ('version', 0);
CREATE TABLE IF NOT EXISTS tenants (
  name TEXT PRIMARY KEY, fields TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
  id TEXT PRIMARY KEY, tenant TEXT NOT NULL, label TEXT NOT NULL, sha256 TEXT NOT NULL UNIQUE,
  created_at REAL NOT NULL, expires_at REAL, last_used_at REAL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS keys_by_tenant ON keys (tenant);
CREATE TABLE IF NOT EXISTS spend (
  day TEXT NOT NULL, tenant TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL,
  tag TEXT NOT NULL, requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL, cost_micros INTEGER NOT NULL,
  PRIMARY KEY (day, tenant, key_id, model, tag));
"""
_KEY_COLUMNS = "id, tenant, label, sha256, created_at, expires_at, last_used_at, revoked"


def _key(row: tuple[Any, ...]) -> KeyRow:
    return KeyRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]))


class SqliteStore:
    poll_seconds = 0.5  # a local file: cheap to read

    def __init__(self, path: str) -> None:
        self.path = path  # ":memory:" when the gateway runs without a config file
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            assert self._db is not None
            try:
                return work(self._db)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"sqlite {self.path}: {exc}") from None
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def open(self) -> None:
        def connect() -> None:
            if self.path != ":memory:" and not Path(self.path).parent.is_dir():
                raise StoreUnavailable(f"store.path: directory {Path(self.path).parent} does not exist")
            try:
                db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")  # a 201 means it is on disk
                db.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"store.path: cannot open sqlite file {self.path}: {exc}") from None
            self._db = db
        await asyncio.get_running_loop().run_in_executor(self._pool, connect)

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None
        await asyncio.get_running_loop().run_in_executor(self._pool, shut)
        self._pool.shutdown(wait=True)  # idle by now: all work was awaited

    async def version(self) -> int:
        return await self._run(_version)

    async def wait_change(self, timeout: float) -> None:
        await asyncio.sleep(timeout)  # no notification across processes: the version is read

    async def load(self) -> Loaded:
        def read(db: sqlite3.Connection) -> Loaded:
            with _transaction(db, "BEGIN"):  # one consistent read
                version = _version(db)
                tenants = tuple(TenantRow(n, orjson.loads(f), c) for n, f, c in db.execute(
                    "SELECT name, fields, created_at FROM tenants ORDER BY created_at"))
                keys = tuple(_key(r) for r in db.execute(
                    f"SELECT {_KEY_COLUMNS} FROM keys WHERE revoked = 0 ORDER BY created_at"))
            return Loaded(version, tenants, keys)
        return await self._run(read)

    async def create_tenant(self, row: TenantRow) -> None:
        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                try:
                    db.execute("INSERT INTO tenants (name, fields, created_at) VALUES (?, ?, ?)",
                               (row.name, orjson.dumps(row.fields).decode(), row.created_at))
                except sqlite3.IntegrityError:
                    raise TenantExists(row.name) from None
                _bump(db)
        await self._run(write)

    async def update_tenant(self, name: str, fields: dict[str, Any]) -> TenantRow:
        def write(db: sqlite3.Connection) -> TenantRow:
            with _transaction(db):
                found = db.execute("SELECT created_at FROM tenants WHERE name = ?", (name,)).fetchone()
                if found is None:
                    raise NotFound(name)
                db.execute("UPDATE tenants SET fields = ? WHERE name = ?",
                           (orjson.dumps(fields).decode(), name))
                _bump(db)
            return TenantRow(name, fields, found[0])
        return await self._run(write)

    async def delete_tenant(self, name: str) -> None:
        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                if db.execute("DELETE FROM tenants WHERE name = ?", (name,)).rowcount == 0:
                    raise NotFound(name)
                db.execute("UPDATE keys SET revoked = 1 WHERE tenant = ?", (name,))
                _bump(db)
        await self._run(write)

    async def add_key(self, key: KeyRow) -> None:
        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute(f"INSERT INTO keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (key.id, key.tenant, key.label, key.sha256, key.created_at, key.expires_at,
                            key.last_used_at, int(key.revoked)))
                _bump(db)
        await self._run(write)

    async def keys_of(self, tenant: str) -> list[KeyRow]:
        return await self._run(lambda db: [_key(r) for r in db.execute(
            f"SELECT {_KEY_COLUMNS} FROM keys WHERE tenant = ? AND revoked = 0 ORDER BY created_at",
            (tenant,))])

    async def revoke_key(self, key_id: str) -> KeyRow:
        def write(db: sqlite3.Connection) -> KeyRow:
            with _transaction(db):
                row = db.execute(f"SELECT {_KEY_COLUMNS} FROM keys WHERE id = ? AND revoked = 0",
                                 (key_id,)).fetchone()
                if row is None:
                    raise NotFound(key_id)
                db.execute("UPDATE keys SET revoked = 1 WHERE id = ?", (key_id,))
                _bump(db)
            return _key(row)
        return await self._run(write)

    async def touch_keys(self, used: dict[str, float]) -> None:
        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):  # no version bump: when a key was used changes nobody's view
                db.executemany("UPDATE keys SET last_used_at = ? WHERE id = ?",
                               [(at, key_id) for key_id, at in used.items()])
        await self._run(write)

    async def add_spend(self, batch: SpendBatch) -> None:
        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.executemany(
                    "INSERT INTO spend VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                    "requests = requests + excluded.requests, "
                    "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                    "completion_tokens = completion_tokens + excluded.completion_tokens, "
                    "cost_micros = cost_micros + excluded.cost_micros",
                    [(*k, *counts) for k, counts in batch.items()])
        await self._run(write)

    async def spend(self, first: date, last: date) -> list[tuple[SpendKey, list[int]]]:
        def read(db: sqlite3.Connection) -> list[tuple[SpendKey, list[int]]]:
            rows = db.execute(
                "SELECT day, tenant, key_id, model, tag, requests, prompt_tokens, completion_tokens, "
                "cost_micros FROM spend WHERE day BETWEEN ? AND ? ORDER BY day, tenant, key_id, model, tag",
                (first.isoformat(), last.isoformat()))
            return [((r[0], r[1], r[2], r[3], r[4]), [r[5], r[6], r[7], r[8]]) for r in rows]
        return await self._run(read)


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT v FROM meta WHERE k = 'version'").fetchone()[0])


def _bump(db: sqlite3.Connection) -> None:
    db.execute("UPDATE meta SET v = v + 1 WHERE k = 'version'")


class _transaction:
    """`BEGIN IMMEDIATE` (a write lock at once, so a concurrent writer waits on
    `busy_timeout` instead of failing midway) .. COMMIT, or ROLLBACK on any error."""

    def __init__(self, db: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> None:
        self._db, self._begin = db, begin

    def __enter__(self) -> None:
        self._db.execute(self._begin)

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")
