"""poll_completion: once the attempt's callback wait ends, markers + instance state -> SUCCEEDED / FAILED / INTERRUPTED."""

from __future__ import annotations

from spottrain.functions.shared import runtime

import datetime as dt

import pytest
from botocore.exceptions import ClientError

from spottrain.functions import poll_completion as pc
from spottrain.contract import layout, limits
from spottrain.functions.shared import report
from spot_fixtures import (  # noqa: F401 (aws, clients: fixtures)
    BUCKET,
    LAMBDA_CONTEXT,
    aws,
    clients,
    job_state,
    make_settings,
    put_marker,
    read_report,
    with_launch,
)

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
LAUNCHED_AT = NOW - dt.timedelta(minutes=30)
HEARTBEAT_TIMEOUT = {"Error": "States.HeartbeatTimeout", "Cause": ""}


@pytest.fixture
def running(aws):
    """A running instance launched 30 minutes ago as attempt 1, recorded in report.json."""
    ec2, s3 = aws
    instance_id = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="g5.xlarge", MinCount=1, MaxCount=1)[
        "Instances"
    ][0]["InstanceId"]
    state = with_launch(job_state(keep_alive_minutes=2), instance_id, launched_at=LAUNCHED_AT.isoformat())
    report.record_launch(s3, state["storage"]["bucket"], state["job"]["exec_name"], 1, state["launch"]["instance"])
    return ec2, s3, state


def written_by(state, **overrides) -> dict:
    """The identity every marker of the state's current attempt carries (attempt, instance, execution id)."""
    return {
        "attempt": state["launch"]["attempt"],
        "instance_id": state["launch"]["instance"]["instance_id"],
        "execution": state["execution"]["id"],
    } | overrides


def heartbeat(s3, state, age_seconds: int, phase: str = "exec", **identity):
    put_marker(
        s3,
        layout.HEARTBEAT_KEY,
        **written_by(state, **identity),
        phase=phase,
        time=(NOW - dt.timedelta(seconds=age_seconds)).isoformat(),
        last_log_line="epoch 3",
    )


def poll(ec2, s3, state, **settings):
    return pc.poll_completion(ec2, s3, make_settings(**settings), state, now=NOW)


def instance_state(ec2, state) -> str:
    instance_id = state["launch"]["instance"]["instance_id"]
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


def test_given_completed_with_exit_0_then_succeeded_recorded_and_keep_alive_converted(running):
    ec2, s3, state = running
    put_marker(s3, layout.COMPLETED_KEY, **written_by(state), exit_code=0, failed_phase=None, reason="exit")

    result = poll(ec2, s3, state, seconds_per_minute=60)

    assert result["status"] == "SUCCEEDED"
    assert result["terminate_after_seconds"] == 120  # keep_alive_minutes=2
    assert read_report(s3)["attempts"][0]["outcome"] == "SUCCEEDED"
    assert read_report(s3)["attempts"][0]["ended_at"] == NOW.isoformat()


@pytest.mark.parametrize(
    "on_failure, cap, kept_seconds",
    [({"keep_alive_minutes": 5}, 30, 300), ({}, 30, 0), ({"keep_alive_minutes": 5}, 0, 0)],
    ids=["debug door", "default 0", "stack without a door"],
)
def test_given_a_failed_training_then_the_debug_door_decides_how_long_the_instance_is_kept(
    running, on_failure, cap, kept_seconds
):
    ec2, s3, state = running
    state["job"]["on_failure"] = on_failure  # keep_alive_minutes=2 is for successes only
    put_marker(s3, layout.COMPLETED_KEY, **written_by(state), exit_code=2, failed_phase="exec", reason="exit")

    result = poll(ec2, s3, state, seconds_per_minute=60, max_failure_keep_alive_minutes=cap)

    assert (result["status"], result["terminate_after_seconds"]) == ("FAILED", kept_seconds)


def test_given_completed_with_a_non_zero_exit_then_failed_with_the_phase(running):
    ec2, s3, state = running
    put_marker(s3, layout.COMPLETED_KEY, **written_by(state), exit_code=2, failed_phase="exec", reason="exit")

    result = poll(ec2, s3, state)

    assert result["status"] == "FAILED"
    assert result["detail"]["failed_phase"] == "exec"
    assert result["detail"]["exit_code"] == 2
    assert read_report(s3)["attempts"][0]["outcome"] == "FAILED"


