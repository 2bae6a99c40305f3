"""The deployed roles allow every AWS call the Lambdas really make, over a whole job and a cancel.

moto enforces no IAM: without this check a Lambda calling an action its role lacks passes every
local run and fails on AWS at the first job.
"""
from __future__ import annotations

import copy
import logging

import pytest

from e2e_support import wait_until
from spottrain.local import Emulator
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


@pytest.mark.timeout(480)
def test_given_a_job_and_a_cancel_when_they_run_then_every_lambda_call_is_allowed_by_its_deployed_role(
    emulator_workdir, demo_job, slow_job, record_property
):
    with Emulator(emulator_workdir) as emulator:
        # Given a job that runs to its end and one that is cancelled while it trains
        slow_job = {**slow_job, "exec_name": "slow-iam-job"}  # its own bucket, apart from the cancel test's
        slow_arn = emulator.start_job(slow_job)
        demo = emulator.wait(emulator.start_job(demo_job), timeout=300)
        assert demo["status"] == "SUCCEEDED", demo.get("cause")
        assert any(instance.alive for instance in emulator.ec2.instances.values()), "the slow job is not training"
        terminations = emulator.lambda_host.invocations[TERMINATE]
        emulator.cancel(slow_job["exec_name"])
        assert emulator.wait(slow_arn, timeout=30)["status"] == "ABORTED"
        # both of the cancel's callers: `spottrain cancel` itself, then the ABORTED status-change event
        wait_until(lambda: emulator.lambda_host.invocations[TERMINATE] >= terminations + 2, timeout=20)

        # When the calls the functions made are compared with the roles the stack deployed
        calls = emulator.lambda_calls
        template = emulator.deployed_template()
        missing = missing_permissions(template, calls)

    # Then every function ran and called AWS (validate_job too: it lists the running executions), so the
    # check below is not vacuous
    handlers = set(allowed_actions_by_handler(template))
    assert set(emulator.lambda_host.invocations) == handlers
    assert {call.handler for call in calls} == handlers
    # And no call needs an action its role lacks
    assert missing == [], "\n".join(str(m) for m in missing)
    # And the check would have caught this morning's bug: without s3:ListBucket, the bucket checks fail
    flagged = {m.call.handler for m in missing_permissions(_without_action(template, "s3:ListBucket"), calls)}
    assert TERMINATE in flagged, flagged

    record_property("lambda_api_calls", len(calls))
    log.info("lambda calls checked against IAM: %s", sorted(calls))
