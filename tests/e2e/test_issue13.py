"""Issue 13's failure classes against real local processes: each bad canary is aborted with a
reason a person understands, and an aborted canary leaves nothing behind that stable serves.

They share the session's local environment (conftest.py); each delivers its own named version.
Waits are bounded and watch observable state (the env's state file, the deliverer's output).
"""

import json
import os
import re
import signal
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pyvips
from delivery import alerting_local

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ABORTED = 3


def aborted(local_env: Any, version: str) -> dict[str, Any]:
    result = local_env.deliver("run", "--version", version, timeout=300)
    assert result.returncode == ABORTED, local_env.dump(result)
    entry: dict[str, Any] = local_env.last(version)
    assert entry["outcome"] == "aborted"
    assert entry["reason"] in result.stdout  # the summary says why, on screen
    assert len(result.stdout.split("ledger id:")[-1].splitlines()) < 5  # no JSON dump at the end
    assert local_env.env.track("canary") is None
    return entry


def test_wrong_content_with_200_ok_is_aborted_and_leaves_nothing_stable_serves(
    local_env: Any,
) -> None:
    entry = aborted(local_env, "wrong-size")
    # The golden probes compared decoded images: the reason names a probe and the width.
    assert "golden probes" in entry["reason"]
    assert re.search(r"width (\d+) != (\d+)", entry["reason"]), entry["reason"]
    assert not any(s["weight"] > 0 for s in entry["steps"])  # caught before any traffic
    sweep_stored_renditions(local_env)


def sweep_stored_renditions(local_env: Any) -> None:
    """Every image with stored renditions, asked of the gateway (stable only now) at exact
    sizes: each answer has exactly the size the request defines, so no canary rendition (two
    pixels too wide) is served from the shared store."""
    storage = local_env.env.storage
    images = {
        (tenant.name, folder.name)
        for tenant in storage.iterdir()
        if (tenant / "renditions").is_dir()
        for folder in (tenant / "renditions").iterdir()
    }
    assert images, "no stored rendition to sweep"
    keys = {t["id"]: t["key"] for t in json.loads(local_env.env.keys_file.read_text())}
    gateway = local_env.env.gateway_url()
    checked = 0
    with httpx.Client(timeout=20) as client:
        for tenant, image_id in sorted(images)[:40]:
            for w in (8, 12, 16):  # every stored original is larger
                url = f"{gateway}/v1/{tenant}/images/{image_id}?w={w}&h={w}&fit=fill"
                resp = client.get(url, headers={"Authorization": f"Bearer {keys[tenant]}"})
                if resp.status_code == 404:  # deleted by the traffic since
                    continue
                assert resp.status_code == 200, (url, resp.status_code, resp.text[:200])
                picture = pyvips.Image.new_from_buffer(resp.content, "")
                assert (picture.width, picture.height) == (w, w), url
                checked += 1
    assert checked > 0


def test_a_broken_write_path_is_aborted(local_env: Any) -> None:
    entry = aborted(local_env, "broken-upload")
    assert "golden probes" in entry["reason"]
    assert "upload" in entry["reason"]
    assert "500" in entry["reason"]


def test_a_memory_leak_is_aborted_on_memory_growth(local_env: Any) -> None:
    entry = aborted(local_env, "leak")
    assert "memory growth: RSS grew" in entry["reason"], entry["reason"]


def test_a_low_error_rate_is_aborted(local_env: Any) -> None:
    entry = aborted(local_env, "low-5xx")
    # The judge (the service's metrics) or the gateway's exact counts: either names the errors.
    assert re.search(r"error|5xx|status 5\d\d", entry["reason"]), entry["reason"]


def test_a_canary_that_exits_mid_step_aborts_at_once_with_the_exit_in_words(
    local_env: Any,
) -> None:
    stable = local_env.env.track("stable").version
    before = local_env.traffic()
    proc = local_env.start("run", "--version", "exits")
    try:
        local_env.wait_for_line(proc, "[step 1/2]")  # traffic reaches the canary now
        canary = local_env.env.track("canary")
        assert canary is not None
        weight_at_kill = local_env.env.read().weight
        os.kill(canary.proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        out, _ = proc.communicate(timeout=120)
        noticed_in = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == ABORTED, out[-4000:]
    entry = local_env.last("exits")
    assert re.fullmatch(
        r"canary process was killed by SIGKILL at \d\d:\d\d:\d\d UTC", entry["reason"]
    ), entry["reason"]
    # The weight never rose onto the dead process, and stable took everything back.
    assert [s["weight"] for s in entry["steps"]] in ([], [weight_at_kill])
    assert local_env.env.read().weight == 0
    assert local_env.env.track("stable").version == stable
    assert noticed_in < 60, noticed_in
    # HAProxy health-checks and retries: users barely see the death.
    after = local_env.traffic()
    seen = {
        t: {c: n - before.get(t, {}).get(c, 0) for c, n in per.items()} for t, per in after.items()
    }
    total = sum(sum(per.values()) for per in seen.values())
    failed = sum(n for per in seen.values() for c, n in per.items() if c.startswith(("5", "t")))
    assert total > 0
    assert failed <= 0.01 * total, seen


CANARY_ERRORS = "ImageServiceCanaryErrors"


def test_a_bad_canary_fires_its_alert_through_alertmanager_while_it_runs(local_env: Any) -> None:
    """The platform's own canary rule, evaluated by the local Prometheus, reaches Alertmanager
    naming the tenant and version the canary hurt, and it fired before the delivery ended."""
    url = local_env.env.alertmanager_url()
    assert url, "the local environment runs Alertmanager"
    started = datetime.now(UTC)

    def ours() -> list[alerting_local.FiringAlert]:
        held = alerting_local.firing_alerts(url)
        return [
            a
            for a in held
            if a.name == CANARY_ERRORS
            and a.labels.get("version") == "bad-umbrella"
            and a.labels.get("tenant") == "umbrella"
        ]

    proc = local_env.start("run", "--version", "bad-umbrella")
    try:
        local_env.wait_for_line(proc, "[step 1/2]")  # the canary takes traffic from here
        deadline = time.monotonic() + 120
        alerts = ours()
        while not alerts and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            alerts = ours()
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    ended = datetime.now(UTC)
    assert proc.returncode == ABORTED, out[-4000:]
    # Alertmanager keeps a resolved alert listed for a while; it may have arrived just as the
    # delivery ended, so look once more.
    alerts = alerts or ours()
    assert alerts, f"no {CANARY_ERRORS} for bad-umbrella/umbrella reached Alertmanager"
    alert = alerts[0]
    assert alert.labels.get("severity") == "ticket"
    fired = datetime.fromisoformat(alert.starts_at.replace("Z", "+00:00"))
    assert started <= fired <= ended, alert.describe()