def test_given_markers_from_an_earlier_attempt_then_they_do_not_decide_the_current_one(running):
    ec2, s3, state = running
    state["launch"]["attempt"] = 2
    put_marker(s3, layout.COMPLETED_KEY, **written_by(state, attempt=1, instance_id="old"), exit_code=0)
    put_marker(s3, layout.INTERRUPTED_KEY, **written_by(state, attempt=1, instance_id="old"))
    heartbeat(s3, state, age_seconds=5)
    state["wait"] = HEARTBEAT_TIMEOUT

    assert poll(ec2, s3, state)["detail"]["reason"] == "lost"


@pytest.mark.parametrize("attempt, retry_allowed", [(1, True), (3, False)])
def test_given_an_interruption_marker_then_interrupted_and_retry_allowed_below_max_attempts(
    running, attempt, retry_allowed
):
    ec2, s3, state = running
    state["launch"]["attempt"] = attempt
    put_marker(s3, layout.INTERRUPTED_KEY, **written_by(state), action="terminate")

    result = poll(ec2, s3, state)

    assert (result["status"], result["retry_allowed"], result["attempt"]) == ("INTERRUPTED", retry_allowed, attempt)
    assert result["detail"]["reason"] == "spot-interruption"


def test_given_the_notice_marker_before_the_final_sync_then_interrupted_at_once_and_the_instance_left_syncing(running):
    # Given the agent's marker written at the notice, its final sync still running
    ec2, s3, state = running
    put_marker(s3, layout.INTERRUPTED_KEY, **written_by(state), final_sync_done=False)
    state["wait"] = {"Error": "SpotInterrupted", "Cause": "spot instance-action terminate"}

    # When judged
    result = poll(ec2, s3, state)

    # Then it is an interruption now (the relaunch overlaps the sync), and the instance is not touched
    assert (result["status"], result["detail"]["final_sync_done"]) == ("INTERRUPTED", False)
    assert result["detail"]["wait"] == {"error": "SpotInterrupted", "cause": "spot instance-action terminate"}
    assert instance_state(ec2, state) == "running"


def durable_checkpoint(s3, name: str = "snapshot_iter_40.npz") -> dt.datetime:
    """Upload a checkpoint as the agent's sync does; when S3 says it became durable."""
    key = layout.CHECKPOINTS_PREFIX + name
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"weights")
    return s3.head_object(Bucket=BUCKET, Key=key)["LastModified"]


def test_given_an_interruption_90s_after_the_last_durable_checkpoint_then_1_5_minutes_of_work_are_redone(running):
    # Given a checkpoint in S3, and the notice stopping the training 90 s later
    ec2, s3, state = running
    durable = durable_checkpoint(s3)
    noticed = durable + dt.timedelta(seconds=90)
    put_marker(s3, layout.INTERRUPTED_KEY, **written_by(state), noticed_at=noticed.isoformat())

    # When judged
    result = poll(ec2, s3, state)

    # Then the email's details and report.json say how much training the next attempt repeats
    assert result["detail"]["redone_minutes"] == 1.5
    entry = read_report(s3)["attempts"][0]
    assert (entry["redone_minutes"], entry["last_checkpoint_at"]) == (1.5, report.isoformat(durable))


def test_given_no_checkpoint_before_the_notice_then_the_whole_attempt_is_redone(running):
    # Given the only checkpoint reached S3 after the notice (not durable when the training stopped), and the
    # attempt launched 5 minutes before the notice
    ec2, s3, state = running
    noticed = durable_checkpoint(s3) - dt.timedelta(seconds=10)
    state["launch"]["instance"]["launched_at"] = report.isoformat(noticed - dt.timedelta(seconds=300))
    put_marker(s3, layout.INTERRUPTED_KEY, **written_by(state), noticed_at=noticed.isoformat())

    result = poll(ec2, s3, state)

    assert (result["detail"]["redone_minutes"], result["detail"]["last_checkpoint_at"]) == (5.0, None)


def test_given_the_instance_is_gone_after_heartbeats_without_a_final_marker_then_interrupted(running):
    ec2, s3, state = running
    heartbeat(s3, state, age_seconds=20)
    ec2.terminate_instances(InstanceIds=[state["launch"]["instance"]["instance_id"]])

    result = poll(ec2, s3, state)

    assert (result["status"], result["detail"]["reason"]) == ("INTERRUPTED", "instance-gone")
    assert read_report(s3)["attempts"][0]["outcome"] == "INTERRUPTED"


