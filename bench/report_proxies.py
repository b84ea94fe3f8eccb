"""The proxies side by side: the gateway, the aiohttp floor (`bench/floor.py`, a bare aiohttp
proxy) and nginx, each figure from the same rounds, with gateway/nginx (the goal), floor/nginx
(what aiohttp alone costs over nginx) and gateway/floor (what our code adds on top of aiohttp).

The figures are read here once, for the report's table and for `targets.py`.
"""

from __future__ import annotations

from typing import Any

from bench.rows import proxy_cpu

PROXIES = ("gateway", "floor", "nginx")
Values = dict[str, float | None]  # target -> figure; None when not measured


def streamed_cpu_ms(r: dict[str, Any], c: str) -> Values:
    """The proxy's own CPU ms per streamed request at `c` concurrent (the pure-proxy row)."""
    per = r.get("nginx_proxy", {}).get(c)
    if not isinstance(per, dict):
        return {}
    return {t: proxy_cpu(t, per[t]) / max(1, per[t]["requests"]) * 1000 for t in PROXIES if t in per}


def nonstream_cpu_ms(r: dict[str, Any], c: str = "50") -> Values:
    per = r.get("nonstream", {}).get(c)
    if not isinstance(per, dict):
        return {}
    return {t: proxy_cpu(t, per[t]) / max(1, per[t]["ok"]) * 1000 for t in PROXIES if t in per}


def added_ttfb_ms(r: dict[str, Any], c: str = "1") -> Values:
    """TTFB p50 over direct's, same rounds (the TTFB row: nginx there is nginx -> gateway, not
    a pure proxy, so it has no column here)."""
    per = r.get("ttfb", {}).get(c)
    if not per or "direct" not in per:
        return {}
    d = per["direct"]["ttfb_ms"]["p50"]
    return {t: per[t]["ttfb_ms"]["p50"] - d for t in ("gateway", "floor") if t in per}


def ttfb_vs_direct(r: dict[str, Any], c: str) -> Values:
    per = r.get("ttfb", {}).get(c)
    if not per or "direct" not in per:
        return {}
    d = per["direct"]["ttfb_ms"]["p50"]
    return {t: per[t]["ttfb_ms"]["p50"] / d if d else None for t in ("gateway", "floor") if t in per}


def idle_counts(r: dict[str, Any], name: str) -> set[str]:
    """The stream counts idle run `name` measured."""
    return {n for n, x in r.get("idle", {}).get(name, {}).items() if n.isdigit() and "rss" in x}


def idle_kib(r: dict[str, Any], name: str, n: str | None = None) -> tuple[str, float | None]:
    """RSS growth per idle stream of idle run `name` at `n` streams (default: its largest
    measured count): (count, KiB)."""
    out = r.get("idle", {}).get(name, {})
    measured = idle_counts(r, name)
    if n is None and measured:
        n = max(measured, key=int)
    if n not in measured:
        return "", None
    x = out[n]
    return n, (x["rss"] - out["rss_base"]) / max(1, x["opened"]) / 1024


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def figures(r: dict[str, Any]) -> list[tuple[str, Values, str]]:
    rows: list[tuple[str, Values, str]] = []
    proxy = r.get("nginx_proxy", {})
    for c, per in proxy.items():
        if not isinstance(per, dict) or "gateway" not in per:
            continue
        chunks = per["gateway"]["tokens"] / max(1, per["gateway"]["requests"])
        n = c.split()[0]
        rows.append((f"CPU ms/streamed request ({chunks:.0f} ch.), {n} c.", streamed_cpu_ms(r, c), ".3f"))
        rows.append((f"  TTFB p50 ms, same streams, {n} c.",
                     {t: per[t]["ttfb_ms"]["p50"] for t in PROXIES if t in per}, ".3f"))
    for c, per in r.get("nonstream", {}).items():
        if isinstance(per, dict):
            rows.append((f"CPU ms/non-stream request, {c} c.", nonstream_cpu_ms(r, c), ".3f"))
            rows.append((f"  latency p50 ms, non-stream, {c} c.",
                         {t: per[t]["total_ms"]["p50"] for t in PROXIES if t in per}, ".3f"))
    if "1" in r.get("ttfb", {}):
        rows.append(("added TTFB p50 ms over direct, 1 c.", added_ttfb_ms(r, "1"), "+.3f"))
    for c in ("50", "50 (50 tok/s)"):
        if c in r.get("ttfb", {}):
            count, _, how = c.partition(" ")
            rows.append((f"TTFB p50 / direct's, {count} c. {how}".rstrip(), ttfb_vs_direct(r, c), ".2f"))
    runs = {"gateway": "heartbeat_off", "floor": "floor", "nginx": "nginx"}
    for n in sorted(set.union(*(idle_counts(r, name) for name in runs.values())), key=int):
        rows.append((f"RSS KiB/idle stream, no heartbeats, {int(n):,}",
                     {t: idle_kib(r, name, n)[1] for t, name in runs.items()}, ".1f"))
    return rows


def proxies_lines(r: dict[str, Any]) -> list[str]:
    proxy = r.get("nginx_proxy", {})
    lines = ["proxies side by side, same rounds: gateway, aiohttp floor and nginx (the pure proxy",
             "  nginx -> mock), each straight to the mock; CPU: the proxy's own processes:"]
    if "skipped" in proxy:
        lines.append(f"  pure-proxy row skipped ({proxy['skipped']})")
    if "skipped" in r.get("nonstream", {}):
        lines.append(f"  non-stream row skipped ({r['nonstream']['skipped']})")
    width = 44
    lines.append(f"  {'figure':<{width}}{'gateway':>10}{'floor':>10}{'nginx':>10}"
                 f"{'gw/nginx':>10}{'floor/ngx':>10}{'gw/floor':>10}")
    for label, v, spec in figures(r):
        g, f, n = (v.get(t) for t in PROXIES)
        lines.append(f"  {label:<{width}}{_fmt(g, spec):>10}{_fmt(f, spec):>10}{_fmt(n, spec):>10}"
                     f"{_ratio(g, n):>10}{_ratio(f, n):>10}{_ratio(g, f):>10}")
    errors = {f"{row}/{c}/{t}": per[t]["errors"] for row in ("nginx_proxy", "nonstream")
              for c, per in r.get(row, {}).items() if isinstance(per, dict)
              for t in per if per[t]["errors"]}
    lines.append(f"  errors: {errors or 'none'}")
    return lines
