"""Per-tenant fair share of a bounded resource: pure decisions, no clocks, no threads.

A tenant may hold at most its share of the capacity, counted among the tenants that hold
something now (plus itself). Alone, a tenant may use everything; when another arrives, the
newcomer is admitted at once (up to a hard cap of twice the capacity) and the heavy tenant is
refused until it is back under its share. Free workers go to the tenant using the least of
them per unit of share, so a flood waits behind its own requests, never in front of others;
and while another tenant has been active lately, a tenant runs at most its share of the workers,
so the other's next request finds a worker free (the price: a worker may idle briefly).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Load:
    """What one tenant holds now: jobs running and jobs waiting."""

    running: int = 0
    queued: int = 0

    @property
    def held(self) -> int:
        return self.running + self.queued


@dataclass(frozen=True)
class Admission:
    admitted: bool
    code: str = ""  # "tenant_overloaded" or "overloaded" when refused
    limit: int = 0  # the tenant's share of the capacity at this moment


def share_limit(
    capacity: int, tenant: str, loads: Mapping[str, Load], shares: Mapping[str, float]
) -> int:
    """The tenant's slots: capacity x its share / the shares of every tenant holding slots."""
    active = {t for t, load in loads.items() if load.held > 0} | {tenant}
    total = sum(shares.get(t, 1.0) for t in active)
    return max(1, math.floor(capacity * shares.get(tenant, 1.0) / total + 1e-9))


def admit(
    capacity: int, tenant: str, loads: Mapping[str, Load], shares: Mapping[str, float]
) -> Admission:
    """May this tenant add one job? DomainError when over its share, or past the hard cap."""
    limit = share_limit(capacity, tenant, loads, shares)
    if loads.get(tenant, Load()).held >= limit:
        return Admission(False, "tenant_overloaded", limit)
    if sum(load.held for load in loads.values()) >= 2 * capacity:
        return Admission(False, "overloaded", limit)
    return Admission(True, "", limit)


def running_cap(
    workers: int, tenant: str, recent: Iterable[str], shares: Mapping[str, float]
) -> int:
    """Workers the tenant may occupy at once: its share among the recently active tenants.

    Alone, a tenant may use every worker. While another tenant is active, a worker is kept
    for it, so its next request never waits behind a long render of the heavy tenant.
    """
    active = set(recent) | {tenant}
    total = sum(shares.get(t, 1.0) for t in active)
    return max(1, math.floor(workers * shares.get(tenant, 1.0) / total + 1e-9))


def next_tenant(
    waiting: Mapping[str, int],
    loads: Mapping[str, Load],
    shares: Mapping[str, float],
    caps: Mapping[str, int] | None = None,
) -> str | None:
    """Who gets the next free worker: the fewest running per unit of share, then the oldest.

    `waiting` maps each tenant with queued jobs to the arrival number of its oldest one; a
    tenant already running its cap (see running_cap) waits even when a worker is free.
    """
    eligible = [
        t for t in waiting if caps is None or loads.get(t, Load()).running < caps.get(t, 1 << 30)
    ]
    if not eligible:
        return None
    return min(
        eligible,
        key=lambda t: (loads.get(t, Load()).running / shares.get(t, 1.0), waiting[t]),
    )
