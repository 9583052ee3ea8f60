"""One local environment for the whole e2e session: real service processes, HAProxy, Prometheus
and the traffic generator on 127.0.0.1 free ports, driven through the `deliver` CLI with a test
policy (short bakes). Torn down in a finalizer whatever happens.
"""

import difflib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from delivery.config import load
from delivery.ledger import FileLedger, deliveries, to_json
from delivery.local_env import LocalEnvironment

ENV = "e2e"
Counts = dict[str, dict[str, int]]  # responses per tenant, per status code
DELIVER = [sys.executable, "-m", "delivery.cli"]

VERSIONS: dict[str, dict[str, Any]] = {
    "v0": {},
    "good-1": {},
    "good-2": {},
    "good-3": {},
    "good-4": {},
    "bad-5xx": {"IMAGE_SERVICE_FAULT_ERROR_RATE": "0.05"},
    "slow": {"IMAGE_SERVICE_FAULT_LATENCY_MS": "100"},
    "bad-globex": {"IMAGE_SERVICE_FAULT_ERROR_RATE": "0.3", "IMAGE_SERVICE_FAULT_TENANT": "globex"},
    **{f"kill-{n}": {} for n in range(5)},
    # Refuses to start (fault injection in a production-marked process): a canary that crash-loops
    # before it ever takes traffic.
    "crashloop": {"IMAGE_SERVICE_ENVIRONMENT": "prod", "IMAGE_SERVICE_FAULT_ERROR_RATE": "0.05"},
    # Issue 13: a low error rate, and a version whose process the test kills mid-step.
    "low-5xx": {"IMAGE_SERVICE_FAULT_ERROR_RATE": "0.02"},
    "exits": {},
    # A tenant no other scenario faults: its burn-rate page can only come from this canary.
    "bad-umbrella": {
        "IMAGE_SERVICE_FAULT_ERROR_RATE": "1.0",
        "IMAGE_SERVICE_FAULT_TENANT": "umbrella",
    },
    # Patched versions (PATCHES): regressions made in the code, as a person would make them.
    "wrong-size": {},
    "broken-upload": {},
    "leak": {},
}

# name -> (file, text, replacement): the working tree's service with one change.
PATCHES: dict[str, tuple[str, str, str]] = {
    # Renditions two pixels too wide, 200 OK and fast.
    "wrong-size": (
        "service/src/image_service/transform.py",
        "    box_w, box_h = options.target_size()\n",
        "    box_w, box_h = options.target_size()\n"
        "    box_w = box_w + 2 if box_w else box_w  # the regression\n",
    ),
    # Every upload fails; reads still work.
    "broken-upload": (
        "service/src/image_service/app.py",
        "    request.state.body_read = False\n",
        "    request.state.body_read = False\n"
        '    raise RuntimeError("the write path is broken")  # the regression\n',
    ),
    # 512 KiB kept for ever per image read: a steady leak.
    "leak": (
        "service/src/image_service/app.py",
        "async def get_image(request: Request) -> Response:\n",
        "async def get_image(request: Request) -> Response:\n"
        '    globals().setdefault("_LEAK", []).append(b"\\x01" * (1 << 19))  # the regression\n',
    ),
}


