"""Test support: evaluate the program under Pulumi's mocks and record every resource it registers.

Used by tests/infra (policy, schema, checkov) and bench/platform. No engine, no cloud: the
mocks answer each registration with plausible outputs (ARNs, ids) so every apply() runs.

Only public SDK API: `pulumi.runtime.set_mocks`, `set_all_config` and `pulumi.runtime.test`
(which awaits every outstanding registration). Each evaluation owns a fresh event loop and
restores "no current loop" afterwards, so it neither needs nor leaves state for other tests
(an `asyncio.run()` elsewhere clears the current loop).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml
from image_contracts.stacks import PROJECT
from infra.layers import Layer, StackId, parse_stack
from pulumi.runtime import mocks

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
ENVIRONMENTS = ("dev", "staging", "prod")
ENVIRONMENT_LAYERS = (Layer.ENVIRONMENT, Layer.PLATFORM, Layer.SERVICE)
# Remote (multi-language) components register as one resource: answer with their outputs only.
REMOTE_COMPONENTS = ("awsx:ec2:Vpc",)
CALLER_IDENTITY = "aws:index/getCallerIdentity:getCallerIdentity"
GET_PARAMETER = "aws:ssm/getParameter:getParameter"
STACK_REFERENCE = "pulumi:pulumi:StackReference"
# The first `up` of a service stack sets stableVersion to a pushed image (README); so do tests.
PUSHED_VERSION = "4f2c1a9e0b7d"


@dataclass(frozen=True)
class Recorded:
    type: str
    name: str
    inputs: dict[str, Any]
    provider: str
    custom: bool
    # `type::name` of each resource this one waits for (depends_on and input dependencies).
    dependencies: tuple[str, ...] = ()

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
        if key == "aws:defaultTags":
            continue  # provider config, not read by the program
        if isinstance(value, dict) and "secure" in value:
            raise ValueError(f"{stack_file.name}: {key} is encrypted; mocks need plain values")
        out[key] = value if isinstance(value, str) else json.dumps(value)
    return out


def _remote_outputs(args: mocks.MockResourceArgs) -> dict[str, Any]:
    zones = int(args.inputs.get("numberOfAvailabilityZones", 3))
    return {
        "vpcId": "vpc-mock",
        "privateSubnetIds": [f"subnet-private-{i}" for i in range(zones)],
        "publicSubnetIds": [f"subnet-public-{i}" for i in range(zones)],
        "isolatedSubnetIds": [],
    }


def _arn(args: mocks.MockResourceArgs) -> str:
    """ARNs shaped as AWS shapes them, so policy tests can match principals to resources."""
    name = args.inputs.get("name", args.name)
    if args.typ == "aws:iam/role:Role":
        return f"arn:aws:iam::{ACCOUNT_ID}:role{args.inputs.get('path', '/')}{name}"
    if args.typ == "aws:iam/serviceLinkedRole:ServiceLinkedRole":
        service = args.inputs["awsServiceName"]
        suffix = {"autoscaling.amazonaws.com": "AutoScaling"}.get(service, service.split(".")[0])
        return (
            f"arn:aws:iam::{ACCOUNT_ID}:role/aws-service-role/{service}/AWSServiceRoleFor{suffix}"
        )
    if args.typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
        return (
            f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{args.inputs['url'].removeprefix('https://')}"
        )
    if args.typ == "aws:s3/bucket:Bucket":
        return f"arn:aws:s3:::{_bucket_name(args)}"
    service = args.typ.split(":")[1].split("/")[0] if ":" in args.typ else "x"
    return f"arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{args.name}"


def _bucket_name(args: mocks.MockResourceArgs) -> str:
    return str(args.inputs.get("bucket") or f"{args.name}-0a1b2c3")


def _short(urn: str) -> str:
    """`type::name` of a URN (urn:pulumi:stack::project::parent$type::name)."""
    qualified, name = urn.split("::")[-2:]
    return f"{qualified.split('$')[-1]}::{name}"


class RecordingMonitor(mocks.MockMonitor):
    """The SDK's mock monitor, noting each registration's dependencies for the mocks."""

    def __init__(self, recorder: RecordingMocks) -> None:
        super().__init__(recorder)
        self.recorder = recorder

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method's name
        deps = {*request.dependencies}
        for prop in request.propertyDependencies.values():
            deps.update(prop.urns)
        self.recorder.dependencies[(request.type, request.name)] = tuple(
            sorted(_short(u) for u in deps)
        )
        return super().RegisterResource(request)  # type: ignore[no-untyped-call]


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, references: Mapping[str, Mapping[str, Any]]) -> None:
        self.resources: list[Recorded] = []
        self.references = references
        self.dependencies: dict[tuple[str, str], tuple[str, ...]] = {}

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        self.resources.append(
            Recorded(
                args.typ,
                args.name,
                dict(args.inputs),
                args.provider or "",
                bool(args.custom),
                self.dependencies.get((args.typ, args.name), ()),
            )
        )
        if args.typ in REMOTE_COMPONENTS:
            return f"{args.name}-id", _remote_outputs(args)
        if args.typ == STACK_REFERENCE:
            stack = args.inputs["name"].rsplit("/", 1)[-1]
            if stack not in self.references:
                raise LookupError(f"stack reference to {stack}, which was not evaluated first")
            return stack, {
                "name": args.inputs["name"],
                "outputs": dict(self.references[stack]),
                "secretOutputNames": [],
            }
        if not args.custom:
            return None, {}
        outputs: dict[str, Any] = {
            **args.inputs,
            "arn": _arn(args),
            "name": args.inputs.get("name", args.name),
        }
        if args.typ == "aws:s3/bucket:Bucket":
            outputs["bucket"] = _bucket_name(args)
        if args.typ == "aws:ecr/repository:Repository":
            outputs["repositoryUrl"] = (
                f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/{outputs['name']}"
            )
        if args.typ == "aws:kms/key:Key":
            outputs["keyId"] = f"key-{args.name}"
        if args.typ == "aws:eks/cluster:Cluster":
            outputs |= {
                "endpoint": f"https://{args.name.upper()}.gr7.{REGION}.eks.amazonaws.com",
                "certificateAuthority": {"data": "Y2EtZGF0YQ=="},
                "identities": [
                    {
                        "oidcs": [
                            {"issuer": f"https://oidc.eks.{REGION}.amazonaws.com/id/{args.name}"}
                        ]
                    }
                ],
                "vpcConfig": {
                    **args.inputs.get("vpcConfig", {}),
                    "clusterSecurityGroupId": "sg-eks",
                },
            }
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
        if args.token == GET_PARAMETER:
            name = args.args["name"]
            return {"name": name, "value": "ami-0mock", "type": "String", "id": name}, []
        return {}, []


class _OwnLoopExecutor(ThreadPoolExecutor):
    """The mock monitor answers registrations on the loop's default executor, and each worker
    thread makes itself an event loop. Give every task a loop of its own and close it, so no
    loop outlives the evaluation (an unclosed loop is a ResourceWarning, an error here)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def run() -> Any:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                return fn(*args, **kwargs)
            finally:
                asyncio.set_event_loop(None)
                loop.close()

        return super().submit(run)


