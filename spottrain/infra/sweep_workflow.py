"""The sweep state machine (statemachine/sweep.asl.json): a Map state over child executions of the job one.

Its role may start the job state machine, describe and stop that machine's executions, and manage the
EventBridge rule Step Functions uses to learn that a `.sync` child ended: exactly the policy AWS documents
for `startExecution.sync` (https://docs.aws.amazon.com/step-functions/latest/dg/stepfunctions-iam.html).
No TimeoutSeconds: each child is bounded by the job state machine's own timeout, and the sweep ends when
its last child does.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

# Step Functions creates and manages this rule in the account for every `.sync` nested execution.
SYNC_EVENTS_RULE = "StepFunctionsGetEventsForStepFunctionsExecutionRule"


class SweepWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        asl_path: Path,
        job_state_machine: sfn.StateMachine,
        summarize: lambda_.IFunction,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_string(asl_path.read_text()),
            definition_substitutions={
                "JobStateMachineArn": job_state_machine.state_machine_arn,
                "SummarizeSweepFunctionArn": summarize.function_arn,
            },
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        )
        stack = Stack.of(self)
        self.child_executions_arn = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{job_state_machine.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.sync_rule_arn = stack.format_arn(service="events", resource="rule", resource_name=SYNC_EVENTS_RULE)
        for statement in (
            iam.PolicyStatement(
                sid="StartVariants", actions=["states:StartExecution"], resources=[job_state_machine.state_machine_arn]
            ),
            iam.PolicyStatement(
                sid="WatchAndStopVariants",
                actions=["states:DescribeExecution", "states:StopExecution"],
                resources=[self.child_executions_arn],
            ),
            iam.PolicyStatement(
                sid="SyncEventsRule",
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[self.sync_rule_arn],
            ),
            iam.PolicyStatement(
                sid="InvokeSummarize", actions=["lambda:InvokeFunction"], resources=[summarize.function_arn]
            ),
        ):
            self.state_machine.add_to_role_policy(statement)
