"""The way into a private API endpoint: one GitHub Actions runner inside the VPC per environment.

The environment layer creates only AWS resources, so it applies from anywhere with AWS
credentials. The layers above talk to the Kubernetes API and run on this runner (labels
`self-hosted, linux, <env>-vpc`); people reach it with SSM Session Manager, never SSH. The
cluster's security group admits the runner's group on 443 and nothing else from outside.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from infra import iam

SSM_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
# AWS-published parameter with the current Amazon Linux 2023 AMI id.
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
RUNNER_VERSION = "2.329.0"


def runner_labels(environment: str) -> tuple[str, ...]:
    return ("self-hosted", "linux", f"{environment}-vpc")


def token_parameter(environment: str) -> str:
    """SSM SecureString the operator fills with a runner registration token (README step)."""
    return f"/image-platform/{environment}/github-runner-token"


def user_data(repository: str, environment: str, region: str) -> str:
    labels = ",".join(runner_labels(environment))
    return f"""#!/bin/bash
set -euo pipefail
dnf install -y -q git jq tar gzip libicu python3.11
curl -fsSL -o /usr/local/bin/kubectl \
  "https://dl.k8s.io/release/$(curl -fsSL https://dl.k8s.io/release/stable.txt)/bin/linux/amd64/kubectl"
chmod 0755 /usr/local/bin/kubectl
useradd --create-home runner
cd /home/runner
curl -fsSL -o runner.tgz https://github.com/actions/runner/releases/download/v{RUNNER_VERSION}/actions-runner-linux-x64-{RUNNER_VERSION}.tar.gz
tar xzf runner.tgz && rm runner.tgz && chown -R runner: /home/runner
token=$(aws ssm get-parameter --region {region} --with-decryption \\
  --name {token_parameter(environment)} --query Parameter.Value --output text)
sudo -u runner ./config.sh --unattended --url https://github.com/{repository} \\
  --token "$token" --labels {labels} --name {environment}-vpc-$(hostname)
./svc.sh install runner && ./svc.sh start
"""


class Runner(pulumi.ComponentResource):
    def __init__(  # noqa: PLR0913  Pulumi component: name, its inputs, opts
        self,
        name: str,
        *,
        environment: str,
        region: str,
        repository: pulumi.Input[str],
        instance_type: str,
        account_id: pulumi.Input[str],
        vpc_id: pulumi.Input[str],
        subnet_ids: pulumi.Input[Sequence[str]],
        cluster_security_group_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("image-platform:runner:Runner", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.security_group = aws.ec2.SecurityGroup(
            name,
            description=f"{name}: CI runner, egress only",
            vpc_id=vpc_id,
            egress=[
                {
                    "protocol": "-1",
                    "from_port": 0,
                    "to_port": 0,
                    "cidr_blocks": ["0.0.0.0/0"],
                    "description": "GitHub, AWS APIs, package mirrors (through the NAT)",
                }
            ],
            opts=child,
        )
        # The one path to the API server from outside the control plane's own group.
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-to-api",
            security_group_id=cluster_security_group_id,
            referenced_security_group_id=self.security_group.id,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            description="CI runner to the Kubernetes API",
            opts=child,
        )
        role = aws.iam.Role(
            name,
            path=iam.ROLE_PATH,
            assume_role_policy=iam.to_json(iam.service_trust("ec2.amazonaws.com")),
            opts=child,
        )
        aws.iam.RolePolicyAttachment(name, role=role.name, policy_arn=SSM_POLICY, opts=child)
        aws.iam.RolePolicy(
            name,
            role=role.id,
            policy=iam.to_json(
                pulumi.Output.from_input(account_id).apply(
                    lambda account: iam.read_parameter(
                        account, region, token_parameter(environment)
                    )
                )
            ),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(name, role=role.name, path=iam.ROLE_PATH, opts=child)
        ami = aws.ssm.get_parameter_output(name=AMI_PARAMETER)
        self.instance = aws.ec2.Instance(
            name,
            ami=ami.value,
            instance_type=instance_type,
            subnet_id=pulumi.Output.from_input(subnet_ids).apply(lambda ids: ids[0]),
            vpc_security_group_ids=[self.security_group.id],
            iam_instance_profile=profile.name,
            associate_public_ip_address=False,
            metadata_options={"http_tokens": "required", "http_put_response_hop_limit": 1},
            root_block_device={"encrypted": True, "volume_type": "gp3", "volume_size": 30},
            user_data=pulumi.Output.from_input(repository).apply(
                lambda repo: user_data(repo, environment, region)
            ),
            user_data_replace_on_change=True,
            tags={"Name": f"{name}"},
            opts=child,
        )
        self.register_outputs({"instanceId": self.instance.id})
