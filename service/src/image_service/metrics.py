"""Prometheus metrics (names and labels are a contract: see docs/architecture.md).

Every series carries `track` and `version`. Each app instance owns its registry, so tests can run
several apps in one process.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pyvips
from image_contracts.metrics import LATENCY_BUCKETS
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from image_service.request_metrics import RequestMetrics


@functools.cache
def _vips_memory_reader() -> Callable[[], int]:
    """libvips' own allocation counter; pyvips' cffi binding does not expose it, ctypes can."""
    site = sysconfig.get_paths()["purelib"]
    for candidate in (Path(site) / "pyvips_binary.libs").glob("libvips*.so*"):
        try:
            lib = ctypes.CDLL(str(candidate))
            getter = lib.vips_tracked_get_mem
        except (OSError, AttributeError):
            continue
        getter.restype = ctypes.c_size_t
        return lambda: int(getter())
    return lambda: 0


def _vips_tracked_memory() -> int:
    return _vips_memory_reader()()


M = TypeVar("M", bound=MetricWrapperBase)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes(statm: str) -> int:
    """Resident set size from the text of /proc/<pid>/statm (pages -> bytes)."""
    return int(statm.split()[1]) * PAGE_SIZE


class ProcessCollector(Collector):
    """RSS and CPU seconds of this process, labelled like every other series.

    prometheus_client's own process collector registers only on its global REGISTRY, which
    this service does not serve (each app owns a registry), and it carries no track/version
    labels, so the judge could not tell canary from baseline with it.
    """

    def __init__(self, base: dict[str, str]) -> None:
        self.base = base

    def collect(self) -> Iterator[Metric]:
        labels = list(self.base)
        values = [self.base[k] for k in labels]
        rss = GaugeMetricFamily(
            "image_service_process_resident_memory_bytes", "Resident memory (RSS).", labels=labels
        )
        try:
            rss.add_metric(values, resident_bytes(Path("/proc/self/statm").read_text()))
        except OSError:  # not Linux: no series rather than a wrong one
            pass
        else:
            yield rss
        times = os.times()
        cpu = CounterMetricFamily(
            "image_service_process_cpu_seconds", "User + system CPU time.", labels=labels
        )
        cpu.add_metric(values, times.user + times.system)
        yield cpu


class Metrics:
    def __init__(self, track: str, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.base = {"track": track, "version": version}
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        tv = ["track", "version"]
        r = self.registry
        self.http = RequestMetrics(self.base)  # requests, latency, bytes sent, in flight
        r.register(self.http)
        self.transform_duration = Histogram(
            "image_service_transform_duration_seconds",
            "Time spent in libvips per rendition, by output format.",
            [*tv, "format"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bytes_received = Counter(
            "image_service_bytes_received",
            "Upload body bytes received.",
            [*tv, "tenant"],
            registry=r,
        )
        self.rendition_cache = Counter(
            "image_service_rendition_cache",
            "Rendition lookups in storage, by result (hit|miss).",
            [*tv, "tenant", "result"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "image_service_transform_queue_depth",
            "Transforms waiting for a worker.",
            tv,
            registry=r,
        )
        self.workers = Gauge(
            "image_service_transform_workers", "Size of the transform worker pool.", tv, registry=r
        )
        self.storage_errors = Counter(
            "image_service_storage_errors",
            "Storage backend failures by backend and operation.",
            [*tv, "backend", "operation"],
            registry=r,
        )
        self.queue_seconds = Histogram(
            "image_service_transform_queue_seconds",
            "Time a transform waited for a worker, by tenant.",
            [*tv, "tenant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        r.register(ProcessCollector(self.base))
        self.vips_memory = Gauge(
            "image_service_vips_memory_bytes",
            "Memory currently tracked by libvips.",
            tv,
            registry=r,
        )
        self.vips_memory.labels(**self.base).set_function(_vips_tracked_memory)
        self.build_info = Gauge(
            "image_service_build_info",
            "Always 1; labels carry the build.",
            [*tv, "vips_version"],
            registry=r,
        )
        vips_version = f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"
        self.build_info.labels(**self.base, vips_version=vips_version).set(1)
        # Export zero-valued series up front so dashboards and the judge see them immediately.
        self.queue_depth.labels(**self.base).set(0)

    def child(self, metric: M, *values: str) -> M:
        """metric.labels(track, version, *values), cached: labels() is costly per request."""
        key = (id(metric), values)
        found: M | None = self._children.get(key)
        if found is None:
            found = metric.labels(self.base["track"], self.base["version"], *values)
            self._children[key] = found
        return found
