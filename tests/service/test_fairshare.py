"""fairshare: the admission and ordering rules, as pure functions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from image_service.fairshare import Load, admit, next_tenant, running_cap, share_limit


def test_a_lone_tenant_may_use_everything() -> None:
    assert share_limit(6, "a", {}, {}) == 6
    assert admit(6, "a", {"a": Load(2, 3)}, {}).admitted
    assert not admit(6, "a", {"a": Load(2, 4)}, {}).admitted


def test_a_newcomer_is_admitted_and_the_heavy_tenant_is_held_back() -> None:
    loads = {"a": Load(2, 4)}
    assert admit(6, "b", loads, {}).admitted  # past the capacity: b is under its share
    refused = admit(6, "a", {**loads, "b": Load(0, 1)}, {})
    assert (refused.admitted, refused.code, refused.limit) == (False, "tenant_overloaded", 3)


def test_shares_weight_the_split() -> None:
    shares = {"big": 3.0, "small": 1.0}
    loads = {"big": Load(1, 0), "small": Load(1, 0)}
    assert share_limit(8, "big", loads, shares) == 6
    assert share_limit(8, "small", loads, shares) == 2


def test_the_hard_cap_holds_even_for_newcomers() -> None:
    loads = {f"t{i}": Load(1, 0) for i in range(12)}
    decision = admit(6, "new", loads, {})
    assert (decision.admitted, decision.code) == (False, "overloaded")


def test_next_worker_goes_to_the_least_served_then_the_oldest() -> None:
    loads = {"flood": Load(2, 10), "quiet": Load(0, 1), "other": Load(0, 1)}
    assert next_tenant({"flood": 1, "quiet": 9, "other": 5}, loads, {}) == "other"
    assert next_tenant({"flood": 1}, loads, {}) == "flood"
    assert next_tenant({}, loads, {}) is None


@given(
    capacity=st.integers(1, 64),
    held=st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 64), max_size=6),
    tenant=st.sampled_from("abcdef"),
)
def test_admission_never_passes_twice_the_capacity(
    capacity: int, held: dict[str, int], tenant: str
) -> None:
    loads = {t: Load(running=n) for t, n in held.items()}
    if admit(capacity, tenant, loads, {}).admitted:
        assert sum(held.values()) < 2 * capacity
        assert held.get(tenant, 0) < share_limit(capacity, tenant, loads, {})


def test_a_worker_is_kept_for_a_recently_active_tenant() -> None:
    assert running_cap(2, "flood", [], {}) == 2  # alone: every worker
    assert running_cap(2, "flood", ["quiet"], {}) == 1
    assert running_cap(4, "big", ["small"], {"big": 3.0}) == 3
    loads = {"flood": Load(1, 5)}
    caps = {"flood": 1}
    assert next_tenant({"flood": 1}, loads, {}, caps) is None  # capped: the worker waits
    assert next_tenant({"flood": 1}, loads, {}, {"flood": 2}) == "flood"