def test_given_the_instance_finished_and_shut_itself_down_then_the_marker_wins(running):
    ec2, s3, state = running
    put_marker(s3, layout.COMPLETED_KEY, **written_by(state), exit_code=0)
    ec2.terminate_instances(InstanceIds=[state["launch"]["instance"]["instance_id"]])

    assert poll(ec2, s3, state)["status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    "wait",
    [
        HEARTBEAT_TIMEOUT,
        {"Error": "InstanceLost", "Cause": "instance i-1 stopping"},
        {"Error": "AgentError", "Cause": "boom"},
    ],
)
def test_given_the_wait_ended_while_the_instance_runs_silent_then_it_is_terminated_and_interrupted(running, wait):
    # Given heartbeats from this attempt, then silence: the wait ended without a completed or interrupted marker
    ec2, s3, state = running
    heartbeat(s3, state, age_seconds=300)
    state["wait"] = wait

    # When judged
    result = poll(ec2, s3, state)

    # Then the silent instance is terminated (nothing left billing) and the attempt counts as interrupted
    assert (result["status"], result["detail"]["reason"], result["detail"]["heartbeat_age_seconds"]) == (
        "INTERRUPTED",
        "lost",
        300,
    )
    assert result["detail"]["wait"]["error"] == wait["Error"]
    assert instance_state(ec2, state) in ("shutting-down", "terminated")
    assert read_report(s3)["attempts"][0]["outcome"] == "INTERRUPTED"


def test_given_the_wait_timed_out_while_the_instance_runs_then_failed_for_max_runtime_not_relaunched(running):
    ec2, s3, state = running
    heartbeat(s3, state, age_seconds=10)
    state["wait"] = {"Error": "States.Timeout", "Cause": ""}

    result = poll(ec2, s3, state)

    assert (result["status"], result["detail"]["reason"]) == ("FAILED", "max_runtime")
    assert instance_state(ec2, state) in ("shutting-down", "terminated")


def test_given_a_stopped_instance_then_interrupted_and_terminated_so_it_does_not_linger(running):
    ec2, s3, state = running
    heartbeat(s3, state, age_seconds=10)
    ec2.stop_instances(InstanceIds=[state["launch"]["instance"]["instance_id"]])

    result = poll(ec2, s3, state)

    assert (result["status"], result["detail"]["reason"]) == ("INTERRUPTED", "instance-gone")
    assert instance_state(ec2, state) in ("shutting-down", "terminated")


def test_given_no_heartbeat_at_all_when_the_wait_ends_then_the_bootstrap_failed_and_the_instance_is_terminated(running):
    ec2, s3, state = running
    state["wait"] = HEARTBEAT_TIMEOUT

    result = poll(ec2, s3, state)

    assert (
        result["detail"]["reason"] == "bootstrap failed"
        and "no heartbeat 1800 s after launch" in result["detail"]["message"]
    )
    assert result["status"] == "FAILED" and instance_state(ec2, state) in ("shutting-down", "terminated")


def test_given_the_handler_when_invoked_then_the_result_has_every_field_the_state_machine_reads(running, monkeypatch):
    ec2, s3, state = running
    put_marker(s3, layout.COMPLETED_KEY, **written_by(state), exit_code=0)
    state["wait"] = {"attempt": 1, "outcome": "completed"}
    monkeypatch.setenv("STACK_NAME", "SpotTrainTest")
    monkeypatch.setenv("BUCKET_PREFIX", "spottrain-123456789012")
    runtime.settings.cache_clear()
    try:
        result = pc.handler(state, LAMBDA_CONTEXT)
    finally:
        runtime.settings.cache_clear()
    assert {"status", "attempt", "retry_allowed", "terminate_after_seconds", "detail"} <= set(result)
    assert result["status"] == "SUCCEEDED"
    assert result["detail"]["wait"] == {"error": None, "answer": {"attempt": 1, "outcome": "completed"}}


