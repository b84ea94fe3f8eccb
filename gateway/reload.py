"""Live config reload (SIGHUP, `POST /admin/reload`): re-read the file and the env, validate,
and swap the app's `Snapshot` for new requests, or change nothing and say why in one line.

Requests in flight keep the snapshot they took; bucket and spend state is keyed by tenant
name, so tenants that remain keep theirs. What only a restart can change is logged as such.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

from aiohttp import web

from .config import Config, load_config
from .errors import ConfigError
from .live import Snapshot
from .state import BREAKERS, CONFIG_PATH, LIVE, LOGGER, METRICS, MODEL_LISTS, SUPERVISOR_PID, UPSTREAMS
from .upstream.health import follow_config

#: settings read once at start (the socket, the pools, the backends): a reload can't apply them
RESTART_ONLY = (
    ("server", "host"), ("server", "port"), ("server", "workers"), ("server", "max_body_bytes"),
    ("server", "default_max_tokens"), ("server", "ui"), ("server", "cors_origins"),
    ("server", "max_response_bytes"), ("server", "drain_seconds"),
    ("server", "client_header_timeout_seconds"), ("server", "client_body_timeout_seconds"),
    ("server", "keepalive_timeout_seconds"), ("server", "max_connections"),
    ("limits", "max_concurrent_streams"), ("limits", "max_queue"), ("limits", "queue_timeout_seconds"),
    ("ratelimit", "backend"), ("ratelimit", "redis_url"), ("ratelimit", "fail_open"),
    ("ratelimit", "key_prefix"), ("store", "backend"), ("store", "path"),
)


def restart_needed(old: Config, new: Config) -> list[str]:
    """The `section.key` names whose change waits for a restart."""
    return [f"{section}.{key}" for section, key in RESTART_ONLY
            if getattr(getattr(old, section), key) != getattr(getattr(new, section), key)]


#: with `workers > 1`: the supervisor's pid, which passes a SIGHUP on to every worker


def reload_everywhere(app: web.Application) -> str | None:
    """`POST /admin/reload`: reload here; with workers, then have the supervisor pass a SIGHUP
    to every worker (each reloads the same file), so no worker keeps the old config."""
    supervisor = app.get(SUPERVISOR_PID)
    if supervisor is None:
        return reload_config(app)
    problem = reload_config(app, apply=False)  # checked here; applied by each worker's SIGHUP
    if problem is None:
        os.kill(supervisor, signal.SIGHUP)
    return problem


def reload_config(app: web.Application, env: Mapping[str, str] | None = None, *,
                  apply: bool = True) -> str | None:
    """Reload the app's config file; None when the new config took effect (or, with
    `apply=False`, would), else the problem."""
    metrics, logger, live = app[METRICS], app[LOGGER], app[LIVE]
    path = app.get(CONFIG_PATH)
    warnings: list[str] = []
    try:
        if not path:
            raise ConfigError("<none>: the gateway was started without a config file: nothing to reload")
        new = load_config(path, os.environ if env is None else env, warn=warnings.append)
        snapshot = Snapshot.of(new, live.current.auth.runtime)  # runtime tenants and keys stay
    except ConfigError as exc:
        metrics.config_reloads.labels("failed").inc()
        logger.error("config_reload_failed", error=str(exc))
        return str(exc)
    if not apply:
        return None
    old = live.current.config
    live.current = snapshot
    upstreams = app.get(UPSTREAMS)
    follow_config(metrics, app[BREAKERS], new, upstreams.refused_credentials() if upstreams else set())
    if (lists := app.get(MODEL_LISTS)) is not None:
        lists.wake()  # a new or changed upstream's model list is asked for now
    metrics.config_reloads.labels("ok").inc()
    for warning in warnings:
        logger.warning("config_warning", warning=warning)
    logger.info("config_reloaded", path=path, tenants=len(new.tenants), upstreams=len(new.upstreams),
                routes=len(new.routes))
    needs = restart_needed(old, new)
    if needs:
        logger.warning("config_reload_needs_restart", keys=needs)
    return None
