"""TerminateInstance: whoever calls it, the job's instances and open spot requests are gone afterwards,
nothing else is touched, the report is closed once, and a cancellation is announced once."""

from __future__ import annotations

import json

import boto3
import pytest

from jobstate_support import ORIGINAL_2017_SPEC
from jobstate_support import STACK, FakeLambdaContext, job_state, make_settings, received, subscribe_queue
from jobstate_support import aws, lambda_env, requests_use_tls  # noqa: F401 (fixtures, used by name)
from spottrain.functions import create_bucket, terminate_instance
from spottrain.contract import layout
from spottrain.functions.shared import report

AMI = "ami-12c6146b"  # one of moto's built-in images
JOB = "pix2pix-facade"
BUCKET = "spottrain-123456789012-pix2pix-facade"
LAUNCH = {
    "instance_type": "g5.xlarge",
    "lifecycle": "spot",
    "launched_at": "2026-01-01T00:00:00+00:00",
    "price_per_hour": 0.4,
    "on_demand_price_per_hour": 1.0,
}


def launch(ec2, tags: dict[str, str]) -> str:
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
    return ec2.run_instances(ImageId=AMI, InstanceType="g5.xlarge", MinCount=1, MaxCount=1, TagSpecifications=spec)[
        "Instances"
    ][0]["InstanceId"]


