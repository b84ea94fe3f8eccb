"""The store's pure parts: spend rows merged and grouped, the tag header parsed, and the key
view (expiry, `last_used_at` noted at most once a minute per key)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from gateway.errors import BadRequest
from gateway.store import view as view_module
from gateway.store.base import KeyRow, Loaded, TenantRow
from gateway.store.spend import SpendBook, as_csv, grouped
from gateway.store.view import KeyView
from gateway.tags import parse_tags

DAY = datetime(2026, 12, 7, 12, tzinfo=UTC)


def test_spend_rows_merge_per_row_and_a_refused_batch_merges_back() -> None:
    book = SpendBook()
    book.note("a", "k1", "m", ("y", "x"), 10, 5, 100, now=DAY)
    book.note("a", "k1", "m", ("x", "y"), 1, 2, 3, now=DAY)
    book.note("a", "k1", "m", (), 1, 1, 1, now=DAY)
    batch = book.take()
    assert batch == {("2026-12-07", "a", "k1", "m", "x,y"): [2, 11, 7, 103],
                     ("2026-12-07", "a", "k1", "m", ""): [1, 1, 1, 1]}
    book.note("a", "k1", "m", (), 1, 1, 1, now=DAY)
    book.give_back(batch)
    assert book.take()[("2026-12-07", "a", "k1", "m", "")] == [2, 2, 2, 2]
    book.note("a", "k", "bad\x1fmodel\n", (), 0, 0, 0, now=DAY)
    assert list(book.take())[0][3] == "bad?model?"


def test_grouped_by_tag_counts_a_request_under_each_tag_and_by_tenant_once() -> None:
    rows = [(("2026-12-07", "a", "k1", "m1", "x,y"), [2, 20, 10, 1_500_000]),
            (("2026-12-07", "b", "k2", "m1", ""), [1, 5, 5, 250_000]),
            (("2026-12-08", "a", "k1", "m2", "x"), [1, 1, 1, 1])]
    assert grouped(rows, "tag") == [
        {"day": "2026-12-07", "tag": "", "requests": 1, "prompt_tokens": 5, "completion_tokens": 5, "cost_usd": 0.25},
        {"day": "2026-12-07", "tag": "x", "requests": 2, "prompt_tokens": 20, "completion_tokens": 10, "cost_usd": 1.5},
        {"day": "2026-12-07", "tag": "y", "requests": 2, "prompt_tokens": 20, "completion_tokens": 10, "cost_usd": 1.5},
        {"day": "2026-12-08", "tag": "x", "requests": 1, "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": 1e-06},
    ]
    by_tenant = grouped(rows, "tenant")
    assert [(r["day"], r["tenant"], r["requests"]) for r in by_tenant] == [
        ("2026-12-07", "a", 2), ("2026-12-07", "b", 1), ("2026-12-08", "a", 1)]
    assert [r["key_id"] for r in grouped(rows, "key")] == ["k1", "k2", "k1"]
    assert as_csv(grouped(rows, "model"), "model").splitlines() == [
        "day,model,requests,prompt_tokens,completion_tokens,cost_usd",
        "2026-12-07,m1,3,25,15,1.75", "2026-12-08,m2,1,1,1,1e-06"]


@pytest.mark.parametrize(("header", "tags"), [
    ("", ()), ("  ", ()), ("a", ("a",)), ("a, b", ("a", "b")), ("a,a,b", ("a", "b")),
    ("x.y:z-1_2", ("x.y:z-1_2",)), ("a,b,c,d", ("a", "b", "c", "d")), ("t" * 64, ("t" * 64,)),
])
def test_tags_that_are_accepted(header: str, tags: tuple[str, ...]) -> None:
    assert parse_tags(header) == tags


@pytest.mark.parametrize("header", ["a,b,c,d,e", "t" * 65, "a b", "a,", ",a", "a;b", "caf\u00e9", "a/b"])
def test_tags_that_are_a_400(header: str) -> None:
    with pytest.raises(BadRequest, match="^x-gateway-tags: "):
        parse_tags(header)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def test_the_view_finds_issued_keys_refuses_expired_ones_and_notes_use_once_a_minute(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimpleNamespace(now=1000.0, wall=2_000_000_000.0)
    monkeypatch.setattr(view_module, "time", SimpleNamespace(perf_counter=lambda: clock.now,
                                                             time=lambda: clock.wall))
    view = KeyView()
    view.replace(Loaded(3, (TenantRow("rt", {"priority": 2}, 1.0),), (
        KeyRow("key_1", "rt", "", hashlib.sha256(b"one").hexdigest(), 1.0),
        KeyRow("key_2", "rt", "", hashlib.sha256(b"two").hexdigest(), 1.0, expires_at=clock.wall + 10),
        KeyRow("key_3", "gone", "", hashlib.sha256(b"three").hexdigest(), 1.0))))
    assert view.version == 3
    found = view.identify(digest("one"), {})
    assert found is not None and found[0].name == "rt" and found[0].priority == 2 and found[1] == "key_1"
    assert view.identify(digest("three"), {}) is None  # its tenant is gone
    assert view.identify(digest("nope"), {}) is None
    assert view.identify(digest("two"), {}) is not None
    clock.wall += 10
    assert view.identify(digest("two"), {}) is None  # expired
    assert view.take_used() == {"key_1": 2_000_000_000.0, "key_2": 2_000_000_000.0}
    clock.now += 59
    view.identify(digest("one"), {})
    assert view.take_used() == {}  # within the minute: not again
    clock.now += 1
    view.identify(digest("one"), {})
    assert view.take_used() == {"key_1": clock.wall}


def test_csv_cells_that_a_spreadsheet_would_run_start_with_a_quote() -> None:
    rows = grouped([(("2026-12-07", "a", "k", "=HYPERLINK(1)", ""), [1, 0, 0, 0]),
                    (("2026-12-07", "a", "k", "@sum", ""), [1, 0, 0, 0])], "model")
    lines = as_csv(rows, "model").splitlines()
    assert lines[1].startswith("2026-12-07,'=HYPERLINK(1),") and lines[2].startswith("2026-12-07,'@sum,")


def test_store_settings_take_env_overrides_and_are_checked() -> None:
    from gateway.config import config_from_dict
    from gateway.errors import ConfigError
    from tests.conftest import UPSTREAM_ENV, raw_config

    env = {**UPSTREAM_ENV, "GATEWAY_STORE_BACKEND": "redis", "GATEWAY_STORE_PATH": "/var/lib/gw/state.db"}
    store = config_from_dict(raw_config("http://127.0.0.1:9"), env, source="t").store
    assert (store.backend, store.path) == ("redis", "/var/lib/gw/state.db")
    with pytest.raises(ConfigError, match=r"^t: store.backend: must be 'sqlite' or 'redis' \(got 'mysql'\)$"):
        config_from_dict(raw_config("http://127.0.0.1:9", store={"backend": "mysql"}), UPSTREAM_ENV, source="t")
