"""The composition root: the stack's name picks the layer (infra.layers), the layer's typed
config is parsed, and the layer's module builds its resources. `platform/__main__.py` calls
main()."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
from image_contracts.stacks import PROJECT

from infra import config
from infra.layers import Layer, StackId, parse_stack
from infra.stacks import account, environment, platform, service


def raw_config(layer: Layer) -> dict[str, str]:
    cfg = pulumi.Config(PROJECT)
    return {key: value for key in config.LAYER_KEYS[layer] if (value := cfg.get(key)) is not None}


def build(stack: StackId, raw: Mapping[str, str], region: str) -> dict[str, Any]:
    """Build one layer's resources; return its exports (pure dispatch over the layer)."""
    env = stack.environment
    if stack.layer is Layer.ACCOUNT:
        return account.build(config.parse_account(raw, region=region))
    if stack.layer is Layer.ENVIRONMENT:
        return environment.build(
            stack, config.parse_environment(raw, environment=env, region=region)
        )
    if stack.layer is Layer.PLATFORM:
        return platform.build(stack, config.parse_platform(raw, environment=env, region=region))
    return service.build(
        stack, config.parse_service(raw, environment=env, region=region, cell=stack.cell)
    )


def main() -> dict[str, Any]:
    stack = parse_stack(pulumi.get_stack())
    region = pulumi.Config("aws").require("region")
    exports = build(stack, raw_config(stack.layer), region)
    for key, value in exports.items():
        pulumi.export(key, value)
    return exports
