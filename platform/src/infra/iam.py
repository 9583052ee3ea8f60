"""IAM policy documents as pure functions over ARNs, so least privilege is testable without AWS."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi

# Every role this program creates lives under this path, so the deploy role's IAM rights can be
# scoped to the project's own roles instead of the whole account.
ROLE_PATH = "/image-platform/"

Document = dict[str, Any]


def document(statements: Sequence[Document]) -> Document:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def to_json(doc: pulumi.Input[Document]) -> pulumi.Output[str]:
    """Serialise a document that may hold Outputs (ARNs) into a policy string."""
    return pulumi.Output.from_input(doc).apply(lambda d: json.dumps(d, sort_keys=True))


def irsa_trust(
    oidc_provider_arn: str, oidc_issuer: str, namespace: str, *service_accounts: str
) -> Document:
    """Trust for exactly the named Kubernetes service accounts via the cluster's OIDC provider."""
    if not service_accounts:
        raise ValueError("IRSA trust needs at least one service account")
    issuer = oidc_issuer.removeprefix("https://")
    subjects = [f"system:serviceaccount:{namespace}:{sa}" for sa in service_accounts]
    return document(
        [
            {
                "Effect": "Allow",
                "Principal": {"Federated": oidc_provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{issuer}:sub": subjects[0] if len(subjects) == 1 else subjects,
                        f"{issuer}:aud": "sts.amazonaws.com",
                    }
                },
            }
        ]
    )


def service_trust(service: str) -> Document:
    return document(
        [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]
    )


def github_trust(provider_arn: str, subjects: Sequence[str]) -> Document:
    """Only workflow jobs presenting one of these OIDC subjects may assume the role."""
    host = "token.actions.githubusercontent.com"
    if not subjects:
        raise ValueError("a GitHub role needs at least one subject")
    return document(
        [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{host}:aud": "sts.amazonaws.com",
                        f"{host}:sub": list(subjects),
                    }
                },
            }
        ]
    )


def object_access(bucket_arn: str, prefixes: Sequence[str], kms_key_arn: str) -> Document:
    """Object read/write under the given prefixes of one bucket, with only that bucket's key."""
    clean = [p.strip("/") for p in prefixes]
    if not clean or any(not p for p in clean):
        raise ValueError("object access needs at least one non-empty prefix")
    return document(
        [
            {
                "Sid": "Objects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": [f"{bucket_arn}/{p}/*" for p in clean],
            },
            {
                "Sid": "ListOwnPrefixes",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket_arn,
                "Condition": {"StringLike": {"s3:prefix": [f"{p}/*" for p in clean]}},
            },
            {
                "Sid": "BucketKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": kms_key_arn,
            },
        ]
    )


READ = ("s3:GetObject",)
UPLOAD = ("s3:GetObject", "s3:PutObject")
COMPACT = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")


def bucket_access(bucket_arn: str, kms_key_arn: str, actions: Sequence[str] = READ) -> Document:
    """Object access to one whole bucket (Thanos owns its bucket), with only its key. Writers
    get the key's data-key action, readers only Decrypt."""
    writes = any(a != "s3:GetObject" for a in actions)
    return document(
        [
            {
                "Sid": "Objects",
                "Effect": "Allow",
                "Action": list(actions),
                "Resource": f"{bucket_arn}/*",
            },
            {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn},
            {
                "Sid": "BucketKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"] if writes else ["kms:Decrypt"],
                "Resource": kms_key_arn,
            },
        ]
    )


def publish(topic_arns: Sequence[str]) -> Document:
    """Publish to these SNS topics (Alertmanager's receivers)."""
    return document(
        [
            {
                "Sid": "Publish",
                "Effect": "Allow",
                "Action": "sns:Publish",
                "Resource": list(topic_arns),
            }
        ]
    )


def tls_only_bucket_policy(bucket_arn: str, extra: Sequence[Document] = ()) -> Document:
    """Deny any request over plain HTTP (FSBP S3.5), plus any service-delivery grants."""
    return document(
        [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            *extra,
        ]
    )


def log_delivery_grants(bucket_arn: str, account_id: str) -> list[Document]:
    """Let S3 server access logging and VPC flow logs write into the log bucket, for this account
    only; a bucket policy we manage would otherwise replace the grants AWS adds by itself."""
    source = {"StringEquals": {"aws:SourceAccount": account_id}}
    return [
        {
            "Sid": "S3ServerAccessLogs",
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/s3-access/*",
            "Condition": source,
        },
        {
            "Sid": "FlowLogsWrite",
            "Effect": "Allow",
            "Principal": {"Service": "delivery.logs.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/vpc-flow-logs/AWSLogs/{account_id}/*",
            "Condition": source,
        },
        {
            "Sid": "FlowLogsAclCheck",
            "Effect": "Allow",
            "Principal": {"Service": "delivery.logs.amazonaws.com"},
            "Action": ["s3:GetBucketAcl", "s3:ListBucket"],
            "Resource": bucket_arn,
            "Condition": source,
        },
    ]


def state_access(state_bucket: str, stack_prefix: str, secrets_key_arn: str) -> list[Document]:
    """A self-managed backend in S3: read every stack (stack references), write only the stacks
    whose names start with `stack_prefix`, and use the secrets provider's key."""
    bucket = f"arn:aws:s3:::{state_bucket}"
    kinds = ("stacks", "locks", "history", "backups")
    return [
        {"Sid": "StateList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket},
        {
            "Sid": "StateRead",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"{bucket}/*",
        },
        {
            "Sid": "StateWrite",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:DeleteObject"],
            "Resource": [f"{bucket}/.pulumi/{k}/*/{stack_prefix}*" for k in kinds],
        },
        {
            "Sid": "SecretsProvider",
            "Effect": "Allow",
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": secrets_key_arn,
        },
    ]


