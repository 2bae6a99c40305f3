"""cdk-nag suppressions: each names the finding it accepts (appliesTo) and why it does not apply here.

The wildcards accepted are the ones IAM cannot avoid: job buckets named at run time under this
stack's prefix, EC2 ids that exist only after launch (always tag-conditioned), and APIs without
resource-level permissions. Anything else cdk-nag reports fails `tests/infra`.
"""

from __future__ import annotations

from typing import Mapping, Sequence


from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import IConstruct

from spottrain.infra.functions import TaskFunctions
from spottrain.infra.instance_launch import InstanceLaunch
from spottrain.infra.job_storage import JobStorage
from spottrain.infra.sweep_workflow import SweepWorkflow
from spottrain.infra.workflow import Workflow

_EC2 = "Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:"
INSTANCES, VOLUMES, SPOT_REQUESTS = _EC2 + "instance/*", _EC2 + "volume/*", _EC2 + "spot-instances-request/*"
ANY_SUBNET, NETWORK_INTERFACES, ANY_RESOURCE = _EC2 + "subnet/*", _EC2 + "network-interface/*", "Resource::*"

JOB_BUCKETS_REASON = (
    "Job buckets are created at run time, one per job, named <bucket prefix>-<exec_name>; the prefix "
    "wildcard is the narrowest ARN naming them, and the prefix belongs to this deployment."
)
TAGGED_EC2_REASON = (
    "Instance, volume and spot request ids exist only after launch; every statement on these ARNs is "
    "conditioned on this stack's spottrain:stack tag (aws:RequestTag to launch/tag, ec2:ResourceTag to stop)."
)
LAUNCH_EC2_REASON = (
    "RunInstances creates a network interface whose id is unknown in advance; without subnetIds configured "
    "the subnet is the default VPC's, chosen at run time. Template, security group and image are exact ARNs."
)
STATE_MACHINE_REASON = (
    "CloudWatch Logs delivery (logs:*LogDelivery, PutResourcePolicy, DescribeResourcePolicies, DescribeLogGroups) "
    "and X-Ray (PutTraceSegments, PutTelemetryRecords, GetSampling*), added by CDK for the state machine's logging "
    "and tracing, support no resource-level permissions."
)
L1_REASON = (
    "python3.12 is pinned to match the Powertools layer (AWSLambdaPowertoolsPythonV3-python312-x86_64) and the "
    "interpreter the handlers are tested with; upgrade both together."
)
S1_REASON = (
    "This bucket is the access-log destination (job buckets log into access-logs/); logging it into itself "
    "would log its own log deliveries."
)
OWN_EXECUTIONS_REASON = (
    "Execution names are chosen when each job starts; validate_job describes only executions of this stack's "
    "own state machine (arn ...:execution:<its name>:*) to refuse a second run of a job while one is active."
)
OWN_EXECUTIONS = RegexAppliesTo(
    regex=r"/^Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<[A-Za-z0-9]+\.Name>:\*$/g"
)
DESCRIBE_REASON = (
    "ec2:DescribeInstances, DescribeSpotInstanceRequests, DescribeSubnets, DescribeSpotPriceHistory, GetSpotPlacementScores "
    "and pricing:GetProducts "
    "support no resource-level permissions: IAM requires Resource *."
)

TASK_TOKEN_REASON = (
    "states:SendTaskHeartbeat/SendTaskSuccess/SendTaskFailure support no resource-level permissions: the task "
    "token is the capability. It is written only into the job's own bucket (status/attempt-<n>/task-token.json), "
    "read by that job's instance and the workflow's own Lambdas."
)
DESCRIBE_AND_TOKEN_REASON = DESCRIBE_REASON + " " + TASK_TOKEN_REASON
SECRETS_REASON = (
    "The permissions boundary of every job's secrets role: the most such a role may ever read, SSM parameters and "
    "Secrets Manager secrets under the fixed prefix /spottrain/ that spottrain validates. Each role's own policy "
    "names exactly the ARNs its job names (spottrain/functions/shared/secrets_role.py); a boundary grants nothing."
)
_SECRETS = "Resource::arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:{kind}/spottrain/*"
SECRETS = [_SECRETS.format(service="ssm", kind="parameter"), _SECRETS.format(service="secretsmanager", kind="secret:")]
JOB_ROLES = "Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:role/spottrain/jobs/<AWS::StackName>/*"
JOB_ROLES_REASON = (
    "A job's secrets role is created at run time, one per execution, under this stack's path /spottrain/jobs/<stack>/; "
    "the path wildcard is the narrowest ARN naming them. CreateRole is conditioned on the stack's permissions "
    "boundary; the instance role may only ask to assume them, and each role's trust policy admits its own job's "
    "instance alone (aws:userid <role-id>:<instance-id>)."
)


DATA_BUCKETS_REASON = (
    "The deployer names these dataset buckets (context dataBuckets) for every job's data_get_command to read; "
    "the instance role may list them and get their objects (bucket/*), nothing else."
)


