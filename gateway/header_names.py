"""The header names the gateway sets on responses and upstream requests, made once as `istr` (multidict's
case-insensitive key type). A response's `CIMultiDict` keeps these very objects; given plain
`str` names it makes and caches an `istr` per key of every response (about 1.3 KiB a response,
which a stream holds for its whole life)."""

from __future__ import annotations

from aiohttp import hdrs
from multidict import istr

REQUEST_ID = istr("x-request-id")
COST_USD = istr("x-gateway-cost-usd")
RETRY_AFTER = hdrs.RETRY_AFTER
X_ACCEL_BUFFERING = istr("X-Accel-Buffering")
#: sent upstream (the request's headers are held with its response for a stream's life)
X_API_KEY = istr("x-api-key")
ANTHROPIC_VERSION = istr("anthropic-version")

#: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (OpenAI's names), by kind
RATELIMIT = {kind: (istr(f"x-ratelimit-limit-{kind}"), istr(f"x-ratelimit-remaining-{kind}"),
                    istr(f"x-ratelimit-reset-{kind}")) for kind in ("requests", "tokens")}
#: `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}` (Anthropic's), by kind
ANTHROPIC_RATELIMIT = {kind: (istr(f"anthropic-ratelimit-{kind}-limit"),
                              istr(f"anthropic-ratelimit-{kind}-remaining"),
                              istr(f"anthropic-ratelimit-{kind}-reset")) for kind in ("requests", "tokens")}
