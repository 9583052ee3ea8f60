"""Names and labels of every Kubernetes object, by apimachinery's rules (k8s.io/apimachinery
pkg/util/validation): what the API server refuses is refused here first."""

import re
from collections.abc import Iterator
from typing import Any

import pytest
from pulumi_harness import ENVIRONMENTS, Recorded, manifest

_NAME63 = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(rf"{DNS1123_LABEL.pattern}(\.{DNS1123_LABEL.pattern})*")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# Kinds whose names are DNS labels rather than subdomains (Service: RFC 1035).
LABEL_NAMED = {"Namespace": DNS1123_LABEL, "Service": DNS1035_LABEL}


def label_key_errors(key: str) -> list[str]:
    prefix, _, name = key.rpartition("/")
    out = []
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.fullmatch(prefix)):
        out.append(f"label key prefix {prefix!r}")
    if not name or len(name) > 63 or not re.fullmatch(_NAME63, name):
        out.append(f"label key name {name!r}")
    return out


def label_value_errors(value: Any) -> list[str]:
    text = str(value)
    if text and (len(text) > 63 or not re.fullmatch(_NAME63, text)):
        return [f"label value {text!r}"]
    return []


def name_errors(kind: str, name: str) -> list[str]:
    rule = LABEL_NAMED.get(kind, DNS1123_SUBDOMAIN)
    limit = 63 if kind in LABEL_NAMED else 253
    return [] if len(name) <= limit and rule.fullmatch(name) else [f"{kind} name {name!r}"]


def _label_maps(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        for key, child in value.items():
            if key in ("labels", "matchLabels") and isinstance(child, dict):
                yield child
            else:
                yield from _label_maps(child)
    elif isinstance(value, list):
        for child in value:
            yield from _label_maps(child)


def object_errors(obj: dict[str, Any]) -> list[str]:
    out = name_errors(obj["kind"], obj["metadata"]["name"])
    namespace = obj["metadata"].get("namespace")
    if namespace:
        out += name_errors("Namespace", namespace)
    for labels in _label_maps(obj):
        for key, value in labels.items():
            out += label_key_errors(key) + label_value_errors(value)
    return out


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_names_and_labels_follow_apimachinery(
    recorded: dict[str, list[Recorded]], env: str
) -> None:
    objects = [manifest(r) for r in recorded[env] if r.is_kubernetes_object]
    assert len(objects) > 30
    problems = {
        f"{o['kind']}/{o['metadata']['name']}": e for o in objects if (e := object_errors(o))
    }
    assert problems == {}


@pytest.mark.parametrize(
    ("kind", "name", "labels", "bad"),
    [
        ("Deployment", "x", {"version": "sha256:" + "a" * 64}, "label value"),  # a digest
        ("Deployment", "x", {"version": "a" * 64}, "label value"),
        ("Deployment", "x", {"app.kubernetes.io/Name!": "a"}, "label key name"),
        ("Service", "9lives", {}, "Service name"),
        ("Namespace", "a.b", {}, "Namespace name"),
        ("ConfigMap", "Upper", {}, "ConfigMap name"),
    ],
)
def test_the_rules_refuse_what_the_api_server_refuses(
    kind: str, name: str, labels: dict[str, str], bad: str
) -> None:
    obj = {"kind": kind, "metadata": {"name": name, "labels": labels}}
    assert any(bad in e for e in object_errors(obj))
