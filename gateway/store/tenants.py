"""A runtime tenant's fields: an admin body checked by the config file's own rules and
one-line messages (the `Tenant` schema), and the `Tenant` a stored row stands for.

A runtime tenant has the `[[tenants]]` fields but no key in them: its keys are issued by
`POST /admin/tenants/{name}/keys`. Its name is also a URL path segment, so it is kept to
letters, digits and `_.:-`.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from ..config import Config, Tenant
from ..config.load import _describe, _patterns_overlap

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
KEY_FIELDS = ("key_sha256", "extra_key_sha256")
#: a valid key for the schema's check only; replaced before the tenant is used
_NO_KEY = "0" * 64


class Invalid(ValueError):
    """A 400: one line naming the field."""


def tenant_of(name: str, fields: dict[str, Any]) -> Tenant:
    """The `Tenant` of a stored row. It has no key of its own (`key_sha256` is empty): the
    in-process view finds it from its issued keys."""
    tenant = Tenant.model_validate({**fields, "name": name, "key_sha256": _NO_KEY})
    return tenant.model_copy(update={"key_sha256": ""})


def checked_fields(body: object, config: Config, *, current: dict[str, Any] | None = None,
                   name: str | None = None) -> tuple[str, dict[str, Any]]:
    """(name, fields to store) from a POST body (`current` None) or a PATCH body over
    `current`. Raises `Invalid`."""
    if not isinstance(body, dict):
        raise Invalid("body: must be a JSON object")
    for field in KEY_FIELDS:
        if field in body:
            raise Invalid(f"{field}: keys are issued by POST /admin/tenants/{{name}}/keys, not set here")
    if current is None:
        given = body.get("name")
        if not isinstance(given, str):
            raise Invalid("name: required key is missing" if given is None else "name: must be a string")
        if not NAME.match(given):
            raise Invalid("name: must be 1-64 characters of letters, digits and _ . : - "
                          "(it is a URL segment)")
        name = given
    elif "name" in body and body["name"] != name:
        raise Invalid("name: a tenant can't be renamed (create a new one)")
    assert name is not None
    merged = {**(current or {}), **{k: v for k, v in body.items() if k != "name"}}
    try:
        tenant = Tenant.model_validate({**merged, "name": name, "key_sha256": _NO_KEY})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        extra = next((e for e in errors if e["type"] == "extra_forbidden"), None)
        if extra is not None:
            raise Invalid(f"{'.'.join(str(p) for p in extra['loc'])}: unknown field") from None
        key, message = _describe(exc)
        raise Invalid(f"{key}: {message}") from None
    served = tuple(p for u in config.upstreams for p in u.models) + tuple(r.model for r in config.routes)
    if not any(_patterns_overlap(p, served) for p in tenant.models):
        raise Invalid(f"models: {list(tenant.models)} routes to no upstream")
    fields = tenant.model_dump(mode="json", exclude={"name", *KEY_FIELDS})
    return name, fields


def public(name: str, fields: dict[str, Any], source: str) -> dict[str, Any]:
    """A tenant as the admin API answers it: the `[[tenants]]` fields plus `source`."""
    return {"name": name, **fields, "source": source}
