"""Property tests (hypothesis) for option parsing, canonical form and signatures."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from image_contracts.renditions import FITS, GRAVITIES
from image_service.errors import DomainError
from image_service.http_errors import status_of
from image_service.options import (
    FORMATS,
    RenditionOptions,
    canonical_query,
    parse_options,
    split_query,
)
from image_service.signing import sign, verify

MAX = 8192
dprs = st.builds(lambda n: Decimal(n) / 100, st.integers(100, 400))
options = st.builds(
    RenditionOptions,
    width=st.none() | st.integers(1, 2048),
    height=st.none() | st.integers(1, 2048),
    fit=st.sampled_from(FITS),
    gravity=st.sampled_from(GRAVITIES),
    format=st.none() | st.sampled_from(FORMATS),
    quality=st.integers(1, 100),
    dpr=dprs,
)
secrets = st.binary(min_size=1, max_size=64)
tenant_ids = st.from_regex(r"[a-z0-9-]{1,63}", fullmatch=True)
image_ids = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)


def outcome(call: Callable[[], object]) -> DomainError | None:
    """The DomainError a call raises, or None; any other exception fails the test."""
    try:
        call()
    except DomainError as exc:
        return exc
    return None


@given(options)
def test_canonical_form_round_trips(opts: RenditionOptions) -> None:
    parsed, sig = parse_options(split_query(canonical_query(opts)), MAX)
    assert parsed == opts
    assert sig is None


@given(options, st.randoms())
def test_parameter_order_does_not_matter(opts: RenditionOptions, rnd: object) -> None:
    pairs = split_query(canonical_query(opts))
    shuffled = list(pairs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert parse_options(shuffled, MAX) == parse_options(pairs, MAX)


@given(st.text(max_size=200))
@settings(max_examples=300)
def test_any_query_string_parses_or_is_a_clean_4xx(query: str) -> None:
    error = outcome(lambda: parse_options(split_query(query), MAX))
    assert error is None or (400 <= status_of(error.code) < 500 and error.detail)


@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=12)), max_size=8))
def test_any_pairs_parse_or_are_a_clean_4xx(pairs: list[tuple[str, str]]) -> None:
    error = outcome(lambda: parse_options(pairs, MAX))
    if error is not None:
        assert 400 <= status_of(error.code) < 500
    else:
        opts, _ = parse_options(pairs, MAX)
        assert opts.quality in range(1, 101)
        assert Decimal(1) <= opts.dpr <= Decimal(4)


@given(secrets, tenant_ids, image_ids, options)
@settings(max_examples=50)
def test_signature_verifies(secret: bytes, tenant: str, iid: str, opts: RenditionOptions) -> None:
    assert verify((secret,), tenant, iid, opts, sign(secret, tenant, iid, opts))
    assert verify((b"other", secret), tenant, iid, opts, sign(secret, tenant, iid, opts))


@given(secrets, tenant_ids, image_ids, options, options)
@settings(max_examples=50)
def test_signature_binds_the_options(
    secret: bytes, tenant: str, iid: str, a: RenditionOptions, b: RenditionOptions
) -> None:
    same = canonical_query(a) == canonical_query(b)
    assert verify((secret,), tenant, iid, b, sign(secret, tenant, iid, a)) == same


@given(secrets, secrets, tenant_ids, tenant_ids, image_ids, image_ids, options)
@settings(max_examples=50)
def test_signature_binds_secret_tenant_and_image(
    s1: bytes, s2: bytes, t1: str, t2: str, i1: str, i2: str, opts: RenditionOptions
) -> None:
    sig = sign(s1, t1, i1, opts)
    assert verify((s2,), t1, i1, opts, sig) == (s1 == s2)
    assert verify((s1,), t2, i1, opts, sig) == (t1 == t2)
    assert verify((s1,), t1, i2, opts, sig) == (i1 == i2)


@given(secrets, options, st.text(max_size=60))
def test_forged_signatures_fail_without_crashing(
    secret: bytes, opts: RenditionOptions, forged: str
) -> None:
    real = sign(secret, "t", "0" * 64, opts)
    assert verify((secret,), "t", "0" * 64, opts, forged) == (forged == real)


def test_sign_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from image_service.sign import main

    monkeypatch.setenv("SECRET_X", "s3cret")
    iid = "a" * 64
    common = ["--tenant", "t", "--id", iid, "--secret"]
    assert main([*common, "env:SECRET_X", "format=webp&w=400"]) == 0
    out = capsys.readouterr().out.strip()
    sig = sign(b"s3cret", "t", iid, RenditionOptions(width=400, format="webp"))
    assert out == f"http://127.0.0.1:8080/v1/t/images/{iid}?w=400&format=webp&sig={sig}"
    assert main([*common, "env:UNSET_X"]) == 2
    assert main([*common, "env:SECRET_X", "w=-3"]) == 2
