"""Admission: tenant rate limits (token buckets, in memory or Redis) and the stream queue.

`RedisLimiter` lives in `gateway.admission.redis`, imported only when the config asks for it.
"""

from .bucket import TokenBucket
from .limiter import Admission, Limiter, MemoryLimiter, Quota, TenantLimits
from .queue import SlotQueue

__all__ = [
    "Admission", "Limiter", "MemoryLimiter", "Quota", "SlotQueue", "TenantLimits", "TokenBucket",
]
