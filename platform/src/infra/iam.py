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


def github_trust(provider_arn: str, repository: str, branch: str) -> Document:
    """Only workflow runs of this repository on this branch may assume the deploy role."""
    host = "token.actions.githubusercontent.com"
    return document(
        [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{host}:aud": "sts.amazonaws.com",
                        f"{host}:sub": f"repo:{repository}:ref:refs/heads/{branch}",
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


def bucket_access(bucket_arn: str, kms_key_arn: str) -> Document:
    """Full object access to one bucket (Thanos owns its whole bucket), with only its key."""
    return document(
        [
            {
                "Sid": "Objects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": f"{bucket_arn}/*",
            },
            {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn},
            {
                "Sid": "BucketKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": kms_key_arn,
            },
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


def deploy_policy(
    *,
    account_id: str,
    region: str,
    bucket_arn_patterns: Sequence[str],
    repository_arn: str,
    project: str,
) -> Document:
    """What `pulumi up` of this program and an image push need.

    Creating a VPC, an EKS cluster and their parts needs the ec2/eks/autoscaling/elb/kms/logs APIs;
    those are limited to this region. IAM is limited to the project's role path and OIDC
    providers; S3 to the project's buckets; ECR pushes to the one repository.
    """
    regional = {"StringEquals": {"aws:RequestedRegion": region}}
    iam_scope = [
        f"arn:aws:iam::{account_id}:role{ROLE_PATH}*",
        f"arn:aws:iam::{account_id}:policy{ROLE_PATH}*",
        f"arn:aws:iam::{account_id}:instance-profile{ROLE_PATH}*",
        f"arn:aws:iam::{account_id}:oidc-provider/*",
    ]
    return document(
        [
            {
                "Sid": "RegionalInfrastructure",
                "Effect": "Allow",
                "Action": [
                    "ec2:*",
                    "eks:*",
                    "autoscaling:*",
                    "elasticloadbalancing:*",
                    "kms:*",
                    "logs:*",
                    "ecr:*",
                    "ssm:GetParameter",
                    "s3:GetAccountPublicAccessBlock",
                    "s3:PutAccountPublicAccessBlock",
                    "s3:ListAllMyBuckets",
                ],
                "Resource": "*",
                "Condition": regional,
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
                    "iam:PassRole",
                    "iam:CreateOpenIDConnectProvider",
                    "iam:DeleteOpenIDConnectProvider",
                    "iam:GetOpenIDConnectProvider",
                    "iam:TagOpenIDConnectProvider",
                    "iam:UpdateOpenIDConnectProviderThumbprint",
                    "iam:CreateServiceLinkedRole",
                ],
                "Resource": iam_scope,
            },
            {
                "Sid": "ServiceLinkedRoles",
                "Effect": "Allow",
                "Action": "iam:CreateServiceLinkedRole",
                "Resource": f"arn:aws:iam::{account_id}:role/aws-service-role/*",
            },
            {
                "Sid": "ProjectBuckets",
                "Effect": "Allow",
                # Covers CreateBucket: autonamed buckets all start with the project prefix.
                "Action": "s3:*",
                "Resource": [a for arn in bucket_arn_patterns for a in (arn, f"{arn}/*")],
            },
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
                ],
                "Resource": repository_arn,
            },
            {
                "Sid": "RegistryLogin",
                "Effect": "Allow",
                "Action": "ecr:GetAuthorizationToken",
                "Resource": "*",
            },
            {
                "Sid": "WhoAmI",
                "Effect": "Allow",
                "Action": "sts:GetCallerIdentity",
                "Resource": "*",
            },
            {
                "Sid": "ProjectTagged",
                "Effect": "Allow",
                "Action": "tag:GetResources",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:ResourceTag/project": project}},
            },
        ]
    )


def wildcard_admin_statements(doc: Document) -> list[Document]:
    """Allow statements granting `*` (or `service:*` on everything with no condition) — the
    "no * actions on * resources" rule. Pure, so the policy test and its negative case share it."""
    bad: list[Document] = []
    for statement in doc.get("Statement", []):
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        everything = "*" in resources
        service_wide = any(a.endswith(":*") for a in actions) and "Condition" not in statement
        if everything and ("*" in actions or service_wide):
            bad.append(statement)
    return bad


def cluster_key_policy(account_id: str) -> Document:
    """The account administers the key; the Auto Scaling service-linked role may use it, which
    node groups need to launch instances whose root volumes are encrypted with this key."""
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
