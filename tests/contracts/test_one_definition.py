"""Each shared contract has one definition: no member keeps its own copy that could drift.

The scan reads every Python file outside contracts/ and looks for the literal shapes of a copy:
the three track names together, the latency bucket edges, a metric name, the Pulumi project name.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import yaml
from image_contracts import metrics, renditions, stacks
from image_contracts.tracks import TRACKS

SCANNED = ("service", "pipelines", "platform", "bench")


def python_files(repo_root: Path) -> Iterator[Path]:
    for top in SCANNED:
        yield from (repo_root / top).rglob("*.py")


def copies(tree: ast.AST) -> Iterator[tuple[int, str]]:
    names = {metrics.REQUESTS, metrics.REQUEST_DURATION, metrics.REQUEST_DURATION_BUCKET}
    names.add(metrics.REQUESTS.removesuffix("_total"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            strings = {e.value for e in node.elts if isinstance(e, ast.Constant)}
            if set(TRACKS) <= strings:
                yield node.lineno, "the track names"
            if len(strings & set(renditions.GRAVITIES)) >= 4:
                yield node.lineno, "the rendition gravities"
            numbers = tuple(
                e.value for e in node.elts if isinstance(e, ast.Constant) and type(e.value) is float
            )
            if len(numbers) >= 6 and set(numbers) <= set(metrics.LATENCY_BUCKETS):
                yield node.lineno, "the latency bucket edges"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in names:
                yield node.lineno, f"metric name {node.value}"
            if node.value == stacks.PROJECT:
                yield node.lineno, "the Pulumi project name"


def test_no_member_keeps_a_copy_of_a_shared_contract(repo_root: Path) -> None:
    found = [
        f"{path.relative_to(repo_root)}:{line}: {what}"
        for path in python_files(repo_root)
        for line, what in copies(ast.parse(path.read_text(), str(path)))
    ]
    assert found == []


def test_the_scan_finds_a_planted_copy() -> None:
    # Negative control: each shape the scan looks for is found when it is there.
    planted = ast.parse(
        'TRACKS = ("stable", "baseline", "canary")\n'
        "B = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)\n"
        'N = "image_service_http_requests_total"\n'
        'P = "image-platform"\n'
        'G = ("center", "north", "south", "east", "west")\n'
    )
    assert [what for _, what in copies(planted)] == [
        "the track names",
        "the latency bucket edges",
        "metric name image_service_http_requests_total",
        "the Pulumi project name",
        "the rendition gravities",
    ]


def test_pulumi_project_file_names_the_contract_project(repo_root: Path) -> None:
    project = yaml.safe_load((repo_root / "Pulumi.yaml").read_text())
    assert project["name"] == stacks.PROJECT
    declared = set(project["config"])
    for key in (stacks.STABLE_VERSION_KEY, stacks.CANARY_VERSION_KEY, stacks.CANARY_WEIGHT_KEY):
        assert stacks.config_key(key) in declared
