"""Evaluate the whole program under Pulumi's mocks and record every resource it registers.

Used by tests/infra (policy, schema, checkov) and bench/platform. No engine, no cloud: the
mocks answer each registration with plausible outputs (ARNs, ids) so every apply() runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml
from image_contracts.stacks import PROJECT
from pulumi.runtime import mocks
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ACCOUNT_ID = "123456789012"
ENVIRONMENTS = ("dev", "staging", "prod")
# Remote (multi-language) components register as one resource: answer with their outputs only.
REMOTE_COMPONENTS = ("eks:index:Cluster", "awsx:ec2:Vpc")
CALLER_IDENTITY = "aws:index/getCallerIdentity:getCallerIdentity"


@dataclass(frozen=True)
class Recorded:
    type: str
    name: str
    inputs: dict[str, Any]
    provider: str
    custom: bool

    @property
    def is_kubernetes_object(self) -> bool:
        return (
            self.custom
            and self.type.startswith("kubernetes:")
            and not self.type.startswith(("kubernetes:helm.sh/", "pulumi:providers:"))
        )


def stack_config(stack_file: Path) -> dict[str, str]:
    """A stack file's `config:` as Pulumi hands it to a program: strings, with lists/objects as
    JSON text. Encrypted values cannot be read here and are refused."""
    document = yaml.safe_load(stack_file.read_text()) or {}
    out: dict[str, str] = {}
    for key, value in (document.get("config") or {}).items():
        if isinstance(value, dict) and "secure" in value:
            raise ValueError(f"{stack_file.name}: {key} is encrypted; mocks need plain values")
        out[key] = value if isinstance(value, str) else json.dumps(value)
    return out


def _remote_outputs(args: mocks.MockResourceArgs) -> dict[str, Any]:
    if args.typ == "eks:index:Cluster":
        issuer = f"oidc.eks.us-east-1.amazonaws.com/id/{args.name.upper()}"
        kubeconfig = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": []}
        return {
            "kubeconfig": kubeconfig,
            "kubeconfigJson": json.dumps(kubeconfig),
            "oidcProviderArn": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{issuer}",
            "oidcProviderUrl": issuer,
            "oidcIssuer": issuer,
            "clusterSecurityGroupId": "sg-cluster",
        }
    zones = int(args.inputs.get("numberOfAvailabilityZones", 3))
    return {
        "vpcId": "vpc-mock",
        "privateSubnetIds": [f"subnet-private-{i}" for i in range(zones)],
        "publicSubnetIds": [f"subnet-public-{i}" for i in range(zones)],
        "isolatedSubnetIds": [],
    }


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Recorded] = []

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        self.resources.append(
            Recorded(args.typ, args.name, dict(args.inputs), args.provider or "", bool(args.custom))
        )
        if args.typ in REMOTE_COMPONENTS:
            return f"{args.name}-id", _remote_outputs(args)
        if not args.custom:
            return None, {}
        service = args.typ.split(":")[1].split("/")[0] if ":" in args.typ else "x"
        outputs: dict[str, Any] = {
            **args.inputs,
            "arn": f"arn:aws:{service}:us-east-1:{ACCOUNT_ID}:{args.name}",
            "name": args.inputs.get("name", args.name),
        }
        if args.typ == "aws:s3/bucket:Bucket":
            outputs["bucket"] = f"{args.name}-0a1b2c3"
            outputs["arn"] = f"arn:aws:s3:::{args.name}-0a1b2c3"
        if args.typ == "aws:ecr/repository:Repository":
            outputs["repositoryUrl"] = f"{ACCOUNT_ID}.dkr.ecr.us-east-1.amazonaws.com/{args.name}"
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            outputs["latestVersion"] = 1
        if args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = f"mock-secret-{args.name}"
        return f"{args.name}-id", outputs

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]]]:
        if args.token == CALLER_IDENTITY:
            return (
                {
                    "accountId": ACCOUNT_ID,
                    "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/mock",
                    "userId": "mock",
                    "id": ACCOUNT_ID,
                },
                [],
            )
        return {}, []


def evaluate(
    stack: str, config: Mapping[str, str], entry: Callable[[], None] | None = None
) -> list[Recorded]:
    """Run the program (infra.program.main, or `entry`) for one stack under mocks; return every
    registration."""
    from infra import program  # imported late: config and mocks must be in place first

    recorder = RecordingMocks()
    pulumi.runtime.set_mocks(recorder, project=PROJECT, stack=stack, preview=False)
    pulumi.runtime.set_all_config(dict(config))
    settings = pulumi.runtime.settings.SETTINGS
    settings.rpc_manager.clear()
    settings.outputs.clear()
    _sync_await(run_pulumi_func(entry or program.main))
    return recorder.resources


def evaluate_stack_file(stack_file: Path) -> list[Recorded]:
    stack = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
    return evaluate(stack, stack_config(stack_file))


# Pulumi's key marking a wrapped secret property value (a marker, not a secret).
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105


def _ints(value: Any) -> Any:
    # The mock monitor hands numbers back as floats (protobuf Struct); manifests used ints.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        if SECRET_SIG in value and "value" in value:
            return _ints(value["value"])
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def manifest(resource: Recorded) -> dict[str, Any]:
    """The Kubernetes object a recorded resource applies, as a plain manifest."""
    if not resource.is_kubernetes_object:
        raise ValueError(f"{resource.type} {resource.name} is not a Kubernetes object")
    body = _ints(resource.inputs)
    return {k: v for k, v in body.items() if v is not None}