@dataclass(frozen=True)
class Evaluation:
    stack: StackId
    resources: list[Recorded]
    exports: dict[str, Any]


def evaluate(
    stack: str,
    config: Mapping[str, str],
    entry: Callable[[], Any] | None = None,
    references: Mapping[str, Mapping[str, Any]] | None = None,
) -> Evaluation:
    """Run the program (infra.program.main, or `entry`) for one stack under mocks; return every
    registration and the stack's exports. `references`: exports of lower stacks, by name."""
    from infra import program  # imported late: config and mocks must be in place first

    recorder = RecordingMocks(references or {})
    exports: dict[str, Any] = {}

    def run() -> Any:
        result = (entry or program.main)()
        if isinstance(result, dict):
            return pulumi.Output.from_input(result).apply(exports.update)
        return None

    loop = asyncio.new_event_loop()
    executor = _OwnLoopExecutor(max_workers=4)
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    try:
        pulumi.runtime.set_mocks(
            recorder,
            project=PROJECT,
            stack=stack,
            preview=False,
            monitor=RecordingMonitor(recorder),
        )
        pulumi.runtime.set_all_config(dict(config))
        pulumi.runtime.test(run)()  # type: ignore[no-untyped-call]
    finally:
        asyncio.set_event_loop(None)
        loop.close()
        executor.shutdown(wait=True)
    return Evaluation(parse_stack(stack), recorder.resources, exports)


def stack_file(environments: Path, stack: StackId) -> Path:
    return environments / f"Pulumi.{stack.name}.yaml"


def stack_ids(environment: str) -> list[StackId]:
    return [StackId(layer, environment) for layer in ENVIRONMENT_LAYERS]


def cell_stack_ids(environments: Path, environment: str) -> list[StackId]:
    """The environment's cell stacks (`<env>-service-<cell>`), one per stack file."""
    files = sorted(environments.glob(f"Pulumi.{environment}-service-*.yaml"))
    return [parse_stack(f.name.removeprefix("Pulumi.").removesuffix(".yaml")) for f in files]


def evaluate_estate(environments: Path) -> dict[str, Evaluation]:
    """The account stack, then every environment's stacks bottom-up, each reading the exports
    of the stacks below it, as `pulumi up` in the README's order would."""
    done: dict[str, Evaluation] = {}
    account = StackId(Layer.ACCOUNT)
    done[account.name] = evaluate(account.name, stack_config(stack_file(environments, account)))
    for env in ENVIRONMENTS:
        for stack in stack_ids(env) + cell_stack_ids(environments, env):
            config = stack_config(stack_file(environments, stack))
            if stack.layer is Layer.SERVICE:
                config.setdefault(f"{PROJECT}:stableVersion", PUSHED_VERSION)
            refs = {name: e.exports for name, e in done.items()}
            done[stack.name] = evaluate(stack.name, config, references=refs)
    return done


# Pulumi's key marking a wrapped secret property value (a marker, not a secret).
SECRET_SIG = "4dabf18193072939515e22adb298388d"


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


def waits_for(resources: list[Recorded], resource: Recorded) -> set[str]:
    """Every `type::name` a resource waits for, transitively (Pulumi creates those first)."""
    index = {f"{r.type}::{r.name}": r for r in resources}
    seen: set[str] = set()
    todo = list(resource.dependencies)
    while todo:
        key = todo.pop()
        if key not in seen:
            seen.add(key)
            todo += index[key].dependencies if key in index else []
    return seen
