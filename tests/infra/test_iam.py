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
    # Deny statements and conditioned service wildcards are not admin grants.
    assert not iam.wildcard_admin_statements(
        iam.document([{"Effect": "Deny", "Action": "*", "Resource": "*"}])
    )
    assert not iam.wildcard_admin_statements(
        iam.document(
            [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*", "Condition": {"x": {}}}]
        )
    )


def test_deploy_policy_has_no_admin_statement() -> None:
    doc = iam.deploy_policy(
        account_id="123456789012",
        region="eu-west-1",
        bucket_arn_patterns=["arn:aws:s3:::image-platform-*"],
        repository_arn="arn:aws:ecr:eu-west-1:123456789012:repository/x",
        project="image-platform",
    )
    assert iam.wildcard_admin_statements(doc) == []
    iam_statement = next(s for s in doc["Statement"] if s["Sid"] == "ProjectIam")
    assert all("/image-platform/" in r or "oidc-provider" in r for r in iam_statement["Resource"])


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


def test_github_trust_is_repository_and_branch_scoped() -> None:
    doc = iam.github_trust("arn:p", "org/repo", "main")
    sub = doc["Statement"][0]["Condition"]["StringEquals"][
        "token.actions.githubusercontent.com:sub"
    ]
    assert sub == "repo:org/repo:ref:refs/heads/main"
