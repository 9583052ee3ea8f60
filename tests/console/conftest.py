"""The console's end-to-end stack for this folder: a synthetic exporter, a real Prometheus, a ledger
of typed records with real judge verdicts, and the console started through `deliver console`.

Helpers live in console_kit.py; with --import-mode=importlib this folder is not on sys.path,
so it is added here (the module name is unique in the suite).
"""

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from delivery.ledger import Outcome, to_json

sys.path.insert(0, str(Path(__file__).resolve().parent))

import console_kit as kit


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kit.Stack]:
    work = tmp_path_factory.mktemp("console")
    with kit.exporter() as port, kit.prometheus(work, port) as prom:
        kit.wait_until("10 s of scraped data", lambda: kit.scraped_seconds(prom) >= 10, 60)
        now = time.time()
        start, end = now - 9, now - 1
        ledger = work / "ledger.jsonl"
        envs = work / "environments"
        kit.write_policy(envs, ledger, prom)
        pol = kit.policy(envs)

        # Five hours ago: good-1 promoted over v0 (verdicts from today's good-2 data: realistic
        # evidence; Prometheus holds nothing that old, so its charts come from the ledger). Its
        # finished line also holds a field no record type knows: a tenant key written by mistake.
        t = now - 5 * 3600
        good = kit.delivery(f"{kit.ENV}-20261129T060000-aaaaaa", "good-1", t, stable="v0")
        kit.append(ledger, kit.started(good, t))
        steps = [
            kit.judged_step(
                good,
                prom,
                pol,
                i,
                w,
                t + 2 + 8 * i,
                t + 9 + 8 * i,
                data_from=(start, end, "good-2"),
            )
            for i, w in enumerate((10, 50))
        ]
        for s in steps:
            kit.append(ledger, s)
        done = kit.finished(good, steps, Outcome.PROMOTED, "every step passed", t + 20)
        kit.append(ledger, {**to_json(done), "tenant_api_key": kit.PLANTED_SECRET})

        # Two hours ago: refused by the delta gate, before any traffic moved.
        t = now - 2 * 3600
        why = "replace of protected aws:s3/bucket:Bucket (needs --allow)"
        refusal = {
            "allowed": False,
            "changes": 9,
            "kind": "service",
            "overrides": [],
            "reasons": [why],
            "risk": 14.0,
            "summary": {"replace": 1, "update": 8},
        }
        refused = kit.delivery(f"{kit.ENV}-20261129T090000-bbbbbb", "wide-change", t, delta=refusal)
        kit.append(ledger, kit.finished(refused, [], Outcome.REFUSED, why, t))

        # Just now: bad-globex, judged on its real window, aborted at its first step.
        bad = kit.delivery(f"{kit.ENV}-20261129T110000-cccccc", "bad-globex", start - 1)
        kit.append(ledger, kit.started(bad, start - 1))
        step = kit.judged_step(bad, prom, pol, 0, 10, start, end)
        assert step.result.verdict["outcome"] == "fail", step.result.verdict["reasons"]
        kit.append(ledger, step)
        reason = kit.failure_reason(step)
        kit.append(ledger, kit.finished(bad, [step], Outcome.ABORTED, reason, end))

        with kit.console(envs, work / "console.log") as url:
            yield kit.Stack(prom, url, ledger, envs, bad.id, good.id, refused.id, (start, end))
