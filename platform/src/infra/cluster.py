"""EKS: private API endpoint, KMS-encrypted secrets, all control-plane logs, IRSA, managed nodes
in private subnets with IMDSv2 (hop limit 1) and encrypted volumes, and the core add-ons."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from infra import iam
from infra.config import ClusterConfig

CONTROL_PLANE_LOGS = ("api", "audit", "authenticator", "controllerManager", "scheduler")
NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
)
EBS_CSI_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


class Cluster(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        *,
        account_id: pulumi.Input[str],
        vpc_id: pulumi.Input[str],
        private_subnet_ids: pulumi.Input[Sequence[str]],
        public_subnet_ids: pulumi.Input[Sequence[str]],
        admin_role_arn: pulumi.Input[str],
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
        self.eks = eks.Cluster(
            name,
            name=name,
            version=cfg.kubernetes_version,
            vpc_id=vpc_id,
            private_subnet_ids=private_subnet_ids,
            public_subnet_ids=public_subnet_ids,
            endpoint_private_access=True,
            endpoint_public_access=cfg.public_endpoint,
            public_access_cidrs=list(cfg.public_cidrs) if cfg.public_endpoint else None,
            enabled_cluster_log_types=list(CONTROL_PLANE_LOGS),
            encryption_config_key_arn=self.key.arn,
            create_oidc_provider=True,
            authentication_mode=eks.AuthenticationMode.API,
            access_entries={
                # The CI deploy role is the only cluster admin (CIS 4.1.1): `pulumi up` applies
                # the Kubernetes objects. People get scoped access entries out of band.
                "deploy": eks.AccessEntryArgs(
                    principal_arn=admin_role_arn,
                    access_policies={
                        "admin": eks.AccessPolicyAssociationArgs(
                            policy_arn=CLUSTER_ADMIN_POLICY,
                            access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(
                                type="cluster"
                            ),
                        )
                    },
                )
            },
            skip_default_node_group=True,
            skip_default_security_groups=True,
            node_associate_public_ip_address=False,
            vpc_cni_options=eks.VpcCniOptionsArgs(enable_network_policy=True),
            coredns_addon_options=eks.CoreDnsAddonOptionsArgs(enabled=True),
            kube_proxy_addon_options=eks.KubeProxyAddonOptionsArgs(enabled=True),
            opts=child,
        )
        self.kubeconfig = self.eks.kubeconfig_json
        self.oidc_provider_arn = self.eks.oidc_provider_arn
        self.oidc_issuer = self.eks.oidc_provider_url
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.eks.kubeconfig_json,
            enable_server_side_apply=True,
            opts=child,
        )

        self.node_role = aws.iam.Role(
            f"{name}-node",
            path=iam.ROLE_PATH,
            assume_role_policy=iam.to_json(iam.service_trust("ec2.amazonaws.com")),
            opts=child,
        )
        for index, policy_arn in enumerate(NODE_POLICIES):
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{index}", role=self.node_role.name, policy_arn=policy_arn, opts=child
            )
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
            cluster_name=name,
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
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.eks]),
        )

        self.ebs_csi_role = aws.iam.Role(
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
            f"{name}-ebs-csi", role=self.ebs_csi_role.name, policy_arn=EBS_CSI_POLICY, opts=child
        )
        aws.iam.RolePolicy(
            f"{name}-ebs-csi-kms",
            role=self.ebs_csi_role.id,
            policy=iam.to_json(self.key.arn.apply(iam.ebs_csi_kms)),
            opts=child,
        )
        after_nodes = pulumi.ResourceOptions(parent=self, depends_on=[self.node_group])
        self.ebs_csi = aws.eks.Addon(
            f"{name}-ebs-csi",
            cluster_name=name,
            addon_name="aws-ebs-csi-driver",
            service_account_role_arn=self.ebs_csi_role.arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=after_nodes,
        )
        # metrics-server feeds the HorizontalPodAutoscaler.
        aws.eks.Addon(
            f"{name}-metrics-server",
            cluster_name=name,
            addon_name="metrics-server",
            resolve_conflicts_on_create="OVERWRITE",
            opts=after_nodes,
        )
        self.storage_class = k8s.storage.v1.StorageClass(
            f"{name}-gp3",
            metadata={"name": "gp3-encrypted"},
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true", "kmsKeyId": self.key.arn},
            reclaim_policy="Retain",
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            opts=pulumi.ResourceOptions(
                parent=self, provider=self.provider, depends_on=[self.ebs_csi]
            ),
        )
        self.register_outputs({"clusterName": name})


def irsa_role(
    name: str,
    *,
    cluster: Cluster,
    namespace: str,
    service_accounts: Sequence[str],
    policy: pulumi.Input[iam.Document],
    parent: pulumi.Resource,
) -> aws.iam.Role:
    """A role only the named service accounts can assume, with one inline policy."""
    child = pulumi.ResourceOptions(parent=parent)
    trust = pulumi.Output.all(cluster.oidc_provider_arn, cluster.oidc_issuer).apply(
        lambda a: iam.irsa_trust(a[0], a[1], namespace, *service_accounts)
    )
    role = aws.iam.Role(name, path=iam.ROLE_PATH, assume_role_policy=iam.to_json(trust), opts=child)
    aws.iam.RolePolicy(name, role=role.id, policy=iam.to_json(policy), opts=child)
    return role
