"""Evaluate the whole estate under Pulumi mocks once per session: the account stack, then each
environment's environment, platform and service stacks, each reading the ones below it."""

from pathlib import Path

import pytest
from infra.layers import Layer, StackId
from pulumi_harness import ENVIRONMENTS, Evaluation, Recorded, evaluate_estate, stack_ids


@pytest.fixture(scope="session")
def estate(repo_root: Path) -> dict[str, Evaluation]:
    return evaluate_estate(repo_root / "environments")


@pytest.fixture(scope="session")
def recorded(estate: dict[str, Evaluation]) -> dict[str, list[Recorded]]:
    """Per environment, every resource it runs on: the account stack and its own three."""
    account = estate[StackId(Layer.ACCOUNT).name].resources
    return {
        env: account + [r for stack in stack_ids(env) for r in estate[stack.name].resources]
        for env in ENVIRONMENTS
    }


@pytest.fixture(scope="session")
def account(estate: dict[str, Evaluation]) -> list[Recorded]:
    return estate[StackId(Layer.ACCOUNT).name].resources
