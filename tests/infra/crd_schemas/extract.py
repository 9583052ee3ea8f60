"""Regenerate the vendored CRD schemas from upstream git tags (run by hand when a chart is bumped).

    uv run python tests/infra/crd_schemas/extract.py /path/to/mirrors

Each mirror is a git clone named owner+repo (as `fetch` lays them out). Only the served version's
`openAPIV3Schema` is kept, with descriptions removed to keep the files small.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
# (mirror dir, tag, path) per CRD; tags match the pinned charts in infra/charts.py.
EG, EG_CRDS = "envoyproxy+gateway", "charts/gateway-helm/crds"
PO, PO_CRDS = "prometheus-operator+prometheus-operator", "example/prometheus-operator-crd"
SOURCES = [
    (EG, "v1.3.0", f"{EG_CRDS}/gatewayapi-crds.yaml"),
    (EG, "v1.3.0", f"{EG_CRDS}/generated/gateway.envoyproxy.io_envoyproxies.yaml"),
    (EG, "v1.3.0", f"{EG_CRDS}/generated/gateway.envoyproxy.io_clienttrafficpolicies.yaml"),
    (PO, "v0.79.2", f"{PO_CRDS}/monitoring.coreos.com_servicemonitors.yaml"),
    (PO, "v0.79.2", f"{PO_CRDS}/monitoring.coreos.com_prometheusrules.yaml"),
    ("cert-manager+cert-manager", "v1.16.2", "deploy/crds/crd-clusterissuers.yaml"),
]
WANTED = {"Gateway", "GatewayClass", "HTTPRoute", "EnvoyProxy", "ClientTrafficPolicy",
          "ServiceMonitor", "PrometheusRule", "ClusterIssuer"}  # fmt: skip


def strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main(mirrors: Path) -> None:
    for mirror, tag, path in SOURCES:
        text = subprocess.run(
            ["git", "-C", str(mirrors / mirror / "repo"), "show", f"{tag}:{path}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        for crd in yaml.safe_load_all(text):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            kind = crd["spec"]["names"]["kind"]
            if kind not in WANTED:
                continue
            for version in crd["spec"]["versions"]:
                if not version.get("served"):
                    continue
                api = f"{crd['spec']['group']}/{version['name']}"
                out = HERE / f"{api.replace('/', '_')}_{kind}.json"
                body = {
                    "source": f"github.com/{mirror.replace('+', '/')}@{tag}:{path}",
                    "apiVersion": api,
                    "kind": kind,
                    "schema": strip(version["schema"]["openAPIV3Schema"]),
                }
                out.write_text(json.dumps(body, sort_keys=True, separators=(",", ":")))
                print(out.name, out.stat().st_size)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
