"""Exactly the calls each task Lambda makes, scoped to this stack's resources.

EC2 actions that change an instance or a spot request, or read its console, are allowed only on
resources carrying this stack's `spottrain:stack` tag; S3 actions only on `<bucket prefix>-*`;
iam:PassRole only on the instance role; IAM roles only under this stack's job secrets roles' path, created
only with the stack's permissions boundary; Step Functions reads only this stack's own state machine.
Resource "*" appears only for EC2 Describe* calls and Step Functions' SendTask* calls, which have no
resource level (a task token is the capability).
The full list per role is in docs/CONFIGURATION.md ("Permissions").
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from spottrain.infra.instance_launch import InstanceLaunch
from spottrain.infra.job_storage import JobStorage
from spottrain.contract.layout import TAG_STACK

CREATE_BUCKET_ACTIONS = [
    "s3:CreateBucket",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutEncryptionConfiguration",
    "s3:PutBucketPolicy",
    "s3:GetBucketPolicy",  # a bucket without one is emptied once it has one (functions/create_bucket.py)
    "s3:GetBucketTagging",
    "s3:PutBucketTagging",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketLogging",
    "s3:ListBucket",
    "s3:GetBucketLocation",
]

JOB_ROLE_WRITES = ["iam:TagRole", "iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy", "iam:GetRole"]
# DeleteRole refuses a role that still has inline policies: they go first.
JOB_ROLE_DELETES = ["iam:ListRolePolicies", "iam:DeleteRolePolicy", "iam:DeleteRole"]


class TaskPermissions:
    """Grants for one stack: built from the units the stack composes."""

    def __init__(self, *, stack_name: str, storage: JobStorage, launch: InstanceLaunch, topic: sns.ITopic):
        self.stack_name = stack_name
        self.storage = storage
        self.launch = launch
        self.topic = topic

    def grant_all(self, functions: dict[str, lambda_.Function]) -> None:
        # validate_job reads only the state machine, which names it: see see_own_executions.
        self.create_bucket(functions["create_bucket"])
        self.request_spot_instance(functions["request_spot_instance"])
        self.check_bid(functions["check_bid"])
        self.await_training(functions["await_training"])
        self.poll_completion(functions["poll_completion"])
        self.notify(functions["notify"])
        self.terminate_instance(functions["terminate_instance"])
        self.instance_state_change(functions["instance_state_change"])
        self.summarize_sweep(functions["summarize_sweep"])

    def create_bucket(self, fn: lambda_.Function) -> None:
        self._add(fn, "CreateJobBucket", CREATE_BUCKET_ACTIONS, [self.storage.job_buckets_arn])
        self._add(fn, "WriteJobRecord", ["s3:PutObject", "s3:DeleteObject"], [self.storage.job_objects_arn])
        # A job's secrets role (spottrain/functions/shared/secrets_role.py), created only with the stack's boundary
        # (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html#ck_PermissionsBoundary)
        # and only under this stack's path; no grant here may change or remove a role's boundary.
        boundary = {"StringEquals": {"iam:PermissionsBoundary": self.launch.secrets_boundary.managed_policy_arn}}
        self._add(fn, "CreateJobSecretsRole", ["iam:CreateRole"], [self.launch.job_roles_arn], boundary)
        self._add(fn, "WriteJobSecretsRole", JOB_ROLE_WRITES, [self.launch.job_roles_arn])
        self._add(fn, "UndoJobSecretsRole", JOB_ROLE_DELETES, [self.launch.job_roles_arn])

    def request_spot_instance(self, fn: lambda_.Function) -> None:
        created = [self._ec2(kind) for kind in ("instance/*", "volume/*", "spot-instances-request/*")]
        # What RunInstances creates must carry this stack's tag, so the stop statements can match it.
        launch_tagged = {"StringEquals": {f"aws:RequestTag/{TAG_STACK}": self.stack_name}}
        self._add(fn, "RunTaggedInstances", ["ec2:RunInstances"], created, launch_tagged)
        self._add(fn, "RunWithStackTemplate", ["ec2:RunInstances"], self.launch.run_instances_resource_arns)
        at_launch = {"StringEquals": {"ec2:CreateAction": "RunInstances"}}
        self._add(fn, "TagAtLaunch", ["ec2:CreateTags"], created, at_launch)
        self._add(
            fn,
            "DescribeCapacity",
            [
                "ec2:DescribeSubnets",
                "ec2:DescribeSpotPriceHistory",
                "ec2:GetSpotPlacementScores",
                "pricing:GetProducts",
            ],
            ["*"],
        )
        spot_service = {"StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}}
        spot_role = [self._spot_service_role_arn()]
        self._add(fn, "CreateSpotServiceRole", ["iam:CreateServiceLinkedRole"], spot_role, spot_service)
        self.launch.role.grant_pass_role(fn.grant_principal)
        self._grant_job_report(fn)
        # Each attempt's instance joins its job bucket's policy (spottrain/functions/shared/bucket_policy.py).
        self._add(
            fn, "AdmitInstanceToJobBucket", ["s3:GetBucketPolicy", "s3:PutBucketPolicy"], [self.storage.job_buckets_arn]
        )
        # ... and its secrets role's trust policy.
        self._add(fn, "AdmitInstanceToSecretsRole", ["iam:UpdateAssumeRolePolicy"], [self.launch.job_roles_arn])

    def check_bid(self, fn: lambda_.Function) -> None:
        self._add(fn, "DescribeLaunch", ["ec2:DescribeInstances", "ec2:DescribeSpotInstanceRequests"], ["*"])
        self._grant_job_report(fn)
        self._allow_cancel_tagged(fn)
        self._allow_terminate_tagged(fn)

    def await_training(self, fn: lambda_.Function) -> None:
        # Writes the attempt's token, reads its markers, and answers the token when the attempt is already over.
        self._add(fn, "AttemptToken", ["s3:GetObject", "s3:PutObject"], [self.storage.job_objects_arn])
        self._add(fn, "ListJobBucket", ["s3:ListBucket"], [self.storage.job_buckets_arn])
        self._add(fn, "DescribeInstance", ["ec2:DescribeInstances"], ["*"])
        self._add(fn, "AnswerOwnWait", ["states:SendTaskSuccess", "states:SendTaskFailure"], ["*"])

    def instance_state_change(self, fn: lambda_.Function) -> None:
        self._add(fn, "DescribeInstance", ["ec2:DescribeInstances"], ["*"])
        self._add(fn, "ReadAttemptToken", ["s3:GetObject"], [self.storage.job_objects_arn])
        self._add(fn, "ListJobBucket", ["s3:ListBucket"], [self.storage.job_buckets_arn])
        self._add(fn, "FailLostInstancesWait", ["states:SendTaskFailure"], ["*"])

    def poll_completion(self, fn: lambda_.Function) -> None:
        self._grant_job_report(fn)
        # The ended attempt's spot cost is integrated over its pool's price history (shared/spotcost.py).
        self._add(fn, "DescribeInstance", ["ec2:DescribeInstances", "ec2:DescribeSpotPriceHistory"], ["*"])
        self._allow_terminate_tagged(fn)
        # The console tail of an instance that failed before its agent started goes into the email.
        instances = [self._ec2("instance/*")]
        self._add(fn, "ReadOwnConsoleOutput", ["ec2:GetConsoleOutput"], instances, self._own_resources())

    def notify(self, fn: lambda_.Function) -> None:
        self.topic.grant_publish(fn)
        self._add(fn, "ReadJobReport", ["s3:GetObject"], [self.storage.job_objects_arn])
        self._add(fn, "ListJobBucket", ["s3:ListBucket"], [self.storage.job_buckets_arn])

    def summarize_sweep(self, fn: lambda_.Function) -> None:
        # Reads each variant's metrics and report; creates the sweep's own bucket (same prefix) for its report.
        self._add(fn, "CreateSweepBucket", CREATE_BUCKET_ACTIONS, [self.storage.job_buckets_arn])
        # DeleteObject: a new bucket is emptied of what was written before its policy (functions/create_bucket.py).
        self._add(
            fn, "SweepReport", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], [self.storage.job_objects_arn]
        )
        self.topic.grant_publish(fn)

    def terminate_instance(self, fn: lambda_.Function) -> None:
        self._add(fn, "DescribeLaunch", ["ec2:DescribeInstances", "ec2:DescribeSpotInstanceRequests"], ["*"])
        self._allow_cancel_tagged(fn)
        self._allow_terminate_tagged(fn)
        self._grant_job_report(fn)
        self.topic.grant_publish(fn)
        self._add(fn, "DeleteJobSecretsRole", JOB_ROLE_DELETES, [self.launch.job_roles_arn])

    @staticmethod
    def see_own_executions(scope: Construct, fn: lambda_.Function, state_machine: sfn.StateMachine) -> None:
        """validate_job lists the running executions of its own state machine to refuse a second run of a job.

        A separate policy, not the role's default one: the state machine names the function, and the
        function depends on its default policy, so naming the state machine there would be a cycle.
        """
        executions = Stack.of(scope).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{state_machine.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        assert fn.role is not None  # every task function is made with its own role (infra/functions.py)
        iam.Policy(
            scope,
            "ValidateJobSeesOwnExecutions",
            roles=[fn.role],
            statements=[
                iam.PolicyStatement(
                    sid="ListOwnExecutions",
                    actions=["states:ListExecutions"],
                    resources=[state_machine.state_machine_arn],
                ),
                iam.PolicyStatement(
                    sid="DescribeOwnExecutions", actions=["states:DescribeExecution"], resources=[executions]
                ),
            ],
        )

    def _grant_job_report(self, fn: lambda_.Function) -> None:
        # ListBucket makes a missing report.json read as NoSuchKey instead of AccessDenied.
        self._add(fn, "JobReport", ["s3:GetObject", "s3:PutObject"], [self.storage.job_objects_arn])
        self._add(fn, "ListJobBucket", ["s3:ListBucket"], [self.storage.job_buckets_arn])

    def _allow_terminate_tagged(self, fn: lambda_.Function) -> None:
        instances = [self._ec2("instance/*")]
        self._add(fn, "TerminateOwnInstances", ["ec2:TerminateInstances"], instances, self._own_resources())

    def _allow_cancel_tagged(self, fn: lambda_.Function) -> None:
        requests = [self._ec2("spot-instances-request/*")]
        self._add(fn, "CancelOwnSpotRequests", ["ec2:CancelSpotInstanceRequests"], requests, self._own_resources())

    def _own_resources(self) -> dict:
        return {"StringEquals": {f"ec2:ResourceTag/{TAG_STACK}": self.stack_name}}

    @staticmethod
    def _add(fn: lambda_.Function, sid: str, actions: list[str], resources: list[str], conditions: dict | None = None):
        fn.add_to_role_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources, conditions=conditions))

    def _ec2(self, resource: str) -> str:
        return self.launch.ec2_arn(resource)

    @staticmethod
    def _spot_service_role_arn() -> str:
        # RunInstances with spot options creates this role the first time an account uses spot.
        role = "role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"
        return f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:{role}"