def open_request(ec2, tags: dict[str, str]) -> str:
    spec = (
        [{"ResourceType": "spot-instances-request", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
        if tags
        else []
    )
    answer = ec2.request_spot_instances(
        SpotPrice="1",
        InstanceCount=1,
        TagSpecifications=spec,
        LaunchSpecification={"ImageId": AMI, "InstanceType": "g5.xlarge"},
    )
    return answer["SpotInstanceRequests"][0]["SpotInstanceRequestId"]


def state_of(ec2, instance_id: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


OURS = {layout.TAG_JOB: JOB, layout.TAG_STACK: STACK, layout.TAG_EXECUTION: "run-1"}  # job_state's execution


@pytest.fixture
def job_with_instances(lambda_env):
    """A launched job plus neighbours that must survive: another job, another stack, an untagged instance."""
    ec2, s3 = boto3.client("ec2"), boto3.client("s3")
    state = job_state()
    state["storage"] = create_bucket.create_job_bucket(s3, make_settings(), state)
    ours = launch(ec2, OURS)
    report.record_launch(s3, BUCKET, JOB, 1, {**LAUNCH, "instance_id": ours})
    state["launch"] = {"status": "LAUNCHED", "attempt": 1, "instance": {**LAUNCH, "instance_id": ours}}
    bystanders = [
        launch(ec2, {**OURS, layout.TAG_JOB: "other-job"}),
        launch(ec2, {**OURS, layout.TAG_STACK: "other-stack"}),
        launch(ec2, {}),
    ]
    return state, ours, bystanders, ec2, s3, subscribe_queue(lambda_env)


def test_given_successful_workflow_when_terminating_then_only_the_jobs_instance_goes_and_report_closes(
    job_with_instances,
):
    state, ours, bystanders, ec2, s3, inbox = job_with_instances
    state["poll"] = {"status": "SUCCEEDED"}

    answer = terminate_instance.handler(state, FakeLambdaContext())

    assert answer == {"terminated": [ours], "cancelled_requests": []}
    assert state_of(ec2, ours) in ("shutting-down", "terminated")
    assert [state_of(ec2, other) for other in bystanders] == ["running"] * 3
    closed = report.load(s3, BUCKET)
    assert closed["status"] == "SUCCEEDED" and closed["attempts"][0]["outcome"] == "SUCCEEDED"
    assert received(inbox) == []  # the workflow sends its own emails


def test_given_terminated_once_when_called_again_then_nothing_more_happens(job_with_instances):
    state, ours, _, ec2, s3, _ = job_with_instances
    state["poll"] = {"status": "FAILED"}
    terminate_instance.handler(state, FakeLambdaContext())
    finished_at = report.load(s3, BUCKET)["finished_at"]

    again = terminate_instance.handler(state, FakeLambdaContext())

    assert again == {"terminated": [], "cancelled_requests": []}
    assert report.load(s3, BUCKET)["finished_at"] == finished_at


def test_given_caught_error_when_terminating_then_report_says_error_and_open_requests_are_cancelled(job_with_instances):
    state, ours, _, ec2, s3, _ = job_with_instances
    tagged = open_request(ec2, OURS)
    untagged_but_in_state = open_request(ec2, {})
    foreign = open_request(ec2, {**OURS, layout.TAG_JOB: "other-job"})
    state["launch"]["instance"]["spot_request_id"] = untagged_but_in_state
    state["error"] = {"Error": "States.Timeout", "Cause": "PollCompletion timed out"}

    answer = terminate_instance.handler(state, FakeLambdaContext())

    assert answer["terminated"] == [ours]
    assert answer["cancelled_requests"] == sorted([tagged, untagged_but_in_state])
    remaining = ec2.describe_spot_instance_requests(Filters=[{"Name": "state", "Values": ["open", "active"]}])
    assert [r["SpotInstanceRequestId"] for r in remaining["SpotInstanceRequests"]] == [foreign]
    assert report.load(s3, BUCKET)["status"] == "ERROR"


def execution_status_change(status: str, execution_input: dict) -> dict:
    return {
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "detail": {"status": status, "name": "run-1", "input": json.dumps(execution_input)},
    }


def test_given_aborted_execution_event_when_handled_then_instance_gone_and_one_cancelled_email(job_with_instances):
    state, ours, bystanders, ec2, s3, inbox = job_with_instances
    raw_spec = {
        k: state["job"][k]
        for k in ("exec_name", "repository_url", "data_dir", "output_dir", "data_get_command", "exec_command")
    }

    answer = terminate_instance.handler(execution_status_change("ABORTED", raw_spec), FakeLambdaContext())

    assert answer["terminated"] == [ours]
    assert report.load(s3, BUCKET)["status"] == "CANCELLED"
    emails = received(inbox)
    assert len(emails) == 1
    assert emails[0]["Subject"].startswith("[spottrain] pix2pix-facade cancelled (execution aborted) after ")
    assert f"Report: s3://{BUCKET}/report.json" in emails[0]["Message"]


def test_given_timed_out_execution_when_handled_then_report_says_timed_out(job_with_instances):
    state, ours, _, ec2, s3, inbox = job_with_instances

    answer = terminate_instance.handler(execution_status_change("TIMED_OUT", {"exec_name": JOB}), FakeLambdaContext())

    assert answer["terminated"] == [ours]
    assert report.load(s3, BUCKET)["status"] == "TIMED_OUT"
    email = received(inbox)[0]
    assert "execution timed out" in email["Subject"] and "Reason: execution timed out" in email["Message"]


@pytest.mark.parametrize("final_sync_done, spared", [(False, True), (True, False)])
def test_given_the_last_attempt_interrupted_then_an_instance_still_in_its_final_sync_is_spared(
    job_with_instances, final_sync_done, spared
):
    # Given the workflow ending the job after an interruption with no attempt left
    state, ours, _, ec2, _, _ = job_with_instances
    state = {
        **state,
        "launch": {**state.get("launch", {}), "instance": {"instance_id": ours}},
        "poll": {"status": "INTERRUPTED", "detail": {"final_sync_done": final_sync_done}},
    }

    # When it terminates the job's instances
    answer = terminate_instance.handler(state, FakeLambdaContext())

    # Then the instance still uploading its checkpoints keeps running (it shuts itself down); a synced one goes
    assert (answer["terminated"] == []) is spared
    assert state_of(ec2, ours) == ("running" if spared else "terminated")


def test_given_cli_cancel_then_aborted_event_when_both_handled_then_one_email(job_with_instances):
    state, ours, _, ec2, s3, inbox = job_with_instances

    first = terminate_instance.handler({"exec_name": JOB, "reason": "cancelled"}, FakeLambdaContext())
    second = terminate_instance.handler(execution_status_change("ABORTED", {"exec_name": JOB}), FakeLambdaContext())

    assert first["terminated"] == [ours] and second == {"terminated": [], "cancelled_requests": []}
    assert len(received(inbox)) == 1
    assert report.load(s3, BUCKET)["status"] == "CANCELLED"


def test_given_cancel_before_bucket_exists_when_handled_then_email_without_report(lambda_env):
    inbox = subscribe_queue(lambda_env)

    answer = terminate_instance.handler({"exec_name": JOB, "reason": "cancelled"}, FakeLambdaContext())

    assert answer == {"terminated": [], "cancelled_requests": []}
    assert received(inbox)[0]["Subject"] == "[spottrain] pix2pix-facade cancelled (cancelled)"


def test_given_cli_cancel_naming_its_run_when_handled_then_the_email_names_that_execution(lambda_env):
    inbox = subscribe_queue(lambda_env)

    terminate_instance.handler(
        {"exec_name": JOB, "reason": "cancelled", "execution": "pix2pix-facade-20261130T120000"}, FakeLambdaContext()
    )

    message = received(inbox)[0]["Message"]
    assert "Execution: pix2pix-facade-20261130T120000" in message and "Execution: ?" not in message


@pytest.mark.parametrize(
    "event",
    [
        {"exec_name": JOB, "reason": "cancelled", "execution": "run-1", "emails": False},
        execution_status_change("ABORTED", {"exec_name": JOB, "emails": False}),
        execution_status_change("TIMED_OUT", {"exec_name": JOB, "emails": False}),
    ],
)
def test_given_a_job_that_asked_for_no_email_when_cancelled_by_either_path_then_its_instances_go_and_no_email(
    job_with_instances, event
):
    # Given a summary-only sweep's variant (emails false) with a running instance
    _, ours, _, ec2, s3, inbox = job_with_instances
    # When the CLI's cancel or the ABORTED/TIMED_OUT event reaches TerminateInstance
    answer = terminate_instance.handler(event, FakeLambdaContext())
    # Then the instance is gone and the report closed, but no email goes out (the sweep's summary speaks)
    assert answer["terminated"] == [ours] and report.load(s3, BUCKET)["status"] in ("CANCELLED", "TIMED_OUT")
    assert received(inbox) == []


@pytest.mark.parametrize(
    "event",
    [
        execution_status_change("SUCCEEDED", {"exec_name": JOB}),  # the rule only forwards ABORTED/TIMED_OUT
        execution_status_change("ABORTED", ["not", "a", "spec"]),
        {
            "detail-type": "Step Functions Execution Status Change",
            "detail": {"status": "ABORTED", "input": "{not json"},
        },
    ],
)
def test_given_event_naming_no_job_when_handled_then_nothing_is_touched(lambda_env, event):
    ec2 = boto3.client("ec2")
    ours = launch(ec2, OURS)
    inbox = subscribe_queue(lambda_env)

    assert terminate_instance.handler(event, FakeLambdaContext()) == {"terminated": [], "cancelled_requests": []}
    assert state_of(ec2, ours) == "running" and received(inbox) == []


def test_given_unrecognised_event_when_handled_then_error_lists_accepted_shapes(lambda_env):
    with pytest.raises(ValueError, match="expected the workflow state, an EventBridge execution status change"):
        terminate_instance.handler({"hello": "world"}, FakeLambdaContext())


def test_given_an_instance_of_another_run_of_the_job_when_this_run_ends_then_only_this_runs_instance_goes(
    job_with_instances,
):
    # Given an instance the same job launched from another execution (another run sharing the name)
    state, ours, _, ec2, _, _ = job_with_instances
    other_run = launch(ec2, {**OURS, layout.TAG_EXECUTION: "run-0"})
    other_request = open_request(ec2, {**OURS, layout.TAG_EXECUTION: "run-0"})
    state["poll"] = {"status": "SUCCEEDED"}

    # When this run's workflow terminates its instance
    answer = terminate_instance.handler(state, FakeLambdaContext())

    # Then the other run's instance and spot request are left alone
    assert answer == {"terminated": [ours], "cancelled_requests": []}
    assert state_of(ec2, other_run) == "running"
    open_ids = [
        r["SpotInstanceRequestId"]
        for r in ec2.describe_spot_instance_requests(Filters=[{"Name": "state", "Values": ["open", "active"]}])[
            "SpotInstanceRequests"
        ]
    ]
    assert open_ids == [other_request]


def test_given_spottrain_cancel_then_every_instance_of_the_job_goes_whatever_run_launched_it(job_with_instances):
    state, ours, bystanders, ec2, _, _ = job_with_instances
    other_run = launch(ec2, {**OURS, layout.TAG_EXECUTION: "run-0"})

    answer = terminate_instance.handler({"exec_name": JOB, "reason": "cancelled"}, FakeLambdaContext())

    assert answer["terminated"] == sorted([ours, other_run])
    assert [state_of(ec2, other) for other in bystanders] == ["running"] * 3


SECRET_SPEC_SETTINGS = dict(
    instance_role_arn="arn:aws:iam::123456789012:role/spottrain-test-InstanceRole",
    instance_role_id="AROA" + "EXAMPLEROLEID00001",
    secrets_boundary_arn="arn:aws:iam::123456789012:policy/spottrain-test-SecretsBoundary",
)


@pytest.mark.parametrize(
    "caller",
    [
        "workflow",  # TerminateInstance, TerminateAfterFailure, TerminateOnError: the whole state
        "aborted",  # the EventBridge rule, for an aborted or timed-out execution
        "cancel",  # `spottrain cancel`, naming the job's current run
    ],
)
def test_given_a_job_with_a_secrets_role_when_any_caller_ends_it_then_the_role_is_gone(lambda_env, caller):
    # Given run-1 of a job naming a secret, whose CreateBucket made its secrets role
    s3, iam = boto3.client("s3"), boto3.client("iam")
    settings = make_settings(**SECRET_SPEC_SETTINGS)
    state = job_state({**ORIGINAL_2017_SPEC, "secrets": {"HF_TOKEN": "/spottrain/hf-token"}}, settings)
    state["storage"] = create_bucket.create_job_bucket(s3, settings, state, iam)
    assert len(iam.list_roles(PathPrefix="/spottrain/jobs/")["Roles"]) == 1
    event = {
        "workflow": state,
        "aborted": execution_status_change("ABORTED", {"exec_name": JOB}),
        "cancel": {"exec_name": JOB, "reason": "cancelled", "execution": "run-1"},
    }[caller]

    # When that caller ends the job, twice (the cancel is followed by the ABORTED event)
    terminate_instance.handler(event, FakeLambdaContext())
    terminate_instance.handler(event, FakeLambdaContext())

    # Then the role and its policy are gone
    assert iam.list_roles(PathPrefix="/spottrain/jobs/")["Roles"] == []


def test_given_the_workflow_already_waited_out_the_final_sync_then_the_syncing_instance_is_terminated(
    job_with_instances,
):
    # Given the last attempt's instance still claiming its final sync after PollCompletion's notice window
    state, ours, _, ec2, _, _ = job_with_instances
    state = {
        **state,
        "launch": {**state.get("launch", {}), "instance": {"instance_id": ours}},
        "poll": {"status": "INTERRUPTED", "final_sync_waited": True, "detail": {"final_sync_done": False}},
    }

    # When the workflow's last TerminateInstance runs
    answer = terminate_instance.handler(state, FakeLambdaContext())

    # Then it is terminated: a real spot interruption has ended it by now, a faked one must not outlive the job
    assert answer["terminated"] == [ours]
    assert state_of(ec2, ours) == "terminated"


def test_given_an_error_after_an_interruption_then_the_syncing_instance_is_terminated_all_the_same(
    job_with_instances,
):
    # Given a workflow error (TerminateOnError) after an attempt that said it was interrupted and still syncing:
    # nothing runs after TerminateOnError, so a spared instance would outlive the job for good
    state, ours, _, ec2, _, _ = job_with_instances
    state = {
        **state,
        "launch": {**state.get("launch", {}), "instance": {"instance_id": ours}},
        "poll": {"status": "INTERRUPTED", "detail": {"final_sync_done": False}},
        "error": {"Error": "TransientError", "Cause": "boom"},
    }

    # When TerminateOnError runs
    answer = terminate_instance.handler(state, FakeLambdaContext())

    # Then the instance is terminated
    assert answer["terminated"] == [ours]
    assert state_of(ec2, ours) == "terminated"
