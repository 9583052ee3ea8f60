"""Write the platform's dashboards (Grafana JSON model) for the delivery console.

    uv run python scripts/export_dashboards.py           # rewrite the committed artifact
    uv run python scripts/export_dashboards.py --check   # exit 1 when it is stale

The delivery package must not import the platform (Pulumi) at runtime, so the console reads this
committed file; tests/console/test_dashboards_artifact.py fails when it differs from what
`infra.observability.dashboards` renders.
"""

import argparse
import json
import sys
from pathlib import Path

from infra.observability import dashboards, grafana_model

ARTIFACT = Path(__file__).resolve().parent.parent / "pipelines/src/delivery/console/dashboards.json"


def rendered() -> str:
    boards = [grafana_model.render(board) for board in dashboards.all_dashboards()]
    return json.dumps(boards, indent=1, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when stale")
    parser.add_argument("--artifact", type=Path, default=ARTIFACT, help=f"default {ARTIFACT}")
    args = parser.parse_args()
    artifact: Path = args.artifact
    text = rendered()
    if args.check:
        if not artifact.is_file() or artifact.read_text(encoding="utf-8") != text:
            print(f"{artifact} is stale: run scripts/export_dashboards.py", file=sys.stderr)
            return 1
        return 0
    artifact.write_text(text, encoding="utf-8")
    print(f"wrote {artifact}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
