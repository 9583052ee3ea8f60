"""The VPC: public subnets for load balancers only, private subnets for nodes, NAT per config,
an S3 gateway endpoint, and flow logs."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx

from infra.config import NetworkConfig


def nat_strategy(cfg: NetworkConfig) -> awsx.ec2.NatGatewayStrategy:
    return (
        awsx.ec2.NatGatewayStrategy.ONE_PER_AZ
        if cfg.nat == "onePerAz"
        else awsx.ec2.NatGatewayStrategy.SINGLE
    )


class Network(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: NetworkConfig,
        *,
        region: str,
        cluster_name: str,
        flow_log_bucket_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("image-platform:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cluster_tag = {f"kubernetes.io/cluster/{cluster_name}": "shared"}
        self.vpc = awsx.ec2.Vpc(
            name,
            cidr_block=cfg.cidr,
            number_of_availability_zones=cfg.availability_zones,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            nat_gateways=awsx.ec2.NatGatewayConfigurationArgs(strategy=nat_strategy(cfg)),
            subnet_strategy=awsx.ec2.SubnetAllocationStrategy.AUTO,
            subnet_specs=[
                # Public subnets hold only the internet-facing load balancers (tagged for the
                # AWS load balancer integration); they are the one place public IPs are mapped.
                awsx.ec2.SubnetSpecArgs(
                    type=awsx.ec2.SubnetType.PUBLIC,
                    cidr_mask=22,
                    tags={"kubernetes.io/role/elb": "1", **cluster_tag},
                ),
                awsx.ec2.SubnetSpecArgs(
                    type=awsx.ec2.SubnetType.PRIVATE,
                    cidr_mask=19,
                    tags={"kubernetes.io/role/internal-elb": "1", **cluster_tag},
                ),
            ],
            # awsx's default (Legacy) passes endpoint specs through as given: a gateway endpoint
            # without route tables, which routes nothing. Auto fills in the VPC's route tables.
            vpc_endpoint_strategy=awsx.ec2.VpcEndpointStrategy.AUTO,
            vpc_endpoint_specs=[
                # Gateway endpoint: S3 traffic from nodes stays off the NAT (cost and exposure).
                awsx.ec2.VpcEndpointSpecArgs(
                    service_name=f"com.amazonaws.{region}.s3", vpc_endpoint_type="Gateway"
                )
            ],
            opts=child,
        )
        self.flow_log = aws.ec2.FlowLog(
            name,
            vpc_id=self.vpc.vpc_id,
            traffic_type="ALL",
            log_destination_type="s3",
            log_destination=pulumi.Output.concat(flow_log_bucket_arn, "/vpc-flow-logs/"),
            max_aggregation_interval=600,
            opts=child,
        )
        self.vpc_id = self.vpc.vpc_id
        self.private_subnet_ids = self.vpc.private_subnet_ids
        self.public_subnet_ids = self.vpc.public_subnet_ids
        self.register_outputs({"vpcId": self.vpc_id})
