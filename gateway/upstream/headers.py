"""The headers of an upstream request. Policy: hop-by-hop headers (RFC 9110 7.6.1), the
client's credentials, cookies and what aiohttp sets itself are never forwarded; the rest
(e.g. `anthropic-beta`) is; then the dialect's defaults, the operator's static headers and,
last, the provider key in the header the upstream names.

What an upstream's requests carry alike (its `Outbound`: the static headers, the key, the
chat URL, the connect timeout) is prepared once per upstream spec; per request only the
client's headers are filtered.
"""

from __future__ import annotations

import aiohttp
from aiohttp import hdrs
from multidict import CIMultiDict, CIMultiDictProxy

from ..config import UpstreamSpec
from ..dialects import DIALECTS, Dialect
from ..header_names import REQUEST_ID

#: upstream specs whose `Outbound` is kept (a reload makes new ones; past it, all are dropped)
MAX_OUTBOUND = 256

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


class Outbound:
    """What every request to one upstream (in one dialect) carries alike, made once per spec:
    - `skipped`: the client header names never forwarded (`DROPPED_HEADERS`, and the static
      ones the operator's value replaces);
    - `defaults`: the dialect's default headers, sent unless the client sent its own;
    - `fixed`: the operator's static headers, the provider key, the content type;
    - `url`: the chat URL, `timeout`: the client timeout (connect only)."""

    __slots__ = ("spec", "skipped", "defaults", "fixed", "url", "timeout")

    def __init__(self, upstream: UpstreamSpec, dialect: Dialect) -> None:
        self.spec = upstream
        fixed: CIMultiDict[str] = CIMultiDict(upstream.headers)
        key = upstream.api_key.get_secret_value()
        if key:  # a local server (vLLM, Ollama) may take none: then no credentials are sent
            # Last: no client header (all credential names were dropped) and no static one (the
            # config refuses credential names there) can stand in for the provider key.
            fixed.update(dialect.auth_headers(key, upstream.auth_header))
        fixed[hdrs.CONTENT_TYPE] = "application/json"
        #: a case-insensitive set of names (the C lookup takes the client's `istr`s as they are)
        self.skipped: CIMultiDict[str] = CIMultiDict(
            (name, "") for name in DROPPED_HEADERS | set(fixed))
        self.defaults = tuple((name, value) for name, value in dialect.default_headers.items()
                              if name not in self.skipped)
        self.fixed = tuple(fixed.items())
        self.url = dialect.url(upstream)
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=upstream.connect_timeout_seconds)

    def headers(self, client: CIMultiDictProxy[str], request_id: str, stream: bool) -> CIMultiDict[str]:
        # Copy, then drop the few names the client sent that are never forwarded.
        skipped = self.skipped
        headers = CIMultiDict(client)
        for name in client.keys():
            if name in skipped:
                headers.popall(name, None)
        for name, value in self.defaults:
            headers.setdefault(name, value)
        headers.extend(self.fixed)
        headers.add(REQUEST_ID, request_id)
        if stream:  # a compressed stream would sit in the inflater's window: ask for none
            headers.add(hdrs.ACCEPT_ENCODING, "identity")
        return headers


class Outbounds:
    """Each upstream spec's `Outbound`, by the spec's identity (kept on the `UpstreamClient`)."""

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[int, Outbound] = {}

    def of(self, upstream: UpstreamSpec) -> Outbound:
        outbound = self._by_id.get(id(upstream))
        if outbound is None or outbound.spec is not upstream:  # held: its id is not reused
            if len(self._by_id) >= MAX_OUTBOUND:
                self._by_id.clear()
            outbound = self._by_id[id(upstream)] = Outbound(upstream, DIALECTS[upstream.dialect])
        return outbound


def upstream_headers(
    upstream: UpstreamSpec, dialect: Dialect, client: CIMultiDictProxy[str], request_id: str,
    stream: bool,
) -> CIMultiDict[str]:
    """One request's headers, its upstream's `Outbound` made on the spot (the policy keeps
    each upstream's in its `Outbounds`)."""
    return Outbound(upstream, dialect).headers(client, request_id, stream)
