"""The task Lambdas and the EC2 event handler: one shared code asset, one role and one log group each, the same settings.

Each function gets its own role so that the stack can grant it exactly its own calls
(infra/permissions.py); the log group is explicit (not `log_retention=`, which needs a custom
resource) so the template stays plain enough for the local emulator to deploy.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from spottrain.infra.assets import LAMBDA_ASSET, keep_only
from spottrain.infra.layers import jsonschema_layer

TASKS = (
    "validate_job",
    "create_bucket",
    "request_spot_instance",
    "check_bid",
    "await_training",
    "poll_completion",
    "notify",
    "terminate_instance",
    "instance_state_change",
    "summarize_sweep",
)
# Invoked by the EC2 state-change rule, never by the state machine.
EVENT_HANDLERS = frozenset({"instance_state_change"})
# Invoked by the sweep state machine only.
SWEEP_TASKS = frozenset({"summarize_sweep"})

LAMBDA_ASSET_EXCLUDE = keep_only(*LAMBDA_ASSET)

POWERTOOLS_LAYER = "AWSLambdaPowertoolsPythonV3-python312-x86_64:27"
POWERTOOLS_ACCOUNT = "017000801446"  # the Powertools team's public layer account


def construct_name(task: str) -> str:
    """validate_job -> ValidateJob: construct ids and ASL placeholders derive from the task name."""
    return "".join(part.capitalize() for part in task.split("_"))


def default_powertools_layer_arn() -> str:
    return f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{POWERTOOLS_ACCOUNT}:layer:{POWERTOOLS_LAYER}"


class TaskFunctions(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        repo_root: Path,
        environment: dict[str, str],
        powertools_layer_arn: str | None,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        code = lambda_.Code.from_asset(str(repo_root), exclude=LAMBDA_ASSET_EXCLUDE)
        layer_arn = default_powertools_layer_arn() if powertools_layer_arn is None else powertools_layer_arn
        layers: list[lambda_.ILayerVersion] = [jsonschema_layer(self, "JsonSchema")]
        if layer_arn:
            layers.append(lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", layer_arn))
        self.by_task: dict[str, lambda_.Function] = {
            task: self._function(task, code, layers, environment, log_retention) for task in TASKS
        }

    def _function(
        self,
        task: str,
        code: lambda_.Code,
        layers: list[lambda_.ILayerVersion],
        environment: dict[str, str],
        log_retention: logs.RetentionDays,
    ) -> lambda_.Function:
        name = construct_name(task)
        role = iam.Role(
            self,
            f"{name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"spottrain {task} Lambda",
        )
        log_group = logs.LogGroup(self, f"{name}Logs", retention=log_retention)
        log_group.grant_write(role)
        return lambda_.Function(
            self,
            name,
            description=f"spottrain task {task}",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.X86_64,
            handler=f"spottrain.functions.{task}.handler",
            code=code,
            layers=layers,
            role=role,
            log_group=log_group,
            memory_size=256,
            timeout=Duration.seconds(60),
            environment=environment,
        )
