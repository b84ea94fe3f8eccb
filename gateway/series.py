"""The children a request's end counts (`record.tell`), bound once per (tenant, model,
upstream) names: `Metrics.series` hands them out, remembered, so a request resolves its labels
and looks its children up once, not once per metric."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .metrics import Metrics

#: how many (tenant, model, upstream) names `Metrics.series` remembers (a client names the model)
REMEMBERED = 4096
#: the slots of `Series` that hold a child, bound on first use
_CHILDREN = frozenset({"prompt_tokens", "completion_tokens", "cost", "unpriced", "ttfb",
                       "stream_duration", "output_rate", "midstream_errors", "client_disconnects"})


class Series:
    """The labels of one (tenant, model, upstream) as a request named them, resolved once, and
    the children a request's end counts under them. A child is bound on its first use (then
    it is a plain slot), so a series appears when first counted, as with `.labels()`."""

    __slots__ = ("_metrics", "tenant", "model", "upstream", "requests", "prompt_tokens",
                 "completion_tokens", "cost", "unpriced", "ttfb", "stream_duration", "output_rate",
                 "midstream_errors", "client_disconnects")

    requests: dict[tuple[str, int], Any]  # (route, status) -> its `gateway_requests` child
    prompt_tokens: Any
    completion_tokens: Any
    cost: Any
    unpriced: Any
    ttfb: Any
    stream_duration: Any
    output_rate: Any
    midstream_errors: Any
    client_disconnects: Any

    def __init__(self, metrics: Metrics, tenant: str, model: str, upstream: str) -> None:
        self._metrics, self.tenant, self.model, self.upstream = metrics, tenant, model, upstream
        self.requests = {}

    def __getattr__(self, name: str) -> Any:  # a child's slot not set yet: bind it
        if name not in _CHILDREN:  # (`_metrics` itself on a copy made without __init__)
            raise AttributeError(name)
        m, tenant, model, upstream = self._metrics, self.tenant, self.model, self.upstream
        binds: dict[str, tuple[Any, ...]] = {
            "prompt_tokens": (m.tokens, tenant, model, "prompt"),
            "completion_tokens": (m.tokens, tenant, model, "completion"),
            "cost": (m.cost, tenant, model),
            "unpriced": (m.unpriced, model),
            "ttfb": (m.ttfb, tenant, model, upstream),
            "stream_duration": (m.stream_duration, tenant, model, upstream),
            "output_rate": (m.output_rate, tenant, model),
            "midstream_errors": (m.upstream_errors, upstream, "midstream"),
            "client_disconnects": (m.client_disconnects, tenant),
        }
        child = m.child(*binds[name])
        setattr(self, name, child)
        return child

    def request(self, route: str, status: int) -> Any:
        """The `gateway_requests` child of a route and final status."""
        child = self.requests.get((route, status))
        if child is None:
            child = self.requests[(route, status)] = self._metrics.child(
                self._metrics.requests, self.tenant, self.model, route, str(status))
        return child
