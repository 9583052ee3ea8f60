"""EKS, owned resource by resource: a private API endpoint, KMS-encrypted secrets, every
control-plane log, access entries as the only way in, IRSA, managed nodes in private subnets
with IMDSv2 (hop limit 1) and encrypted volumes, and add-ons ordered around the nodes.

Why not pulumi-eks's Cluster component (ADR 071): it always makes the cluster's creator a
permanent admin, it creates CoreDNS inside the component (stuck DEGRADED without a default node
group, pulumi-eks#1819) and its cluster role lands outside the project's IAM path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import iam
from infra.config import ClusterConfig

CONTROL_PLANE_LOGS = ("api", "audit", "authenticator", "controllerManager", "scheduler")
CLUSTER_POLICY = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"
NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
)
EBS_CSI_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
# Add-ons the nodes need to become Ready; CoreDNS and the rest need Ready nodes (ADR 071).
BEFORE_NODES = ("vpc-cni", "kube-proxy")
AFTER_NODES = ("coredns", "metrics-server")
# The VPC CNI enforces NetworkPolicy (every namespace here is default-deny).
ADDON_CONFIG = {"vpc-cni": {"enableNetworkPolicy": "true"}}


def kubeconfig(name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig that authenticates with `aws eks get-token` (the caller's AWS identity)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {"server": endpoint, "certificate-authority-data": ca_data},
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "users": [
                {
                    "name": name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": [
                                "eks",
                                "get-token",
                                "--cluster-name",
                                name,
                                "--region",
                                region,
                            ],
                            "interactiveMode": "Never",
                        }
                    },
                }
            ],
        },
        sort_keys=True,
    )


def _issuer(identities: Sequence[aws.eks.outputs.ClusterIdentity]) -> str:
    oidcs = identities[0].oidcs or []
    return (oidcs[0].issuer or "") if oidcs else ""


@dataclass(frozen=True)
class ClusterAccess:
    """What the in-cluster layers need from the environment layer."""

    name: str
    provider: k8s.Provider
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]


class Cluster(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        *,
        region: str,
        account_id: pulumi.Input[str],
        private_subnet_ids: pulumi.Input[Sequence[str]],
        admin_role_arns: Sequence[pulumi.Input[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("image-platform:cluster:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.name = name
        self.key = aws.kms.Key(
            f"{name}-secrets",
            description=f"{name}: Kubernetes secrets envelope encryption and node volumes",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=iam.to_json(pulumi.Output.from_input(account_id).apply(iam.cluster_key_policy)),
            opts=child,
        )
        self.role = aws.iam.Role(
            f"{name}-cluster",
            path=iam.ROLE_PATH,
            assume_role_policy=iam.to_json(iam.service_trust("eks.amazonaws.com")),
            opts=child,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-cluster", role=self.role.name, policy_arn=CLUSTER_POLICY, opts=child
        )
        self.eks = aws.eks.Cluster(
            name,
            name=name,
            role_arn=self.role.arn,
            version=cfg.kubernetes_version,
            vpc_config={
                "subnet_ids": private_subnet_ids,
                "endpoint_private_access": True,
                "endpoint_public_access": False,
            },
            access_config={
                "authentication_mode": "API",
                # The creator is not a hidden permanent admin: access entries below are the
                # whole list of who administers the cluster (docs/security.md).
                "bootstrap_cluster_creator_admin_permissions": False,
            },
            # No unmanaged add-ons: each one is an aws.eks.Addon below, ordered around the nodes.
            bootstrap_self_managed_addons=False,
            encryption_config={"provider": {"key_arn": self.key.arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=list(CONTROL_PLANE_LOGS),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]),
        )
        self.security_group_id = self.eks.vpc_config.cluster_security_group_id
        self.oidc_issuer = self.eks.identities.apply(_issuer)
        self.oidc_provider = aws.iam.OpenIdConnectProvider(
            f"{name}-irsa",
            url=self.oidc_issuer,
            client_id_lists=["sts.amazonaws.com"],
            opts=child,
        )
        self.oidc_provider_arn = self.oidc_provider.arn
        self.kubeconfig = pulumi.Output.all(
            self.eks.endpoint, self.eks.certificate_authority.data
        ).apply(lambda a: kubeconfig(name, a[0], a[1] or "", region))
        self.admins = [
            self._admin(f"{name}-admin-{index}", arn) for index, arn in enumerate(admin_role_arns)
        ]

        before_nodes = [self._addon(addon, [self.eks]) for addon in BEFORE_NODES]
        self._nodes(cfg, private_subnet_ids, before_nodes)
        for addon in AFTER_NODES:
            self._addon(addon, [self.node_group])
        self._ebs_csi()
        self.register_outputs({"clusterName": name})

    def _admin(self, name: str, principal_arn: pulumi.Input[str]) -> aws.eks.AccessEntry:
        entry = aws.eks.AccessEntry(
            name,
            cluster_name=self.eks.name,
            principal_arn=principal_arn,
            type="STANDARD",
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.eks.AccessPolicyAssociation(
            name,
            cluster_name=self.eks.name,
            principal_arn=principal_arn,
            policy_arn=CLUSTER_ADMIN_POLICY,
            access_scope={"type": "cluster"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
        )
        return entry

    def _addon(self, addon: str, after: Sequence[pulumi.Resource], **extra: Any) -> aws.eks.Addon:
        if addon in ADDON_CONFIG:
            extra["configuration_values"] = json.dumps(ADDON_CONFIG[addon], sort_keys=True)
        return aws.eks.Addon(
            f"{self.name}-{addon}",
            cluster_name=self.eks.name,
            addon_name=addon,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(after)),
            **extra,
        )

    def _nodes(
        self,
        cfg: ClusterConfig,
        private_subnet_ids: pulumi.Input[Sequence[str]],
        after: Sequence[pulumi.Resource],
    ) -> None:
        name = self.name
        child = pulumi.ResourceOptions(parent=self)
        self.node_role = aws.iam.Role(
            f"{name}-node",
            path=iam.ROLE_PATH,
            assume_role_policy=iam.to_json(iam.service_trust("ec2.amazonaws.com")),
            opts=child,
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{index}", role=self.node_role.name, policy_arn=arn, opts=child
            )
            for index, arn in enumerate(NODE_POLICIES)
        ]
        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-nodes",
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                # Hop limit 1: pods cannot reach the node's credentials; they use IRSA.
                "http_put_response_hop_limit": 1,
            },
            block_device_mappings=[
                {
                    "device_name": "/dev/xvda",
                    "ebs": {
                        "encrypted": "true",
                        "kms_key_id": self.key.arn,
                        "volume_size": cfg.node_volume_gib,
                        "volume_type": "gp3",
                        "delete_on_termination": "true",
                    },
                }
            ],
            monitoring={"enabled": True},
            opts=child,
        )
        self.node_group = aws.eks.NodeGroup(
            f"{name}-nodes",
            cluster_name=self.eks.name,
            node_role_arn=self.node_role.arn,
            subnet_ids=private_subnet_ids,
            instance_types=list(cfg.instance_types),
            capacity_type="ON_DEMAND",
            scaling_config={
                "min_size": cfg.min_nodes,
                "desired_size": cfg.desired_nodes,
                "max_size": cfg.max_nodes,
            },
            update_config={"max_unavailable": 1},
            launch_template={
                "id": self.launch_template.id,
                "version": self.launch_template.latest_version.apply(str),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*after, *attachments]),
        )

    def _ebs_csi(self) -> None:
        name = self.name
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-ebs-csi",
            path=iam.ROLE_PATH,
            assume_role_policy=iam.to_json(
                pulumi.Output.all(self.oidc_provider_arn, self.oidc_issuer).apply(
                    lambda a: iam.irsa_trust(a[0], a[1], "kube-system", "ebs-csi-controller-sa")
                )
            ),
            opts=child,
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-ebs-csi", role=role.name, policy_arn=EBS_CSI_POLICY, opts=child
        )
        aws.iam.RolePolicy(
            f"{name}-ebs-csi-kms",
            role=role.id,
            policy=iam.to_json(self.key.arn.apply(iam.ebs_csi_kms)),
            opts=child,
        )
        self._addon("aws-ebs-csi-driver", [self.node_group], service_account_role_arn=role.arn)


def storage_class(name: str, key_arn: pulumi.Input[str], access: ClusterAccess) -> pulumi.Resource:
    """gp3, encrypted with the cluster key (platform layer: it needs the API server)."""
    return k8s.storage.v1.StorageClass(
        f"{name}-gp3",
        metadata={"name": "gp3-encrypted"},
        provisioner="ebs.csi.aws.com",
        parameters={"type": "gp3", "encrypted": "true", "kmsKeyId": key_arn},
        reclaim_policy="Retain",
        volume_binding_mode="WaitForFirstConsumer",
        allow_volume_expansion=True,
        opts=pulumi.ResourceOptions(provider=access.provider),
    )


def irsa_role(
    name: str,
    *,
    cluster: ClusterAccess,
    namespace: str,
    service_accounts: Sequence[str],
    policy: pulumi.Input[iam.Document],
    parent: pulumi.Resource | None = None,
) -> aws.iam.Role:
    """A role only the named service accounts can assume, with one inline policy."""
    child = pulumi.ResourceOptions(parent=parent)
    trust = pulumi.Output.all(cluster.oidc_provider_arn, cluster.oidc_issuer).apply(
        lambda a: iam.irsa_trust(a[0], a[1], namespace, *service_accounts)
    )
    role = aws.iam.Role(name, path=iam.ROLE_PATH, assume_role_policy=iam.to_json(trust), opts=child)
    aws.iam.RolePolicy(name, role=role.id, policy=iam.to_json(policy), opts=child)
    return role
