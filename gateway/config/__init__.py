"""Configuration: the schema (`schema.py`), the environment overrides (`env.py`) and how a file
plus the env become one validated `Config` (`load.py`)."""

from __future__ import annotations

from .env import apply_env_overrides
from .load import config_from_dict, load_config
from .schema import (
    Config,
    LimitsConfig,
    PriceSpec,
    RateLimitConfig,
    RouteSpec,
    ServerConfig,
    StreamsConfig,
    Tenant,
    UpstreamSpec,
)

__all__ = [
    "Config", "LimitsConfig", "PriceSpec", "RateLimitConfig", "RouteSpec", "ServerConfig", "StreamsConfig",
    "Tenant", "UpstreamSpec", "apply_env_overrides", "config_from_dict", "load_config",
]
