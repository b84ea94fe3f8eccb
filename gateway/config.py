"""Configuration: one TOML file plus `GATEWAY_<SECTION>_<KEY>` overrides -> frozen, validated objects.

Rules:
- Loaded once at start; nothing reads env vars or files after that (the upstream
  keys are resolved here, from the env var each upstream's `api_key_env` names).
- Any problem is ONE line naming the file, the key and what is wrong (`ConfigError`).
- Overrides: `GATEWAY_SERVER_PORT=9000`; array tables by index or by name:
  `GATEWAY_UPSTREAMS_0_BASE_URL`, `GATEWAY_TENANTS_APP_A_PRIORITY`. The value is
  read as a TOML value when it parses as one (`9000`, `true`, `["a"]`), else as text.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from .errors import ConfigError

Positive = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]


def _list_to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


#: TOML arrays arrive as lists; frozen config keeps them as tuples (strict mode wants exact types)
Names = Annotated[tuple[str, ...], BeforeValidator(_list_to_tuple)]

ENV_PREFIX = "GATEWAY_"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ServerConfig(_Frozen):
    host: str = "0.0.0.0"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    max_body_bytes: PositiveInt = 1_048_576
    heartbeat_seconds: Annotated[float, Field(ge=0)] = 15  # 0 turns heartbeats off
    drain_seconds: Annotated[float, Field(ge=0)] = 30
    cors_origins: Names = ()
    ui: bool = False
    max_line_bytes: PositiveInt = 4_194_304
    #: token reservation when a request names no `max_tokens` (settled to real usage later)
    default_max_tokens: PositiveInt = 4096


class LimitsConfig(_Frozen):
    max_concurrent_streams: PositiveInt = 1000
    max_queue: Annotated[int, Field(ge=0)] = 5000
    queue_timeout_seconds: Positive = 10


class RateLimitConfig(_Frozen):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: Annotated[str, Field(pattern=r"^(redis|rediss|unix)://")] = "redis://127.0.0.1:6379/0"
    fail_open: bool = True


class UpstreamSpec(_Frozen):
    name: Annotated[str, Field(min_length=1)]
    dialect: Literal["openai", "anthropic"]
    base_url: Annotated[str, Field(pattern=r"^https?://")]
    api_key_env: Annotated[str, Field(min_length=1)]
    models: Annotated[Names, Field(min_length=1)]
    fallbacks: Names = ()
    connect_timeout_seconds: Positive = 5
    first_byte_timeout_seconds: Positive = 60
    idle_timeout_seconds: Positive = 60
    total_timeout_seconds: Positive = 600
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    backoff_base_seconds: Annotated[float, Field(ge=0)] = 0.2
    backoff_max_seconds: Annotated[float, Field(ge=0)] = 5
    #: resolved from the env var `api_key_env` names; never printed (SecretStr)
    api_key: SecretStr = SecretStr("")

    def serves(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)


class Tenant(_Frozen):
    name: Annotated[str, Field(min_length=1)]
    key_sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
    requests_per_minute: PositiveInt = 600
    tokens_per_minute: PositiveInt = 200_000
    priority: int = 0
    models: Annotated[Names, Field(min_length=1)] = ("*",)

    def allows(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)


class Config(_Frozen):
    server: ServerConfig = ServerConfig()
    limits: LimitsConfig = LimitsConfig()
    ratelimit: RateLimitConfig = RateLimitConfig()
    upstreams: Annotated[tuple[UpstreamSpec, ...], BeforeValidator(_list_to_tuple), Field(min_length=1)]
    tenants: Annotated[tuple[Tenant, ...], BeforeValidator(_list_to_tuple), Field(min_length=1)]

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        names = [u.name for u in self.upstreams]
        for i, upstream in enumerate(self.upstreams):
            if upstream.name in names[:i]:
                raise _KeyProblem(f"upstreams[{i}].name", f"duplicate upstream {upstream.name!r}")
            for j, fallback in enumerate(upstream.fallbacks):
                if fallback not in names:
                    raise _KeyProblem(
                        f"upstreams[{i}].fallbacks[{j}]", f"names no upstream: {fallback!r}"
                    )
                if fallback == upstream.name:
                    raise _KeyProblem(
                        f"upstreams[{i}].fallbacks[{j}]", "an upstream can't be its own fallback")
        tenant_names = [t.name for t in self.tenants]
        keys = [t.key_sha256.lower() for t in self.tenants]
        for i, tenant in enumerate(self.tenants):
            if tenant.name in tenant_names[:i]:
                raise _KeyProblem(f"tenants[{i}].name", f"duplicate tenant {tenant.name!r}")
            if tenant.key_sha256.lower() in keys[:i]:
                raise _KeyProblem(f"tenants[{i}].key_sha256", "the same key is given to two tenants")
        return self

    def upstream(self, name: str) -> UpstreamSpec:
        return next(u for u in self.upstreams if u.name == name)


class _KeyProblem(ValueError):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def load_config(path: str | Path | None, env: Mapping[str, str]) -> Config:
    """Read the TOML at `path` (or none: defaults only), apply env overrides, validate."""
    source = str(path) if path else "<defaults>"
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{source}: file not found") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{source}: not UTF-8 text") from None
    return config_from_dict(raw, env, source=source)


def config_from_dict(raw: dict[str, Any], env: Mapping[str, str], *, source: str) -> Config:
    raw = apply_env_overrides(raw, env, source=source)
    for i, entry in enumerate(raw.get("upstreams") or []):
        if isinstance(entry, dict) and "api_key" in entry:
            raise ConfigError(f"{source}: upstreams[{i}].api_key: secrets are never in the file; "
                              "put the key in the environment variable `api_key_env` names")
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None
    except _KeyProblem as exc:  # pragma: no cover - pydantic wraps these; kept for safety
        raise ConfigError(f"{source}: {exc}") from None
    return _resolve_keys(config, env, source)


def _resolve_keys(config: Config, env: Mapping[str, str], source: str) -> Config:
    upstreams = []
    for i, upstream in enumerate(config.upstreams):
        key = env.get(upstream.api_key_env, "")
        if not key:
            raise ConfigError(
                f"{source}: upstreams[{i}].api_key_env: environment variable "
                f"{upstream.api_key_env} is not set (it must hold the key for {upstream.name!r})"
            )
        upstreams.append(upstream.model_copy(update={"api_key": SecretStr(key)}))
    for i, tenant in enumerate(config.tenants):
        if not any(_patterns_overlap(p, u.models) for u in upstreams for p in tenant.models):
            raise ConfigError(
                f"{source}: tenants[{i}].models: {list(tenant.models)} routes to no upstream"
            )
    return config.model_copy(update={"upstreams": tuple(upstreams)})


def _patterns_overlap(pattern: str, others: tuple[str, ...]) -> bool:
    """Could some model name match `pattern` and one of `others`? (good enough for globs)"""
    return any(
        fnmatch.fnmatchcase(pattern, other) or fnmatch.fnmatchcase(other, pattern)
        or pattern == "*" or other == "*"
        for other in others
    )


def _describe(exc: ValidationError) -> str:
    """The first problem as `key: what is wrong` (one line)."""
    err = exc.errors(include_url=False)[0]
    key = ""
    for part in err["loc"]:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "missing":
        message = "required key is missing"
    elif err["type"] == "value_error":
        ctx_error = err.get("ctx", {}).get("error")
        if isinstance(ctx_error, _KeyProblem):
            return f"{ctx_error.key}: {ctx_error.problem}"
        message = message.removeprefix("Value error, ")
    elif err["type"] == "string_pattern_mismatch" and key.endswith("key_sha256"):
        message = "must be 64 hex characters (the output of `llm-gateway hash-key`)"
    shown = err.get("input")
    if err["type"] not in ("missing", "extra_forbidden", "value_error") and _is_scalar(shown):
        message += f" (got {shown!r})"
    return f"{key or 'config'}: {message}".replace("\n", " ")


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) < 80


_SECTIONS = ("server", "limits", "ratelimit")
_TABLES = ("upstreams", "tenants")


def apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str], *, source: str) -> dict[str, Any]:
    """Return a copy of `raw` with every `GATEWAY_<SECTION>_<KEY>` applied."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX):].lower()
        value = _env_value(env[name])
        section = next((s for s in _SECTIONS if rest.startswith(s + "_")), None)
        if section is not None:
            key = rest[len(section) + 1:]
            target = out.setdefault(section, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{source}: {section}: must be a table (set by {name})")
            target[key] = value
            continue
        table = next((t for t in _TABLES if rest.startswith(t + "_")), None)
        if table is None:
            continue  # e.g. GATEWAY_CONFIG: not an override
        entries = out.get(table)
        if not isinstance(entries, list):
            raise ConfigError(f"{source}: {table}: {name} overrides an entry that does not exist")
        entries = out[table] = [dict(e) if isinstance(e, dict) else e for e in entries]
        selector_and_key = rest[len(table) + 1:]
        index, key = _select_entry(entries, selector_and_key)
        if index is None:
            raise ConfigError(f"{source}: {table}: {name} names no entry (use its index or name)")
        entries[index][key] = value
    return out


def _select_entry(entries: list[Any], selector_and_key: str) -> tuple[int | None, str]:
    match = re.match(r"(\d+)_(.+)$", selector_and_key)
    if match and int(match.group(1)) < len(entries):
        return int(match.group(1)), match.group(2)
    best: tuple[int | None, str] = (None, "")
    longest = 0
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        slug = re.sub(r"[^a-z0-9]+", "_", entry["name"].lower()).strip("_") + "_"
        # The longest name wins: `MOCK_ANTHROPIC_BASE_URL` is mock-anthropic's, not mock's.
        if selector_and_key.startswith(slug) and len(slug) > longest:
            best, longest = (i, selector_and_key[len(slug):]), len(slug)
    return best


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
