"""The two provider dialects: how each shapes errors, keys, usage and text deltas.

The relay never needs more than this from a dialect; everything else is bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .anthropic import ANTHROPIC
from .base import Dialect, Usage, UsageMeter
from .openai import OPENAI

DIALECTS: Mapping[str, Dialect] = MappingProxyType({"openai": OPENAI, "anthropic": ANTHROPIC})

__all__ = ["ANTHROPIC", "DIALECTS", "OPENAI", "Dialect", "Usage", "UsageMeter"]
