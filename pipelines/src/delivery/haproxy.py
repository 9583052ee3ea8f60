"""HAProxy as the local gateway: a config file once, then weights through the runtime API.

One backend with three fixed server slots (stable, baseline, canary). Deliveries never reload
HAProxy: they point a slot at a process (`set server ... addr`) and set its weight, which is how
the HTTPRoute weights behave on EKS.
"""

import socket
from collections.abc import Mapping
from pathlib import Path

from image_contracts.tracks import TRACKS

BACKEND = "image"
METRICS_PATH = "/haproxy-metrics"  # HAProxy's built-in Prometheus exporter, on the gateway port
# Health checks: a server that stops answering /readyz leaves the rotation after `fall` checks,
# and a request whose connection fails is retried on another server instead of a 503.
CHECK = "check inter 1s fastinter 500ms downinter 1s fall 2 rise 1"


class HAProxyError(RuntimeError):
    pass


def render_config(*, port: int, stats_socket: Path, stable_port: int) -> str:
    servers = _servers(stable_port)
    return f"""# Written by delivery.launchers; weights change at runtime, never here.
{_head(stats_socket)}
frontend gateway
  bind 127.0.0.1:{port}
  http-request use-service prometheus-exporter if {{ path {METRICS_PATH} }}
  default_backend {BACKEND}

backend {BACKEND}
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
{servers}
"""


# --- cells: one backend per cell, the tenant's cell chosen by a map file (docs/cells.md) -----
# The backend of a tenant the placement table does not know (404). Cell names start with an
# alphanumeric, so it never collides with a cell's backend.
UNPLACED = "_unplaced"


def cell_backend(cell: str) -> str:
    """A cell's backend is named after the cell: the gateway's series say `proxy="<cell>"`."""
    return cell


def render_tenant_map(cell_of: Mapping[str, str]) -> str:
    """The placement table as HAProxy reads it: one `tenant backend` line per tenant."""
    return "".join(f"{t} {cell_backend(c)}\n" for t, c in sorted(cell_of.items()))


def _head(stats_socket: Path) -> str:
    """The global and defaults sections every local gateway shares."""
    return f"""global
  stats socket {stats_socket} mode 600 level admin
  maxconn 1024

defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 2
  option redispatch 1
  retry-on conn-failure empty-response
"""


def _servers(stable_port: int) -> str:
    # Idle slots point at a closed port with weight 0 and in maintenance: they take no traffic.
    return "\n".join(
        f"  server {track} 127.0.0.1:{stable_port if track == 'stable' else 9} "
        f"weight {100 if track == 'stable' else 0} {CHECK}"
        f"{'' if track == 'stable' else ' disabled'}"
        for track in TRACKS
    )


def render_cells_config(
    *, port: int, stats_socket: Path, stable_ports: Mapping[str, int], map_file: Path
) -> str:
    """The router: `/v1/{tenant}/...` goes to the backend of the tenant's cell (the map file),
    and each cell's backend has its own three slots and weights. Nothing else decides."""
    backends = "\n".join(
        f"""backend {cell_backend(cell)}
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
{_servers(stable_port)}
"""
        for cell, stable_port in sorted(stable_ports.items())
    )
    return f"""# Written by delivery.launchers for a local environment with cells; weights change at
# runtime, the placement only with the map file.
{_head(stats_socket)}
frontend gateway
  bind 127.0.0.1:{port}
  http-request use-service prometheus-exporter if {{ path {METRICS_PATH} }}
  use_backend %[path,field(3,/),map({map_file},{UNPLACED})]
  default_backend {UNPLACED}

backend {UNPLACED}
  http-request return status 404 content-type text/plain string "tenant in no cell"

{backends}"""


class Runtime:
    """The runtime API over the admin socket: one command per connection."""

    def __init__(self, socket_path: Path, timeout: float = 2.0, backend: str = BACKEND) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.backend = backend  # a cell's own backend when the gateway routes cells

    def command(self, line: str) -> str:
        if "\n" in line:
            raise HAProxyError("one command per call")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.socket_path))
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise HAProxyError(f"HAProxy runtime API at {self.socket_path}: {exc}") from exc
        reply = b"".join(chunks).decode(errors="replace").strip()
        lowered = reply.lower()
        if any(word in lowered for word in ("unknown command", "no such", "invalid", "require")):
            raise HAProxyError(f"HAProxy refused {line!r}: {reply}")
        return reply

    def point(self, track: str, port: int) -> None:
        self.command(f"set server {self.backend}/{track} addr 127.0.0.1 port {port}")

    def set_weight(self, track: str, weight: int) -> None:
        if not 0 <= weight <= 256:
            raise HAProxyError(f"weight {weight} is outside HAProxy's 0..256")
        self.command(f"set weight {self.backend}/{track} {weight}")
        self.command(f"set server {self.backend}/{track} state {'ready' if weight else 'maint'}")