def set_state_reason(ec2, state, code: str) -> None:
    """What EC2 records on an instance it ended itself (moto's API only ever records user shutdowns)."""
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.instances import StateReason

    instance_id = state["launch"]["instance"]["instance_id"]
    ec2.terminate_instances(InstanceIds=[instance_id])
    backend = ec2_backends["123456789012"]["us-east-1"]
    backend.get_instance(instance_id).state_reason = StateReason(f"{code}: reason", code)


def test_given_another_executions_completion_in_the_shared_bucket_then_it_does_not_end_this_run(running):
    # Given this run training (heartbeats), and a completed.json another execution of the job wrote, same attempt number
    ec2, s3, state = running
    heartbeat(s3, state, age_seconds=5)
    put_marker(
        s3,
        layout.COMPLETED_KEY,
        **written_by(state, execution="arn:aws:states:...:execution:sm:other-run"),
        exit_code=0,
    )
    state["wait"] = HEARTBEAT_TIMEOUT

    # When judged, Then the other run's success is not this one's: this run's silent instance was lost
    assert poll(ec2, s3, state)["detail"]["reason"] == "lost"


def test_given_a_marker_from_another_instance_of_the_same_attempt_then_it_does_not_decide(running):
    ec2, s3, state = running
    heartbeat(s3, state, age_seconds=5)
    put_marker(s3, layout.INTERRUPTED_KEY, **written_by(state, instance_id="i-0withdrawn"))
    state["wait"] = HEARTBEAT_TIMEOUT

    assert poll(ec2, s3, state)["detail"]["reason"] == "lost"


@pytest.mark.parametrize("code", ["Client.InstanceInitiatedShutdown", "Client.UserInitiatedShutdown"])
def test_given_the_instance_ended_before_any_heartbeat_then_the_bootstrap_failed_once_with_the_console_tail(
    running, code
):
    # Given an instance that shut down (or was shut down) before its agent ever sent a heartbeat of this attempt
    ec2, s3, state = running
    heartbeat(s3, state, age_seconds=5, attempt=0)  # the previous attempt's heartbeat is no sign of this one
    set_state_reason(ec2, state, code)

    # When polled
    result = poll(ec2, s3, state)

    # Then the attempt failed (no relaunch), saying so, with the console's last lines for the email
    assert (result["status"], result["detail"]["reason"], result["detail"]["failed_phase"]) == (
        "FAILED",
        "bootstrap failed",
        "bootstrap",
    )
    assert code in result["detail"]["message"]
    assert (
        result["detail"]["console_tail"][-1] == "Enabling fast FPU save and restore... done."
    )  # moto's canned console
    assert read_report(s3)["attempts"][0]["outcome"] == "FAILED"


def test_given_ec2_reclaimed_the_instance_before_any_heartbeat_then_interrupted_and_relaunched(running):
    ec2, s3, state = running
    set_state_reason(ec2, state, "Server.SpotInstanceTermination")

    result = poll(ec2, s3, state)

    assert (result["status"], result["detail"]["state_reason"]) == ("INTERRUPTED", "Server.SpotInstanceTermination")
    assert result["retry_allowed"] is True


def test_given_the_console_cannot_be_read_then_the_failure_says_why_instead(running, monkeypatch):
    ec2, s3, state = running
    set_state_reason(ec2, state, "Client.InstanceInitiatedShutdown")

    def no_console(**_):
        raise ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "no"}}, "GetConsoleOutput")

    monkeypatch.setattr(ec2, "get_console_output", no_console)
    detail = poll(ec2, s3, state)["detail"]

    assert (detail["console_tail"], detail["console_unavailable"]) == ([], "UnauthorizedOperation")


def test_given_terminal_codes_in_the_completion_message_then_the_detail_is_plain(running):
    ec2, s3, state = running
    put_marker(
        s3,
        layout.COMPLETED_KEY,
        **written_by(state),
        exit_code=1,
        reason="disk_full",
        message="\x1b[31mdisk full\x1b[0m on /home: 0 bytes left",
    )

    assert poll(ec2, s3, state)["detail"]["message"] == "disk full on /home: 0 bytes left"


def with_spend_cap(state: dict, usd: float) -> dict:
    state["job"]["limits"]["max_cost_usd"] = usd
    return state


