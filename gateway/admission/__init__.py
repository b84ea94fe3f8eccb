"""Admission: tenant rate limits (token buckets, in memory or Redis) and the stream queue.

`RedisLimiter` lives in `gateway.admission.redis`, imported only when the config asks for it.
"""

from gateway.admission.bucket import TokenBucket
from gateway.admission.limiter import Admission, Limiter, MemoryLimiter, Quota, TenantLimits
from gateway.admission.queue import StreamQueue

__all__ = [
    "Admission", "Limiter", "MemoryLimiter", "Quota", "StreamQueue", "TenantLimits", "TokenBucket",
]
