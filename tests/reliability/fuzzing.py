"""Structure-agnostic mutations of real images, as hypothesis strategies.

A mutation is pure data (kind, where, what), so a failing example shrinks to a readable recipe.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import strategies as st

INTERESTING = [
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\x7f\xff\xff\xff",
    b"\xff\xd9",
    b"IEND",
    b"IDAT",
    b"\xff\xc0",
    b";",
]


@dataclass(frozen=True)
class Mutation:
    kind: str  # flip | set | insert | delete | truncate | duplicate | splice
    where: float  # 0..1, relative position (so it applies to any length)
    data: bytes
    span: int


def apply(seed: bytes, mutations: list[Mutation], donors: list[bytes]) -> bytes:
    out = bytearray(seed)
    for m in mutations:
        if not out:
            break
        at = min(len(out) - 1, int(m.where * len(out)))
        if m.kind == "flip":
            out[at] ^= 1 << (m.span % 8)
        elif m.kind == "set":
            out[at : at + len(m.data)] = m.data
        elif m.kind == "insert":
            out[at:at] = m.data * max(1, m.span % 64)
        elif m.kind == "delete":
            del out[at : at + m.span]
        elif m.kind == "truncate":
            del out[at:]
        elif m.kind == "duplicate":
            out[at:at] = out[at : at + m.span]
        elif m.kind == "splice" and donors:
            donor = donors[m.span % len(donors)]
            start = int(m.where * len(donor))
            out[at:] = donor[start:]
    return bytes(out)


mutations = st.lists(
    st.builds(
        Mutation,
        kind=st.sampled_from(
            ["flip", "set", "insert", "delete", "truncate", "duplicate", "splice"]
        ),
        where=st.floats(0, 1),
        data=st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=16)),
        span=st.integers(0, 4096),
    ),
    min_size=0,
    max_size=6,
)

queries = st.one_of(
    st.just(""),
    st.builds(
        lambda w, h, fit, fmt, q: "&".join(
            p
            for p in (
                f"w={w}" if w else "",
                f"h={h}" if h else "",
                f"fit={fit}" if fit else "",
                f"format={fmt}" if fmt else "",
                f"q={q}" if q else "",
            )
            if p
        ),
        # Small outputs: robustness does not depend on size, and GIF/AVIF encodes are slow.
        st.one_of(st.none(), st.integers(1, 160)),
        st.one_of(st.none(), st.integers(1, 160)),
        st.one_of(st.none(), st.sampled_from(["inside", "cover", "contain", "fill", "outside"])),
        st.one_of(st.none(), st.sampled_from(["jpeg", "png", "webp", "avif", "gif"])),
        st.one_of(st.none(), st.integers(1, 100)),
    ),
)


KINDS = ["flip", "set", "insert", "delete", "truncate", "duplicate", "splice"]
FITS = ["inside", "cover", "contain", "fill", "outside"]
OUTPUTS = ["jpeg", "png", "webp", "avif", "gif"]


def random_mutations(rng: random.Random) -> list[Mutation]:
    """The same mutation space as `mutations`, drawn with plain `random` (the long run's speed)."""
    out = []
    for _ in range(rng.randint(0, 6)):
        data = rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 16))
        out.append(Mutation(rng.choice(KINDS), rng.random(), data, rng.randint(0, 4096)))
    return out


def random_query(rng: random.Random) -> str:
    parts = []
    if rng.random() < 0.7:
        parts.append(f"w={rng.randint(1, 160)}")
    if rng.random() < 0.4:
        parts.append(f"h={rng.randint(1, 160)}")
    if rng.random() < 0.4:
        parts.append(f"fit={rng.choice(FITS)}")
    if rng.random() < 0.6:
        parts.append(f"format={rng.choice(OUTPUTS)}")
    if rng.random() < 0.3:
        parts.append(f"q={rng.randint(1, 100)}")
    return "&".join(parts)
