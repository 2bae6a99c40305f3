"""Everything a job's spot instance is launched with: role, launch template, security group, agent asset.

The instance gets its permissions from its instance profile only (no access keys anywhere), may
touch only this stack's job buckets (and each job bucket's policy narrows that to the job's own
instances: spottrain/functions/shared/bucket_policy.py), reads no secret itself (it may assume its own
job's secrets role, which reads what the job names: spottrain/functions/shared/secrets_role.py), and
terminates itself when its OS shuts down.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from spottrain.contract.secrets import SECRETS_PREFIX, job_roles_path
from spottrain.infra.assets import AGENT_ASSET, keep_only
from spottrain.infra.job_storage import JobStorage

AGENT_ASSET_EXCLUDE = keep_only(*AGENT_ASSET)

ROOT_DEVICE_NAME = "/dev/sda1"  # the Ubuntu-based DLAMIs' root device


class InstanceLaunch(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        repo_root: Path,
        storage: JobStorage,
        ami_ssm_parameter: str,
        vpc_id: str,
        subnet_ids: tuple[str, ...],
        root_volume_gb: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.subnet_ids = subnet_ids
        self.agent = s3_assets.Asset(self, "Agent", path=str(repo_root), exclude=AGENT_ASSET_EXCLUDE)
        self.role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="spottrain training instance: its job bucket, the agent asset, its task token's answers",
        )
        self.secrets_boundary = self._secrets_boundary()
        self._grant_job_storage(storage)
        self.security_group = self._security_group(vpc_id)
        machine_image = ec2.MachineImage.from_ssm_parameter(ami_ssm_parameter, os=ec2.OperatingSystemType.LINUX)
        # Resolved from the SSM parameter at deploy time; the same value scopes RunInstances below.
        self.image_id = machine_image.get_image(self).image_id
        self.launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            machine_image=machine_image,
            role=self.role,
            security_group=self.security_group,
            require_imdsv2=True,
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
            # Containers on the instance (docker bridge) are one hop further from IMDS.
            http_put_response_hop_limit=2,
            instance_initiated_shutdown_behavior=ec2.InstanceInitiatedShutdownBehavior.TERMINATE,
            block_devices=[
                ec2.BlockDevice(
                    device_name=ROOT_DEVICE_NAME,
                    volume=ec2.BlockDeviceVolume.ebs(
                        root_volume_gb,
                        encrypted=True,
                        delete_on_termination=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                    ),
                )
            ],
        )

    def allow_reading(self, buckets: tuple[str, ...]) -> None:
        """Every job's instance may read these buckets (list and get, nothing else): its data's sources.

        Job buckets are reachable by their own job's instances only; a dataset bucket the user names at
        deploy time is shared read-only by every job of the stack, as the 2017 job read s3://pix2pixfacade.
        """
        arns = [f"arn:{Aws.PARTITION}:s3:::{bucket}" for bucket in buckets]
        self.role.add_to_principal_policy(
            iam.PolicyStatement(sid="ListDataBuckets", actions=["s3:ListBucket"], resources=arns)
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(sid="ReadDataBuckets", actions=["s3:GetObject"], resources=[f"{arn}/*" for arn in arns])
        )

    def _grant_job_storage(self, storage: JobStorage) -> None:
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="JobObjects",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=[storage.job_objects_arn],
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(sid="JobBuckets", actions=["s3:ListBucket"], resources=[storage.job_buckets_arn])
        )
        # The agent answers its attempt's callback wait. SendTask* take no resource: the token (in the job
        # bucket, readable by the job's instance) is the capability.
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="AnswerTrainingWait",
                actions=["states:SendTaskHeartbeat", "states:SendTaskSuccess", "states:SendTaskFailure"],
                resources=["*"],
            )
        )
        # The job's secrets (spottrain/agent/secrets.py) are read with the job's own secrets role, whose trust
        # policy admits that job's instance alone; this role may only ask to assume the stack's job roles.
        self.role.add_to_principal_policy(
            iam.PolicyStatement(sid="AssumeJobSecretsRoles", actions=["sts:AssumeRole"], resources=[self.job_roles_arn])
        )
        # Only the one zip, not the whole (shared) CDK assets bucket.
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="AgentAsset",
                actions=["s3:GetObject"],
                resources=[self.agent.bucket.arn_for_objects(self.agent.s3_object_key)],
            )
        )

    @property
    def job_roles_arn(self) -> str:
        """Every job's secrets role of this stack (the path functions/shared/secrets_role.py creates them under)."""
        path = job_roles_path(Aws.STACK_NAME)
        return f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role{path}*"

    def _secrets_boundary(self) -> iam.ManagedPolicy:
        """The most a job's secrets role may ever do, whatever the Lambda that creates it writes into it."""
        region_account = f"{Aws.REGION}:{Aws.ACCOUNT_ID}"
        return iam.ManagedPolicy(
            self,
            "SecretsBoundary",
            description="spottrain: permissions boundary of every job's secrets role (reads under the secrets prefix)",
            statements=[
                iam.PolicyStatement(
                    sid="ReadPrefixedParameters",
                    actions=["ssm:GetParameter"],
                    resources=[f"arn:{Aws.PARTITION}:ssm:{region_account}:parameter{SECRETS_PREFIX}*"],
                ),
                iam.PolicyStatement(
                    sid="ReadPrefixedSecrets",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[f"arn:{Aws.PARTITION}:secretsmanager:{region_account}:secret:{SECRETS_PREFIX}*"],
                ),
            ],
        )

    def _security_group(self, vpc_id: str) -> ec2.ISecurityGroup:
        # L1 on purpose: without VpcId CloudFormation places it in the default VPC, so no synth-time
        # VPC lookup (and no account/region-bound stack) is needed when vpcId is not configured.
        group = ec2.CfnSecurityGroup(
            self,
            "SecurityGroup",
            group_description="spottrain training instances - no inbound rules",
            vpc_id=vpc_id or None,
            # Explicit egress needs a VpcId; a default-VPC group already allows all outbound (S3, git).
            security_group_egress=[
                ec2.CfnSecurityGroup.EgressProperty(
                    ip_protocol="-1", cidr_ip="0.0.0.0/0", description="S3 and the job repository"
                )
            ]
            if vpc_id
            else None,
        )
        return ec2.SecurityGroup.from_security_group_id(self, "SecurityGroupRef", group.attr_group_id, mutable=False)

    def ec2_arn(self, resource: str) -> str:
        return f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"

    @property
    def run_instances_resource_arns(self) -> list[str]:
        """What RunInstances touches besides the tagged instance/volume/request: only our template and SG."""
        subnets = [self.ec2_arn(f"subnet/{subnet}") for subnet in self.subnet_ids] or [self.ec2_arn("subnet/*")]
        return [
            *subnets,
            self.ec2_arn(f"security-group/{self.security_group.security_group_id}"),
            self.ec2_arn(f"launch-template/{self.launch_template.launch_template_id}"),
            self.ec2_arn("network-interface/*"),
            f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}::image/{self.image_id}",
        ]
