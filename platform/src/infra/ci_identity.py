"""GitHub Actions OIDC (account layer): the account's one provider for GitHub's issuer and the
roles the workflows assume, each trusted for exactly the subjects its jobs present.

GitHub's `sub` claim (docs: "Example subject claims"): a job that declares `environment: NAME`
presents `repo:OWNER/REPO:environment:NAME`; other jobs on a push present
`repo:OWNER/REPO:ref:refs/heads/BRANCH`; pull-request jobs `repo:OWNER/REPO:pull_request`.
Repositories created after 2026-07-15 present `OWNER@OWNER_ID/REPO@REPO_ID` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.config import AccountConfig

GITHUB_OIDC_URL = "https://token.actions.githubusercontent.com"
# The repository variable (or GitHub-environment variable) each role's ARN goes into; the
# workflows read exactly these names (tests/infra/test_github_oidc.py derives trust from them).
BUILD_VARIABLE = "AWS_BUILD_ROLE_ARN"
DELIVER_VARIABLE = "AWS_DELIVER_ROLE_ARN"
PREVIEW_VARIABLE = "AWS_PREVIEW_ROLE_ARN"


def subject(repository: str, context: str, owner_id: int = 0, repository_id: int = 0) -> str:
    """One GitHub OIDC subject; `context` is e.g. `environment:prod` or `pull_request`."""
    if owner_id and repository_id:
        owner, name = repository.split("/")
        repository = f"{owner}@{owner_id}/{name}@{repository_id}"
    return f"repo:{repository}:{context}"


@dataclass(frozen=True)
class RoleSpec:
    """A CI role: the GitHub variable that carries its ARN, and the job contexts it trusts."""

    name: str
    variable: str
    environment: str  # GitHub environment whose variables hold the ARN; "" for the repository
    contexts: tuple[str, ...]


def role_specs(cfg: AccountConfig) -> tuple[RoleSpec, ...]:
    return (
        RoleSpec("build", BUILD_VARIABLE, "", (f"ref:refs/heads/{cfg.ci.github_branch}",)),
        RoleSpec("preview", PREVIEW_VARIABLE, "", ("pull_request",)),
        *(
            RoleSpec(f"deliver-{env}", DELIVER_VARIABLE, env, (f"environment:{env}",))
            for env in cfg.delivery_environments
        ),
    )


def subjects(cfg: AccountConfig, spec: RoleSpec) -> list[str]:
    return [
        subject(cfg.ci.github_repository, context, cfg.github_owner_id, cfg.github_repository_id)
        for context in spec.contexts
    ]


def _trust(subjects: list[str], provider_arn: str) -> iam.Document:
    return iam.github_trust(provider_arn, subjects)


class CiIdentity(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: AccountConfig,
        *,
        policies: Mapping[str, pulumi.Input[iam.Document]],
        managed_policies: Mapping[str, tuple[str, ...]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("image-platform:ci:CiIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # One provider per issuer URL per account (IAM): this is the account layer's.
        self.provider = aws.iam.OpenIdConnectProvider(
            f"{name}-github",
            url=GITHUB_OIDC_URL,
            client_id_lists=["sts.amazonaws.com"],
            opts=child,
        )
        self.roles: dict[str, aws.iam.Role] = {}
        for spec in role_specs(cfg):
            trust = self.provider.arn.apply(partial(_trust, subjects(cfg, spec)))
            role = aws.iam.Role(
                f"{name}-{spec.name}",
                path=iam.ROLE_PATH,
                assume_role_policy=iam.to_json(trust),
                max_session_duration=cfg.deliver_session_seconds,
                tags={"github-variable": spec.variable, "github-environment": spec.environment},
                opts=child,
            )
            aws.iam.RolePolicy(
                f"{name}-{spec.name}",
                role=role.id,
                policy=iam.to_json(policies[spec.name]),
                opts=child,
            )
            for index, arn in enumerate(managed_policies.get(spec.name, ())):
                aws.iam.RolePolicyAttachment(
                    f"{name}-{spec.name}-{index}", role=role.name, policy_arn=arn, opts=child
                )
            self.roles[spec.name] = role
        self.register_outputs({})
