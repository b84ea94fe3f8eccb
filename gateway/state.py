"""Every typed `web.AppKey` of the gateway's app, in one place (the mock upstream, a separate
app, keeps its own in `mock/state.py`). Types only: nothing here is imported at run time, so
this module locates nothing. `app.py` wires the values (those that hold a connection, a task
or a file are made and closed in `cleanup_ctx`) and they live on the app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import aiohttp
    from structlog.typing import FilteringBoundLogger

    from .admission.limiter import Limiter
    from .admission.queue import SlotQueue
    from .admission.ticket import Gate
    from .breaker import Breakers
    from .config import Config
    from .live import LiveConfig, Runtime
    from .metrics import Metrics
    from .middleware import RequestIds
    from .models import ModelLists
    from .record import Record
    from .response_owners import Owners
    from .store.runtime import StoreState
    from .streams.hub import Streams
    from .tracing import RequestTracer
    from .upstream import UpstreamClient

CONFIG: web.AppKey[Config] = web.AppKey("config")  # the config the app started with (pools, sizes)
CONFIG_PATH: web.AppKey[str] = web.AppKey("config_path")  # the file the app was started from
LIVE: web.AppKey[LiveConfig] = web.AppKey("live")  # the snapshot in force
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
LOGGER: web.AppKey[FilteringBoundLogger] = web.AppKey("logger")
REQUEST_IDS: web.AppKey[RequestIds] = web.AppKey("request_ids")
LIMITER: web.AppKey[Limiter] = web.AppKey("limiter")
QUEUE: web.AppKey[SlotQueue] = web.AppKey("queue")
GATE: web.AppKey[Gate] = web.AppKey("gate")
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session")
UPSTREAMS: web.AppKey[UpstreamClient] = web.AppKey("upstreams")
BREAKERS: web.AppKey[Breakers] = web.AppKey("breakers")  # the upstreams' (UPSTREAMS uses them)
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime")
MODEL_LISTS: web.AppKey[ModelLists] = web.AppKey("model_lists")
RESPONSE_OWNERS: web.AppKey[Owners] = web.AppKey("response_owners")
STORE: web.AppKey[StoreState] = web.AppKey("store")
STREAMS: web.AppKey[Streams] = web.AppKey("streams")
TRACER: web.AppKey[RequestTracer] = web.AppKey("tracer")
DEMO_KEY: web.AppKey[str] = web.AppKey("demo_key")  # the key the demo page offers (ui.py)
SUPERVISOR_PID: web.AppKey[int] = web.AppKey("supervisor_pid")  # with workers > 1
RECORD: web.RequestKey[Record] = web.RequestKey("record")  # the request's record
