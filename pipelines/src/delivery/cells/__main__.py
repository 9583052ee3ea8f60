"""`python -m delivery.cells`: read-only checks over an environment's cells, for operators and CI.

    python -m delivery.cells plan  --env prod [--plan x4]
    python -m delivery.cells check --env prod --tenants tenants.toml [--observed rates.json]
    python -m delivery.cells move  --env prod --tenants tenants.toml --tenant acme --to prod-b

`check` exits 1 with every placement problem; `move` prints the procedure of docs/cells.md or
exits 1 with the reason it is refused. Nothing here changes anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from image_contracts.tenants import TenantsFileError, parse_text

from delivery.cells.placement import (
    TenantLoad,
    plan_move,
    tenant_loads,
    validate_placement,
)
from delivery.cells.schema import CellsError, load_cells


def _loads(tenants: Path, observed: Path | None) -> tuple[TenantLoad, ...]:
    entries = parse_text(tenants.read_text()).values()
    rates: dict[str, float] = {}
    if observed is not None:
        raw = json.loads(observed.read_text())
        if not isinstance(raw, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in raw.values()
        ):
            raise CellsError(f"{observed}: expected a JSON object of tenant -> req/s")
        rates = {str(k): float(v) for k, v in raw.items()}
    return tenant_loads(entries, rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delivery.cells", description=__doc__)
    parser.add_argument("command", choices=["plan", "check", "move"])
    parser.add_argument("--env", required=True)
    parser.add_argument("--environments", type=Path, default=Path("environments"))
    parser.add_argument("--plan")
    parser.add_argument("--tenants", type=Path)
    parser.add_argument("--observed", type=Path)
    parser.add_argument("--tenant")
    parser.add_argument("--to")
    args = parser.parse_args(argv)
    try:
        catalog = load_cells(args.env, args.environments)
        if args.command == "plan":
            plan = catalog.plan(args.plan)
            print(f"plan {plan.name} ({args.env}):")
            for i, wave in enumerate(plan.waves):
                print(f"  wave {i}: {', '.join(wave.cells)}  (bake {wave.bake_seconds:g}s)")
            return 0
        if args.tenants is None:
            parser.error(f"{args.command} needs --tenants")
        loads = _loads(args.tenants, args.observed)
        if args.command == "check":
            report = validate_placement(loads, catalog)
            for u in report.usage:
                print(
                    f"{u.cell:<16} {len(u.tenants):>4}/{u.max_tenants:<4} tenants "
                    f"{u.rps:>9.1f}/{u.max_rps:<9g} req/s"
                )
            for problem in report.problems:
                print(f"error: {problem}", file=sys.stderr)
            return 0 if report.ok else 1
        if not args.tenant or not args.to:
            parser.error("move needs --tenant and --to")
        move = plan_move(loads, catalog, args.tenant, args.to)
        print(f"move {move.move.tenant}: {move.move.source} -> {move.move.target}")
        for i, step in enumerate(move.steps, 1):
            print(f"  {i}. {step.kind}: {step.detail}")
        return 0
    except (CellsError, TenantsFileError, OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
