"""The route table: each API path, its handler (in `gateway.api`), its name (the `route`
metric label and log field) and the error shape its errors are written in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from .api.apis import completions, count_tokens, embeddings, responses
from .api.chat import chat_completions, chat_stream, messages
from .api.models import model, models
from .api.streams import cancel_stream, chat_stream_get, create_stream, stream_events
from .shapes import ANTHROPIC_SHAPE, OPENAI_SHAPE, RESPONSES_SHAPE, SIMPLE_SHAPE, ErrorShape

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    name: str  # the `route` label and log field
    handler: Handler
    shape: ErrorShape  # how errors are written on this route
    #: a route both SDKs call (`/v1/models`): Anthropic's shape when the request says
    #: `anthropic-version`, as the Anthropic SDK's always does
    versioned: bool = False

    def shape_of(self, request: web.BaseRequest) -> ErrorShape:
        if self.versioned and "anthropic-version" in request.headers:
            return ANTHROPIC_SHAPE
        return self.shape


ROUTES = (
    Route("POST", "/v1/chat/completions", "chat_completions", chat_completions, OPENAI_SHAPE),
    Route("POST", "/v1/messages", "messages", messages, ANTHROPIC_SHAPE),
    Route("GET", "/v1/models", "models", models, OPENAI_SHAPE, versioned=True),
    Route("GET", "/v1/models/{model_id:.+}", "model", model, OPENAI_SHAPE, versioned=True),
    Route("POST", "/api/chat/stream", "chat_stream", chat_stream, SIMPLE_SHAPE),
    Route("GET", "/api/chat/stream", "chat_stream_get", chat_stream_get, SIMPLE_SHAPE),
    Route("POST", "/api/chat/streams", "chat_streams", create_stream, SIMPLE_SHAPE),
    Route("GET", "/api/chat/streams/{stream_id}", "chat_stream_events", stream_events, SIMPLE_SHAPE),
    Route("DELETE", "/api/chat/streams/{stream_id}", "chat_stream_cancel", cancel_stream, SIMPLE_SHAPE),
    Route("POST", "/v1/responses", "responses", responses, RESPONSES_SHAPE),
    Route("POST", "/v1/embeddings", "embeddings", embeddings, OPENAI_SHAPE),
    Route("POST", "/v1/completions", "completions", completions, OPENAI_SHAPE),
    Route("POST", "/v1/messages/count_tokens", "count_tokens", count_tokens, ANTHROPIC_SHAPE),
)
BY_PATH = {route.path: route for route in ROUTES if "{" not in route.path}
BY_NAME = {route.name: route for route in ROUTES}


def shape_for(path: str) -> ErrorShape:
    """The error shape of a path no route matched (an SDK call we don't serve): Anthropic's
    under `/v1/messages`, the simple events' under `/api/` (e.g. a 405 on
    `/api/chat/streams/{id}`), OpenAI's elsewhere."""
    route = BY_PATH.get(path)
    if route is not None:
        return route.shape
    if path.startswith("/api/"):
        return SIMPLE_SHAPE
    return ANTHROPIC_SHAPE if path.startswith("/v1/messages/") else OPENAI_SHAPE
