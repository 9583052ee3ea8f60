"""Fault injection for canary tests: a pure decision per request."""

from __future__ import annotations

from dataclasses import dataclass

from image_service.config import Faults


@dataclass(frozen=True)
class FaultDecision:
    delay_seconds: float
    error: bool


NO_FAULT = FaultDecision(0.0, False)


def decide(faults: Faults, tenant: str, draw: float) -> FaultDecision:
    """`draw` is uniform in [0, 1); faults apply to every tenant unless one is named."""
    if not faults.enabled or (faults.tenant is not None and faults.tenant != tenant):
        return NO_FAULT
    return FaultDecision(faults.latency_ms / 1000.0, draw < faults.error_rate)
