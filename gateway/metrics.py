"""Prometheus metrics: the names and labels DESIGN.md fixes, on a registry the app owns.

Labels stay bounded: tenant and model values come from the config (anything else is
"other"), routes and statuses from our own code.
"""

from __future__ import annotations

import fnmatch

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .config import Config

OTHER = "other"

#: LLM latencies run from milliseconds (a cached first token through a fast proxy) to
#: minutes (a long answer): buckets cover 5 ms .. 10 min, denser below 2 s where TTFB lives.
TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60, 120)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self, config: Config) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._tenants = frozenset(t.name for t in config.tenants)
        self._model_globs = tuple(dict.fromkeys(p for u in config.upstreams for p in u.models))
        self._upstreams = frozenset(u.name for u in config.upstreams)
        r = self.registry
        self.requests = Counter(
            "gateway_requests", "Requests by final status",
            ["tenant", "model", "route", "status"], registry=r)
        self.ttfb = Histogram(
            "gateway_ttfb_seconds", "Request arrival to first byte written to the client",
            ["tenant", "model", "upstream"], buckets=TTFB_BUCKETS, registry=r)
        self.stream_duration = Histogram(
            "gateway_stream_duration_seconds", "Request arrival to end of stream",
            ["tenant", "model", "upstream"], buckets=DURATION_BUCKETS, registry=r)
        self.tokens = Counter(
            "gateway_tokens", "LLM tokens by kind", ["tenant", "model", "kind"], registry=r)
        self.active_streams = Gauge("gateway_active_streams", "Streams holding a slot", registry=r)
        self.queue_depth = Gauge("gateway_queue_depth", "Requests waiting for a slot", registry=r)
        self.queue_wait = Histogram(
            "gateway_queue_wait_seconds", "Time spent waiting for a stream slot",
            buckets=QUEUE_BUCKETS, registry=r)
        self.ratelimited = Counter(
            "gateway_ratelimited", "Requests refused by a tenant bucket", ["tenant", "kind"],
            registry=r)
        self.shed = Counter("gateway_shed", "Requests shed by the gateway", ["reason"], registry=r)
        self.upstream_retries = Counter(
            "gateway_upstream_retries", "Upstream attempts retried", ["upstream", "reason"],
            registry=r)
        self.upstream_errors = Counter(
            "gateway_upstream_errors", "Upstream failures", ["upstream", "kind"], registry=r)
        self.client_disconnects = Counter(
            "gateway_client_disconnects", "Clients gone before the end", ["tenant"], registry=r)
        self.heartbeats = Counter("gateway_heartbeats", "Heartbeat comments written", registry=r)
        self.limiter_errors = Counter(
            "gateway_ratelimit_backend_errors", "Rate-limit backend failures (fail_open decides)",
            registry=r)

    def tenant(self, name: str | None) -> str:
        return name if name in self._tenants else OTHER

    def model(self, name: str | None) -> str:
        """A model label: the configured pattern it matched (`gpt-*`), so a client can't mint
        new series by inventing model names; `other` when it matched none."""
        if name is None:
            return OTHER
        for glob in self._model_globs:
            if name == glob or fnmatch.fnmatchcase(name, glob):
                return glob
        return OTHER

    def upstream(self, name: str | None) -> str:
        return name if name in self._upstreams else OTHER

