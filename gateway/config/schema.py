"""The config schema: frozen, strict pydantic models for every key of the project's contract
(docs/design.md, "Configuration reference").

Cross-checks that span sections (names that must exist, duplicates, cycles) live in
`Config._cross_checks`; each problem names its key (`_KeyProblem`), so the loader can
report it as one line.
"""

from __future__ import annotations

import fnmatch
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

# Every number of seconds (and every other float: weights, prices, budgets) is finite: `inf`
# and `nan` are TOML floats, and an infinite wait is no bound ("every wait is bounded").
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: integers stay within 64 bits: JSON answers (orjson), SQLite and Redis refuse larger ones
PositiveInt = Annotated[int, Field(gt=0, le=2**63 - 1)]
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]


def _list_to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


#: TOML arrays arrive as lists; frozen config keeps them as tuples (strict mode wants exact types)
Names = Annotated[tuple[str, ...], BeforeValidator(_list_to_tuple)]
Keys = Annotated[tuple[Sha256, ...], BeforeValidator(_list_to_tuple)]
#: how the provider key is sent: `authorization` = `Authorization: Bearer KEY`, else `NAME: KEY`
AuthHeader = Literal["authorization", "api-key", "x-api-key", "x-goog-api-key"]
#: an HTTP field name (RFC 9110 token) and a value with no line break or other control character
HeaderName = Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
HeaderValue = Annotated[str, Field(pattern=r"^[^\x00-\x08\x0a-\x1f\x7f]*$")]
#: static headers the gateway sets itself, or that carry a credential (`auth_header` does that)
RESERVED_HEADERS = frozenset({
    "host", "content-length", "content-type", "transfer-encoding", "connection", "keep-alive",
    "te", "trailer", "upgrade", "accept-encoding", "x-request-id",
    "authorization", "api-key", "x-api-key", "x-goog-api-key", "proxy-authorization",
})


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ServerConfig(_Frozen):
    host: str = "0.0.0.0"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    max_body_bytes: PositiveInt = 1_048_576
    heartbeat_seconds: NonNegative = 15  # 0 turns heartbeats off
    drain_seconds: NonNegative = 30
    cors_origins: Names = ()
    ui: bool = False
    max_line_bytes: PositiveInt = 4_194_304
    max_response_bytes: PositiveInt = 33_554_432
    client_header_timeout_seconds: Positive = 10
    client_body_timeout_seconds: Positive = 30
    keepalive_timeout_seconds: Positive = 75
    #: open client connections beyond which new ones are closed at once (0 = from the fd limit)
    max_connections: Annotated[int, Field(ge=0)] = 0
    workers: Annotated[int, Field(ge=1, le=256)] = 1
    admin_key_sha256: Annotated[str, Field(pattern=r"^([0-9a-fA-F]{64})?$")] = ""
    #: token reservation when a request names no `max_tokens` (settled to real usage later);
    #: also the `max_tokens` sent to an Anthropic upstream for a request that names none
    default_max_tokens: PositiveInt = 4096


class LimitsConfig(_Frozen):
    max_concurrent_streams: PositiveInt = 1000
    max_queue: Annotated[int, Field(ge=0)] = 5000
    queue_timeout_seconds: Positive = 10


class RateLimitConfig(_Frozen):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: Annotated[str, Field(pattern=r"^(redis|rediss|unix)://")] = "redis://127.0.0.1:6379/0"
    fail_open: bool = True
    key_prefix: Annotated[str, Field(min_length=1, max_length=64)] = "gw:"


class StreamsConfig(_Frozen):
    """Resumable streams (`/api/chat/streams`, the GET form of `/api/chat/stream`)."""

    backend: Literal["memory", "redis"] = "memory"  # "redis": ratelimit.redis_url, any worker resumes
    keep_seconds: Positive = 300  # events kept after a stream ends
    abandon_seconds: Positive = 60  # a generation nobody watched for this long is cancelled
    max_bytes: PositiveInt = 4_194_304  # events kept per stream; past it one error event ends it