def test_given_the_agent_stopped_at_the_spend_cap_then_failed_with_the_cap_and_spend(running):
    # Given a $0.10 cap and the agent's completed.json saying it stopped there
    ec2, s3, state = running
    with_spend_cap(state, 0.1)
    put_marker(s3, layout.COMPLETED_KEY, **written_by(state), exit_code=143, failed_phase="exec", reason="spend_cap")

    # When judged
    result = poll(ec2, s3, state)

    # Then the job fails for its cap (the state machine's FailureKind reads spend_cap_reached), no relaunch
    assert (result["status"], result["spend_cap_reached"], result["retry_allowed"]) == ("FAILED", True, False)
    assert result["spend_cap"]["cap_usd"] == 0.1
    assert result["spend_cap"]["spent_usd"] == pytest.approx(
        report.summarize(read_report(s3), NOW)["estimated_cost_usd"]
    )


@pytest.mark.parametrize("cap, relaunch", [(0.1, False), (100.0, True)])
def test_given_an_interruption_when_the_spend_so_far_reached_the_cap_then_no_relaunch(running, cap, relaunch):
    # Given 30 minutes at $0.40/h ($0.20) spent when the spot reclaim came
    ec2, s3, state = running
    with_spend_cap(state, cap)
    put_marker(s3, layout.INTERRUPTED_KEY, **written_by(state), action="terminate")

    result = poll(ec2, s3, state)

    # Then under the cap it relaunches; at it, it ends (the email and the SpendCapReached error say why)
    assert result["status"] == "INTERRUPTED"
    assert (result["retry_allowed"], result["spend_cap_reached"]) == (relaunch, not relaunch)


def test_given_a_failed_command_over_the_cap_then_it_stays_a_training_failure(running):
    ec2, s3, state = running
    with_spend_cap(state, 0.01)
    put_marker(s3, layout.COMPLETED_KEY, **written_by(state), exit_code=2, failed_phase="exec", reason="exit")

    assert poll(ec2, s3, state)["spend_cap_reached"] is False


def test_given_the_last_attempt_claims_an_unfinished_final_sync_then_the_workflow_waits_the_notice_window_then_terminates(
    running,
):
    # Given the last attempt's instance saying it was interrupted and is still syncing (a compromised instance can
    # write this marker and simply never shut down)
    ec2, s3, state = running
    state["launch"]["attempt"] = 3
    put_marker(s3, layout.INTERRUPTED_KEY, **written_by(state), final_sync_done=False)

    # When judged
    result = poll(ec2, s3, state)

    # Then no retry; the workflow waits out the spot notice's two minutes (plus a margin) before its last
    # TerminateInstance, which then spares nothing: a real interruption is over by then, a fake one ends there
    assert (result["status"], result["retry_allowed"]) == ("INTERRUPTED", False)
    assert result["terminate_after_seconds"] == limits.FINAL_SYNC_WINDOW_MINUTES * 60
    assert result["final_sync_waited"] is True


def test_given_an_earlier_attempts_instance_still_running_when_the_next_attempt_is_judged_then_it_is_terminated(
    running,
):
    # Given attempt 2 ending, while attempt 1's instance of the same run still runs: it said it was interrupted
    # (a compromised instance can write that marker) and never shut down
    ec2, s3, state = running
    state["launch"]["attempt"] = 2
    settings = make_settings()
    tags = {
        layout.TAG_STACK: settings.stack_name,
        layout.TAG_JOB: state["job"]["exec_name"],
        layout.TAG_EXECUTION: state["execution"]["name"],
    }
    earlier, other_run = (
        ec2.run_instances(
            ImageId="ami-12c6146b",
            InstanceType="g5.xlarge",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in (tags | extra).items()],
                }
            ],
        )["Instances"][0]["InstanceId"]
        for extra in ({layout.TAG_ATTEMPT: "1"}, {layout.TAG_ATTEMPT: "1", layout.TAG_EXECUTION: "another-run"})
    )
    put_marker(s3, layout.COMPLETED_KEY, **written_by(state), exit_code=0)

    # When attempt 2 is judged
    result = poll(ec2, s3, state)

    # Then attempt 1's instance is terminated (its notice window is long over), nothing of another run is touched
    assert result["status"] == "SUCCEEDED"
    states = {
        i["InstanceId"]: i["State"]["Name"]
        for r in ec2.describe_instances(InstanceIds=[earlier, other_run])["Reservations"]
        for i in r["Instances"]
    }
    assert states == {earlier: "terminated", other_run: "running"}