def build_policy(repository_arn: str) -> Document:
    """Push one repository's images (the build job)."""
    return document(
        [
            {
                "Sid": "PushImage",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:InitiateLayerUpload",
                    "ecr:UploadLayerPart",
                    "ecr:CompleteLayerUpload",
                    "ecr:PutImage",
                    "ecr:BatchGetImage",
                    "ecr:DescribeImages",
                ],
                "Resource": repository_arn,
            },
            {
                "Sid": "RegistryLogin",
                "Effect": "Allow",
                "Action": "ecr:GetAuthorizationToken",
                "Resource": "*",
            },
        ]
    )


def preview_policy(state_bucket: str, secrets_key_arn: str) -> Document:
    """Pull-request previews: ReadOnlyAccess is attached; this adds the state and its key."""
    bucket = f"arn:aws:s3:::{state_bucket}"
    return document(
        [
            {"Sid": "StateList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket},
            {
                "Sid": "StateRead",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"{bucket}/*",
            },
            {
                "Sid": "SecretsProvider",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": secrets_key_arn,
            },
        ]
    )


def deliver_policy(
    *,
    account_id: str,
    region: str,
    environment: str,
    state_bucket: str,
    ledger_bucket: str,
    secrets_key_arn: str,
    repository_arn: str,
) -> Document:
    """What `pulumi up` of one environment's environment, platform and service stacks needs,
    plus its delivery ledger.

    Creating a VPC, an EKS cluster and their parts needs EC2 verbs on `*` (EC2 create calls
    have no ARN before they run; ADR 078 accepts this, limited to the region). EKS, KMS, IAM
    and S3 are limited to the environment's own names; ECR to reading the one repository.
    """
    name = f"image-platform-{environment}"
    regional = {"StringEquals": {"aws:RequestedRegion": region}}
    eks_scope = [
        f"arn:aws:eks:{region}:{account_id}:{kind}/{name}*"
        for kind in ("cluster", "nodegroup", "addon", "access-entry", "podidentityassociation")
    ]
    iam_scope = [
        f"arn:aws:iam::{account_id}:role{ROLE_PATH}*",
        f"arn:aws:iam::{account_id}:policy{ROLE_PATH}*",
        f"arn:aws:iam::{account_id}:instance-profile{ROLE_PATH}*",
        f"arn:aws:iam::{account_id}:oidc-provider/oidc.eks.{region}.amazonaws.com/*",
    ]
    return document(
        [
            {
                "Sid": "Network",
                "Effect": "Allow",
                "Action": [
                    f"ec2:{verb}*"
                    for verb in (
                        "Describe",
                        "Get",
                        "Create",
                        "Delete",
                        "Modify",
                        "Associate",
                        "Disassociate",
                        "Attach",
                        "Detach",
                        "Authorize",
                        "Revoke",
                        "Allocate",
                        "Release",
                        "Replace",
                    )
                ]
                + ["ec2:RunInstances", "ec2:TerminateInstances"],
                "Resource": "*",
                "Condition": regional,
            },
            {
                "Sid": "ClusterDiscovery",
                "Effect": "Allow",
                "Action": ["eks:ListClusters", "eks:DescribeAddonVersions", "kms:CreateKey"],
                "Resource": "*",
                "Condition": regional,
            },
            {"Sid": "Cluster", "Effect": "Allow", "Action": "eks:*", "Resource": eks_scope},
            {
                "Sid": "ProjectKeys",
                "Effect": "Allow",
                "Action": [
                    "kms:DescribeKey",
                    "kms:GetKeyPolicy",
                    "kms:PutKeyPolicy",
                    "kms:GetKeyRotationStatus",
                    "kms:EnableKeyRotation",
                    "kms:ListResourceTags",
                    "kms:TagResource",
                    "kms:UntagResource",
                    "kms:ScheduleKeyDeletion",
                    "kms:CreateGrant",
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:GenerateDataKey*",
                ],
                "Resource": f"arn:aws:kms:{region}:{account_id}:key/*",
                # Keys carry the provider's default tags (stack files: aws:defaultTags).
                "Condition": {"StringEquals": {"aws:ResourceTag/environment": environment}},
            },
            {
                "Sid": "ProjectIam",
                "Effect": "Allow",
                "Action": [
                    "iam:CreateRole",
                    "iam:DeleteRole",
                    "iam:GetRole",
                    "iam:TagRole",
                    "iam:UntagRole",
                    "iam:UpdateAssumeRolePolicy",
                    "iam:PutRolePolicy",
                    "iam:GetRolePolicy",
                    "iam:DeleteRolePolicy",
                    "iam:ListRolePolicies",
                    "iam:ListAttachedRolePolicies",
                    "iam:AttachRolePolicy",
                    "iam:DetachRolePolicy",
                    "iam:ListInstanceProfilesForRole",
                    "iam:CreateInstanceProfile",
                    "iam:DeleteInstanceProfile",
                    "iam:GetInstanceProfile",
                    "iam:AddRoleToInstanceProfile",
                    "iam:RemoveRoleFromInstanceProfile",
                    "iam:PassRole",
                    "iam:CreateOpenIDConnectProvider",
                    "iam:DeleteOpenIDConnectProvider",
                    "iam:GetOpenIDConnectProvider",
                    "iam:TagOpenIDConnectProvider",
                ],
                "Resource": iam_scope,
            },
            {
                "Sid": "AmiLookup",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": f"arn:aws:ssm:{region}::parameter/aws/service/*",
            },
            {
                "Sid": "EnvironmentBuckets",
                "Effect": "Allow",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{name}-*", f"arn:aws:s3:::{name}-*/*"],
            },
            {
                "Sid": "Ledger",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{ledger_bucket}", f"arn:aws:s3:::{ledger_bucket}/*"],
            },
            {
                "Sid": "ImageExists",
                "Effect": "Allow",
                "Action": ["ecr:DescribeImages", "ecr:BatchGetImage"],
                "Resource": repository_arn,
            },
            {
                "Sid": "WhoAmI",
                "Effect": "Allow",
                "Action": "sts:GetCallerIdentity",
                "Resource": "*",
            },
            *state_access(state_bucket, f"{environment}-", secrets_key_arn),
        ]
    )


# Condition keys that narrow *which resources* a statement reaches. A region or an account
# condition does not: `eks:*` on `*` in one region still administers every cluster there.
_RESOURCE_NARROWING = ("aws:resourcetag/", "aws:requesttag/", "iam:awsservicename")


def _narrows_resources(statement: Document) -> bool:
    keys = [k.lower() for op in statement.get("Condition", {}).values() for k in op]
    return any(k.startswith(_RESOURCE_NARROWING) for k in keys)


def wildcard_admin_statements(doc: Document) -> list[Document]:
    """Allow statements granting `*` or `service:*` on every resource, unless a condition narrows
    the resources (tags, service names). Pure, so the policy test and its negative case share
    it."""
    bad: list[Document] = []
    for statement in doc.get("Statement", []):
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        everything = "*" in resources
        service_wide = any(a == "*" or a.endswith(":*") for a in actions)
        if everything and service_wide and not _narrows_resources(statement):
            bad.append(statement)
    return bad


def account_key_policy(account_id: str) -> Document:
    """The account administers the key; IAM policies (the CI roles') grant its use."""
    return document(
        [
            {
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ]
    )


def cluster_key_policy(account_id: str) -> Document:
    """The account administers the key; the Auto Scaling service-linked role may use it, which
    node groups need to launch instances whose root volumes are encrypted with this key.

    KMS rejects a policy naming a principal that does not exist, and that role appears only
    with an account's first Auto Scaling group: the account layer creates it (config
    `serviceLinkedRoles`) before any environment stack names it here (ADR 072)."""
    asg_role = (
        f"arn:aws:iam::{account_id}:role/aws-service-role/autoscaling.amazonaws.com/"
        "AWSServiceRoleForAutoScaling"
    )
    return document(
        [
            {
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "AutoScalingUsesKey",
                "Effect": "Allow",
                "Principal": {"AWS": asg_role},
                "Action": [
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:DescribeKey",
                ],
                "Resource": "*",
            },
            {
                "Sid": "AutoScalingGrants",
                "Effect": "Allow",
                "Principal": {"AWS": asg_role},
                "Action": "kms:CreateGrant",
                "Resource": "*",
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
            },
        ]
    )


def ebs_csi_kms(key_arn: str) -> Document:
    """The EBS CSI driver may use only the cluster key, for volumes of the gp3-encrypted class."""
    return document(
        [
            {
                "Sid": "UseKey",
                "Effect": "Allow",
                "Action": [
                    "kms:Decrypt",
                    "kms:GenerateDataKeyWithoutPlaintext",
                    "kms:ReEncrypt*",
                    "kms:DescribeKey",
                ],
                "Resource": key_arn,
            },
            {
                "Sid": "GrantForVolumes",
                "Effect": "Allow",
                "Action": "kms:CreateGrant",
                "Resource": key_arn,
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
            },
        ]
    )


def read_parameter(account_id: str, region: str, name: str) -> Document:
    """Read one SSM parameter (SecureString under the AWS-managed key)."""
    return document(
        [
            {
                "Sid": "ReadParameter",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": f"arn:aws:ssm:{region}:{account_id}:parameter{name}",
            }
        ]
    )
