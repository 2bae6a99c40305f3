"""The state machine (its ASL lives in statemachine/*.asl.json) and the two rules that answer for it.

An aborted or timed-out execution runs no Catch, so an EventBridge rule hands those to the
terminate_instance Lambda: no path leaves an instance or an open spot request behind. An instance
that stops or ends without its agent reporting would leave its attempt's callback wait open until the
heartbeat timeout, so a rule on EC2 state changes hands those to instance_state_change, which fails
the wait within seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from spottrain.contract.instances import ENDED_INSTANCE_STATES
from spottrain.infra.functions import construct_name


def substitution_name(task: str) -> str:
    """validate_job -> ValidateJobFunctionArn, the ASL's `${...}` placeholder for that task's Lambda."""
    return f"{construct_name(task)}FunctionArn"


def definition_with_timeout(asl_path: Path, timeout: Duration) -> str:
    """The ASL with the stack's execution timeout.

    CDK applies `timeout=` only to definitions it builds itself, so the file's top-level
    TimeoutSeconds is set here; inline (not from_file's S3 asset) keeps one asset fewer to publish.
    """
    definition = json.loads(asl_path.read_text())
    definition["TimeoutSeconds"] = int(timeout.to_seconds())
    return json.dumps(definition, indent=2)


class Workflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        asl_path: Path,
        functions: dict[str, lambda_.IFunction],
        instance_state_change: lambda_.IFunction,
        timeout: Duration,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_string(definition_with_timeout(asl_path, timeout)),
            definition_substitutions={substitution_name(task): fn.function_arn for task, fn in functions.items()},
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        )
        # Not grant_invoke: the ASL calls unqualified ARNs, so no version/alias wildcard (`:*`) is needed.
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="InvokeTaskFunctions",
                actions=["lambda:InvokeFunction"],
                resources=[fn.function_arn for fn in functions.values()],
            )
        )
        self._terminate_when_stopped(functions["terminate_instance"])
        self._report_lost_instances(instance_state_change)

    def _terminate_when_stopped(self, terminate: lambda_.IFunction) -> None:
        events.Rule(
            self,
            "StoppedExecutionRule",
            description="ABORTED or TIMED_OUT executions run no Catch: terminate their instance here",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "status": ["ABORTED", "TIMED_OUT"],
                    "stateMachineArn": [self.state_machine.state_machine_arn],
                },
            ),
            targets=[targets.LambdaFunction(terminate, retry_attempts=4, max_event_age=Duration.hours(2))],
        )

    def _report_lost_instances(self, handler: lambda_.IFunction) -> None:
        # Every instance in the account and region matches; the handler keeps only this stack's (by tag).
        events.Rule(
            self,
            "InstanceStateChangeRule",
            description="An instance that stops or ends without its agent reporting: fail its attempt's wait now",
            event_pattern=events.EventPattern(
                source=["aws.ec2"],
                detail_type=["EC2 Instance State-change Notification"],
                detail={"state": sorted(ENDED_INSTANCE_STATES)},
            ),
            targets=[targets.LambdaFunction(handler, retry_attempts=4, max_event_age=Duration.minutes(30))],
        )
