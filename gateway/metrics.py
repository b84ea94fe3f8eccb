"""Prometheus metrics: the names and labels the project's contract fixes (docs/design.md lists
them), on a registry the app owns.

Labels stay bounded: tenant and model values come from the config (anything else is
"other"), routes and statuses from our own code.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector

from . import __version__
from .config import Config
from .series import REMEMBERED, Series

OTHER = "other"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set by `workers.py` for its workers

#: LLM latencies run from milliseconds (a cached first token through a fast proxy) to
#: minutes (a long answer): buckets cover 5 ms .. 10 min, denser below 2 s where TTFB lives.
TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60, 120)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
#: output tokens per second of one stream: from a slow local model to a fast provider
TOKENS_PER_SECOND_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
class Metrics:
    def __init__(self, config: Config) -> None:
        # No `*_created` series: a timestamp per labelled child doubles what is scraped and
        # no panel reads it. prometheus-client's switch is process-wide (and idempotent).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self._tenants = frozenset(t.name for t in config.tenants)
        # Concrete names first (a route's or an upstream's), then the globs they fall under.
        names = [r.model for r in config.routes] + [p for u in config.upstreams for p in u.models]
        self._model_names = frozenset(n for n in names if not _is_glob(n))
        self._model_globs = tuple(dict.fromkeys(n for n in names if _is_glob(n)))
        self._upstreams = frozenset(u.name for u in config.upstreams)
        #: the concrete model names the config's targets ask for (`a:gpt-4o`), for the breaker
        #: gauge's `model` label (else the glob the name falls under, or `other`)
        self._target_models = target_models(config)
        #: (upstream, model label) series of `gateway_target_breaker_open` set so far
        self._target_series: set[tuple[str, str]] = set()
        #: the upstreams of the config in force: `gateway_upstream_up` has a series for each
        self._configured = self._upstreams
        # `.labels()` validates and locks on every call; a request's children come from here.
        # Bounded like the label values themselves (see the module docstring).
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}
        #: (tenant, model, upstream) names -> their `Series`; emptied when label values change
        self._series: dict[tuple[str | None, str | None, str | None], Series] = {}
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
        self.output_rate = Histogram(
            "gateway_stream_output_tokens_per_second",
            "A stream's completion tokens over its time from first data line to end",
            ["tenant", "model"], buckets=TOKENS_PER_SECOND_BUCKETS, registry=r)
        self.tokens = Counter(
            "gateway_tokens", "LLM tokens by kind", ["tenant", "model", "kind"], registry=r)
        # With workers, gauges are summed (or min/max) over the live workers' files.
        self.active_streams = Gauge("gateway_active_streams", "Streams holding a slot", registry=r,
                                    multiprocess_mode="livesum")
        # Per tenant, with the tenant's own name (only an authenticated tenant holds a slot, so
        # the values are the tenants the operator made): /admin/tenants reads it summed over
        # the workers.
        self.tenant_streams = Gauge("gateway_tenant_active_streams", "Streams holding a slot, per tenant",
                                    ["tenant"], registry=r, multiprocess_mode="livesum")
        self.queue_depth = Gauge("gateway_queue_depth", "Requests waiting for a slot", registry=r,
                                 multiprocess_mode="livesum")
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
        self.cost = Counter(
            "gateway_cost_usd", "Spend in USD from settled usage and [prices]", ["tenant", "model"],
            registry=r)
        self.unpriced = Counter(
            "gateway_unpriced_requests", "Requests whose model has no price (counted as zero cost)",
            ["model"], registry=r)
        self.budget_remaining = Gauge(
            "gateway_budget_remaining_usd", "Budget left this period", ["tenant"], registry=r,
            multiprocess_mode="mostrecent")
        self.upstream_up = Gauge(
            "gateway_upstream_up", "0 while the upstream's circuit breaker is open", ["upstream"],
            registry=r, multiprocess_mode="livemin")
        self.target_breaker_open = Gauge(
            "gateway_target_breaker_open",
            "1 while a target's (upstream, model) circuit breaker is open or waits for its probe",
            ["upstream", "model"], registry=r, multiprocess_mode="livemax")
        self.midstream_recoveries = Counter(
            "gateway_midstream_recoveries", "Streams cut after the first byte and continued elsewhere",
            ["route", "result"], registry=r)
        self.resumable_streams = Gauge(
            "gateway_resumable_streams", "Resumable streams by state", ["state"], registry=r,
            multiprocess_mode="livesum")
        self.stream_resumes = Counter(
            "gateway_stream_resumes", "Subscriptions that came back with a Last-Event-ID",
            ["result"], registry=r)
        for result in ("replayed", "unknown"):  # a series each from the start
            self.stream_resumes.labels(result)
        self.config_reloads = Counter(
            "gateway_config_reloads", "Config reloads by result", ["result"], registry=r)
        self.client_errors = Counter(
            "gateway_client_errors", "Requests refused for the client's own fault (401, 400, 404, 413)",
            ["status"], registry=r)
        self.closed_connections = Counter(
            "gateway_client_connections_closed", "Client connections the gateway closed",
            ["reason"], registry=r)
        self.models_refresh = Counter(
            "gateway_models_refresh", "Provider model-list refreshes by result", ["upstream", "result"],
            registry=r)
        self.build_info = Gauge("gateway_build_info", "The running version", ["version"], registry=r,
                                multiprocess_mode="livemax")
        self.build_info.labels(__version__).set(1)
        for upstream in self._configured:
            self.upstream_up.labels(upstream).set(1)
        #: what /metrics exposes: this registry, or with workers the sum over all of them
        self.exposed: CollectorRegistry = r
        self.multiprocess = MULTIPROC_ENV in os.environ
        if self.multiprocess:
            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed)  # type: ignore[no-untyped-call]
        else:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

    def follow(self, config: Config, up: Mapping[str, bool]) -> None:
        """A reloaded config's names become label values too (the old ones stay valid: requests
        in flight finish on the old config), and `gateway_upstream_up` follows its upstreams:
        each gets its series from `up` (name -> its breaker is closed; absent: a fresh breaker,
        1), and a removed one's series goes. With workers (multiprocess mode) a series can't be
        removed: prometheus-client keeps every value a worker wrote in that worker's file until
        it exits. There a removed upstream's series is set to 1, so nothing alerts on an upstream
        that is gone; it stays, at 1, until the workers restart."""
        names = [r.model for r in config.routes] + [p for u in config.upstreams for p in u.models]
        self._series = {}
        self._tenants |= frozenset(t.name for t in config.tenants)
        self._model_names |= frozenset(n for n in names if not _is_glob(n))
        self._model_globs = tuple(dict.fromkeys((*self._model_globs, *(n for n in names if _is_glob(n)))))
        configured = frozenset(u.name for u in config.upstreams)
        self._upstreams |= configured
        self._target_models |= target_models(config)
        for gone in self._configured - configured:
            if self.multiprocess:
                self.upstream_up.labels(gone).set(1)
            else:
                self.upstream_up.remove(gone)
            self._forget_targets(gone)
        self._configured = configured
        for name in configured:
            self.upstream_up.labels(name).set(1 if up.get(name, True) else 0)

    def upstream_is_up(self, name: str, up: bool) -> None:
        """`gateway_upstream_up` after a breaker changed state. Not for an upstream a reload
        removed (a request still in flight on the old config may trip its breaker): its series
        stays gone."""
        if name in self._configured:
            self.upstream_up.labels(name).set(1 if up else 0)

    def target_breakers(self, upstream: str, opened: Mapping[str, bool]) -> None:
        """`gateway_target_breaker_open` of `upstream`'s targets: model label -> open. A series
        set before and not in `opened` (its breaker was forgotten) goes back to 0."""
        if upstream not in self._configured:
            return
        for key in [k for k in self._target_series if k[0] == upstream and k[1] not in opened]:
            self.target_breaker_open.labels(*key).set(0)
        for model, is_open in opened.items():
            self._target_series.add((upstream, model))
            self.target_breaker_open.labels(upstream, model).set(1 if is_open else 0)

    def _forget_targets(self, upstream: str) -> None:
        for key in [k for k in self._target_series if k[0] == upstream]:
            if self.multiprocess:
                self.target_breaker_open.labels(*key).set(0)
            else:
                self.target_breaker_open.remove(*key)
                self._target_series.discard(key)

    def target_model(self, name: str) -> str:
        """The `model` label of a target's breaker: a model name a target of the config asks
        for, else `model()` (the glob it falls under, or `other`)."""
        return name if name in self._target_models else self.model(name)

    def child(self, metric: MetricWrapperBase, *values: str) -> Any:
        """`metric.labels(*values)`, looked up once per label set (the request hot path)."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def series(self, tenant: str | None, model: str | None, upstream: str | None) -> Series:
        """The `Series` of these names (labels resolved once per name, not per request)."""
        key = (tenant, model, upstream)
        found = self._series.get(key)
        if found is None:
            found = Series(self, self.tenant(tenant), self.model(model), self.upstream(upstream))
            if len(self._series) < REMEMBERED:
                self._series[key] = found
        return found

    def tenant(self, name: str | None) -> str:
        return name if name in self._tenants else OTHER

    def add_tenants(self, names: Iterable[str]) -> None:
        """Runtime tenants (the admin API's) are label values too, like the config's."""
        self._tenants |= frozenset(names)
        self._series = {}

    def model(self, name: str | None) -> str:
        """A model label: the configured name, else the configured pattern it matched
        (`gpt-*`), so a client can't mint new series by inventing model names; `other` when
        it matched none."""
        if name is None:
            return OTHER
        if name in self._model_names:
            return name
        for glob in self._model_globs:
            if name == glob or fnmatch.fnmatchcase(name, glob):
                return glob
        return OTHER

    def upstream(self, name: str | None) -> str:
        return name if name in self._upstreams else OTHER


def _is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


def configured_targets(config: Config) -> list[tuple[str, str]]:
    """The (upstream, model) targets the config names with a concrete model: a route's
    `upstream:model`, a concrete route's `upstream`, an upstream's concrete models (and its
    fallbacks for them). A glob route's `upstream` keeps the client's name: not known here."""
    out: dict[tuple[str, str], None] = {}
    for route in config.routes:
        for target in route.targets:
            upstream, _, renamed = target.partition(":")
            model = renamed or route.model
            if not _is_glob(model):
                out[(upstream, model)] = None
    for spec in config.upstreams:
        for model in spec.models:
            if not _is_glob(model):
                for name in (spec.name, *spec.fallbacks):
                    out[(name, model)] = None
    return list(out)


def target_models(config: Config) -> frozenset[str]:
    return frozenset(model for _, model in configured_targets(config))
