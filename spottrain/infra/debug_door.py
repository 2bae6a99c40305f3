"""The debug door's permissions: Session Manager may reach a training instance, only when the stack allows a door.

A stack deployed with maxFailureKeepAliveMinutes=0 has no door: its instance role gets none of this.
The actions are the ones AWS lists for an instance profile that only needs Session Manager (the
Session Manager part of AmazonSSMManagedInstanceCore, without its Run Command, inventory and patching actions):
https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-create-iam-instance-profile.html
ec2messages is the channel older SSM Agents still poll:
https://docs.aws.amazon.com/systems-manager/latest/userguide/systems-manager-setting-up-messageAPIs.html
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from cdk_nag import NagPackSuppression, NagSuppressions

REGISTER_ACTIONS = ["ssm:UpdateInstanceInformation"]  # resource-level: EC2 instances of this account and region
SESSION_ACTIONS = [
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
]
AGENT_MESSAGE_ACTIONS = [
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
]
SESSION_MANAGER_REASON = (
    "The debug door (on_failure.keep_alive_minutes): SSM Agent on the instance opens Session Manager's channels "
    "(ssmmessages, ec2messages: actions without resource-level permissions, so Resource *) and registers its own "
    "instance (ssm:UpdateInstanceInformation, on this account's instances: an agent names the instance it runs on). "
    "Who may start a session is decided by the user's ssm:StartSession permission, not by the instance role. "
    "Granted only when maxFailureKeepAliveMinutes > 0."
)
INSTANCES_FINDING = "Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:instance/*"


def open_debug_door(role: iam.Role) -> None:
    """Give the instance role what SSM Agent needs for Session Manager (no SSH key, no inbound port)."""
    instances = f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}:instance/*"
    role.add_to_principal_policy(
        iam.PolicyStatement(sid="DebugDoorRegister", actions=REGISTER_ACTIONS, resources=[instances])
    )
    role.add_to_principal_policy(iam.PolicyStatement(sid="DebugDoorSessions", actions=SESSION_ACTIONS, resources=["*"]))
    role.add_to_principal_policy(
        iam.PolicyStatement(sid="DebugDoorAgentMessages", actions=AGENT_MESSAGE_ACTIONS, resources=["*"])
    )
    NagSuppressions.add_resource_suppressions(
        role,
        [
            NagPackSuppression(
                id="AwsSolutions-IAM5", reason=SESSION_MANAGER_REASON, applies_to=["Resource::*", INSTANCES_FINDING]
            )
        ],
        apply_to_children=True,
    )
