"""The two provider dialects: how each shapes errors, keys, usage and text deltas.

The relay never needs more than this from a dialect; everything else is bytes.
"""

from __future__ import annotations

from .anthropic import ANTHROPIC
from .base import Dialect, Usage, UsageMeter
from .openai import OPENAI

DIALECTS: dict[str, Dialect] = {"openai": OPENAI, "anthropic": ANTHROPIC}

__all__ = ["ANTHROPIC", "DIALECTS", "OPENAI", "Dialect", "Usage", "UsageMeter"]
