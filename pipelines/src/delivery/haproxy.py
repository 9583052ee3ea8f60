"""HAProxy as the local gateway: a config file once, then weights through the runtime API.

One backend with three fixed server slots (stable, baseline, canary). Deliveries never reload
HAProxy: they point a slot at a process (`set server ... addr`) and set its weight, which is how
the HTTPRoute weights behave on EKS.
"""

import socket
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
    # Idle slots point at a closed port with weight 0 and in maintenance: they take no traffic.
    servers = "\n".join(
        f"  server {track} 127.0.0.1:{stable_port if track == 'stable' else 9} "
        f"weight {100 if track == 'stable' else 0} {CHECK}"
        f"{'' if track == 'stable' else ' disabled'}"
        for track in TRACKS
    )
    return f"""# Written by delivery.launchers; weights change at runtime, never here.
global
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


class Runtime:
    """The runtime API over the admin socket: one command per connection."""

    def __init__(self, socket_path: Path, timeout: float = 2.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

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
        self.command(f"set server {BACKEND}/{track} addr 127.0.0.1 port {port}")

    def set_weight(self, track: str, weight: int) -> None:
        if not 0 <= weight <= 256:
            raise HAProxyError(f"weight {weight} is outside HAProxy's 0..256")
        self.command(f"set weight {BACKEND}/{track} {weight}")
        self.command(f"set server {BACKEND}/{track} state {'ready' if weight else 'maint'}")
