"""Issue 25's table: the gateway's own work over the aiohttp floor (`bench/floor.py`), each
goal with the floor's figure next to the gateway's, both from the same rounds of this run.

- CPU per streamed request: the pure-proxy row (`nginx_proxy`), 50-chunk streams at 1 and 50
  concurrent (its keys "1 50ch", "50 50ch") and 200-chunk ones ("1", "50"); the proxy's own
  process CPU over the requests (median round).
- CPU per non-stream request: the same row's `nonstream` part, 50 concurrent.
- TTFB p50 at 1 stream over the floor: the gateway's p50 minus the floor's, on the 1-stream
  runs of the pure-proxy row (50 and 200 chunks).
- Memory per idle stream: the gateway with heartbeats off against the floor (which has none),
  RSS growth per stream at the largest count both measured.
- TTFB p50 at 50 unpaced streams vs direct: the TTFB row (the floor's own ratio beside it).
"""

from __future__ import annotations

from typing import Any

from bench.report_proxies import idle_counts, idle_kib, nonstream_cpu_ms, streamed_cpu_ms, ttfb_vs_direct

#: (goal, target): the issue's wording and threshold
STREAMED, NONSTREAM, TTFB1, MEMORY, TTFB50 = 1.2, 1.5, 0.2, 1.1, 1.3
Line = tuple[str, float | None, float | None, str, str, bool | None]  # goal, gw, floor, vs, target, met


def _ratio_line(goal: str, gw: float | None, floor: float | None, limit: float) -> Line:
    if gw is None or not floor:
        return goal, gw, floor, "-", f"<= {limit}x", None
    return goal, gw, floor, f"{gw / floor:.2f}x", f"<= {limit}x", gw / floor <= limit


def _ttfb_p50(r: dict[str, Any], key: str, target: str) -> float | None:
    per = r.get("nginx_proxy", {}).get(key)
    if not isinstance(per, dict) or target not in per:
        return None
    value: float | None = per[target]["ttfb_ms"]["p50"]
    return value


def goal_lines(r: dict[str, Any]) -> list[Line]:
    lines: list[Line] = []
    for chunks, suffix in ((50, " 50ch"), (200, "")):
        for c in ("1", "50"):
            v = streamed_cpu_ms(r, c + suffix)
            lines.append(_ratio_line(f"CPU ms per streamed request, {chunks} chunks, {c} concurrent",
                                     v.get("gateway"), v.get("floor"), STREAMED))
    v = nonstream_cpu_ms(r)
    lines.append(_ratio_line("CPU ms per non-stream request, 50 concurrent",
                             v.get("gateway"), v.get("floor"), NONSTREAM))
    for chunks, key in ((50, "1 50ch"), (200, "1")):
        g, f = _ttfb_p50(r, key, "gateway"), _ttfb_p50(r, key, "floor")
        over = None if g is None or f is None else g - f
        lines.append((f"TTFB p50 ms at 1 stream ({chunks} chunks), over the floor", g, f,
                      "-" if over is None else f"{over:+.3f} ms", f"<= +{TTFB1} ms",
                      None if over is None else over <= TTFB1))
    common = idle_counts(r, "heartbeat_off") & idle_counts(r, "floor")
    n = max(common, key=int) if common else None
    gw_kib = idle_kib(r, "heartbeat_off", n)[1] if n else None
    floor_kib = idle_kib(r, "floor", n)[1] if n else None
    lines.append(_ratio_line(f"RSS KiB per idle stream ({int(n) if n else 0:,}, heartbeats off)",
                             gw_kib, floor_kib, MEMORY))
    v = ttfb_vs_direct(r, "50")
    g, f = v.get("gateway"), v.get("floor")
    lines.append(("TTFB p50 at 50 unpaced streams / direct's", g, f, "-" if g is None else f"{g:.2f}x",
                  f"<= {TTFB50}x", None if g is None else g <= TTFB50))
    return lines


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def goals(r: dict[str, Any]) -> list[str]:
    width = 58
    out = ["issue 25: our own work over the aiohttp floor, same rounds ([ -- ]: not measured):",
           f"  {'goal':<{width}}{'gateway':>9}{'floor':>9}{'gw vs':>11}{'target':>12}"]
    for goal, g, f, vs, target, met in goal_lines(r):
        mark = "met " if met else " -- " if met is None else "MISS"
        out.append(f"  {goal:<{width}}{_fmt(g):>9}{_fmt(f):>9}{vs:>11}{target:>12}  [{mark}]")
    return out
