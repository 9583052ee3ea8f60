"""The four layers of the estate and the one naming formula for stacks and resources.

Each layer is a Pulumi stack of the one project (Pulumi.yaml at the repository root):

- ``account``: once per AWS account (GitHub OIDC provider, CI roles, ECR, state and ledger
  buckets, the secrets-provider key, service-linked roles, account-wide settings);
- ``<env>-environment``: network, cluster, the in-VPC runner that reaches the private API;
- ``<env>-platform``: what runs in the cluster for every service (observability, gateway);
- ``<env>-service`` (or ``<env>-service-<cell>``): one service's deployments and route. A canary
  step runs only this stack.

A lower layer never reads a higher one; higher layers read lower ones through stack references.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from image_contracts.stacks import PROJECT
from image_contracts.tenants import CELL_NAME

ACCOUNT_STACK = "account"


class Layer(Enum):
    ACCOUNT = "account"
    ENVIRONMENT = "environment"
    PLATFORM = "platform"
    SERVICE = "service"


ORDER = (Layer.ACCOUNT, Layer.ENVIRONMENT, Layer.PLATFORM, Layer.SERVICE)
_STACK = re.compile(
    r"(?P<env>[a-z][a-z0-9]{1,15})-(?P<layer>environment|platform|service)"
    rf"(-(?P<cell>{CELL_NAME.pattern}))?"  # the contract's cell name, e.g. dev-service-dev-a
)


@dataclass(frozen=True)
class StackId:
    layer: Layer
    environment: str = ""  # empty for the account layer
    cell: str = ""  # service stacks only: one environment can hold several cells

    @property
    def name(self) -> str:
        if self.layer is Layer.ACCOUNT:
            return ACCOUNT_STACK
        base = f"{self.environment}-{self.layer.value}"
        return f"{base}-{self.cell}" if self.cell else base

    def lower(self, layer: Layer) -> StackId:
        """The stack of a lower layer this stack reads (same environment)."""
        if ORDER.index(layer) >= ORDER.index(self.layer):
            raise ValueError(f"{self.name} may only read layers below {self.layer.value}")
        return StackId(layer, "" if layer is Layer.ACCOUNT else self.environment)


def parse_stack(name: str) -> StackId:
    if name == ACCOUNT_STACK:
        return StackId(Layer.ACCOUNT)
    match = _STACK.fullmatch(name)
    if match is None:
        raise ValueError(
            f"stack {name!r}: expected 'account', '<env>-environment', '<env>-platform' or "
            "'<env>-service[-<cell>]'"
        )
    layer = Layer(match["layer"])
    if match["cell"] and layer is not Layer.SERVICE:
        raise ValueError(f"stack {name!r}: only service stacks have cells")
    return StackId(layer, match["env"], match["cell"] or "")


def stack_reference(stack: StackId, organization: str = "organization") -> str:
    """Fully qualified stack name; a self-managed backend's organization is `organization`."""
    return f"{organization}/{PROJECT}/{stack.name}"


def prefix(environment: str) -> str:
    """The one formula for physical and Pulumi resource names of an environment."""
    return f"{PROJECT}-{environment}"
