"""Evaluate every environment's whole program under Pulumi mocks once per session."""

from pathlib import Path

import pytest
from infra.mock_harness import ENVIRONMENTS, Recorded, evaluate_stack_file


@pytest.fixture(scope="session")
def recorded(repo_root: Path) -> dict[str, list[Recorded]]:
    return {
        env: evaluate_stack_file(repo_root / "environments" / f"Pulumi.{env}.yaml")
        for env in ENVIRONMENTS
    }
