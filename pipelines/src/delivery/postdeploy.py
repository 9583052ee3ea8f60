"""Post-deploy checks with testinfra, against the canary before any traffic shifts to it.

Locally the `local://` backend inspects the canary process; on EKS the `kubectl://` backend runs the
same checks inside the canary pod (pid 1 there). Checks:
- the process runs as a non-root user;
- it listens only on the expected address(es), nowhere else;
- the libvips it loaded is the one from its own environment (not a stray system copy), and a
  libvips is loaded at all.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from delivery.target import Check

TCP_LISTEN = "0A"


@dataclass(frozen=True)
class CheckSpec:
    pid: int
    expected_listen: frozenset[str]  # "127.0.0.1:8123"
    libvips_prefix: str  # the loaded libvips must live under this path


def _hex_addr(raw: str) -> str:
    """`0100007F:1F90` from /proc/net/tcp -> `127.0.0.1:8080` (IPv4 only; IPv6 shown raw)."""
    addr, port = raw.split(":")
    if len(addr) == 8:
        octets = [str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0)]
        return f"{'.'.join(octets)}:{int(port, 16)}"
    return f"[{addr}]:{int(port, 16)}"


def listening(tcp_tables: Iterable[str], inodes: set[str]) -> set[str]:
    """Listening addresses among /proc/net/tcp{,6} rows whose socket inode is the process's."""
    found: set[str] = set()
    for table in tcp_tables:
        for line in table.splitlines()[1:]:
            cols = line.split()
            if len(cols) > 9 and cols[3] == TCP_LISTEN and cols[9] in inodes:
                found.add(_hex_addr(cols[1]))
    return found


def run_checks(host: Any, spec: CheckSpec) -> list[Check]:
    """`host` is a testinfra Host (local:// or kubectl://)."""
    checks: list[Check] = []
    proc = host.process.get(pid=spec.pid)
    checks.append(
        Check(
            "runs as non-root",
            proc.user not in {"root", "0"},
            f"pid {spec.pid} runs as {proc.user!r}",
        )
    )
    fd_links = host.run(f"find /proc/{spec.pid}/fd -lname 'socket:*' -printf '%l\\n'")
    inodes = {line[8:-1] for line in fd_links.stdout.split() if line.startswith("socket:[")}
    tables = [
        host.file(path).content_string
        for path in (f"/proc/{spec.pid}/net/tcp", f"/proc/{spec.pid}/net/tcp6")
        if host.file(path).exists
    ]
    actual = listening(tables, inodes)
    checks.append(
        Check(
            "listens only where expected",
            actual == set(spec.expected_listen),
            f"listening on {sorted(actual)}, expected {sorted(spec.expected_listen)}",
        )
    )
    maps = host.file(f"/proc/{spec.pid}/maps").content_string
    libs = sorted({line.split()[-1] for line in maps.splitlines() if "libvips" in line})
    own = bool(libs) and all(path.startswith(spec.libvips_prefix) for path in libs)
    checks.append(
        Check(
            "loads its own libvips",
            own,
            f"libvips mapped from {libs or 'nowhere'}; expected under {spec.libvips_prefix}",
        )
    )
    return checks
