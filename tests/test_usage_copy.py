"""`Usage.copy()` is `dataclasses.replace(usage)`: every field, a new object."""

from dataclasses import fields, replace
from typing import Any

from gateway.dialects import Usage


def test_copy_is_replace_over_every_field() -> None:
    values: dict[str, Any] = {f.name: (True if f.type in (bool, "bool") else 3 + i)
                              for i, f in enumerate(fields(Usage))}
    usage = Usage(**values)
    copied = usage.copy()
    assert copied == replace(usage) and copied is not usage
    for f in fields(Usage):  # a field added later and left out of `copy` would be its default
        assert getattr(copied, f.name) == getattr(usage, f.name) != getattr(Usage(), f.name)