def suppress(
    *,
    bucket_prefix: str,
    storage: JobStorage,
    launch: InstanceLaunch,
    functions: TaskFunctions,
    workflow: Workflow,
    data_buckets: tuple[str, ...] = (),
) -> None:
    job_buckets = _job_bucket_findings(bucket_prefix)
    instance_findings = {
        JOB_BUCKETS_REASON: job_buckets,
        TASK_TOKEN_REASON: [ANY_RESOURCE],
        JOB_ROLES_REASON: [JOB_ROLES],
    }
    if data_buckets:
        instance_findings[DATA_BUCKETS_REASON] = [f"Resource::arn:<AWS::Partition>:s3:::{b}/*" for b in data_buckets]
    _iam5(launch.role, instance_findings)
    _iam5(launch.secrets_boundary, {SECRETS_REASON: SECRETS})
    for task, findings in _task_findings(job_buckets, subnets_configured=bool(launch.subnet_ids)).items():
        _iam5(functions.by_task[task].role, findings)
    _iam5(workflow.state_machine.role, {STATE_MACHINE_REASON: [ANY_RESOURCE]})
    _iam5(workflow, {OWN_EXECUTIONS_REASON: [OWN_EXECUTIONS]})
    for fn in functions.by_task.values():
        NagSuppressions.add_resource_suppressions(fn, [NagPackSuppression(id="AwsSolutions-L1", reason=L1_REASON)])
    NagSuppressions.add_resource_suppressions(
        storage.bucket, [NagPackSuppression(id="AwsSolutions-S1", reason=S1_REASON)]
    )


CHILD_EXECUTIONS_REASON = (
    "A sweep's child executions are named when the sweep starts; the sweep state machine describes and stops only "
    "executions of this stack's job state machine (arn ...:execution:<its name>:*), as AWS documents for "
    "startExecution.sync."
)


def suppress_sweep(sweeps: SweepWorkflow) -> None:
    _iam5(sweeps.state_machine.role, {STATE_MACHINE_REASON: [ANY_RESOURCE], CHILD_EXECUTIONS_REASON: [OWN_EXECUTIONS]})


def _job_bucket_findings(bucket_prefix: str) -> list[str]:
    # How cdk-nag renders the prefix: the default is a join with the account id pseudo parameter.
    rendered = bucket_prefix or "spottrain-<AWS::AccountId>"
    buckets = f"Resource::arn:<AWS::Partition>:s3:::{rendered}-*"
    return [buckets, f"{buckets}/*"]


def _task_findings(job_buckets: list[str], *, subnets_configured: bool) -> dict[str, dict[str, list[str]]]:
    launch_wildcards = [NETWORK_INTERFACES] if subnets_configured else [NETWORK_INTERFACES, ANY_SUBNET]
    return {
        "create_bucket": {JOB_BUCKETS_REASON: job_buckets, JOB_ROLES_REASON: [JOB_ROLES]},
        "request_spot_instance": {
            JOB_BUCKETS_REASON: job_buckets,
            JOB_ROLES_REASON: [JOB_ROLES],
            TAGGED_EC2_REASON: [INSTANCES, VOLUMES, SPOT_REQUESTS],
            LAUNCH_EC2_REASON: launch_wildcards,
            DESCRIBE_REASON: [ANY_RESOURCE],
        },
        "check_bid": {
            JOB_BUCKETS_REASON: job_buckets,
            TAGGED_EC2_REASON: [INSTANCES, SPOT_REQUESTS],
            DESCRIBE_REASON: [ANY_RESOURCE],
        },
        "poll_completion": {
            JOB_BUCKETS_REASON: job_buckets,
            TAGGED_EC2_REASON: [INSTANCES],
            DESCRIBE_REASON: [ANY_RESOURCE],
        },
        "await_training": {JOB_BUCKETS_REASON: job_buckets, DESCRIBE_AND_TOKEN_REASON: [ANY_RESOURCE]},
        "instance_state_change": {JOB_BUCKETS_REASON: job_buckets, DESCRIBE_AND_TOKEN_REASON: [ANY_RESOURCE]},
        "notify": {JOB_BUCKETS_REASON: job_buckets},
        "summarize_sweep": {JOB_BUCKETS_REASON: job_buckets},
        "terminate_instance": {
            JOB_BUCKETS_REASON: job_buckets,
            JOB_ROLES_REASON: [JOB_ROLES],
            TAGGED_EC2_REASON: [INSTANCES, SPOT_REQUESTS],
            DESCRIBE_REASON: [ANY_RESOURCE],
        },
    }


def _iam5(role: IConstruct | None, findings_by_reason: Mapping[str, Sequence[str | RegexAppliesTo]]) -> None:
    assert role is not None  # every role here is one this stack makes
    NagSuppressions.add_resource_suppressions(
        role,
        [
            NagPackSuppression(id="AwsSolutions-IAM5", reason=reason, applies_to=list(applies_to))
            for reason, applies_to in findings_by_reason.items()
        ],
        apply_to_children=True,
    )
