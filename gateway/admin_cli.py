"""`llm-gateway keys create|list|revoke` and `llm-gateway spend`: the admin API of a running
gateway, for scripts. Each prints the API's answer (JSON, or CSV for `spend --format csv`) on
stdout and exits 0; a refusal prints its one-line error on stderr and exits 1; bad arguments
exit 2.

The gateway: `--url` or `$LLM_GATEWAY_URL` (default http://127.0.0.1:8080); the admin key:
`--admin-key` or `$LLM_GATEWAY_ADMIN_KEY` (the environment keeps it out of `ps` and shell
history). Not `GATEWAY_*`: those are the gateway's own config overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

URL_ENV = "LLM_GATEWAY_URL"
KEY_ENV = "LLM_GATEWAY_ADMIN_KEY"
TIMEOUT_SECONDS = 30


def add_parsers(sub: Any) -> None:
    """The `keys` and `spend` sub-commands, on `cli.py`'s sub-parsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get(URL_ENV, "http://127.0.0.1:8080"),
                        help=f"the gateway (default: ${URL_ENV} or %(default)s)")
    common.add_argument("--admin-key", default=None, help=f"the admin key (default: ${KEY_ENV})")

    keys = sub.add_parser("keys", help="issue, list and revoke tenant keys on a running gateway")
    verbs = keys.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", parents=[common], help="issue a key (printed once, in the JSON)")
    create.add_argument("tenant")
    create.add_argument("--label", default=None)
    create.add_argument("--expires-at", default=None, metavar="RFC3339", help="e.g. 2030-01-31T00:00:00Z")
    create.set_defaults(run=_keys_create)
    listing = verbs.add_parser("list", parents=[common], help="a tenant's keys (never a secret)")
    listing.add_argument("tenant")
    listing.set_defaults(run=_keys_list)
    revoke = verbs.add_parser("revoke", parents=[common], help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_keys_revoke)

    spend = sub.add_parser("spend", parents=[common], help="spend per day from a running gateway")
    spend.add_argument("--from", dest="first", default=None, metavar="YYYY-MM-DD")
    spend.add_argument("--to", dest="last", default=None, metavar="YYYY-MM-DD")
    spend.add_argument("--group-by", choices=("tenant", "key", "model", "tag"), default=None)
    spend.add_argument("--format", choices=("json", "csv"), default="json")
    spend.set_defaults(run=_spend)


def _keys_create(args: argparse.Namespace) -> int:
    body = {k: v for k, v in (("label", args.label), ("expires_at", args.expires_at)) if v is not None}
    return _call(args, "POST", f"/admin/tenants/{_segment(args.tenant)}/keys", body)


def _keys_list(args: argparse.Namespace) -> int:
    return _call(args, "GET", f"/admin/tenants/{_segment(args.tenant)}/keys")


def _keys_revoke(args: argparse.Namespace) -> int:
    path = f"/admin/keys/{_segment(args.key_id)}"
    return _call(args, "DELETE", path, done={"id": args.key_id, "revoked": True})


def _spend(args: argparse.Namespace) -> int:
    query = {k: v for k, v in (("from", args.first), ("to", args.last), ("group_by", args.group_by),
                               ("format", args.format)) if v is not None}
    return _call(args, "GET", "/admin/spend?" + urllib.parse.urlencode(query))


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None,
          done: dict[str, Any] | None = None) -> int:
    """One request; its answer on stdout (`done` for a 204), or its error on stderr."""
    key = args.admin_key or os.environ.get(KEY_ENV, "")
    if not key:
        print(f"llm-gateway: no admin key: pass --admin-key or set {KEY_ENV}", file=sys.stderr)
        return 2
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        args.url.rstrip("/") + path, data=data, method=method,
        headers={"Authorization": f"Bearer {key}", **({"Content-Type": "application/json"} if data else {})})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            text = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        said = _error_of(raw)
        if exc.code == 404 and not raw.lstrip().startswith(b"{"):  # no admin route answered
            said = f"{args.url} has no admin routes (is server.admin_key_sha256 set there?)"
        print(f"llm-gateway: {exc.code}: {said}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"llm-gateway: can't reach {args.url}: {reason}", file=sys.stderr)
        return 1
    print(json.dumps(done) if status == 204 and done is not None else text.rstrip("\n"))
    return 0


def _error_of(raw: bytes) -> str:
    try:
        answer = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:200] or "no answer"
    error = answer.get("error") if isinstance(answer, dict) else None
    return str(error) if error else json.dumps(answer)[:200]
