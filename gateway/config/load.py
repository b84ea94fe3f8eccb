"""Loading: one TOML file plus `GATEWAY_<SECTION>_<KEY>` overrides -> frozen, validated objects.

Rules:
- Loaded once at start; nothing reads env vars or files after that (the upstream
  keys are resolved here, from the env var each upstream's `api_key_env` names).
- Any problem is ONE line naming the file, the key and what is wrong (`ConfigError`).
- Overrides: `GATEWAY_SERVER_PORT=9000`; array tables by index or by name:
  `GATEWAY_UPSTREAMS_0_BASE_URL`, `GATEWAY_TENANTS_APP_A_PRIORITY`. The value is
  read as a TOML value when it parses as one (`9000`, `true`, `["a"]`), else as text.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, SecretStr, ValidationError

from ..errors import ConfigError
from .schema import Config, _KeyProblem

ENV_PREFIX = "GATEWAY_"
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


#: `serve --host/--port/--workers` become `GATEWAY_SERVER_*` overrides (a reload and the workers
#: see them too) and are listed here (`--port,--workers`): a problem then names the flag
FLAGS_ENV = "GATEWAY_SERVE_FLAGS"
#: GATEWAY_* variables that are not overrides (the config path, the demo's upstream key)
_NOT_OVERRIDES = ("GATEWAY_CONFIG", "GATEWAY_DEMO_UPSTREAM_KEY", "GATEWAY_TEST_", FLAGS_ENV)


def flag_variable(flag: str) -> str:
    """`--port` -> `GATEWAY_SERVER_PORT`: the override a `serve` flag is turned into."""
    return f"{ENV_PREFIX}SERVER_{flag.removeprefix('--').upper()}"


def config_from_dict(
    raw: dict[str, Any], env: Mapping[str, str], *, source: str, warn: Warn | None = None,
) -> Config:
    """Validate `raw` with the env applied. `warn` hears about what is ignored or disabled."""
    say = warn or (lambda _: None)
    set_by: dict[str, str] = {}
    raw = apply_env_overrides(raw, env, source=source, set_by=set_by)
    for name in sorted(env):
        if (name.startswith(ENV_PREFIX) and name not in set_by.values()
                and not name.startswith(_NOT_OVERRIDES) and not _names_a_key(raw, name)):
            say(f"{name}: not a config override (no such section or table): ignored{_did_you_mean(name)}")
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
}


def _did_you_mean(variable: str) -> str:
    """`GATEWAY_SERVR_PORT` -> " (did you mean GATEWAY_SERVER_PORT?)": the first word is matched
    against the sections and tables; the rest is kept as written."""
    first, _, rest = variable[len(ENV_PREFIX):].lower().partition("_")
    close = difflib.get_close_matches(first, _SECTIONS + _TABLES, n=1, cutoff=0.6)
    if not close or not rest:
        return ""
    return f" (did you mean {ENV_PREFIX}{close[0].upper()}_{rest.upper()}?)"


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


_SECTIONS = ("server", "limits", "ratelimit")
_TABLES = ("upstreams", "tenants", "routes")


def apply_env_overrides(
    raw: dict[str, Any], env: Mapping[str, str], *, source: str, set_by: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Return a copy of `raw` with every `GATEWAY_<SECTION>_<KEY>` applied; `set_by` learns
    which variable set which key (`server.port` -> `GATEWAY_SERVER_PORT`)."""
    set_by = {} if set_by is None else set_by
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
            set_by[f"{section}.{key}"] = name
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
        set_by[f"{table}[{index}].{key}"] = name
    return out


def _select_entry(entries: list[Any], selector_and_key: str) -> tuple[int | None, str]:
    match = re.match(r"(\d+)_(.+)$", selector_and_key)
    if match and int(match.group(1)) < len(entries):
        return int(match.group(1)), match.group(2)
    best: tuple[int | None, str] = (None, "")
    longest = 0
    for i, entry in enumerate(entries):
        # upstreams and tenants by `name`; routes by the `model` they answer
        label = entry.get("name", entry.get("model")) if isinstance(entry, dict) else None
        if not isinstance(label, str):
            continue
        slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") + "_"
        # The longest name wins: `MOCK_ANTHROPIC_BASE_URL` is mock-anthropic's, not mock's.
        if selector_and_key.startswith(slug) and len(slug) > longest:
            best, longest = (i, selector_and_key[len(slug):]), len(slug)
    return best


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
