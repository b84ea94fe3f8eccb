"""Spend rows: what each settled request adds (kept in memory, merged per row, written in a
batch about twice a second), and the report's shapes (rows grouped, JSON or CSV). No I/O.

A request's tags are ONE row value (`a,b`, sorted), so summing rows by tenant, key or model
counts each request once; grouped by tag, a request with two tags counts under each.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from ..spend import micros_to_usd
from .base import SpendBatch, SpendKey

GROUPS = ("tenant", "key", "model", "tag")
ROW_FIELDS = ("day", "tenant", "key_id", "model", "tag", "requests", "prompt_tokens",
              "completion_tokens", "cost_usd")
#: the longest model name a row keeps (a client-chosen string under a glob route)
MAX_MODEL = 128


class SpendBook:
    """The rows not written yet. Bounded by the distinct rows of a second, not by requests."""

    def __init__(self) -> None:
        self._pending: SpendBatch = {}

    def __len__(self) -> int:
        return len(self._pending)

    def note(self, tenant: str, key_id: str, model: str, tags: tuple[str, ...], prompt: int,
             completion: int, micros: int, *, now: datetime | None = None) -> None:
        day = (now or datetime.now(UTC)).strftime("%Y-%m-%d")
        key = (day, tenant, key_id, _clean(model), ",".join(sorted(tags)))
        counts = self._pending.get(key)
        if counts is None:
            self._pending[key] = [1, prompt, completion, micros]
        else:
            counts[0] += 1
            counts[1] += prompt
            counts[2] += completion
            counts[3] += micros

    def take(self) -> SpendBatch:
        batch, self._pending = self._pending, {}
        return batch

    def give_back(self, batch: SpendBatch) -> None:
        """A batch the store refused: merged into what came since, to be written next time."""
        for key, counts in batch.items():
            mine = self._pending.setdefault(key, [0, 0, 0, 0])
            for i, n in enumerate(counts):
                mine[i] += n


def _clean(model: str) -> str:
    # Control characters never reach a row (the Redis layout separates fields with \x1f).
    return "".join(c if c.isprintable() else "?" for c in model[:MAX_MODEL])


def grouped(rows: list[tuple[SpendKey, list[int]]], group_by: str | None) -> list[dict[str, Any]]:
    """Rows as the report shows them: every field, or with `group_by` one row per day and
    value of that field (the other three left out, their counts summed)."""
    if group_by is None:
        return [_shape(dict(zip(ROW_FIELDS[:5], key, strict=True)), counts) for key, counts in rows]
    field = "key_id" if group_by == "key" else group_by
    index = ROW_FIELDS.index(field)
    sums: dict[tuple[str, str], list[int]] = {}
    for key, counts in rows:
        values = key[index].split(",") if field == "tag" and key[index] else [key[index]]
        for value in values:
            mine = sums.setdefault((key[0], value), [0, 0, 0, 0])
            for i, n in enumerate(counts):
                mine[i] += n
    return [_shape({"day": day, field: value}, counts) for (day, value), counts in sorted(sums.items())]


def _shape(names: dict[str, Any], counts: list[int]) -> dict[str, Any]:
    return {**names, "requests": counts[0], "prompt_tokens": counts[1], "completion_tokens": counts[2],
            "cost_usd": micros_to_usd(counts[3])}


def as_csv(rows: list[dict[str, Any]], group_by: str | None) -> str:
    if group_by is None:
        header = list(ROW_FIELDS)
    else:
        header = ["day", "key_id" if group_by == "key" else group_by, *ROW_FIELDS[5:]]
    out = io.StringIO()
    writer = csv.DictWriter(out, header, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return out.getvalue()


def _cell(value: Any) -> Any:
    """A text value a spreadsheet would run as a formula (a model name is the client's
    choice under a glob route) starts with `'` (OWASP's CSV injection advice)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
