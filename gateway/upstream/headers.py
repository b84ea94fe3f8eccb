"""The headers of an upstream request. Policy: hop-by-hop headers (RFC 9110 7.6.1), the
client's credentials, cookies and what aiohttp sets itself are never forwarded; the rest
(e.g. `anthropic-beta`) is; then the dialect's defaults, the operator's static headers and,
last, the provider key in the header the upstream names.
"""

from __future__ import annotations

from aiohttp import hdrs
from multidict import CIMultiDict, CIMultiDictProxy

from ..config import UpstreamSpec
from ..dialects import Dialect
from ..header_names import REQUEST_ID

#: never sent upstream: hop-by-hop headers, what we set ourselves, and every header an SDK may
#: carry a credential in (ours replace the two the dialects use; a client's key in another one,
#: e.g. Azure's `api-key`, must not reach a provider)
DROPPED_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length", "authorization", "x-api-key",
    "api-key", "x-goog-api-key", "ocp-apim-subscription-key",
    "cookie", "accept-encoding", "content-encoding", "openai-organization", "openai-project",
    "x-request-id", "content-type",
    "x-gateway-tags",  # the gateway's own label (spend rows, the log line): never the provider's
})


def upstream_headers(
    upstream: UpstreamSpec, dialect: Dialect, client: CIMultiDictProxy[str], request_id: str,
    stream: bool,
) -> CIMultiDict[str]:
    # Copy, then drop the few names (C-level, ~3x faster than filtering header by header).
    headers = CIMultiDict(client)
    for name in DROPPED_HEADERS:
        headers.popall(name, None)
    for name, value in dialect.default_headers.items():
        headers.setdefault(name, value)
    if upstream.headers:  # the operator's static headers win over a client's of the same name
        headers.update(upstream.headers)
    key = upstream.api_key.get_secret_value()
    if key:  # a local server (vLLM, Ollama) may take none: then no credentials are sent
        # Last: no client header (all credential names were dropped) and no static one (the
        # config refuses credential names there) can stand in for the provider key.
        headers.update(dialect.auth_headers(key, upstream.auth_header))
    headers[hdrs.CONTENT_TYPE] = "application/json"
    headers[REQUEST_ID] = request_id
    if stream:  # a compressed stream would sit in the inflater's window: ask for none
        headers[hdrs.ACCEPT_ENCODING] = "identity"
    return headers
