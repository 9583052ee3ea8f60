"""IAM documents as pure functions: scoping, and the wildcard detector the policy tests use."""

import pytest
from infra import iam


def test_wildcard_detector() -> None:
    assert iam.wildcard_admin_statements(
        iam.document([{"Effect": "Allow", "Action": "*", "Resource": "*"}])
    )
    assert iam.wildcard_admin_statements(
        iam.document([{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}])
    )
    # A region (or account) condition still grants every resource of the service there.
    assert iam.wildcard_admin_statements(
        iam.document(
            [
                {
                    "Effect": "Allow",
                    "Action": "eks:*",
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:RequestedRegion": "us-east-1"}},
                }
            ]
        )
    )
    # Deny statements, and conditions that narrow the resources (tags), are not admin grants.
    assert not iam.wildcard_admin_statements(
        iam.document([{"Effect": "Deny", "Action": "*", "Resource": "*"}])
    )
    assert not iam.wildcard_admin_statements(
        iam.document(
            [
                {
                    "Effect": "Allow",
                    "Action": "ec2:*",
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:ResourceTag/environment": "dev"}},
                }
            ]
        )
    )


def _deliver(environment: str = "dev") -> iam.Document:
    return iam.deliver_policy(
        account_id="123456789012",
        region="eu-west-1",
        environment=environment,
        state_bucket="state",
        ledger_bucket=f"image-platform-{environment}-ledger",
        secrets_key_arn="arn:aws:kms:eu-west-1:123456789012:key/s",
        repository_arn="arn:aws:ecr:eu-west-1:123456789012:repository/x",
    )


def test_deliver_policy_has_no_admin_statement() -> None:
    doc = _deliver()
    assert iam.wildcard_admin_statements(doc) == []
    iam_statement = next(s for s in doc["Statement"] if s["Sid"] == "ProjectIam")
    assert all("/image-platform/" in r or "oidc-provider" in r for r in iam_statement["Resource"])


def test_deliver_policy_reaches_only_its_environment() -> None:
    text = str(_deliver("staging"))
    assert "image-platform-staging-" in text
    assert "image-platform-prod" not in text
    assert "image-platform-dev" not in text
    state = next(s for s in _deliver("staging")["Statement"] if s["Sid"] == "StateWrite")
    assert all(r.endswith("/staging-*") for r in state["Resource"])


def test_object_access_is_prefix_scoped() -> None:
    doc = iam.object_access("arn:aws:s3:::b", ["originals", "renditions/"], "arn:aws:kms:k")
    objects = doc["Statement"][0]
    assert objects["Resource"] == ["arn:aws:s3:::b/originals/*", "arn:aws:s3:::b/renditions/*"]
    assert doc["Statement"][2]["Resource"] == "arn:aws:kms:k"
    with pytest.raises(ValueError, match="prefix"):
        iam.object_access("arn:aws:s3:::b", ["/"], "k")


def test_irsa_trust_names_exact_service_accounts() -> None:
    doc = iam.irsa_trust("arn:p", "https://oidc.example/id/X", "monitoring", "a", "b")
    condition = doc["Statement"][0]["Condition"]["StringEquals"]
    assert condition["oidc.example/id/X:sub"] == [
        "system:serviceaccount:monitoring:a",
        "system:serviceaccount:monitoring:b",
    ]
    assert condition["oidc.example/id/X:aud"] == "sts.amazonaws.com"
    with pytest.raises(ValueError, match="service account"):
        iam.irsa_trust("arn:p", "issuer", "ns")


def test_github_trust_lists_exact_subjects() -> None:
    doc = iam.github_trust("arn:p", ["repo:org/repo:environment:prod"])
    condition = doc["Statement"][0]["Condition"]
    assert set(condition) == {"StringEquals"}
    assert condition["StringEquals"]["token.actions.githubusercontent.com:sub"] == [
        "repo:org/repo:environment:prod"
    ]
    with pytest.raises(ValueError, match="subject"):
        iam.github_trust("arn:p", [])
