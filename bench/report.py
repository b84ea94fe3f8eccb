"""The side-by-side report: the main table (one column per target, ratios to direct), then
one block of lines per row that has its own shape. A new row adds one function to SECTIONS."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.goals import goals
from bench.procs import find_binary, nginx_version
from bench.report_proxies import proxies_lines
from bench.resumable import resumable_lines
from bench.rows import proxy_cpu
from bench.rows_fresh import HEARTBEAT_SECONDS
from bench.targets import targets

TARGETS = ("direct", "gateway", "floor", "nginx")


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
                 platform.processor())
    try:
        import uvloop
        loop = f"uvloop {getattr(uvloop, '__version__', '?')}"
    except ImportError:
        loop = "asyncio"
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "aiohttp": aiohttp.__version__, "loop": loop, "nginx": nginx_version(find_binary("nginx")),
            "load_average_start": os.getloadavg()}


def _conc(label: str) -> str:
    count, _, how = label.partition(" ")
    return f"{count} concurrent {how}".rstrip()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


Row = tuple[str, dict[str, float | None], str]  # label, value per target, format spec


def table_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for c, per in r.get("ttfb", {}).items():
        for p in ("p50", "p99"):
            rows.append((f"TTFB {p} ms, {_conc(c)}", {t: per[t]["ttfb_ms"][p] for t in per}, ".3f"))
    for c, per in r.get("chunks", {}).items():
        rows.append((f"chunks/s, {c} concurrent", {t: per[t]["tokens_per_second"] for t in per}, ",.0f"))
        rows.append((f"  all processes CPU s/1k chunks, {c} c.", {
            t: sum(per[t]["cpu"].values()) / per[t]["tokens"] * 1000 if per[t]["tokens"] else None
            for t in per}, ".4f"))
        for proc in ("gateway", "floor", "client", "mock"):  # the proxies: only where they serve
            rows.append((f"  {proc} CPU s/1k chunks, {c} c.", {
                t: per[t]["cpu"][proc] / per[t]["tokens"] * 1000 if per[t]["tokens"] else None
                for t in per if proc in per[t]["cpu"] and (
                    proc not in ("gateway", "floor") or t == proc or (proc, t) == ("gateway", "nginx"))
            }, ".4f"))
        nginx = {t: proxy_cpu("nginx", per[t]) / per[t]["tokens"] * 1000
                 for t in per if t == "nginx" and per[t]["tokens"]}
        if nginx:
            rows.append((f"  nginx CPU s/1k chunks, {c} c.", nginx, ".4f"))
    stall = r.get("stall", {})
    if stall:
        n = next(iter(stall.values()))["requests"]
        rows.append((f"{n} streams at 10 tok/s: ok", {t: stall[t]["ok"] for t in stall}, "d"))
        rows.append((f"{n} streams at 10 tok/s: max gap ms", {
            t: stall[t]["max_gap_ms"] for t in stall}, ",.1f"))
    disc = r.get("disconnect", {})
    for share, name in ((0.5, "p50"), (1.0, "max")) if disc else ():
        rows.append((f"disconnect->upstream close {name} ms", {
            t: d["ms"][min(len(d["ms"]) - 1, int(share * len(d["ms"])))] if d["ms"] else None
            for t, d in disc.items()}, ".2f"))
    return rows


def table_lines(r: dict[str, Any]) -> list[str]:
    width = 40
    lines = [f"{'figure':<{width}}{'direct':>11}{'gateway':>11}{'floor':>11}{'nginx->gw':>11}"
             f"{'gw/direct':>10}{'fl/direct':>10}{'ngx/direct':>11}"]
    for label, values, spec in table_rows(r):
        d, g, f, n = (values.get(t) for t in TARGETS)
        ratio = [f"{x / d:.2f}x" if x is not None and d else "-" for x in (g, f, n)]
        lines.append(f"{label:<{width}}{_fmt(d, spec):>11}{_fmt(g, spec):>11}{_fmt(f, spec):>11}"
                     f"{_fmt(n, spec):>11}{ratio[0]:>10}{ratio[1]:>10}{ratio[2]:>11}")
    names = {"gateway": "gateway", "floor": "aiohttp floor", "nginx": "nginx->gw"}
    for c, per in r.get("ttfb", {}).items():
        d = per["direct"]["ttfb_ms"]["p50"]
        lines.append(f"added TTFB p50, {_conc(c)}: " + ", ".join(
            f"{name} {per[t]['ttfb_ms']['p50'] - d:+.3f} ms" for t, name in names.items() if t in per))
    errors = {f"{k}/{c}/{t}": v["errors"] for k in ("ttfb", "chunks") for c, per in
              r.get(k, {}).items() for t, v in per.items() if v["errors"]}
    lines.append(f"errors: {errors or 'none'}")
    return lines


def idle_lines(r: dict[str, Any]) -> list[str]:
    idle = r.get("idle", {})
    lines = []
    per_stream_cpu: dict[str, dict[str, float]] = {}
    for name, out in idle.items():
        base = out.get("rss_base", 0)
        who = {"floor": ("aiohttp floor (no heartbeats)", "floor"),
               "nginx": ("nginx -> mock (no heartbeats)", "nginx processes'")}.get(
            name, (name.replace("_", " "), "gateway"))
        lines.append(f"idle streams, {who[0]} (heartbeat every {HEARTBEAT_SECONDS:g} s "
                     f"when on; idle CPU: the quietest window): {who[1]} RSS at rest "
                     f"{base / 2**20:.1f} MiB")
        for n, x in out.items():
            if not n.isdigit():
                continue
            if "skipped" in x:
                lines.append(f"  {n}: skipped ({x['skipped']})")
                continue
            opened = x["opened"] or 1
            cpu_per = x["idle_cpu"] / x["window"] / opened * 1e6
            per_stream_cpu.setdefault(name, {})[n] = cpu_per
            per_hb = x["idle_cpu"] / x["heartbeats"] * 1e6 if x["heartbeats"] else None
            # Opening takes a while: streams already open heartbeat meanwhile (on average
            # half of them, for the whole opening time); `net` takes that out.
            net = (x["open_cpu"] - cpu_per / 1e6 * opened / 2 * x["seconds"]) / opened * 1e6
            lines.append(
                f"  {n:>6} open ({x['opened']} ok, failed {x['failed'] or 0}, in {x['seconds']:.1f} s): "
                f"RSS {x['rss'] / 2**20:6.1f} MiB = {(x['rss'] - base) / opened / 1024:5.1f} KiB/stream; "
                f"idle CPU {cpu_per:5.1f} us/stream/s, {x['heartbeats'] / x['window']:5.0f} heartbeats/s"
                f" ({_fmt(per_hb, '.1f')} us CPU each); opening {x['open_cpu'] / opened * 1e6:.0f} us "
                f"CPU/stream ({net:.0f} net of heartbeats); RSS after close "
                f"{x['rss_after_close'] / 2**20:.1f} MiB")
    on, off = per_stream_cpu.get("heartbeat_on", {}), per_stream_cpu.get("heartbeat_off", {})
    for n in on:
        if n in off:
            x, y = idle["heartbeat_on"], idle["heartbeat_off"]
            rss = (x[n]["rss"] - x["rss_base"]) - (y[n]["rss"] - y["rss_base"])
            lines.append(f"  heartbeat overhead at {n} idle streams (every {HEARTBEAT_SECONDS:g} s): "
                         f"{on[n] - off[n]:+.1f} us CPU/stream/s, RSS {rss / 2**20:+.1f} MiB")
    return lines



def translated_lines(r: dict[str, Any]) -> list[str]:
    out = r.get("translated", {})
    if "skipped" in out:
        return [f"translated (OpenAI client -> Anthropic-dialect upstream): skipped ({out['skipped']})"]
    lines = []
    for c, per in out.items():
        ms = {t: per[t]["cpu"][t] / max(1, per[t]["requests"]) * 1000 for t in per}
        chunks = per["gateway"]["tokens"] / max(1, per["gateway"]["requests"])
        errors = {t: per[t]["errors"] for t in per if per[t]["errors"]}
        lines.append(
            f"translated CPU per streamed request ({chunks:.0f} chunks), {c} concurrent: "
            f"OpenAI -> Anthropic upstream {ms['translated']:.3f} ms, pass-through "
            f"{ms['gateway']:.3f} ms = {ms['translated'] / ms['gateway'] if ms['gateway'] else 0:.2f}x "
            f"(target <= 1.5x); errors {errors or 'none'}")
    return lines



PROJECTED_CORES = (8, 32)


def workers_lines(r: dict[str, Any]) -> list[str]:
    out = r.get("workers", {})
    if not out:
        return []
    if "skipped" in out:
        return [f"workers row: skipped ({out['skipped']})"]
    lines = [f"workers (ratelimit on a private Redis, {r['machine']['nproc']} CPUs shared with the "
             "load client, the mock and Redis):"]
    cpu_ms = 0.0
    for count, x in out.items():
        cpu_ms = sum(x["cpu"].values()) / max(1, x["ok"]) * 1000
        lines.append(
            f"  workers = {count}: {_fmt(x['requests_per_second'], ',.0f')} req/s at "
            f"{x['concurrency']} concurrent streams ({x['model']}), gateway CPU {cpu_ms:.3f} ms/request "
            f"summed over {x['processes']} processes, errors {x['errors'] or 'none'}")
    if cpu_ms:  # from the last (most workers) row: one worker per core, nothing else on them
        lines.append("  projected, one worker per core and the cores the gateway's alone, linear in "
                     "that CPU/request: " + ", ".join(f"{n} cores ~{n / cpu_ms * 1000:,.0f} req/s"
                                                      for n in PROJECTED_CORES)
                     + " (an upper bound: Redis round trips and the kernel's share not scaled)")
    return lines


def growth_lines(r: dict[str, Any]) -> list[str]:
    out = r.get("growth", {})
    if not out:
        return []
    lines = [f"cost growth, one gateway ({out['model']}, RSS at rest {out['rss_base'] / 2**20:.1f} MiB):",
             f"  {'concurrent':>10}{'peak open':>11}{'CPU ms/req':>12}{'RSS peak MiB':>14}"
             f"{'KiB/stream':>12}{'TTFB p50 ms':>13}  errors"]
    for n, x in out.items():
        if not n.isdigit():
            continue
        if "skipped" in x:
            lines.append(f"  {n:>10}  skipped ({x['skipped']})")
            continue
        per_stream = (x["rss_peak"] - out["rss_base"]) / max(1, x["streams_peak"]) / 1024
        cpu_ms = x["cpu"] / max(1, x["requests"]) * 1000
        lines.append(f"  {int(n):>10,}{x['streams_peak']:>11,}{cpu_ms:>12.3f}"
                     f"{x['rss_peak'] / 2**20:>14.1f}{per_stream:>12.1f}"
                     f"{_fmt(x['ttfb_ms']['p50'], '.1f'):>13}  {x['errors'] or 'none'}")
    return lines


def extra_lines(r: dict[str, Any]) -> list[str]:
    lines = []
    loop = r.get("asyncio_loop")
    if loop:
        uv_t, uv_c = r["ttfb"], r["chunks"]
        lines.append("gateway event loop, uvloop vs asyncio: " + "; ".join([
            *(f"TTFB p50 {c} str. {uv_t[c]['gateway']['ttfb_ms']['p50']:.3f} vs "
              f"{loop['ttfb' + c]['ttfb_ms']['p50']:.3f} ms" for c in ("1", "50") if c in uv_t),
            *(f"chunks/s {c} str. {uv_c[c]['gateway']['tokens_per_second']:,.0f} vs "
              f"{loop['chunks' + c]['tokens_per_second']:,.0f} (gateway CPU s/1k chunks "
              f"{uv_c[c]['gateway']['cpu']['gateway'] / uv_c[c]['gateway']['tokens'] * 1000:.4f} vs "
              f"{loop['chunks' + c]['cpu']['gateway'] / loop['chunks' + c]['tokens'] * 1000:.4f})"
              for c in ("1", "50") if c in uv_c)]))
    adm = r.get("admission", {})
    for backend in ("memory", "redis"):
        a = adm.get(backend)
        if a and "skipped" not in a:
            trips = (f", round trips admit {a['round_trips_per_admit']:.2f}, admit+settle "
                     f"{a['round_trips_per_admission']:.2f}" if "round_trips_per_admit" in a else "")
            lines.append(f"admission, {backend}: admit {a['admit_us']:.1f} us, admit+settle "
                         f"{a['admit_settle_us']:.1f} us (n={a['n']}){trips}")
        elif a:
            lines.append(f"admission, {backend}: skipped ({a['skipped']})")
    if "gateway_memory" in adm and "gateway_redis" in adm:
        m, rd = adm["gateway_memory"]["ttfb_ms"]["p50"], adm["gateway_redis"]["ttfb_ms"]["p50"]
        lines.append(f"  gateway TTFB p50 at 1 stream: memory backend {m:.3f} ms, Redis backend "
                     f"{rd:.3f} ms ({rd - m:+.3f} ms)")
    return lines


def machine_lines(r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    end = m.get("load_average_end", m["load_average_start"])
    return [f"machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, aiohttp "
            f"{m['aiohttp']}, loop {m['loop']} (gateway, mock and client), {m['nginx']} "
            f"({r.get('nginx_config', 'not run')}); "
            f"load average {m['load_average_start'][0]:.2f} at start, {end[0]:.2f} at end"]


NOTES = [
    "notes: TTFB = request sent -> first body byte; chunks = content chunks counted by the",
    "  client. The mock writes one event per TCP segment, so direct, the client pays one read",
    "  per chunk; the gateway writes all it read in one write, so under load the client reads",
    "  fewer, larger segments (direct chunks/s can be client-bound: compare the CPU rows).",
    "  All processes share the CPUs, so at 100+ concurrent streams TTFB is mostly queueing.",
]

SECTIONS: tuple[Callable[[dict[str, Any]], list[str]], ...] = (
    table_lines, idle_lines, proxies_lines, translated_lines, workers_lines, resumable_lines, growth_lines,
    extra_lines, machine_lines, targets, goals,
    lambda r: NOTES,
)


def report(r: dict[str, Any]) -> str:
    lines: list[str] = []
    for section in SECTIONS:  # a run of some rows (`--only`) reports what it measured
        try:
            lines += list(section(r))
        except KeyError:
            continue
    return "\n".join(lines)
