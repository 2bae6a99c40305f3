"""The sweep state machine in the template: its definition, its substitutions and exactly the IAM AWS documents for .sync."""

from __future__ import annotations

import json
import re

from infra_synth import job_machines

from spottrain.infra.stack import SWEEP_ASL
from spottrain.infra.sweep_workflow import SYNC_EVENTS_RULE


def _sweep_machine(synth) -> tuple[str, dict]:
    (found,) = [
        (mid, m)
        for mid, m in synth.resources("AWS::StepFunctions::StateMachine").items()
        if mid.startswith("SweepWorkflow")
    ]
    return found


def _sweep_statements(synth) -> dict[str, dict]:
    _, machine = _sweep_machine(synth)
    role_id = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    return {
        statement.get("Sid"): statement
        for policy in synth.resources("AWS::IAM::Policy").values()
        if role_id in [ref["Ref"] for ref in policy["Properties"].get("Roles", [])]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    }


def test_given_the_stack_then_the_sweep_runs_the_asl_file_with_the_job_machine_and_summarize_filled_in(any_synth):
    _, machine = _sweep_machine(any_synth)
    properties = machine["Properties"]
    assert json.loads(properties["DefinitionString"]) == json.loads(SWEEP_ASL.read_text())
    assert set(properties["DefinitionSubstitutions"]) == set(re.findall(r"\$\{(\w+)\}", SWEEP_ASL.read_text()))
    (job_id,) = job_machines(any_synth)
    assert properties["DefinitionSubstitutions"]["JobStateMachineArn"] == {"Ref": job_id}
    summarize_id = properties["DefinitionSubstitutions"]["SummarizeSweepFunctionArn"]["Fn::GetAtt"][0]
    handler = any_synth.template["Resources"][summarize_id]["Properties"]["Handler"]
    assert handler == "spottrain.functions.summarize_sweep.handler"


def test_given_the_sweep_role_then_it_holds_exactly_the_documented_sync_policy_scoped_to_the_job_machine(default_synth):
    statements = _sweep_statements(default_synth)
    (job_id,) = job_machines(default_synth)
    assert statements["StartVariants"]["Action"] == "states:StartExecution"
    assert statements["StartVariants"]["Resource"] == {"Ref": job_id}
    watch = statements["WatchAndStopVariants"]
    assert sorted(watch["Action"]) == ["states:DescribeExecution", "states:StopExecution"]
    assert f'"{job_id}", "Name"' in json.dumps(watch["Resource"]) and json.dumps(watch["Resource"]).endswith(':*"]]}')
    rule = statements["SyncEventsRule"]
    assert sorted(rule["Action"]) == ["events:DescribeRule", "events:PutRule", "events:PutTargets"]
    assert json.dumps(rule["Resource"]).endswith(f':rule/{SYNC_EVENTS_RULE}"]]}}')
    assert statements["InvokeSummarize"]["Action"] == "lambda:InvokeFunction"


def test_given_the_stack_then_its_outputs_name_the_sweep_machine(default_synth):
    machine_id, _ = _sweep_machine(default_synth)
    assert default_synth.template["Outputs"]["SweepStateMachineArn"]["Value"] == {"Ref": machine_id}
    # And the cap on a sweep's parallelism, which the CLI uses when a sweep gives no max_parallel
    assert default_synth.template["Outputs"]["MaxSweepParallel"]["Value"] == "10"
