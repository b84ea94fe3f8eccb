"""The targets the side-by-side run is held to, each checked against this run's figures."""

from __future__ import annotations

from typing import Any

from bench.rows import PACED, STALL_SECONDS


def targets(r: dict[str, Any]) -> list[str]:
    checks: list[tuple[str, bool | None, str]] = []
    t, c = r.get("ttfb", {}), r.get("chunks", {})
    if "1" in t:
        added = t["1"]["gateway"]["ttfb_ms"]["p50"] - t["1"]["direct"]["ttfb_ms"]["p50"]
        checks.append(("added TTFB p50 at 1 stream <= 0.5 ms", added <= 0.5, f"{added:+.3f} ms"))
    for label, how in (("50", "unpaced, CPU-bound"), (PACED, "paced at 50 tokens/s")):
        if label in t:
            ratio = t[label]["gateway"]["ttfb_ms"]["p50"] / t[label]["direct"]["ttfb_ms"]["p50"]
            checks.append((f"TTFB p50 at 50 streams <= 1.5x direct ({how})", ratio <= 1.5,
                           f"{ratio:.2f}x"))
    for n, floor in (("1", 0.7), ("50", 0.8)):
        if n in c:
            ratio = c[n]["gateway"]["tokens_per_second"] / c[n]["direct"]["tokens_per_second"]
            checks.append((f"chunks/s at {n} streams >= {floor}x direct", ratio >= floor, f"{ratio:.2f}x"))
    stall = r.get("stall", {}).get("gateway")
    if stall:
        ok = stall["ok"] == stall["requests"] and stall["max_gap_ms"] < STALL_SECONDS * 1000
        checks.append((f"{stall['requests']} concurrent streams with no stall", ok,
                       f"{stall['ok']}/{stall['requests']} ok, max gap {stall['max_gap_ms']:.0f} ms"))
    on = r.get("idle", {}).get("heartbeat_on", {})
    big = max((int(n) for n in on if n.isdigit() and "rss" in on[n]), default=0)
    if big:
        x = on[str(big)]
        per = (x["rss"] - on["rss_base"]) / max(1, x["opened"])
        at_10k = on["rss_base"] + per * 10_000
        checks.append(("10,000 idle streams < 1 GiB RSS", at_10k < 2**30,
                       f"{x['rss'] / 2**20:.0f} MiB at {x['opened']} streams, "
                       f"{at_10k / 2**20:.0f} MiB at 10,000 (linear)"))
        small = on.get("1000", {})
        if big > 1000 and "idle_cpu" in small:
            a = small["idle_cpu"] / small["window"] / max(1, small["opened"])
            b = x["idle_cpu"] / x["window"] / max(1, x["opened"])
            checks.append((f"per-stream idle CPU grows < 20% from 1,000 to {big:,} streams",
                           b <= a * 1.2, f"{(b / a - 1) * 100 if a else 0:+.0f}%"))
    lines = ["targets:"]
    for name, ok, value in checks:
        lines.append(f"  [{'met ' if ok else 'MISS'}] {name}: {value}")
    return lines
