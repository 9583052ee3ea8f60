"""Per-tenant request rate: a token bucket per tenant (burst = one second of rate)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Bucket:
    tokens: float
    updated: float


def take(bucket: Bucket | None, now: float, rate: float) -> tuple[bool, Bucket, float]:
    """Pure decision: (allowed, new bucket, seconds until a token is available)."""
    burst = max(1.0, rate)
    if bucket is None:
        bucket = Bucket(tokens=burst, updated=now)
    tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
    if tokens >= 1.0:
        return True, Bucket(tokens - 1.0, now), 0.0
    return False, Bucket(tokens, now), (1.0 - tokens) / rate


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, Bucket] = {}

    def check(self, tenant: str, rate: float, now: float) -> int | None:
        """None when allowed, else whole seconds for Retry-After."""
        allowed, self._buckets[tenant], wait = take(self._buckets.get(tenant), now, rate)
        return None if allowed else max(1, math.ceil(wait))
