"""Loading: one TOML file plus `GATEWAY_<SECTION>_<KEY>` overrides -> frozen, validated objects.

Rules:
- Loaded once at start; nothing reads env vars or files after that (the upstream
  keys are resolved here, from the env var each upstream's `api_key_env` names).
- Any problem is ONE line naming the file, the key and what is wrong (`ConfigError`).
- Overrides (`GATEWAY_SERVER_PORT=9000`, ...) are applied first: see `env.py`.
"""

from __future__ import annotations

import difflib
import fnmatch
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, SecretStr, ValidationError

from ..errors import ConfigError
from .env import (
    ENV_PREFIX,
    FLAGS_ENV,
    NOT_OVERRIDES,
    apply_env_overrides,
    did_you_mean,
    flag_variable,
)
from .schema import Config, _KeyProblem

Warn = Callable[[str], None]


def load_config(path: str | Path | None, env: Mapping[str, str], *, warn: Warn | None = None) -> Config:
    """Read the TOML at `path` (or none: defaults only), apply env overrides, validate."""
    raw = read_toml(path) if path else {}
    return config_from_dict(raw, env, source=str(path) if path else "<defaults>", warn=warn)


def read_toml(path: str | Path) -> dict[str, Any]:
    """The file's tables, or a one-line `ConfigError` naming the file."""
    source = str(path)
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
    return raw


def config_from_dict(
    raw: dict[str, Any], env: Mapping[str, str], *, source: str, warn: Warn | None = None,
) -> Config:
    """Validate `raw` with the env applied. `warn` hears about what is ignored or disabled."""
    say = warn or (lambda _: None)
    set_by: dict[str, str] = {}
    raw = apply_env_overrides(raw, env, source=source, set_by=set_by)
    for name in sorted(env):
        if (name.startswith(ENV_PREFIX) and name not in set_by.values()
                and not name.startswith(NOT_OVERRIDES) and not _names_a_key(raw, name)):
            say(f"{name}: not a config override (no such section or table): ignored{did_you_mean(name)}")
    for i, entry in enumerate(raw.get("upstreams") or []):
        if isinstance(entry, dict) and "api_key" in entry:
            raise ConfigError(f"{source}: upstreams[{i}].api_key: secrets are never in the file; "
                              "put the key in the environment variable `api_key_env` names")
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        key, message = _describe(exc)
        flags = {flag_variable(f): f for f in env.get(FLAGS_ENV, "").split(",") if f}
        variable = set_by.get(key, "")
        where = (f"{flags[variable]} (command line) -> " if variable in flags
                 else f"{variable} (environment) -> " if variable else "")
        raise ConfigError(f"{source}: {where}{key}: {message}") from None
    return _resolve_keys(config, env, source, say)


def _names_a_key(raw: dict[str, Any], name: str) -> bool:
    """An upstream key's own variable may start with GATEWAY_ too."""
    return any(isinstance(u, dict) and u.get("api_key_env") == name for u in raw.get("upstreams") or [])


def _resolve_keys(config: Config, env: Mapping[str, str], source: str, warn: Warn) -> Config:
    """Each upstream's key from its env var. An upstream whose variable is named but empty is
    disabled with a warning (a compose file declares both providers; one may be unused), and
    the routes lose its targets; no upstream left, or a tenant left with none, is an error."""
    upstreams = []
    for i, upstream in enumerate(config.upstreams):
        if not upstream.api_key_env:
            upstreams.append(upstream)
            continue
        key = env.get(upstream.api_key_env, "")
        if not key:
            warn(f"{source}: upstreams[{i}].api_key_env: environment variable {upstream.api_key_env} "
                 f"is not set: upstream {upstream.name!r} is disabled")
            continue
        upstreams.append(upstream.model_copy(update={"api_key": SecretStr(key)}))
    if not upstreams:
        raise ConfigError(f"{source}: upstreams: none is usable (every api_key_env names an unset "
                          "environment variable)")
    names = {u.name for u in upstreams}
    routes = []
    for route in config.routes:
        targets = tuple(t for t in route.targets if t.partition(":")[0] in names)
        if len(targets) < len(route.targets):
            warn(f"{source}: route {route.model!r}: targets on disabled upstreams are skipped")
        if targets:
            routes.append(route.model_copy(update={"targets": targets}))
    upstreams = [u.model_copy(update={"fallbacks": tuple(f for f in u.fallbacks if f in names)})
                 for u in upstreams]
    for i, tenant in enumerate(config.tenants):
        served = [p for u in upstreams for p in u.models] + [r.model for r in routes]
        if not any(_patterns_overlap(p, tuple(served)) for p in tenant.models):
            raise ConfigError(
                f"{source}: tenants[{i}].models: {list(tenant.models)} routes to no upstream"
            )
    return config.model_copy(update={"upstreams": tuple(upstreams), "routes": tuple(routes)})


def _patterns_overlap(pattern: str, others: tuple[str, ...]) -> bool:
    """Could some model name match `pattern` and one of `others`? (good enough for globs)"""
    return any(
        fnmatch.fnmatchcase(pattern, other) or fnmatch.fnmatchcase(other, pattern)
        or pattern == "*" or other == "*"
        for other in others
    )


#: pydantic's wording -> ours
_MESSAGES = {
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "finite_number": "must be a finite number",
    "string_too_short": "must not be empty",
}

#: pydantic's "String should match pattern '...'" -> what the pattern asks, in words
_PATTERNS = {
    r"^(redis|rediss|unix)://": "must start with redis://, rediss:// or unix://",
    r"^[^:\s]+$": "must have no ':' and no spaces",
    r"^https?://": "must start with http:// or https://",
    r"^[0-9a-fA-F]{64}$": "must be 64 hex characters (the output of `llm-gateway hash-key`)",
    r"^([0-9a-fA-F]{64})?$": "must be empty or 64 hex characters (the output of `llm-gateway hash-key`)",
    r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$": "must be an HTTP header name (letters, digits, '-', no spaces)",
    r"^[^\x00-\x08\x0a-\x1f\x7f]*$": "must be one line (no line breaks or control characters)",
}


def _closest_key(loc: tuple[int | str, ...]) -> str:
    """" (did you mean `port`?)" for a misspelt key, from the fields of the table it is in."""
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field is not None else None
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _describe(exc: ValidationError) -> tuple[str, str]:
    """The first problem as (`key`, what is wrong), one line. An unknown key comes first: a
    misspelt one (`[[tenant]]`) is also why its right spelling is "missing"."""
    errors = exc.errors(include_url=False)
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    key = ""
    for part in err["loc"]:
        if part == "[key]":  # pydantic's marker for a table's key (a header name) that failed
            continue
        part = part if part != "" else '""'
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown key" + _closest_key(err["loc"])
    elif err["type"] == "missing":
        message = "required key is missing"
    elif err["type"] == "value_error":
        ctx_error = err.get("ctx", {}).get("error")
        if isinstance(ctx_error, _KeyProblem):
            return ctx_error.key, ctx_error.problem
        message = message.removeprefix("Value error, ")
    elif err["type"] == "string_pattern_mismatch":
        pattern = str(err.get("ctx", {}).get("pattern", ""))
        message = _PATTERNS.get(pattern, f"must match the regular expression {pattern}")
    elif err["type"] in _MESSAGES:
        message = _MESSAGES[err["type"]]
    message = message.replace("Input should be", "must be")
    shown = err.get("input")
    if err["type"] not in ("missing", "extra_forbidden", "value_error") and _is_scalar(shown):
        message += f" (got {shown!r})"
    return key or "config", message.replace("\n", " ")


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) < 80
