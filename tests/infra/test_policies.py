"""Policy tests over every resource the program registers, one check per named control.

Each check is a pure function from the recorded resources to a list of violations. Every control
family has negative cases: a copy of the real resources with the property broken, which the check
must catch. docs/security.md maps each control to its enforcement and to this file.
"""

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from infra.config import SUPPORTED_KUBERNETES
from infra.iam import wildcard_admin_statements
from pulumi_harness import ENVIRONMENTS, Recorded, manifest

Check = Callable[[list[Recorded]], list[str]]
CONTROLS: dict[str, Check] = {}

LOG_BUCKET_SUFFIX = "-access-logs"
ALLOWED_PUBLIC_PORTS = {80, 443}
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def control(*ids: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        for control_id in ids:
            CONTROLS[control_id] = check
        return check

    return register


# --- helpers -------------------------------------------------------------------------------


def of(resources: list[Recorded], suffix: str) -> list[Recorded]:
    """Resources whose type token ends with `suffix` (e.g. "s3/bucket:Bucket")."""
    return [r for r in resources if r.type.endswith(suffix)]


def buckets(resources: list[Recorded]) -> list[str]:
    return [r.name for r in of(resources, "aws:s3/bucket:Bucket")]


def by_name(resources: list[Recorded], suffix: str) -> dict[str, Recorded]:
    return {r.name: r for r in of(resources, suffix)}


def k8s(resources: list[Recorded], kind: str | None = None) -> list[dict[str, Any]]:
    out = [manifest(r) for r in resources if r.is_kubernetes_object]
    return [m for m in out if kind is None or m["kind"] == kind]


def pod_specs(resources: list[Recorded]) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, name, pod spec) of every workload the program creates directly."""
    out = []
    for m in k8s(resources):
        if m["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            out.append(
                (m["metadata"]["namespace"], m["metadata"]["name"], m["spec"]["template"]["spec"])
            )
        elif m["kind"] == "Pod":
            out.append((m["metadata"]["namespace"], m["metadata"]["name"], m["spec"]))
    return out


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def policy_documents(resources: list[Recorded]) -> list[tuple[str, dict[str, Any]]]:
    """Every IAM/resource policy document, except KMS key policies (whose `*` means the key)."""
    docs = []
    for r in of(resources, "iam/rolePolicy:RolePolicy") + of(
        resources, "s3/bucketPolicy:BucketPolicy"
    ):
        docs.append((r.name, json.loads(r.inputs["policy"])))
    for r in of(resources, "iam/role:Role"):
        docs.append((r.name, json.loads(r.inputs["assumeRolePolicy"])))
    return docs


def statements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc.get("Statement", []))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def cluster(resources: list[Recorded]) -> dict[str, Any]:
    return of(resources, "aws:eks/cluster:Cluster")[0].inputs


def addons(resources: list[Recorded]) -> dict[str, dict[str, Any]]:
    return {a.inputs["addonName"]: a.inputs for a in of(resources, "eks/addon:Addon")}


def vpc(resources: list[Recorded]) -> dict[str, Any]:
    return of(resources, "awsx:ec2:Vpc")[0].inputs


# --- AWS Foundational Security Best Practices: S3 ----------------------------------------


@control("FSBP S3.1")
def account_block_public_access(resources: list[Recorded]) -> list[str]:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    blocks = of(resources, "s3/accountPublicAccessBlock:AccountPublicAccessBlock")
    if not blocks:
        return ["no account-level Block Public Access"]
    return [f"account BPA {f} off" for b in blocks for f in flags if b.inputs.get(f) is not True]


@control("FSBP S3.8")
def bucket_block_public_access(resources: list[Recorded]) -> list[str]:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    blocks = by_name(resources, "s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    out = []
    for name in buckets(resources):
        block = blocks.get(name)
        if block is None:
            out.append(f"{name}: no Block Public Access")
            continue
        out += [f"{name}: {f} off" for f in flags if block.inputs.get(f) is not True]
    return out


@control("FSBP S3.2", "FSBP S3.3")
def no_public_bucket_policy(resources: list[Recorded]) -> list[str]:
    out = bucket_block_public_access(resources)
    for r in of(resources, "s3/bucketPolicy:BucketPolicy"):
        for s in statements(json.loads(r.inputs["policy"])):
            principal = s.get("Principal")
            public = principal == "*" or (
                isinstance(principal, dict) and "*" in as_list(principal.get("AWS", []))
            )
            if s.get("Effect") == "Allow" and public:
                out.append(f"{r.name}: public Allow statement {s.get('Sid')}")
    return out


@control("FSBP S3.5")
def tls_only(resources: list[Recorded]) -> list[str]:
    policies = by_name(resources, "s3/bucketPolicy:BucketPolicy")
    out = []
    for name in buckets(resources):
        policy = policies.get(name)
        denies = [
            s
            for s in (statements(json.loads(policy.inputs["policy"])) if policy else [])
            if s.get("Effect") == "Deny"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            and "s3:*" in as_list(s.get("Action"))
        ]
        if not denies:
            out.append(f"{name}: no deny on aws:SecureTransport=false")
    return out


@control("FSBP S3.9")
def access_logging(resources: list[Recorded]) -> list[str]:
    logging = by_name(resources, "s3/bucketLogging:BucketLogging")
    out = []
    for name in buckets(resources):
        if name.endswith(LOG_BUCKET_SUFFIX):
            continue  # the log target itself: logging into itself loops (docs/security.md)
        target = logging.get(name)
        if target is None or not str(target.inputs.get("targetBucket", "")).endswith(
            f"{LOG_BUCKET_SUFFIX}-id"
        ):
            out.append(f"{name}: no server access logging into the log bucket")
    return out


@control("FSBP S3.12")
def no_acls(resources: list[Recorded]) -> list[str]:
    owners = by_name(resources, "s3/bucketOwnershipControls:BucketOwnershipControls")
    return [
        f"{name}: ACLs not disabled"
        for name in buckets(resources)
        if name not in owners
        or owners[name].inputs["rule"]["objectOwnership"] != "BucketOwnerEnforced"
    ]


@control("FSBP S3.13")
def lifecycle(resources: list[Recorded]) -> list[str]:
    rules = by_name(resources, "s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    out = []
    for name in buckets(resources):
        enabled = [
            r
            for r in (rules[name].inputs["rules"] if name in rules else [])
            if r["status"] == "Enabled"
        ]
        if not enabled:
            out.append(f"{name}: no lifecycle rules")
        if not any("noncurrentVersionExpiration" in r for r in enabled):
            out.append(f"{name}: noncurrent versions never expire")
        if name.endswith("-images"):
            # Each tenant's <prefix>/<tenant>/renditions/ expires (tenants from stack config).
            expiring = {
                r["filter"]["prefix"]
                for r in enabled
                if "expiration" in r
                and r.get("filter", {}).get("prefix", "").endswith("/renditions/")
            }
            if not expiring or not all(p.startswith("images/") for p in expiring):
                out.append(f"{name}: renditions never expire")
    return out


@control("FSBP S3.14")
def versioning(resources: list[Recorded]) -> list[str]:
    versions = by_name(resources, "s3/bucketVersioning:BucketVersioning")
    return [
        f"{name}: versioning not enabled"
        for name in buckets(resources)
        if name not in versions
        or versions[name].inputs["versioningConfiguration"]["status"] != "Enabled"
    ]


@control("FSBP S3.17")
def kms_at_rest(resources: list[Recorded]) -> list[str]:
    sse = by_name(
        resources,
        "s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    )
    keys = {f"arn:aws:kms:us-east-1:123456789012:{k.name}" for k in of(resources, "kms/key:Key")}
    out = []
    for name in buckets(resources):
        rule = sse[name].inputs["rules"][0] if name in sse else {}
        default = rule.get("applyServerSideEncryptionByDefault", {})
        if name.endswith(LOG_BUCKET_SUFFIX):
            # S3 server access logging only delivers to SSE-S3 targets (docs/security.md).
            if default.get("sseAlgorithm") != "AES256":
                out.append(f"{name}: log bucket must use SSE-S3")
            continue
        if default.get("sseAlgorithm") != "aws:kms" or default.get("kmsMasterKeyId") not in keys:
            out.append(f"{name}: not SSE-KMS with a key of this program")
        if rule.get("bucketKeyEnabled") is not True:
            out.append(f"{name}: no bucket key")
    return out


# --- EKS ---------------------------------------------------------------------------------


@control("FSBP EKS.1", "CIS 5.4.1", "CIS 5.4.2")
def private_endpoint(resources: list[Recorded]) -> list[str]:
    c = cluster(resources).get("vpcConfig", {})
    out = []
    if c.get("endpointPrivateAccess") is not True:
        out.append("private endpoint access off")
    if c.get("endpointPublicAccess") is not False:
        cidrs = c.get("publicAccessCidrs") or []
        if not cidrs:
            out.append("public endpoint open to every address")
        out += [f"public endpoint open to {c}" for c in cidrs if c.endswith("/0")]
    return out


@control("FSBP EKS.2")
def supported_version(resources: list[Recorded]) -> list[str]:
    version = cluster(resources).get("version")
    return [] if version in SUPPORTED_KUBERNETES else [f"unsupported Kubernetes {version}"]


@control("FSBP EKS.3", "CIS 5.3.1")
def secrets_encrypted(resources: list[Recorded]) -> list[str]:
    config = cluster(resources).get("encryptionConfig", {})
    key = (
        config.get("provider", {}).get("keyArn", "")
        if "secrets" in config.get("resources", [])
        else ""
    )
    own = {f"arn:aws:kms:us-east-1:123456789012:{k.name}" for k in of(resources, "kms/key:Key")}
    return [] if key in own else ["secrets not envelope-encrypted with a key of this program"]


@control("FSBP EKS.8", "CIS 2.1.1")
def control_plane_logs(resources: list[Recorded]) -> list[str]:
    wanted = {"api", "audit", "authenticator", "controllerManager", "scheduler"}
    missing = wanted - set(cluster(resources).get("enabledClusterLogTypes", []))
    return [f"control-plane log {m} off" for m in sorted(missing)]


# --- EC2 ---------------------------------------------------------------------------------


@control("FSBP EC2.6")
def flow_logs(resources: list[Recorded]) -> list[str]:
    logs = [
        f for f in of(resources, "ec2/flowLog:FlowLog")
        if f.inputs.get("vpcId") == "vpc-mock" and f.inputs.get("trafficType") == "ALL"
    ]  # fmt: skip
    return [] if logs else ["VPC has no flow log of ALL traffic"]


@control("FSBP EC2.8")
def imdsv2(resources: list[Recorded]) -> list[str]:
    out = []
    for lt in of(resources, "ec2/launchTemplate:LaunchTemplate"):
        meta = lt.inputs.get("metadataOptions", {})
        if meta.get("httpTokens") != "required":
            out.append(f"{lt.name}: IMDSv1 allowed")
        if meta.get("httpPutResponseHopLimit") != 1:
            out.append(f"{lt.name}: IMDS hop limit is not 1")
    for ng in of(resources, "eks/nodeGroup:NodeGroup"):
        if not ng.inputs.get("launchTemplate"):
            out.append(f"{ng.name}: node group without our launch template")
    return out


@control("FSBP EC2.9", "CIS 5.4.3")
def no_public_node_ips(resources: list[Recorded]) -> list[str]:
    out = []
    for ng in of(resources, "eks/nodeGroup:NodeGroup"):
        public = [s for s in ng.inputs.get("subnetIds", []) if not s.startswith("subnet-private-")]
        if public:
            out.append(f"{ng.name}: nodes in non-private subnets {public}")
    for lt in of(resources, "ec2/launchTemplate:LaunchTemplate"):
        for nic in lt.inputs.get("networkInterfaces", []):
            if nic.get("associatePublicIpAddress") in (True, "true"):
                out.append(f"{lt.name}: public IP on a network interface")
    return out


@control("FSBP EC2.15")
def subnets_no_auto_public_ip(resources: list[Recorded]) -> list[str]:
    out = []
    types = {s["type"] for s in vpc(resources).get("subnetSpecs", [])}
    if types - {"Public", "Private"}:
        out.append(f"unexpected subnet types {types}")
    for spec in vpc(resources).get("subnetSpecs", []):
        # Public subnets map public IPs, and hold only load balancers (tagged for them).
        if spec["type"] == "Public" and spec.get("tags", {}).get("kubernetes.io/role/elb") != "1":
            out.append("a public subnet that is not reserved for load balancers")
    for subnet in of(resources, "ec2/subnet:Subnet"):
        if subnet.inputs.get("mapPublicIpOnLaunch"):
            out.append(f"{subnet.name}: maps public IPs")
    return out + no_public_node_ips(resources)


def _open_ingress(resources: list[Recorded]) -> list[tuple[str, int, int]]:
    """(resource, from, to) for every ingress rule open to the whole internet."""
    world = {"0.0.0.0/0", "::/0"}
    rules: list[tuple[str, dict[str, Any]]] = []
    for sg in of(resources, "ec2/securityGroup:SecurityGroup"):
        rules += [(sg.name, rule) for rule in sg.inputs.get("ingress", [])]
    for res in of(resources, "ec2/securityGroupRule:SecurityGroupRule"):
        if res.inputs.get("type") == "ingress":
            rules.append((res.name, res.inputs))
    for res in of(resources, "vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        rules.append((res.name, {**res.inputs, "cidrBlocks": [res.inputs.get("cidrIpv4")]}))
    out = []
    for name, rule in rules:
        cidrs = set(rule.get("cidrBlocks") or []) | set(rule.get("ipv6CidrBlocks") or [])
        if cidrs & world:
            out.append((name, int(rule.get("fromPort", 0)), int(rule.get("toPort", 65535))))
    return out


@control("FSBP EC2.18", "FSBP EC2.19")
def security_groups(resources: list[Recorded]) -> list[str]:
    return [
        f"{name}: ports {lo}-{hi} open to the internet"
        for name, lo, hi in _open_ingress(resources)
        if not (lo == hi and lo in ALLOWED_PUBLIC_PORTS)
    ]


# --- KMS, ECR, IAM ---------------------------------------------------------------------------


@control("FSBP KMS.4")
def key_rotation(resources: list[Recorded]) -> list[str]:
    return [
        f"{k.name}: rotation off"
        for k in of(resources, "kms/key:Key")
        if k.inputs.get("enableKeyRotation") is not True
    ]


@control("FSBP ECR.1")
def scan_on_push(resources: list[Recorded]) -> list[str]:
    return [
        f"{r.name}: no scan on push"
        for r in of(resources, "ecr/repository:Repository")
        if r.inputs.get("imageScanningConfiguration", {}).get("scanOnPush") is not True
    ]


@control("FSBP ECR.2")
def immutable_tags(resources: list[Recorded]) -> list[str]:
    return [
        f"{r.name}: mutable tags"
        for r in of(resources, "ecr/repository:Repository")
        if r.inputs.get("imageTagMutability") != "IMMUTABLE"
    ]


@control("FSBP ECR.3")
def ecr_lifecycle(resources: list[Recorded]) -> list[str]:
    policies = by_name(resources, "ecr/lifecyclePolicy:LifecyclePolicy")
    return [
        f"{r.name}: no lifecycle policy"
        for r in of(resources, "ecr/repository:Repository")
        if r.name not in policies or not json.loads(policies[r.name].inputs["policy"])["rules"]
    ]


@control("IAM no-admin")
def no_star_on_star(resources: list[Recorded]) -> list[str]:
    return [
        f"{name}: {s}"
        for name, doc in policy_documents(resources)
        for s in wildcard_admin_statements(doc)
    ]


def _service_least_privilege(policy: Recorded) -> list[str]:
    """One service role: the environment's own (images/) or a cell's (cells/<cell>/, ADR 131)."""
    out: list[str] = []
    cell = re.fullmatch(r"image-platform-[a-z0-9]+(?:-(.+))?-image-service", policy.name)
    own = f"/cells/{cell[1]}/*" if cell and cell[1] else "/images/*"
    for s in statements(json.loads(policy.inputs["policy"])):
        actions = as_list(s["Action"])
        resources_ = as_list(s["Resource"])
        if any(res == "*" for res in resources_):
            out.append(f"service statement {s.get('Sid')} on every resource")
        for action in actions:
            if action.startswith("s3:"):
                if action == "s3:ListBucket":
                    listed = s.get("Condition", {}).get("StringLike", {}).get("s3:prefix", [])
                    if not listed or not all(f"/{p}".endswith(own) for p in as_list(listed)):
                        out.append(f"{policy.name}: ListBucket not limited to {own}")
                elif action not in {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}:
                    out.append(f"service may {action}")
                elif not all(r.endswith(own) for r in resources_):
                    out.append(f"{policy.name}: {action} outside its own prefix {own}")
            elif action.startswith("kms:"):
                if not all(r.startswith("arn:aws:kms:") and r.endswith("-s3") for r in resources_):
                    out.append(f"{action} on a key other than the images key")
            else:
                out.append(f"service may {action}")
    return out


@control("IAM least-privilege")
def least_privilege(resources: list[Recorded]) -> list[str]:
    out = []
    service = [
        r for r in of(resources, "iam/rolePolicy:RolePolicy") if r.name.endswith("-image-service")
    ]
    if not service:
        return ["image service role policy not found"]
    for policy in service:
        out += _service_least_privilege(policy)
    for role in of(resources, "iam/role:Role"):
        if "-ci-" in role.name:
            # Which subjects each role trusts is derived from the workflows in
            # tests/repo/test_github_oidc.py; here: never a pattern.
            trust = json.loads(role.inputs["assumeRolePolicy"])
            if "StringLike" in json.dumps(trust) or "*" in json.dumps(trust):
                out.append(f"{role.name}: trust has a wildcard")
    return out


# --- CIS EKS 4.x: Kubernetes objects --------------------------------------------------------


@control("CIS 4.1.1", "CIS 4.1.2", "CIS 4.1.3", "CIS 4.1.4", "CIS 4.1.7", "CIS 4.1.8")
def rbac(resources: list[Recorded]) -> list[str]:
    out = []
    access = cluster(resources).get("accessConfig", {})
    if access.get("bootstrapClusterCreatorAdminPermissions") is not False:
        out.append("the cluster's creator becomes a hidden admin")
    if access.get("authenticationMode") != "API":
        out.append("aws-auth ConfigMap authentication enabled")
    admins = [
        a.inputs["principalArn"]
        for a in of(resources, "eks/accessPolicyAssociation:AccessPolicyAssociation")
        if a.inputs["policyArn"].endswith("/AmazonEKSClusterAdminPolicy")
    ]
    deliver = [a for a in admins if "/image-platform/image-platform-ci-deliver-" in a]
    if len(deliver) != 1:
        out.append(f"cluster admins {admins}: expected exactly one CI delivery role")
    # Break-glass admins (clusterAdminRoleArns) are roles people assume: never users or root.
    out += [f"cluster admin {a} is not a role" for a in admins if ":role/" not in a]
    for e in of(resources, "eks/accessEntry:AccessEntry"):
        if "system:masters" in json.dumps(e.inputs):
            out.append(f"access entry {e.name} uses system:masters")
    for m in k8s(resources, "ClusterRoleBinding") + k8s(resources, "RoleBinding"):
        if m.get("roleRef", {}).get("name") == "cluster-admin":
            out.append(f"{m['metadata']['name']} binds cluster-admin")
        if "system:masters" in json.dumps(m.get("subjects", [])):
            out.append(f"{m['metadata']['name']} binds system:masters")
    for m in k8s(resources, "ClusterRole") + k8s(resources, "Role"):
        name = m["metadata"]["name"]
        for rule in m.get("rules", []):
            verbs = set(rule.get("verbs", []))
            res = set(rule.get("resources", []))
            if "*" in json.dumps(rule):
                out.append(f"{name}: wildcard in RBAC rule")
            if "secrets" in res and verbs & {"get", "list", "watch"}:
                out.append(f"{name}: reads secrets")
            if "pods" in res and "create" in verbs:
                out.append(f"{name}: creates pods")
            if verbs & {"bind", "impersonate", "escalate"}:
                out.append(f"{name}: bind/impersonate/escalate")
    return out


@control("CIS 4.1.5", "CIS 4.1.6")
def service_accounts(resources: list[Recorded]) -> list[str]:
    out = []
    for ns, name, spec in pod_specs(resources):
        if spec.get("serviceAccountName", "default") == "default":
            out.append(f"{ns}/{name}: runs as the default service account")
        if spec.get("automountServiceAccountToken") is not False:
            out.append(f"{ns}/{name}: service account token mounted")
    for sa in k8s(resources, "ServiceAccount"):
        if sa.get("automountServiceAccountToken") is not False:
            out.append(f"{sa['metadata']['name']}: automounts its token")
    return out


@control(
    "CIS 4.2.1",
    "CIS 4.2.2",
    "CIS 4.2.3",
    "CIS 4.2.4",
    "CIS 4.2.5",
    "CIS 4.2.6",
    "CIS 4.2.7",
    "CIS 4.2.8",
    "CIS 4.2.9",
)
def pod_security(resources: list[Recorded]) -> list[str]:
    out = []
    for ns, name, spec in pod_specs(resources):
        for host in ("hostPID", "hostIPC", "hostNetwork"):
            if spec.get(host):
                out.append(f"{ns}/{name}: {host}")
        pod_ctx = spec.get("securityContext", {})
        for c in containers(spec):
            ctx = c.get("securityContext", {})
            where = f"{ns}/{name}/{c['name']}"
            if ctx.get("privileged"):
                out.append(f"{where}: privileged")
            if ctx.get("allowPrivilegeEscalation") is not False:
                out.append(f"{where}: privilege escalation allowed")
            if not (ctx.get("runAsNonRoot") or pod_ctx.get("runAsNonRoot")):
                out.append(f"{where}: may run as root")
            if (ctx.get("runAsUser", pod_ctx.get("runAsUser", 1)) or 0) == 0:
                out.append(f"{where}: runs as UID 0")
            caps = ctx.get("capabilities", {})
            if "ALL" not in caps.get("drop", []):
                out.append(f"{where}: capabilities not dropped")
            if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
                out.append(f"{where}: adds capabilities {caps['add']}")
    return out


@control("CIS 4.3.2")
def namespaces_have_network_policies(resources: list[Recorded]) -> list[str]:
    covered = {m["metadata"]["namespace"] for m in k8s(resources, "NetworkPolicy")}
    return [
        f"namespace {m['metadata']['name']} has no NetworkPolicy"
        for m in k8s(resources, "Namespace")
        if m["metadata"]["name"] not in covered
    ]


@control("CIS 5.4.4")
def network_policy_engine(resources: list[Recorded]) -> list[str]:
    cni = json.loads(addons(resources).get("vpc-cni", {}).get("configurationValues") or "{}")
    return (
        []
        if cni.get("enableNetworkPolicy") == "true"
        else ["VPC CNI network policy enforcement off"]
    )


@control("CIS 5.4.5")
def tls_at_the_edge(resources: list[Recorded]) -> list[str]:
    out = []
    for gw in k8s(resources, "Gateway"):
        for listener in gw["spec"]["listeners"]:
            if listener["port"] == 443 and (
                listener["protocol"] != "HTTPS"
                or not listener.get("tls", {}).get("certificateRefs")
            ):
                out.append(f"listener {listener['name']}: 443 without TLS")
            if (
                listener["protocol"] == "HTTP"
                and listener["allowedRoutes"]["namespaces"]["from"] != "Same"
            ):
                out.append(f"listener {listener['name']}: plain HTTP open to application routes")
    for route in k8s(resources, "HTTPRoute"):
        on_http = any(p.get("sectionName") == "http" for p in route["spec"]["parentRefs"])
        redirects = all(
            any(
                f["type"] == "RequestRedirect" and f["requestRedirect"]["scheme"] == "https"
                for f in rule.get("filters", [])
            )
            for rule in route["spec"]["rules"]
        )
        if on_http and not redirects:
            out.append(f"route {route['metadata']['name']} serves plain HTTP")
    floors = [
        p
        for p in k8s(resources, "ClientTrafficPolicy")
        if p["spec"].get("tls", {}).get("minVersion") in {"1.2", "1.3"}
    ]
    if not floors:
        out.append("no TLS 1.2 floor on the gateway")
    return out


# --- Pod Security Standards "restricted" and image pinning ---------------------------------


@control("PSS restricted")
def pss_restricted(resources: list[Recorded]) -> list[str]:
    out = []
    levels = {
        m["metadata"]["name"]: m["metadata"]
        .get("labels", {})
        .get("pod-security.kubernetes.io/enforce")
        for m in k8s(resources, "Namespace")
    }
    if levels.get("image-service") != "restricted":
        out.append("service namespace does not enforce restricted")
    for ns, name, spec in pod_specs(resources):
        if levels.get(ns) != "restricted":
            out.append(f"{ns}/{name}: our pod in a namespace that does not enforce restricted")
        pod_seccomp = spec.get("securityContext", {}).get("seccompProfile", {}).get("type")
        for c in containers(spec):
            seccomp = (
                c.get("securityContext", {}).get("seccompProfile", {}).get("type", pod_seccomp)
            )
            if seccomp not in {"RuntimeDefault", "Localhost"}:
                out.append(f"{ns}/{name}/{c['name']}: seccomp not RuntimeDefault")
            if any("hostPort" in p for p in c.get("ports", [])):
                out.append(f"{ns}/{name}/{c['name']}: hostPort")
        for volume in spec.get("volumes", []):
            kinds = set(volume) - {"name"}
            if not kinds <= RESTRICTED_VOLUMES:
                out.append(f"{ns}/{name}: volume types {kinds} not allowed by restricted")
    return out + pod_security(resources)


@control("Images pinned")
def images_pinned(resources: list[Recorded]) -> list[str]:
    out = []
    for ns, name, spec in pod_specs(resources):
        for c in containers(spec):
            image = c["image"]
            tag = image.rsplit(":", 1)[-1] if "@sha256:" not in image else "digest"
            if ".dkr.ecr." not in image:
                out.append(f"{ns}/{name}: image outside the program's registry")
            if tag in {"latest", "main", "stable"} or ":" not in image.split("/")[-1]:
                out.append(f"{ns}/{name}: image not pinned ({image})")
    return out


# --- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("control_id", sorted(CONTROLS))
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_control_holds(recorded: dict[str, list[Recorded]], env: str, control_id: str) -> None:
    assert CONTROLS[control_id](recorded[env]) == []


def _find(resources: list[Recorded], suffix: str, name_part: str = "") -> Recorded:
    return next(r for r in resources if r.type.endswith(suffix) and name_part in r.name)


def _k8s_find(resources: list[Recorded], kind: str, name: str) -> Recorded:
    return next(
        r
        for r in resources
        if r.is_kubernetes_object
        and r.inputs.get("kind") == kind
        and r.inputs["metadata"]["name"] == name
    )


def _container(resources: list[Recorded]) -> dict[str, Any]:
    deployment = _k8s_find(resources, "Deployment", "image-service-stable")
    container: dict[str, Any] = deployment.inputs["spec"]["template"]["spec"]["containers"][0]
    return container


def _add(resources: list[Recorded], type_: str, name: str, inputs: dict[str, Any]) -> None:
    resources.append(Recorded(type_, name, inputs, "", True))


Breaker = Callable[[list[Recorded]], object]  # breaks the resources in place
NEGATIVE_CASES: list[tuple[str, str, Breaker]] = [
    # S3
    (
        "FSBP S3.1",
        "account BPA off",
        lambda rs: _find(rs, "accountPublicAccessBlock:AccountPublicAccessBlock").inputs.update(
            blockPublicPolicy=False
        ),
    ),
    (
        "FSBP S3.8",
        "bucket BPA flag off",
        lambda rs: _find(
            rs, "bucketPublicAccessBlock:BucketPublicAccessBlock", "images"
        ).inputs.update(ignorePublicAcls=False),
    ),
    (
        "FSBP S3.2",
        "public read statement",
        lambda rs: _find(rs, "bucketPolicy:BucketPolicy", "images").inputs.update(
            policy=json.dumps(
                {
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": "*",
                            "Action": "s3:GetObject",
                            "Resource": "*",
                        }
                    ]
                }
            )
        ),
    ),
    (
        "FSBP S3.5",
        "no TLS-only deny",
        lambda rs: _find(rs, "bucketPolicy:BucketPolicy", "thanos").inputs.update(
            policy=json.dumps({"Statement": []})
        ),
    ),
    (
        "FSBP S3.9",
        "logging removed",
        lambda rs: rs.remove(_find(rs, "bucketLogging:BucketLogging", "images")),
    ),
    (
        "FSBP S3.12",
        "ACLs back on",
        lambda rs: _find(
            rs, "bucketOwnershipControls:BucketOwnershipControls", "thanos"
        ).inputs.update(rule={"objectOwnership": "ObjectWriter"}),
    ),
    (
        "FSBP S3.13",
        "renditions never expire",
        lambda rs: _find(
            rs, "bucketLifecycleConfiguration:BucketLifecycleConfiguration", "images"
        ).inputs.update(
            rules=[
                r
                for r in _find(
                    rs, "bucketLifecycleConfiguration:BucketLifecycleConfiguration", "images"
                ).inputs["rules"]
                if not r["id"].startswith("expire-renditions")
            ]
        ),
    ),
    (
        "FSBP S3.14",
        "versioning suspended",
        lambda rs: _find(rs, "bucketVersioning:BucketVersioning", "images").inputs.update(
            versioningConfiguration={"status": "Suspended"}
        ),
    ),
    (
        "FSBP S3.17",
        "SSE-S3 on images",
        lambda rs: _find(
            rs,
            "bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "images",
        ).inputs.update(rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]),
    ),
    # EKS
    (
        "FSBP EKS.1",
        "public endpoint for everyone",
        lambda rs: (
            _find(rs, "eks/cluster:Cluster")
            .inputs["vpcConfig"]
            .update(endpointPublicAccess=True, publicAccessCidrs=["0.0.0.0/0"])
        ),
    ),
    (
        "FSBP EKS.2",
        "old Kubernetes",
        lambda rs: _find(rs, "eks/cluster:Cluster").inputs.update(version="1.24"),
    ),
    (
        "FSBP EKS.3",
        "no secrets encryption",
        lambda rs: _find(rs, "eks/cluster:Cluster").inputs.pop("encryptionConfig"),
    ),
    (
        "FSBP EKS.8",
        "no audit log",
        lambda rs: _find(rs, "eks/cluster:Cluster").inputs.update(enabledClusterLogTypes=["api"]),
    ),
    (
        "CIS 2.1.1",
        "audit log off",
        lambda rs: _find(rs, "eks/cluster:Cluster").inputs.update(
            enabledClusterLogTypes=["api", "authenticator"]
        ),
    ),
    (
        "CIS 5.3.1",
        "secrets key not ours",
        lambda rs: (
            _find(rs, "eks/cluster:Cluster")
            .inputs["encryptionConfig"]["provider"]
            .update(keyArn="arn:aws:kms:us-east-1:999999999999:key/other")
        ),
    ),
    # EC2
    ("FSBP EC2.6", "no flow log", lambda rs: rs.remove(_find(rs, "flowLog:FlowLog"))),
    (
        "FSBP EC2.8",
        "IMDS hop limit 2",
        lambda rs: (
            _find(rs, "launchTemplate:LaunchTemplate")
            .inputs["metadataOptions"]
            .update(httpPutResponseHopLimit=2)
        ),
    ),
    (
        "FSBP EC2.9",
        "nodes in a public subnet",
        lambda rs: _find(rs, "nodeGroup:NodeGroup").inputs.update(subnetIds=["subnet-public-0"]),
    ),
    (
        "FSBP EC2.15",
        "subnet maps public IPs",
        lambda rs: _add(rs, "aws:ec2/subnet:Subnet", "extra", {"mapPublicIpOnLaunch": True}),
    ),
    (
        "FSBP EC2.19",
        "SSH open to the world",
        lambda rs: _add(
            rs,
            "aws:ec2/securityGroup:SecurityGroup",
            "ssh",
            {"ingress": [{"fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]},
        ),
    ),
    # KMS, ECR
    (
        "FSBP KMS.4",
        "rotation off",
        lambda rs: _find(rs, "kms/key:Key").inputs.update(enableKeyRotation=False),
    ),
    (
        "FSBP ECR.1",
        "no scan on push",
        lambda rs: _find(rs, "ecr/repository:Repository").inputs.update(
            imageScanningConfiguration={"scanOnPush": False}
        ),
    ),
    (
        "FSBP ECR.2",
        "mutable tags",
        lambda rs: _find(rs, "ecr/repository:Repository").inputs.update(
            imageTagMutability="MUTABLE"
        ),
    ),
    (
        "FSBP ECR.3",
        "no lifecycle",
        lambda rs: rs.remove(_find(rs, "ecr/lifecyclePolicy:LifecyclePolicy")),
    ),
    # IAM
    (
        "IAM no-admin",
        "admin statement",
        lambda rs: _find(rs, "iam/rolePolicy:RolePolicy", "deliver").inputs.update(
            policy=json.dumps({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
        ),
    ),
    (
        "IAM least-privilege",
        "bucket-wide object access",
        lambda rs: _find(rs, "iam/rolePolicy:RolePolicy", "-image-service").inputs.update(
            policy=json.dumps(
                {
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "s3:GetObject",
                            "Resource": "arn:aws:s3:::b/*",
                        }
                    ]
                }
            )
        ),
    ),
    (
        "IAM no-admin",
        "a region condition is no restriction",
        lambda rs: _find(rs, "iam/rolePolicy:RolePolicy", "deliver").inputs.update(
            policy=json.dumps(
                {
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "eks:*",
                            "Resource": "*",
                            "Condition": {"StringEquals": {"aws:RequestedRegion": "us-east-1"}},
                        }
                    ]
                }
            )
        ),
    ),
    # CIS 4.x
    (
        "CIS 4.1.1",
        "the creator is a hidden admin (pulumi-eks's default)",
        lambda rs: (
            _find(rs, "eks/cluster:Cluster")
            .inputs["accessConfig"]
            .update(bootstrapClusterCreatorAdminPermissions=True)
        ),
    ),
    (
        "CIS 4.1.1",
        "an IAM user as cluster admin",
        lambda rs: _add(
            rs,
            "aws:eks/accessPolicyAssociation:AccessPolicyAssociation",
            "someone",
            {
                "principalArn": "arn:aws:iam::123456789012:user/someone",
                "policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
            },
        ),
    ),
    (
        "CIS 4.1.3",
        "wildcard ClusterRole",
        lambda rs: _add(
            rs,
            "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
            "wild",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "wild"},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
            },
        ),
    ),
    (
        "CIS 4.1.6",
        "token automounted",
        lambda rs: (
            _k8s_find(rs, "Deployment", "image-service-canary")
            .inputs["spec"]["template"]["spec"]
            .update(automountServiceAccountToken=True)
        ),
    ),
    (
        "CIS 4.2.1",
        "privileged container",
        lambda rs: _container(rs)["securityContext"].update(privileged=True),
    ),
    (
        "CIS 4.2.5",
        "privilege escalation",
        lambda rs: _container(rs)["securityContext"].update(allowPrivilegeEscalation=True),
    ),
    (
        "CIS 4.3.2",
        "namespace without policy",
        lambda rs: rs.extend(
            [
                Recorded(
                    "kubernetes:core/v1:Namespace",
                    "bare",
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bare"}},
                    "",
                    True,
                )
            ]
        ),
    ),
    (
        "CIS 5.4.4",
        "network policy engine off",
        lambda rs: _find(rs, "eks/addon:Addon", "vpc-cni").inputs.pop("configurationValues"),
    ),
    (
        "CIS 5.4.5",
        "plaintext 443",
        lambda rs: (
            _k8s_find(rs, "Gateway", "public")
            .inputs["spec"]["listeners"][1]
            .update(protocol="HTTP")
        ),
    ),
    # PSS and images
    (
        "PSS restricted",
        "no seccomp",
        lambda rs: [
            _container(rs)["securityContext"].pop("seccompProfile"),
            _k8s_find(rs, "Deployment", "image-service-stable")
            .inputs["spec"]["template"]["spec"]["securityContext"]
            .pop("seccompProfile"),
        ],
    ),
    (
        "PSS restricted",
        "namespace enforces baseline",
        lambda rs: (
            _k8s_find(rs, "Namespace", "image-service")
            .inputs["metadata"]["labels"]
            .update({"pod-security.kubernetes.io/enforce": "baseline"})
        ),
    ),
    (
        "Images pinned",
        "latest tag",
        lambda rs: _container(rs).update(
            image="123456789012.dkr.ecr.us-east-1.amazonaws.com/x:latest"
        ),
    ),
]


@pytest.mark.parametrize(
    ("control_id", "breakage", "breaker"),
    NEGATIVE_CASES,
    ids=[f"{c}: {b}" for c, b, _ in NEGATIVE_CASES],
)
def test_control_catches_breakage(
    recorded: dict[str, list[Recorded]], control_id: str, breakage: str, breaker: Breaker
) -> None:
    resources = copy.deepcopy(recorded["prod"])
    assert CONTROLS[control_id](resources) == [], "the unbroken estate must pass first"
    breaker(resources)
    assert CONTROLS[control_id](resources) != [], breakage


def test_every_control_family_has_a_negative_case() -> None:
    families = {c.rsplit(".", 1)[0] if c.startswith(("FSBP", "CIS")) else c for c in CONTROLS}
    covered = {
        c.rsplit(".", 1)[0] if c.startswith(("FSBP", "CIS")) else c for c, _, _ in NEGATIVE_CASES
    }
    assert families - covered == set()


def test_security_doc_maps_every_control(repo_root: Path) -> None:
    doc = (repo_root / "docs" / "security.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("| ") and "test_policies" in line]
    for control_id in CONTROLS:
        assert any(f"| {control_id} |" in row for row in rows), (
            f"{control_id} missing from docs/security.md"
        )
