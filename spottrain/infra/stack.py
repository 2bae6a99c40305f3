"""The one spottrain stack: composes the units, grants permissions, exports what the CLI needs."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Annotations, CfnOutput, Duration, Stack, Tags
from aws_cdk import aws_logs as logs
from constructs import Construct

from spottrain.contract.layout import TAG_STACK
from spottrain.contract.limits import BOOTSTRAP_MARGIN_MINUTES
from spottrain.infra import nag
from spottrain.infra.debug_door import open_debug_door
from spottrain.infra.config import StackConfig
from spottrain.infra.functions import EVENT_HANDLERS, SWEEP_TASKS, TaskFunctions
from spottrain.infra.instance_launch import InstanceLaunch
from spottrain.infra.job_storage import JobStorage
from spottrain.infra.notifications import Notifications
from spottrain.infra.permissions import TaskPermissions
from spottrain.infra.sweep_workflow import SweepWorkflow
from spottrain.infra.workflow import Workflow

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ASL = REPO_ROOT / "statemachine" / "spottrain.asl.json"
SWEEP_ASL = REPO_ROOT / "statemachine" / "sweep.asl.json"


class SpotTrainStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, asl_path: Path | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, description="spottrain: train on spot GPUs from one job spec", **kwargs)
        config = StackConfig.from_context(self.node.try_get_context)
        retention = retention_for(config.log_retention_days)

        notifications = Notifications(self, "Notifications", email=config.notification_email)
        storage = JobStorage(self, "JobStorage", bucket_prefix=config.bucket_prefix)
        launch = InstanceLaunch(
            self,
            "InstanceLaunch",
            repo_root=REPO_ROOT,
            storage=storage,
            ami_ssm_parameter=config.ami_ssm_parameter,
            vpc_id=config.vpc_id,
            subnet_ids=config.subnet_ids,
            root_volume_gb=config.root_volume_gb,
        )
        if config.data_buckets:
            launch.allow_reading(config.data_buckets)
        if config.max_failure_keep_alive_minutes > 0:
            open_debug_door(launch.role)
        functions = TaskFunctions(
            self,
            "Tasks",
            repo_root=REPO_ROOT,
            environment=self._lambda_environment(config, notifications, storage, launch),
            powertools_layer_arn=config.powertools_layer_arn,
            log_retention=retention,
        )
        permissions = TaskPermissions(
            stack_name=self.stack_name, storage=storage, launch=launch, topic=notifications.topic
        )
        permissions.grant_all(functions.by_task)
        workflow = Workflow(
            self,
            "Workflow",
            asl_path=asl_path or DEFAULT_ASL,
            functions={task: fn for task, fn in functions.by_task.items() if task not in EVENT_HANDLERS | SWEEP_TASKS},
            instance_state_change=functions.by_task["instance_state_change"],
            timeout=Duration.seconds(round(config.job_timeout_hours * 3600)),
            log_retention=retention,
        )
        permissions.see_own_executions(workflow, functions.by_task["validate_job"], workflow.state_machine)
        sweeps = SweepWorkflow(
            self,
            "SweepWorkflow",
            asl_path=SWEEP_ASL,
            job_state_machine=workflow.state_machine,
            summarize=functions.by_task["summarize_sweep"],
            log_retention=retention,
        )
        Tags.of(self).add(TAG_STACK, self.stack_name)
        self._outputs(notifications, storage, functions, workflow)
        CfnOutput(self, "SweepStateMachineArn", value=sweeps.state_machine.state_machine_arn)
        # The CLI's default for a sweep without max_parallel, and the most it lets one run at once.
        CfnOutput(self, "MaxSweepParallel", value=str(config.max_sweep_parallel))
        self._warn_if_timeout_cuts_training(config)
        nag.suppress(
            bucket_prefix=config.bucket_prefix,
            storage=storage,
            launch=launch,
            functions=functions,
            workflow=workflow,
            data_buckets=config.data_buckets,
        )
        nag.suppress_sweep(sweeps)

    def _lambda_environment(
        self, config: StackConfig, notifications: Notifications, storage: JobStorage, launch: InstanceLaunch
    ) -> dict[str, str]:
        """Every variable of docs/ARCHITECTURE.md "Lambda environment", for every function."""
        return {
            "STACK_NAME": self.stack_name,
            "BUCKET_PREFIX": storage.bucket_prefix,
            "RECORDS_BUCKET": storage.bucket.bucket_name,
            "TOPIC_ARN": notifications.topic.topic_arn,
            "LAUNCH_TEMPLATE_ID": launch.launch_template.launch_template_id or "",  # always set once synthesized
            "AGENT_BUCKET": launch.agent.s3_bucket_name,
            "AGENT_KEY": launch.agent.s3_object_key,
            "INSTANCE_ROLE_ARN": launch.role.role_arn,
            "INSTANCE_ROLE_ID": launch.role.role_id,
            "SECRETS_BOUNDARY_ARN": launch.secrets_boundary.managed_policy_arn,
            **config.lambda_environment(),
        }

    def _outputs(
        self, notifications: Notifications, storage: JobStorage, functions: TaskFunctions, workflow: Workflow
    ) -> None:
        # Logical ids are the contract with the CLI and the emulator: keep them stable.
        CfnOutput(self, "StateMachineArn", value=workflow.state_machine.state_machine_arn)
        CfnOutput(self, "TopicArn", value=notifications.topic.topic_arn)
        CfnOutput(self, "BucketName", value=storage.bucket.bucket_name)
        CfnOutput(self, "JobBucketPrefix", value=storage.bucket_prefix)
        CfnOutput(self, "TerminateFunctionName", value=functions.by_task["terminate_instance"].function_name)
        # `spottrain validate --stack-name` checks a spec with the settings this function runs with.
        CfnOutput(self, "ValidateJobFunctionName", value=functions.by_task["validate_job"].function_name)
        # The emulator delivers EC2 state changes to it, as the stack's EventBridge rule does on AWS.
        CfnOutput(
            self, "InstanceStateChangeFunctionName", value=functions.by_task["instance_state_change"].function_name
        )

    def _warn_if_timeout_cuts_training(self, config: StackConfig) -> None:
        # One execution watches every attempt of a job, each bounded by its callback wait's timeout.
        longest_job_seconds = (
            config.max_attempts
            * (
                config.max_runtime_minutes
                + max(config.max_keep_alive_minutes, config.max_failure_keep_alive_minutes)
                + BOOTSTRAP_MARGIN_MINUTES
            )
            * 60
        )
        if config.job_timeout_hours * 3600 < longest_job_seconds:
            Annotations.of(self).add_warning_v2(
                "spottrain:JobTimeoutShorterThanRuntime",
                f"jobTimeoutHours={config.job_timeout_hours:g} is shorter than maxAttempts x (maxRuntimeMinutes + "
                f"the longer of maxKeepAliveMinutes and maxFailureKeepAliveMinutes + {BOOTSTRAP_MARGIN_MINUTES} min): long jobs would be stopped by the execution "
                "timeout. Raise jobTimeoutHours.",
            )


# CloudWatch accepts only these periods (days), in the order logs.RetentionDays lists them.
_RETENTION_PERIODS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


def retention_for(days: int) -> logs.RetentionDays:
    """The shortest allowed retention that keeps logs at least `days` days."""
    members = [member for member in logs.RetentionDays if member is not logs.RetentionDays.INFINITE]
    for period, member in zip(_RETENTION_PERIODS, members):
        if period >= days:
            return member
    return logs.RetentionDays.TEN_YEARS
