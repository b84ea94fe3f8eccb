"""`x-gateway-tags: a,b`: a request's own labels for spend reports (which feature, which job).
At most 4, each 1-64 characters of `[A-Za-z0-9_.:-]`; anything else is a 400. They go into
the log line and the spend rows, never into metric labels (their values are unbounded)."""

from __future__ import annotations

import re

from multidict import CIMultiDictProxy

from .errors import BadRequest

HEADER = "x-gateway-tags"
MAX_TAGS = 4
TAG = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def parse_tags(value: str) -> tuple[str, ...]:
    """The tags of one header value (several header lines are joined with `,` first)."""
    if not value.strip():
        return ()
    tags = [t.strip() for t in value.split(",")]
    for tag in tags:
        if not TAG.match(tag):
            shown = tag if len(tag) <= 70 else tag[:64] + "..."
            raise BadRequest(f"{HEADER}: {shown!r} is not a tag (1-64 characters of A-Z a-z 0-9 _ . : -)")
    unique = tuple(dict.fromkeys(tags))
    if len(unique) > MAX_TAGS:
        raise BadRequest(f"{HEADER}: at most {MAX_TAGS} tags (got {len(unique)})")
    return unique


def request_tags(headers: CIMultiDictProxy[str]) -> tuple[str, ...]:
    values = headers.getall(HEADER, ())
    return parse_tags(",".join(values)) if values else ()
