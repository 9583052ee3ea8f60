"""`deliver run|status|abort|env` for an environment with cells (`cli.py` hands over to these
when `environments/cells.<env>.yaml` exists for a local target; docs/cells.md)."""

import os
import signal
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from delivery import lock
from delivery.cells.skew import CellVersions, render_skew, version_skew
from delivery.flow import Forward, RunRequest
from delivery.ledger import Outcome
from delivery.local_cells import CellsLocal
from delivery.progress import Printer
from delivery.waves import (
    WaveDelivery,
    WavesResult,
    open_rollout,
    quarantined_versions,
    release_order,
    render_rollout,
    rollout_records,
)

if TYPE_CHECKING:
    from delivery.cli import Context

EXIT = {Outcome.PROMOTED: 0, Outcome.APPLIED: 0, Outcome.ABORTED: 3, Outcome.REFUSED: 4}


def _delivery(ctx: "Context", cells: CellsLocal, printer: Printer, **options: Any) -> WaveDelivery:
    url = ctx.cfg.prometheus_url or cells.shared.prometheus_url()
    return WaveDelivery(ctx.cfg, cells, ctx.ledger(), printer, prometheus_url=url, **options)


def run(
    ctx: "Context",
    cells: CellsLocal,
    request: RunRequest,
    *,
    stoppable: Callable[[], AbstractContextManager[None]],
    forward: Forward | None,
    summary: str | None = None,
) -> int:
    printer = Printer()
    with lock.delivery_lock(ctx.lock_path, ctx.cfg.env):
        cells.up()  # a delivery needs every cell running: start what is not
        result = _delivery(ctx, cells, printer, stoppable=stoppable, forward=forward).run(request)
    text = render_rollout(result.record) if result.record is not None else ""
    if text:
        printer.say("\n" + text)
    printer.say(f"\noutcome: {result.outcome.upper()} - {result.reason}")
    if summary:
        write_summary(Path(summary), ctx.cfg.env, result, text)
    return 1 if result.error else EXIT[result.outcome]


def write_summary(path: Path, env: str, result: WavesResult, table: str) -> None:
    """Markdown for a CI job summary: the outcome and the per-cell verdicts."""
    version = result.record.version if result.record is not None else "?"
    lines = [
        f"## Delivery of `{version}` to `{env}` in waves: **{result.outcome.upper()}**",
        "",
        result.reason,
        "",
        "```",
        table,
        "```",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write("\n".join(lines) + "\n")


def status(ctx: "Context", cells: CellsLocal) -> int:
    """Read-only: what each cell runs, which cells lag, the unfinished and the last rollout."""
    printer = Printer()
    env = ctx.cfg.env
    stopped = not cells.running()
    holder = lock.held_by(ctx.lock_path)
    records = ctx.ledger().read().records
    finished = rollout_records(records, env)
    views = cells.views()
    printer.say(f"env:     {env} (local, {len(views)} cells: {', '.join(v.cell for v in views)})")
    if stopped:
        printer.say(f"local:   stopped (`deliver env up --env {env}` starts it)")
    who = f" (pid {holder})" if holder and holder > 0 else ""
    printer.say("running: " + ("no delivery" if holder is None else f"a delivery{who}"))
    found = open_rollout(records, env)
    unfinished = found.rollout() if found is not None else None
    running = [v for v in views if v.stable]
    if running:
        skew = version_skew(
            [CellVersions(v.cell, v.stable, v.canary or None, v.weight) for v in running],
            release_order([v.stable for v in running], finished, unfinished),
            quarantined_versions(finished),
        )
        printer.say(render_skew(skew))
        lag = ", ".join(skew.lagging) or "none"
        printer.say(f"lagging: {lag} (newest stable: {skew.newest})")
    if found is not None and unfinished is not None:
        wave = unfinished.current_wave
        printer.say(
            f"unfinished: rollout {found.start.delivery_id} of {found.start.version} "
            f"(wave {wave if wave is not None else '-'}): `deliver run --env {env} --version "
            f"{found.start.version}` resumes it, `deliver abort --env {env}` halts it"
        )
    if finished:
        printer.say("last " + render_rollout(finished[-1]))
    if not stopped:
        shared = cells.shared
        printer.say(f"gateway: {shared.gateway_url()}   prometheus: {shared.prometheus_url()}")
        counts = shared.traffic_stats().get("counts", {})
        for v in views:
            mine = [counts.get(t, {}) for t in v.tenants]
            total = sum(sum(c.values()) for c in mine)
            bad = sum(n for c in mine for k, n in c.items() if k.startswith(("5", "t")))
            printer.say(
                f"traffic: {v.cell} ({', '.join(v.tenants)}): {total} requests, {bad} failed"
            )
    return 0


def abort(ctx: "Context", cells: CellsLocal) -> int:
    printer = Printer()
    holder = lock.held_by(ctx.lock_path)
    if holder is not None:
        # The running deliverer halts the rollout, removes its canary and records why.
        os.kill(holder, signal.SIGTERM)
        printer.say(f"asked the running delivery (pid {holder}) to halt the rollout")
        return 0
    if not cells.running():
        printer.say("the local environment is stopped: nothing to abort")
        return 0
    with lock.delivery_lock(ctx.lock_path, ctx.cfg.env):
        result = _delivery(ctx, cells, printer).halt("halted by `deliver abort`")
        if result is None:
            stale = [c for c, t in cells.targets.items() if t.state().canary_running]
            for cell in stale:
                cells.targets[cell].abort()
                printer.say(f"abort: removed a stale canary in {cell}")
            if not stale:
                printer.say("no rollout is unfinished and no canary runs: nothing to abort")
            return 0
    if result.record is not None:
        printer.say(render_rollout(result.record))
    printer.say(f"abort: rollout {result.delivery_id} halted")
    return 0


def env(ctx: "Context", cells: CellsLocal, action: str) -> int:
    if action == "up":
        cells.up()
        shown = ", ".join(f"{v.cell}={v.stable}" for v in cells.views())
        print(
            f"local environment up with cells: gateway {cells.shared.gateway_url()}, "
            f"prometheus {cells.shared.prometheus_url()}, stable {shown}"
        )
        return 0
    with lock.delivery_lock(ctx.lock_path, ctx.cfg.env):
        cells.down()
    print("local environment down")
    return 0
