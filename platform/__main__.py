"""Pulumi entry point (Pulumi.yaml `main: platform/`); the composition root is infra.program."""

from infra.program import main

main()
