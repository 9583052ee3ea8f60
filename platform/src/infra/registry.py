"""ECR: one repository per service image, immutable tags, scan on push, KMS, lifecycle."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

KEEP_IMAGES = 200


def lifecycle_policy(keep: int = KEEP_IMAGES) -> str:
    """Expire untagged layers fast and keep the newest `keep` tagged images (FSBP ECR.3)."""
    if keep < 10:
        raise ValueError("keep at least 10 images: rollbacks and baselines need old tags")
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": "untagged layers",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 1,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": f"keep the newest {keep} images",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": keep,
                    },
                    "action": {"type": "expire"},
                },
            ]
        },
        sort_keys=True,
    )


class Registry(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        *,
        kms_key_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("image-platform:registry:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository = aws.ecr.Repository(
            name,
            # The exact name the build job pushes to (`<registry>/<name>:<sha>`): never autonamed.
            name=name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS", "kms_key": kms_key_arn}],
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            name, repository=self.repository.name, policy=lifecycle_policy(), opts=child
        )
        self.register_outputs({"repositoryUrl": self.repository.repository_url})
