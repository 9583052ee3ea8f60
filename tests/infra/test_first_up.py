"""The first `pulumi up` on a fresh account, checked against the rules of the world that broke
it before (issue 11): AWS's, GitHub's and the providers' documented behaviour, not the program's
own constants. Each test names the rule it encodes."""

import fnmatch
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from image_contracts.stacks import PROJECT
from infra.layers import ORDER, Layer
from pulumi_harness import ACCOUNT_ID, ENVIRONMENTS, Evaluation, Recorded, stack_ids, waits_for

Estate = dict[str, Evaluation]


def _of(resources: list[Recorded], type_: str) -> list[Recorded]:
    return [r for r in resources if r.type == type_]


def _layer_index(evaluation: Evaluation) -> int:
    return ORDER.index(evaluation.stack.layer)


def _below_or_same(estate: Estate, evaluation: Evaluation) -> list[Evaluation]:
    """Stacks that exist before this one: its own, the account, and lower layers of its env."""
    return [
        e
        for e in estate.values()
        if _layer_index(e) <= _layer_index(evaluation)
        and e.stack.environment in ("", evaluation.stack.environment)
    ]


# --- 1. CoreDNS needs nodes (pulumi-eks#1819) -----------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_coredns_waits_for_the_node_group(estate: Estate, env: str) -> None:
    resources = estate[f"{env}-environment"].resources
    # pulumi-eks's component creates CoreDNS inside itself, before any managed node group that
    # depends on the component: the add-on stays DEGRADED and the update stalls.
    for component in _of(resources, "eks:index:Cluster"):
        options = component.inputs.get("corednsAddonOptions", {})
        skips_nodes = component.inputs.get("skipDefaultNodeGroup") is True
        assert not (skips_nodes and options.get("enabled", True)), "CoreDNS without nodes"
    addons = {a.inputs["addonName"]: a for a in _of(resources, "aws:eks/addon:Addon")}
    groups = {f"{g.type}::{g.name}" for g in _of(resources, "aws:eks/nodeGroup:NodeGroup")}
    assert groups, "no managed node group"
    assert groups <= waits_for(resources, addons["coredns"])
    # ...and the nodes need the CNI and kube-proxy, which must not wait for the nodes.
    for group in _of(resources, "aws:eks/nodeGroup:NodeGroup"):
        before = waits_for(resources, group)
        for name in ("vpc-cni", "kube-proxy"):
            assert f"aws:eks/addon:Addon::{addons[name].name}" in before, name


# --- 2. KMS (and bucket) policy principals must exist ----------------------------------------


