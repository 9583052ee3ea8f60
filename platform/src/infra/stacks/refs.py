"""Reading a lower layer: one StackReference per layer, typed getters over its outputs."""

from __future__ import annotations

from typing import Any

import pulumi

from infra.layers import Layer, StackId, stack_reference

Exports = dict[str, Any]


class Lower:
    """The outputs of the stack of `layer` below `stack` (same environment)."""

    def __init__(self, stack: StackId, layer: Layer) -> None:
        target = stack.lower(layer)
        organization = pulumi.get_organization() or "organization"
        self._ref = pulumi.StackReference(
            f"{target.name}-ref", stack_name=stack_reference(target, organization)
        )

    def get(self, name: str) -> pulumi.Output[Any]:
        return self._ref.require_output(name)

    def item(self, name: str, key: str) -> pulumi.Output[Any]:
        return self._ref.require_output(name).apply(lambda mapping: mapping[key])
