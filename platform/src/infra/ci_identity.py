"""GitHub Actions OIDC provider and the deploy role that `pulumi up` and the image push use."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.config import CiConfig

GITHUB_OIDC_URL = "https://token.actions.githubusercontent.com"
# GitHub's published intermediate-CA thumbprints; AWS validates GitHub tokens against its own
# trusted CAs today, but the field is still required by older accounts/APIs.
GITHUB_THUMBPRINTS = (
    "6938fd4d98bab03faadb97b34396831e3780aea1",
    "1c58a3a8518e8759bf075b76b750d4f2df264fcd",
)


class CiIdentity(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: CiConfig,
        *,
        project: str,
        account_id: pulumi.Input[str],
        region: str,
        repository_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("image-platform:ci:CiIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.provider = aws.iam.OpenIdConnectProvider(
            name,
            url=GITHUB_OIDC_URL,
            client_id_lists=["sts.amazonaws.com"],
            thumbprint_lists=list(GITHUB_THUMBPRINTS),
            opts=child,
        )
        trust = self.provider.arn.apply(
            lambda arn: iam.github_trust(arn, cfg.github_repository, cfg.github_branch)
        )
        self.role = aws.iam.Role(
            f"{name}-deploy",
            path=iam.ROLE_PATH,
            assume_role_policy=iam.to_json(trust),
            max_session_duration=3600,
            opts=child,
        )
        policy = pulumi.Output.all(account_id, repository_arn).apply(
            lambda a: iam.deploy_policy(
                account_id=a[0],
                region=region,
                bucket_arn_patterns=[f"arn:aws:s3:::{project}-*"],
                repository_arn=a[1],
                project=project,
            )
        )
        aws.iam.RolePolicy(
            f"{name}-deploy", role=self.role.id, policy=iam.to_json(policy), opts=child
        )
        self.register_outputs({"roleArn": self.role.arn})
