"""Fuzzing upload + transform with mutated real images: never a 5xx, never a hang.

A few hundred examples in CI (derandomised, so CI is repeatable); the benchmark sets
RELIABILITY_FUZZ_EXAMPLES to 100,000+ with random seeds and reports the count it ran.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import fuzzing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image_service.config import Limits
from reliability_kit import BRAVO_KEY, auth, in_process, record, seed_images

EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "300"))
LONG_RUN = "RELIABILITY_FUZZ_EXAMPLES" in os.environ
PROCESSING_SECONDS = 2.0
# Upload and render are each bounded by the processing limit; allow scheduling slack on top.
HANG_SECONDS = 4 * PROCESSING_SECONDS + 5


def test_fuzz_upload_and_transform(tmp_path: Path) -> None:
    seeds = seed_images()
    donors = list(seeds.values())
    statuses: Counter[int] = Counter()
    counts: Counter[str] = Counter()
    slowest = 0.0
    limits = replace(Limits(), max_processing_seconds=PROCESSING_SECONDS)
    with in_process(tmp_path / "store", limits=limits) as client:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=not LONG_RUN,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            seed=st.sampled_from(sorted(seeds)),
            mutations=fuzzing.mutations,
            query=fuzzing.queries,
        )
        def one(seed: str, mutations: list[fuzzing.Mutation], query: str) -> None:
            nonlocal slowest
            data = fuzzing.apply(seeds[seed], mutations, donors)
            started = time.monotonic()
            up = client.post("/v1/bravo/images", content=data, headers=auth(BRAVO_KEY))
            counts["uploads"] += 1
            statuses[up.status_code] += 1
            assert up.status_code < 500, (seed, mutations, up.text)
            if up.status_code == 201:
                out = client.get(f"/v1/bravo/images/{up.json()['id']}?{query}")
                counts["renders"] += 1
                statuses[out.status_code] += 1
                assert out.status_code < 500, (seed, mutations, query, out.text)
                if out.status_code == 200:
                    assert out.content[:4] != b"", query
            elapsed = time.monotonic() - started
            slowest = max(slowest, elapsed)
            assert elapsed < HANG_SECONDS, (seed, mutations, query, elapsed)

        one()
    record(
        "fuzz upload+transform",
        inputs=counts["uploads"],
        renders=counts["renders"],
        statuses=dict(sorted(statuses.items())),
        slowest_s=round(slowest, 2),
    )
    # The mutations must reach both paths, or the fuzzer proves nothing.
    assert statuses[201] > 0
    assert statuses[422] + statuses[415] > 0