def write_patches(repo: Path, folder: Path) -> dict[str, str]:
    """One diff per patched version, against the working tree as it is now."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (rel, old, new) in PATCHES.items():
        text = (repo / rel).read_text()
        assert text.count(old) == 1, f"{name}: {old!r} is not once in {rel}"
        diff = difflib.unified_diff(
            text.splitlines(keepends=True),
            text.replace(old, new).splitlines(keepends=True),
            f"a/{rel}",
            f"b/{rel}",
        )
        path = folder / f"{name}.diff"
        path.write_text("".join(diff))
        out[name] = str(path)
    return out


def policy(state: Path, ledger: Path, patches: dict[str, str] | None = None) -> dict[str, Any]:
    patches = patches or {}
    return {
        "schema_version": 1,
        "environment": ENV,
        "target": {
            "kind": "local",
            "local": {
                "state_dir": str(state),
                "scrape_interval_seconds": 1,
                "traffic_rps": 100,
                "traffic_max_seconds": 3600,  # outlives a whole suite run
                "tenants": ["acme", "globex", "initech", "umbrella"],
                "initial_stable": "v0",
                "versions": {
                    name: {
                        "source": "worktree",
                        "env": env,
                        **({"patch": patches[name]} if name in patches else {}),
                    }
                    for name, env in VERSIONS.items()
                },
            },
        },
        "ledger": str(ledger),
        "canary": {
            "steps": [{"weight": 40, "bake_seconds": 10}, {"weight": 50, "bake_seconds": 6}],
            "interval_seconds": 2,
            # The minimum-sample guard, not the bake, decides when there is enough data: on a
            # loaded machine the generator delivers fewer requests and the bake extends.
            "max_extensions": 4,
            "extension_seconds": 4,
            "progress_seconds": 1,
        },
        # Latency on this shared 2-core machine is milliseconds of scheduler noise: tolerances
        # are sized to catch the +100 ms fault, not a busy neighbour. p99 on ~300 samples is
        # left to the real environments' policies.
        "judge": {
            "confidence": 0.99,
            "min_requests": 600,  # enough for step 1 to see the 5xx fault (~15 s at 40 req/s)
            "metrics": [
                {
                    "name": "error_ratio",
                    "kind": "error_ratio",
                    "critical": True,
                    "per_tenant": True,
                },
                {"name": "latency", "kind": "latency", "tolerance": 1.0, "per_tenant": True},
            ],
        },
        "delta": {
            "max_changes": 5,
            "max_risk": 10,
            "op_weights": {"create": 1, "update": 1, "delete": 3, "replace": 5},
            "service_types": ["local:process:ImageService"],
        },
    }


@dataclass
class LocalEnv:
    repo: Path
    envs: Path
    ledger_path: Path
    env: LocalEnvironment
    runs: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    # What users saw during each delivery: (traffic counts before, after).
    windows: dict[str, tuple[Counts, Counts]] = field(default_factory=dict)

    def deliver_once(self, version: str) -> subprocess.CompletedProcess[str]:
        """`deliver run` of a named version, once per session. Versions are never redeployed,
        so a test that needs a delivery to have happened asks for it here instead of relying on
        the tests running in file order (the suite runs in random order)."""
        if version not in self.runs:
            before = self.traffic()
            self.runs[version] = self.deliver("run", "--version", version)
            self.windows[version] = (before, self.traffic())
        return self.runs[version]

    def seen_during(self, version: str) -> Counts:
        """Responses per tenant and code while `version` was delivered, whichever test asked
        for the delivery first (measuring around a cached delivery would see nothing)."""
        before, after = self.windows[version]
        return {
            t: {c: n - before.get(t, {}).get(c, 0) for c, n in per.items()}
            for t, per in after.items()
        }

    def argv(self, *args: str) -> list[str]:
        return [
            *DELIVER,
            *args,
            "--env",
            ENV,
            "--repo",
            str(self.repo),
            "--environments",
            str(self.envs),
        ]

    # Generous: a delivery is two probe rounds plus its steps, and a loaded 2-core machine can
    # triple that. A killed deliverer would leave its canary for the next test to trip over.
    def deliver(self, *args: str, timeout: float = 360) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=timeout, cwd=self.repo
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=self.repo,
        )

    def deliveries(self) -> list[dict[str, Any]]:
        """Each delivery as the ledger file holds it: its `finished` record, or for one still
        open its subject, steps and no outcome."""
        views = deliveries(FileLedger(self.ledger_path).read().records, ENV)
        return [
            to_json(v.finished)
            if v.finished is not None
            else {
                **v.subject.to_json(),
                "delivery_id": v.delivery_id,
                "steps": [s.to_json() for s in v.steps],
                "outcome": None,
            }
            for v in views
        ]

    def first(self, version: str) -> dict[str, Any]:
        """The delivery that ran this version (a later refused redeploy adds its own record)."""
        found = [d for d in self.deliveries() if d.get("version") == version]
        assert found, f"no ledger entry for {version}"
        return found[0]

    def last(self, version: str) -> dict[str, Any]:
        found = [d for d in self.deliveries() if d.get("version") == version]
        assert found, f"no ledger entry for {version}"
        return found[-1]

    @staticmethod
    def dump(result: subprocess.CompletedProcess[str]) -> str:
        shown = result.stdout.split("ledger entry:")[0]  # tables and reasons, not the JSON
        return (
            f"exit {result.returncode}\n--- stdout\n{shown[-6000:]}\n"
            f"--- stderr\n{result.stderr[-3000:]}"
        )

    @staticmethod
    def wait_for_line(proc: subprocess.Popen[str], needle: str, limit: int = 400) -> str:
        return "".join(wait_for_line(proc, needle, limit))

    def traffic(self) -> Counts:
        counts: Counts = self.env.traffic_stats().get("counts", {})
        return counts


def wait_for_line(proc: subprocess.Popen[str], needle: str, limit: int = 400) -> list[str]:
    """Read the child's output until a line holds `needle` (bounded)."""
    assert proc.stdout is not None
    seen: list[str] = []
    for _ in range(limit):
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"never saw {needle!r}; output:\n{''.join(seen)}")


@pytest.fixture(scope="session")
def local_env(repo_root: Path) -> Iterator[LocalEnv]:
    os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin"
    missing = [t for t in ("prometheus", "haproxy") if not shutil.which(t)]
    if missing:
        pytest.fail(f"e2e needs {missing} (run scripts/setup.sh)")
    # Not pytest's tmp_path: concurrent pytest sessions prune each other's old basetemps, which
    # would delete a live environment. `.state/` is gitignored; the finalizer removes it.
    base = repo_root / ".state" / "e2e" / uuid.uuid4().hex[:10]
    base.mkdir(parents=True)
    envs = base / "environments"
    envs.mkdir()
    state, ledger = base / "state", base / "ledger.jsonl"
    patches = write_patches(repo_root, base / "patches")
    (envs / f"delivery.{ENV}.yaml").write_text(yaml.safe_dump(policy(state, ledger, patches)))
    cfg = load(ENV, envs)
    assert cfg.local is not None
    handle = LocalEnv(repo_root, envs, ledger, LocalEnvironment(repo_root, cfg.local, ENV))
    try:
        up = handle.deliver("env", "up")
        assert up.returncode == 0, handle.dump(up)
        yield handle
    finally:
        handle.env.down()
        shutil.rmtree(base, ignore_errors=True)