def _principals(document: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for statement in document.get("Statement", []):
        principal = statement.get("Principal", {})
        if isinstance(principal, dict):
            value = principal.get("AWS", [])
            out += [value] if isinstance(value, str) else value
    return out


def test_policy_principals_exist_before_the_policy(estate: Estate) -> None:
    # KMS rejects a key policy naming a principal that does not exist (MalformedPolicyDocument);
    # S3 bucket policies likewise. The Auto Scaling service-linked role exists only after the
    # account's first Auto Scaling group, unless a lower stack creates it.
    root = f"arn:aws:iam::{ACCOUNT_ID}:root"
    checked = 0
    for evaluation in estate.values():
        known = {
            r_arn
            for e in _below_or_same(estate, evaluation)
            for r in e.resources
            if (r_arn := _role_arn(r))
        }
        for r in evaluation.resources:
            if (
                r.type in ("aws:kms/key:Key", "aws:s3/bucketPolicy:BucketPolicy")
                and "policy" in r.inputs
            ):
                for principal in _principals(json.loads(r.inputs["policy"])):
                    checked += 1
                    assert principal in known | {root}, (evaluation.stack.name, r.name, principal)
    assert checked >= 4


def _role_arn(r: Recorded) -> str:
    if r.type == "aws:iam/role:Role":
        path, name = r.inputs.get("path", "/"), r.inputs.get("name", r.name)
        return f"arn:aws:iam::{ACCOUNT_ID}:role{path}{name}"
    if r.type == "aws:iam/serviceLinkedRole:ServiceLinkedRole":
        # IAM names service-linked roles AWSServiceRoleFor<Service> under aws-service-role/.
        service = r.inputs["awsServiceName"]
        names = {"autoscaling.amazonaws.com": "AutoScaling"}
        return (
            f"arn:aws:iam::{ACCOUNT_ID}:role/aws-service-role/{service}/"
            f"AWSServiceRoleFor{names.get(service, service)}"
        )
    return ""


# --- 3. and singletons: one of each account-level thing, in one stack -------------------------


def _singleton_keys(r: Recorded) -> list[str]:
    """Things IAM, S3, ECR and KMS allow once per account (or per global namespace)."""
    if r.type == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
        return [f"oidc:{r.inputs['url']}"]  # one provider per issuer URL per account
    if r.type == "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock":
        return ["account-public-access-block"]
    if r.type == "aws:iam/serviceLinkedRole:ServiceLinkedRole":
        return [f"slr:{r.inputs['awsServiceName']}"]
    if r.type == "aws:ecr/repository:Repository":
        return [f"ecr:{r.inputs.get('name', r.name)}"]
    if r.type == "aws:kms/alias:Alias":
        return [f"alias:{r.inputs['name']}"]
    if r.type == "aws:s3/bucket:Bucket" and r.inputs.get("bucket"):
        return [f"bucket:{r.inputs['bucket']}"]
    return []


def test_account_level_things_appear_in_exactly_one_stack(estate: Estate) -> None:
    where: dict[str, list[str]] = {}
    for evaluation in estate.values():
        for r in evaluation.resources:
            for key in _singleton_keys(r):
                where.setdefault(key, []).append(evaluation.stack.name)
    assert "oidc:https://token.actions.githubusercontent.com" in where
    assert "account-public-access-block" in where
    duplicated = {k: v for k, v in where.items() if len(v) > 1}
    assert duplicated == {}
    # Account-wide settings live in the account stack, so `destroy` of an environment cannot
    # remove them for the others.
    assert where["account-public-access-block"] == ["account"]
    assert where["oidc:https://token.actions.githubusercontent.com"] == ["account"]


# --- 5. Reaching the API server --------------------------------------------------------------

DOCUMENTATION_RANGES = [
    ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
]  # RFC 5737: never routed on the internet


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_api_server_is_reachable_by_the_jobs_that_use_it(
    estate: Estate, repo_root: Path, env: str
) -> None:
    resources = estate[f"{env}-environment"].resources
    (cluster,) = _of(resources, "aws:eks/cluster:Cluster")
    vpc = cluster.inputs["vpcConfig"]
    for cidr in vpc.get("publicAccessCidrs", []) if vpc.get("endpointPublicAccess") else []:
        net = ipaddress.IPv4Network(cidr)
        assert not any(net.subnet_of(d) for d in DOCUMENTATION_RANGES), cidr
        assert not net.is_private, cidr
    if vpc.get("endpointPublicAccess"):
        return
    # Private endpoint: a runner in the VPC, admitted on 443 by the cluster's security group...
    rules = [
        r
        for r in _of(resources, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["securityGroupId"] == "sg-eks"
    ]
    runners = _of(resources, "aws:ec2/instance:Instance")
    assert runners, "no runner inside the VPC"
    runner_groups = {g for r in runners for g in r.inputs["vpcSecurityGroupIds"]}
    assert any(
        r.inputs.get("referencedSecurityGroupId") in runner_groups
        and r.inputs["ipProtocol"] == "tcp"
        and r.inputs["fromPort"] <= 443 <= r.inputs["toPort"]
        for r in rules
    )
    # ...registered with the labels the workflow jobs of this environment ask for...
    labels = {
        label
        for r in runners
        for label in r.inputs["userData"].split("--labels ", 1)[1].split()[0].split(",")
    }
    for job in _jobs_of_environment(repo_root, env):
        wanted = job["runs-on"]
        wanted = [wanted] if isinstance(wanted, str) else wanted
        wanted = [w.replace("${{ matrix.env }}", env) for w in wanted]
        assert set(wanted) <= labels, (env, wanted, labels)
    # ...and the stack that creates the runner needs no API server (no chicken and egg).
    assert not [r for r in resources if r.type.startswith("kubernetes:")]


def _workflows(repo_root: Path) -> dict[str, dict[Any, Any]]:
    return {
        p.name: yaml.safe_load(p.read_text())
        for p in sorted((repo_root / ".github" / "workflows").glob("*.yml"))
    }


def _jobs_of_environment(repo_root: Path, env: str) -> list[dict[str, Any]]:
    jobs = []
    for workflow in _workflows(repo_root).values():
        for job in workflow["jobs"].values():
            environment = str(job.get("environment", ""))
            matrix = job.get("strategy", {}).get("matrix", {})
            if environment == env or (environment == "${{ matrix.env }}" and env in matrix["env"]):
                jobs.append(job)
    return jobs


# --- 6. The image exists where the Deployment pulls it from ----------------------------------


def test_the_deployment_pulls_from_the_repository_the_workflow_pushes_to(
    estate: Estate, repo_root: Path
) -> None:
    build = _workflows(repo_root)["deliver.yml"]["jobs"]["build"]
    (push,) = [s for s in build["steps"] if "build-push-action" in s.get("uses", "")]
    pushed = push["with"]["tags"].split("}}/", 1)[1].split(":", 1)[0]
    (repository,) = _of(estate["account"].resources, "aws:ecr/repository:Repository")
    assert repository.inputs["name"] == pushed
    for env in ENVIRONMENTS:
        for d in _of(estate[f"{env}-service"].resources, "kubernetes:apps/v1:Deployment"):
            image = d.inputs["spec"]["template"]["spec"]["containers"][0]["image"]
            registry, path = image.split("/", 1)
            assert registry == f"{ACCOUNT_ID}.dkr.ecr.us-east-1.amazonaws.com"
            assert path.rsplit(":", 1)[0] == pushed


# --- 8. Bootstrap: secrets provider, state and ledger rights ---------------------------------


def _allows(document: dict[str, Any], action: str, resource: str) -> bool:
    """IAM's Allow matching (wildcards in Action and Resource), conditions aside."""
    for s in document["Statement"]:
        actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
        resources = [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]
        if (
            s["Effect"] == "Allow"
            and any(fnmatch.fnmatchcase(action, a) for a in actions)
            and any(fnmatch.fnmatchcase(resource, r) for r in resources)
        ):
            return True
    return False


def _role_policy(estate: Estate, role: str) -> dict[str, Any]:
    (policy,) = [
        r
        for r in _of(estate["account"].resources, "aws:iam/rolePolicy:RolePolicy")
        if r.name == f"{PROJECT}-ci-{role}"
    ]
    document: dict[str, Any] = json.loads(policy.inputs["policy"])
    return document


def _bucket_names(evaluation: Evaluation) -> set[str]:
    return {
        b.inputs["bucket"]
        for b in _of(evaluation.resources, "aws:s3/bucket:Bucket")
        if "bucket" in b.inputs
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_delivery_role_can_use_the_backend_and_its_ledger(
    estate: Estate, repo_root: Path, env: str
) -> None:
    account = estate["account"]
    state = account.exports["stateBucket"]
    assert state in _bucket_names(account)
    policy = _role_policy(estate, f"deliver-{env}")
    # A self-managed S3 backend keeps .pulumi/stacks/<project>/<stack>.json, with locks,
    # history and backups beside it; stack references read the lower stacks.
    for stack in stack_ids(env)[1:]:
        for kind in ("stacks", "locks", "history", "backups"):
            key = f"arn:aws:s3:::{state}/.pulumi/{kind}/{PROJECT}/{stack.name}.json"
            assert _allows(policy, "s3:PutObject", key), key
    for lower in ("account", f"{env}-environment"):
        key = f"arn:aws:s3:::{state}/.pulumi/stacks/{PROJECT}/{lower}.json"
        assert _allows(policy, "s3:GetObject", key)
    assert not _allows(
        policy, "s3:PutObject", f"arn:aws:s3:::{state}/.pulumi/stacks/{PROJECT}/account.json"
    )
    # The ledger the delivery policy names exists, and this role may append to it.
    delivery = yaml.safe_load((repo_root / "environments" / f"delivery.{env}.yaml").read_text())
    bucket, _, prefix = delivery["ledger"].removeprefix("s3://").partition("/")
    assert bucket in _bucket_names(account)
    assert _allows(policy, "s3:PutObject", f"arn:aws:s3:::{bucket}/{prefix}/x.jsonl")
    assert _allows(policy, "kms:GenerateDataKey", account.exports["secretsKeyArn"])


def test_every_stack_uses_the_account_secrets_provider(estate: Estate, repo_root: Path) -> None:
    # CI has no passphrase: every stack that holds secrets records the KMS provider the account
    # stack creates (`pulumi stack init --secrets-provider` writes this key).
    provider = estate["account"].exports["secretsProvider"]
    (alias,) = _of(estate["account"].resources, "aws:kms/alias:Alias")
    assert provider.startswith(f"awskms://{alias.inputs['name']}?region=")
    for path in sorted((repo_root / "environments").glob("Pulumi.*-*.yaml")):
        document = yaml.safe_load(path.read_text())
        assert document.get("secretsprovider") == provider, path.name


# --- deploys, but broken ---------------------------------------------------------------------


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_the_judge_reads_a_service_that_exists_from_the_runner(
    estate: Estate, repo_root: Path, env: str
) -> None:
    # The judge runs on the environment's runner, outside the cluster: a `*.svc` name does not
    # resolve there. The workflow forwards a local port to the Service; that Service must exist.
    delivery = yaml.safe_load((repo_root / "environments" / f"delivery.{env}.yaml").read_text())
    url = delivery["metrics"]["prometheus_url"]
    host, _, port = url.split("://", 1)[1].split("/", 1)[0].partition(":")
    assert host == "127.0.0.1"
    job = _workflows(repo_root)["deliver.yml"]["jobs"][f"deliver-{env}"]
    runs = [s.get("run", "") for s in job["steps"]]
    forward = next(r for r in runs if "kubectl port-forward" in r)
    assert runs.index(forward) < next(i for i, r in enumerate(runs) if "deliver run" in r)
    words = forward.split("kubectl port-forward", 1)[1].split()
    namespace = words[words.index("--namespace") + 1]
    service = next(w for w in words if w.startswith("service/")).removeprefix("service/")
    local, remote = next(w for w in words if ":" in w and w[0].isdigit()).split(":")
    assert local == port
    # The Bitnami thanos chart names Thanos Query's Service `<release>-query`, port 9090.
    releases = _of(estate[f"{env}-platform"].resources, "kubernetes:helm.sh/v3:Release")
    services = {
        (f"{r.inputs['name']}-query", r.inputs["namespace"])
        for r in releases
        if r.inputs["chart"].rsplit("/", 1)[-1] == "thanos"
    }
    assert (service, namespace) in services
    assert remote == "9090"
    assert "aws eks update-kubeconfig --name image-platform-" + env in forward


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_s3_gateway_endpoint_has_route_tables(estate: Estate, env: str) -> None:
    # awsx 3.x defaults vpcEndpointStrategy to Legacy, which passes specs through: a gateway
    # endpoint without routeTableIds routes nothing.
    (vpc,) = _of(estate[f"{env}-environment"].resources, "awsx:ec2:Vpc")
    for spec in vpc.inputs.get("vpcEndpointSpecs", []):
        if spec.get("vpcEndpointType") == "Gateway":
            assert spec.get("routeTableIds") or vpc.inputs.get("vpcEndpointStrategy") == "Auto"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_delivery_role_may_create_every_role_its_stacks_create(
    estate: Estate, env: str
) -> None:
    policy = _role_policy(estate, f"deliver-{env}")
    for stack in stack_ids(env):
        for role in _of(estate[stack.name].resources, "aws:iam/role:Role"):
            arn = _role_arn(role)
            assert _allows(policy, "iam:CreateRole", arn), (stack.name, arn)
            assert _allows(policy, "iam:PassRole", arn), (stack.name, arn)
    assert not [r for r in estate[f"{env}-environment"].resources if r.type.startswith("eks:")]


def test_the_service_stack_holds_only_service_layer_resources(
    estate: Estate, repo_root: Path
) -> None:
    # A canary step runs `pulumi up` on the service stack alone: whatever its preview shows,
    # it cannot touch a protected (data, network, cluster) resource.
    for env in ENVIRONMENTS:
        delivery = yaml.safe_load((repo_root / "environments" / f"delivery.{env}.yaml").read_text())
        assert delivery["target"]["pulumi"]["stack"] == f"{env}-service"
        protected = set(delivery["delta"]["protected_types"])
        types = {r.type for r in estate[f"{env}-service"].resources}
        assert not types & protected
        assert not {
            t
            for t in types
            if t.startswith(("aws:ec2", "aws:eks", "aws:s3", "aws:kms", "kubernetes:helm"))
        }
        assert Layer.SERVICE is estate[f"{env}-service"].stack.layer


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_only_the_thanos_compactor_may_delete_blocks(estate: Estate, env: str) -> None:
    # Thanos: the sidecar uploads, the store gateway reads; retention and compaction (the
    # compactor) are the only deletes. A sidecar or store that can delete can lose history.
    resources = estate[f"{env}-platform"].resources
    thanos_bucket = estate[f"{env}-environment"].exports["thanosBucketArn"]
    trusts = {
        r.name: json.dumps(json.loads(r.inputs["assumeRolePolicy"]))
        for r in _of(resources, "aws:iam/role:Role")
    }
    deleters = []
    for policy in _of(resources, "aws:iam/rolePolicy:RolePolicy"):
        if _allows(json.loads(policy.inputs["policy"]), "s3:DeleteObject", f"{thanos_bucket}/b"):
            deleters.append(trusts[policy.name])
    assert len(deleters) == 1
    assert "system:serviceaccount:monitoring:thanos-compactor" in deleters[0]
