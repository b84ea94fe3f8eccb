"""The Redis store's spend read over a long range (a `total` budget's period starts in 1970)
reads only the days that hold spend, and gives the same rows as a day-by-day read."""

from __future__ import annotations

from datetime import date

from gateway.store.redis import RedisStore


async def test_a_range_since_1970_reads_the_days_spent_and_agrees_with_a_short_range(
    redis_url: str,
) -> None:
    store = RedisStore(redis_url, "gw-test-spend-days:")
    await store.open()
    try:
        await store.add_spend({("2026-12-01", "app", "k1", "m", ""): [1, 10, 20, 300],
                               ("2026-12-07", "app", "k1", "m", "a"): [2, 5, 6, 70]})
        await store.add_spend({("2026-12-07", "app", "k1", "m", "a"): [1, 1, 1, 1]})
        short = await store.spend(date(2026, 11, 20), date(2026, 12, 7))
        whole = await store.spend(date(1970, 1, 1), date(2026, 12, 7))
        assert whole == short == [
            (("2026-12-01", "app", "k1", "m", ""), [1, 10, 20, 300]),
            (("2026-12-07", "app", "k1", "m", "a"), [3, 6, 7, 71]),
        ]
        assert await store.spend(date(1970, 1, 1), date(2026, 12, 6)) == short[:1]
    finally:
        await store.close()
