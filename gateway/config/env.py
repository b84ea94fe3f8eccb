"""Environment overrides: `GATEWAY_<SECTION>_<KEY>` variables applied to the file's tables.

Rules:
- `GATEWAY_SERVER_PORT=9000`; array tables by index or by name: `GATEWAY_UPSTREAMS_0_BASE_URL`,
  `GATEWAY_TENANTS_APP_A_PRIORITY` (the longest matching name wins). The value is read as a
  TOML value when it parses as one (`9000`, `true`, `["a"]`), else as text.
- `serve`'s flags become overrides too, listed in `GATEWAY_SERVE_FLAGS`, so that a problem
  names the flag rather than a variable nobody set.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

ENV_PREFIX = "GATEWAY_"
#: `serve --host/--port/--workers` become `GATEWAY_SERVER_*` overrides (a reload and the workers
#: see them too) and are listed here (`--port,--workers`): a problem then names the flag
FLAGS_ENV = "GATEWAY_SERVE_FLAGS"
#: GATEWAY_* variables that are not overrides (the config path, the demo's upstream key)
NOT_OVERRIDES = ("GATEWAY_CONFIG", "GATEWAY_DEMO_UPSTREAM_KEY", "GATEWAY_TEST_", FLAGS_ENV)


def flag_variable(flag: str) -> str:
    """`--port` -> `GATEWAY_SERVER_PORT`: the override a `serve` flag is turned into."""
    return f"{ENV_PREFIX}SERVER_{flag.removeprefix('--').upper()}"


def did_you_mean(variable: str) -> str:
    """`GATEWAY_SERVR_PORT` -> " (did you mean GATEWAY_SERVER_PORT?)": the first word is matched
    against the sections and tables; the rest is kept as written."""
    first, _, rest = variable[len(ENV_PREFIX):].lower().partition("_")
    close = difflib.get_close_matches(first, SECTIONS + TABLES, n=1, cutoff=0.6)
    if not close or not rest:
        return ""
    return f" (did you mean {ENV_PREFIX}{close[0].upper()}_{rest.upper()}?)"


SECTIONS = ("server", "limits", "ratelimit", "streams", "store")
TABLES = ("upstreams", "tenants", "routes")


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
        section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
        if section is not None:
            key = rest[len(section) + 1:]
            target = out.setdefault(section, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{source}: {section}: must be a table (set by {name})")
            target[key] = value
            set_by[f"{section}.{key}"] = name
            continue
        table = next((t for t in TABLES if rest.startswith(t + "_")), None)
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
