"""Inputs the fuzzer found, kept as regression tests (each minimised by hand to its cause).

- An AVIF whose major brand is mangled: stored (201), then every rendition was a 500 (found by
  bench/reliability/fuzz_long.py, 2 of 100,000 inputs; fixed in the service by 3807475: now 415).
"""

from __future__ import annotations

from pathlib import Path

from reliability_kit import BRAVO_KEY, auth, in_process, seed_images


def avif_with_foreign_major_brand() -> bytes:
    """A real AVIF whose ftyp major brand is mangled ('a\\x7fif'); 'avif' stays compatible."""
    data = bytearray(seed_images()["avif"])
    at = data.index(b"ftyp") + 4
    assert data[at : at + 4] == b"avif"
    data[at + 1] = 0x7F
    return bytes(data)


def test_accepted_upload_always_renders(tmp_path: Path) -> None:
    with in_process(tmp_path / "store") as client:
        up = client.post(
            "/v1/bravo/images", content=avif_with_foreign_major_brand(), headers=auth(BRAVO_KEY)
        )
        assert up.status_code < 500
        if up.status_code == 201:
            for query in ("", "w=10", "format=png", "w=159&h=23&fit=fill"):
                reply = client.get(f"/v1/bravo/images/{up.json()['id']}?{query}")
                assert reply.status_code < 500, (query, reply.text)
