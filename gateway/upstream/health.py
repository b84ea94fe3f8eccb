"""What the breakers say about each upstream, published as metrics: `gateway_upstream_up`
(0 only while every target of the upstream is open, or while it refuses the gateway's
credentials) and `gateway_target_breaker_open` per target (model labels bounded by the
config, see `Metrics.target_model`)."""

from __future__ import annotations

from ..breaker import Breakers
from ..config import Config
from ..metrics import Metrics, configured_targets


def publish(metrics: Metrics, breakers: Breakers, upstream: str, refused: bool) -> None:
    """Both gauges of `upstream`, from its breakers now (after any state change)."""
    metrics.upstream_is_up(upstream, not refused and breakers.upstream_up(upstream))
    opened: dict[str, bool] = {}
    for model, breaker in breakers.of(upstream):
        label = metrics.target_model(model)
        opened[label] = opened.get(label, False) or not breaker.is_up
    metrics.target_breakers(upstream, opened)


def follow_config(metrics: Metrics, breakers: Breakers, config: Config, refused: set[str]) -> None:
    """At start and after a reload: forget the breakers of removed upstreams (and of those whose
    breaker settings changed), give every concrete target of the config its breaker (closed
    unless it had one), and publish both gauges of every upstream."""
    breakers.retain({u.name: (u.failures_to_trip, u.cooldown_seconds) for u in config.upstreams})
    for name, model in configured_targets(config):
        spec = config.upstream(name)
        breakers.get(name, model, spec.failures_to_trip, spec.cooldown_seconds)
    metrics.follow(config, {u.name: u.name not in refused and breakers.upstream_up(u.name)
                            for u in config.upstreams})
    for spec in config.upstreams:
        publish(metrics, breakers, spec.name, spec.name in refused)