class UpstreamSpec(_Frozen):
    name: Annotated[str, Field(min_length=1, pattern=r"^[^:\s]+$")]
    dialect: Literal["openai", "anthropic"]
    base_url: Annotated[str, Field(pattern=r"^https?://")]
    #: env var holding the provider key; empty = the upstream takes no key (vLLM, Ollama)
    api_key_env: str = ""
    #: names and globs this upstream serves; names without glob characters are listed by /v1/models
    models: Names = ()
    fallbacks: Names = ()
    connect_timeout_seconds: Positive = 5
    first_byte_timeout_seconds: Positive = 60
    idle_timeout_seconds: Positive = 60
    total_timeout_seconds: Positive = 600
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    backoff_base_seconds: NonNegative = 0.2
    backoff_max_seconds: NonNegative = 5
    weight: Positive = 1
    failures_to_trip: Annotated[int, Field(ge=0)] = 5
    cooldown_seconds: Positive = 30
    supports_prefill: bool = False
    #: the header the provider key goes in; unset = the dialect's (openai: authorization,
    #: anthropic: x-api-key)
    auth_header: AuthHeader | None = None
    #: sent on every request to this upstream (the model-list request included)
    headers: dict[HeaderName, HeaderValue] = {}
    #: added to every URL of this upstream (Azure's `api-version`, ...)
    query: dict[Annotated[str, Field(min_length=1)], str] = {}
    #: how often an upstream with a glob in `models` is asked for its model list
    models_refresh_seconds: Positive = 600
    #: resolved from the env var `api_key_env` names; never printed (SecretStr)
    api_key: SecretStr = SecretStr("")

    def serves(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    def __hash__(self) -> int:
        # Still hashable (a Target or a Plan may be a key) though `headers` and `query` are
        # dicts: equal specs have equal names, dialects and URLs.
        return hash((self.name, self.dialect, self.base_url))


class RouteSpec(_Frozen):
    model: Annotated[str, Field(min_length=1)]
    targets: Annotated[Names, Field(min_length=1)]
    strategy: Literal["fallback", "balance"] = "fallback"
    on_context_overflow: str = ""
    resume_midstream: bool = False

    def matches(self, model: str) -> bool:
        return model == self.model or fnmatch.fnmatchcase(model, self.model)


class PriceSpec(_Frozen):
    """USD per 1M tokens."""

    input: NonNegative
    output: NonNegative
    cache_read: NonNegative | None = None
    cache_write: NonNegative | None = None


class StoreConfig(_Frozen):
    """Tenants and keys created at runtime, and spend per day (opened when admin routes are on)."""

    backend: Literal["sqlite", "redis"] = "sqlite"  # redis: [ratelimit].redis_url and key_prefix
    path: Annotated[str, Field(min_length=1)] = "gateway-state.db"  # relative to the config file


class Tenant(_Frozen):
    name: Annotated[str, Field(min_length=1)]
    key_sha256: Sha256
    requests_per_minute: PositiveInt = 600
    tokens_per_minute: PositiveInt = 200_000
    priority: Int64 = 0
    models: Annotated[Names, Field(min_length=1)] = ("*",)
    budget_usd: NonNegative | None = None
    budget_period: Literal["day", "month", "total"] = "month"
    extra_key_sha256: Keys = ()

    def allows(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key_sha256.lower(), *(k.lower() for k in self.extra_key_sha256))


class Config(_Frozen):
    server: ServerConfig = ServerConfig()
    limits: LimitsConfig = LimitsConfig()
    ratelimit: RateLimitConfig = RateLimitConfig()
    streams: StreamsConfig = StreamsConfig()
    upstreams: Annotated[tuple[UpstreamSpec, ...], BeforeValidator(_list_to_tuple), Field(min_length=1)]
    routes: Annotated[tuple[RouteSpec, ...], BeforeValidator(_list_to_tuple)] = ()
    prices: dict[str, PriceSpec] = {}
    tenants: Annotated[tuple[Tenant, ...], BeforeValidator(_list_to_tuple), Field(min_length=1)]
    store: StoreConfig = StoreConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        self._check_workers()
        self._check_upstreams()
        self._check_routes()
        self._check_tenants()
        return self

    def _check_workers(self) -> None:
        if self.server.workers > 1 and self.ratelimit.backend != "redis":
            raise _KeyProblem("server.workers", "more than 1 worker needs ratelimit.backend = \"redis\" "
                              "(limits held in one process's memory would not be shared)")
        if (self.server.workers > 1 and self.streams.backend == "memory"
                and "backend" in self.streams.model_fields_set):  # unset: redis (streams/hub.py)
            raise _KeyProblem("streams.backend", "more than 1 worker needs \"redis\" here (a browser's "
                              "reconnect may reach another worker, which would not know the stream)")
        if self.server.workers > self.limits.max_concurrent_streams:  # split between workers
            raise _KeyProblem("server.workers", f"{self.server.workers} workers need "
                              "limits.max_concurrent_streams of at least as many (each worker "
                              "holds its share of the gateway's streams)")

    def _check_upstreams(self) -> None:
        names = [u.name for u in self.upstreams]
        for i, upstream in enumerate(self.upstreams):
            if upstream.name in names[:i]:
                raise _KeyProblem(f"upstreams[{i}].name", f"duplicate upstream {upstream.name!r}")
            for header in upstream.headers:
                if header.lower() in RESERVED_HEADERS:
                    raise _KeyProblem(f"upstreams[{i}].headers.{header}",
                                      "the gateway sets this header itself (the provider key goes "
                                      "in the header `auth_header` names, from `api_key_env`)")
            for j, fallback in enumerate(upstream.fallbacks):
                if fallback not in names:
                    raise _KeyProblem(f"upstreams[{i}].fallbacks[{j}]", f"names no upstream: {fallback!r}")
                if fallback == upstream.name:
                    raise _KeyProblem(f"upstreams[{i}].fallbacks[{j}]",
                                      "an upstream can't be its own fallback")

    def _check_routes(self) -> None:
        names = {u.name for u in self.upstreams}
        routes = {r.model: i for i, r in enumerate(self.routes)}
        for i, route in enumerate(self.routes):
            if routes[route.model] != i:
                raise _KeyProblem(f"routes[{i}].model", f"duplicate route {route.model!r}")
            for j, target in enumerate(route.targets):
                upstream, _, model = target.partition(":")
                if upstream not in names:
                    raise _KeyProblem(f"routes[{i}].targets[{j}]", f"names no upstream: {upstream!r}")
                if ":" in target and not model:
                    raise _KeyProblem(f"routes[{i}].targets[{j}]", "empty model after ':'")
            if route.on_context_overflow and route.on_context_overflow not in routes:
                raise _KeyProblem(f"routes[{i}].on_context_overflow",
                                  f"names no route: {route.on_context_overflow!r}")
        for i, route in enumerate(self.routes):  # on_context_overflow chains must end
            seen = {route.model}
            nxt = route.on_context_overflow
            while nxt:
                if nxt in seen:
                    raise _KeyProblem(f"routes[{i}].on_context_overflow",
                                      f"cycle: {' -> '.join([*seen, nxt])}")
                seen.add(nxt)
                nxt = self.routes[routes[nxt]].on_context_overflow

    def _check_tenants(self) -> None:
        tenant_names = [t.name for t in self.tenants]
        keys: dict[str, int] = {}
        for i, tenant in enumerate(self.tenants):
            if tenant.name in tenant_names[:i]:
                raise _KeyProblem(f"tenants[{i}].name", f"duplicate tenant {tenant.name!r}")
            for key in tenant.keys:
                if keys.setdefault(key, i) != i or tenant.keys.count(key) > 1:
                    raise _KeyProblem(f"tenants[{i}].key_sha256", "the same key is given to two tenants")
                if key == self.server.admin_key_sha256.lower():
                    raise _KeyProblem(f"tenants[{i}].key_sha256", "a tenant key can't be the admin key")

    def upstream(self, name: str) -> UpstreamSpec:
        return next(u for u in self.upstreams if u.name == name)


class _KeyProblem(ValueError):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem
