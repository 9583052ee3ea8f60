"""The long fuzz run: mutated real images through upload + transform, in-process, until N inputs.

The CI version is tests/reliability/test_fuzz.py (hypothesis, a few hundred examples). Here the
same mutation space is drawn with plain `random` (hypothesis' per-example bookkeeping costs more
than a rejected upload), a share of the accepted uploads is rendered with random options, and
the run stops at RELIABILITY_FUZZ_EXAMPLES inputs or RELIABILITY_FUZZ_SECONDS, whichever comes
first; the count actually run is what gets reported. Exit 1 on any 5xx or any input slower than
the hang bound. A failing input is written to results/fuzz-failures/ to replay.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "reliability"))

import fuzzing  # noqa: E402
from image_service.config import Limits  # noqa: E402
from image_service.transform import harden_libvips  # noqa: E402
from reliability_kit import BRAVO_KEY, auth, in_process, record, seed_images  # noqa: E402

PROCESSING_SECONDS = 2.0
HANG_SECONDS = 4 * PROCESSING_SECONDS + 5
RENDER_SHARE = 0.3


def main() -> int:
    target = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "100000"))
    budget = float(os.environ.get("RELIABILITY_FUZZ_SECONDS", "3000"))
    seed = int(os.environ.get("RELIABILITY_FUZZ_SEED", str(int(time.time()))))
    rng = random.Random(seed)  # noqa: S311 (reproducible fuzzing, not cryptography)
    harden_libvips(1)
    seeds = seed_images()
    names = sorted(seeds)
    donors = list(seeds.values())
    statuses: Counter[int] = Counter()
    counts: Counter[str] = Counter()
    failures = HERE / "results" / "fuzz-failures"
    slowest = 0.0
    started = time.monotonic()
    limits = replace(Limits(), max_processing_seconds=PROCESSING_SECONDS)
    with tempfile.TemporaryDirectory() as tmp, in_process(Path(tmp), limits=limits) as client:
        while counts["inputs"] < target and time.monotonic() - started < budget:
            data = fuzzing.apply(seeds[rng.choice(names)], fuzzing.random_mutations(rng), donors)
            query = fuzzing.random_query(rng)
            began = time.monotonic()
            up = client.post("/v1/bravo/images", content=data, headers=auth(BRAVO_KEY))
            counts["inputs"] += 1
            statuses[up.status_code] += 1
            bad = up.status_code >= 500
            if up.status_code == 201 and rng.random() < RENDER_SHARE:
                out = client.get(f"/v1/bravo/images/{up.json()['id']}?{query}")
                counts["renders"] += 1
                statuses[out.status_code] += 1
                bad = bad or out.status_code >= 500
                # Keep the store small: the next identical upload is a new write again.
                client.delete(f"/v1/bravo/images/{up.json()['id']}", headers=auth(BRAVO_KEY))
            elapsed = time.monotonic() - began
            slowest = max(slowest, elapsed)
            if bad or elapsed > HANG_SECONDS:
                failures.mkdir(parents=True, exist_ok=True)
                name = hashlib.sha256(data).hexdigest()[:16]
                (failures / f"{name}.bin").write_bytes(data)
                (failures / f"{name}.json").write_text(json.dumps({"query": query, "s": elapsed}))
                counts["failures"] += 1
            if counts["inputs"] % 10_000 == 0:
                rate = counts["inputs"] / (time.monotonic() - started)
                print(
                    f"[fuzz] {counts['inputs']} inputs, {rate:.0f}/s, {dict(statuses)}", flush=True
                )
    record(
        "fuzz upload+transform (long)",
        inputs=counts["inputs"],
        renders=counts["renders"],
        failures=counts["failures"],
        seed=seed,
        seconds=round(time.monotonic() - started),
        slowest_s=round(slowest, 2),
        statuses=dict(sorted(statuses.items())),
    )
    return 1 if counts["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
