"""Slow upload bodies: a tenant's stalled connections cost only that tenant, and end in time.

Real server, raw sockets: connections send upload headers and then nothing. Another tenant's
uploads must keep working at once, and the stalled ones get the documented JSON refusal within
the configured body deadline.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
from reliability_kit import ALPHA_KEY, BRAVO_KEY, Starter, auth, record, seed_images

BODY_SECONDS = 2.0


def stalled_upload(port: int, key: str) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn.sendall(
        b"POST /v1/alpha/images HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: 100000\r\n\r\n".encode()
        + b"\xff\xd8\xff"  # a few bytes, then silence
    )
    return conn


def read_reply(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_stalled_bodies_hold_no_other_tenants_slot(service: Starter) -> None:
    proc = service(
        IMAGE_SERVICE_WORKERS="1",
        IMAGE_SERVICE_QUEUE_SIZE="1",
        IMAGE_SERVICE_BODY_TIMEOUT_SECONDS=str(BODY_SECONDS),
    )
    jpeg = seed_images()["jpeg"]
    stalled = [stalled_upload(proc.port, ALPHA_KEY) for _ in range(10)]
    started = time.monotonic()
    try:
        time.sleep(0.3)  # every stalled request has reached the handler
        with httpx.Client(base_url=proc.url, timeout=10) as client:
            replies = [
                client.post("/v1/bravo/images", content=jpeg, headers=auth(BRAVO_KEY))
                for _ in range(5)
            ]
        bravo_seconds = time.monotonic() - started
        assert [r.status_code for r in replies] == [201] * 5, [r.text for r in replies]
        assert bravo_seconds < BODY_SECONDS, "bravo waited for alpha's stalled bodies"
        ended = []
        for conn in stalled:
            reply = read_reply(conn)
            ended.append(time.monotonic() - started)
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.split(b" ")[1] in (b"408", b"429", b"503"), reply
            assert json.loads(body)["error"]
    finally:
        for conn in stalled:
            conn.close()
    # Every stalled connection was answered and closed within the deadline (plus slack).
    assert max(ended) < BODY_SECONDS + 2.0, ended
    record("slow_bodies", bravo_seconds=round(bravo_seconds, 3), slowest=round(max(ended), 3))
