"""Evaluate the whole estate under Pulumi mocks once per session: the account stack, then each
environment's environment, platform and service stacks, each reading the ones below it."""

from pathlib import Path

import pytest
from infra.layers import Layer, StackId
from pulumi_harness import (
    ENVIRONMENTS,
    Evaluation,
    Recorded,
    cell_stack_ids,
    evaluate_estate,
    stack_ids,
)


@pytest.fixture(scope="session")
def estate(repo_root: Path) -> dict[str, Evaluation]:
    return evaluate_estate(repo_root / "environments")


@pytest.fixture(scope="session")
def recorded(estate: dict[str, Evaluation], repo_root: Path) -> dict[str, list[Recorded]]:
    """Per environment, every resource it runs on: the account stack, its own three and its
    cells' service stacks, so every policy test covers the cells too."""
    account = estate[StackId(Layer.ACCOUNT).name].resources
    environments = repo_root / "environments"
    return {
        env: account
        + [
            r
            for stack in stack_ids(env) + cell_stack_ids(environments, env)
            for r in estate[stack.name].resources
        ]
        for env in ENVIRONMENTS
    }


@pytest.fixture(scope="session")
def account(estate: dict[str, Evaluation]) -> list[Recorded]:
    return estate[StackId(Layer.ACCOUNT).name].resources
