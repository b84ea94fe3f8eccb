"""The upstream stage: one attempt (`attempt.py`) and the policy that retries and fails over
across a chain of upstreams (`policy.py`)."""

from __future__ import annotations

from .attempt import Attempt, Opened
from .policy import UpstreamClient, reachable

__all__ = ["Attempt", "Opened", "UpstreamClient", "reachable"]
