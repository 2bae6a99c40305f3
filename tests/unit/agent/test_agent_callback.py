"""The agent answers the workflow's callback wait: a real task token from moto's Step Functions executor.

Each test starts a one-state machine whose Task waits for a token (as WaitForTraining does), puts
the token where await_training would, runs the agent as a process, and reads how the execution ended.
"""

from __future__ import annotations

import json
import time

import boto3
import pytest
from botocore.stub import Stubber
from agent_support import EXECUTION_ID, FakeImds, job_document, put_token, train

from spottrain.agent.callback import TaskCallback, error_for
from spottrain.contract.status import CallbackError

INTERRUPTED = "status/interrupted.json"
COMPLETED = "status/completed.json"
WAIT_HISTORY = ["ExecutionStarted", "TaskStateEntered", "TaskScheduled", "TaskStarted", "TaskSubmitted"]


def agent_log(agent) -> str:
    path = agent.workdir / "logs" / "attempt-1" / "agent.log"
    return path.read_text() if path.exists() else ""


def wait_for(condition, what: str, timeout: float = 30):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.05)


# --- the agent as a process, against a real waiting execution -------------------------------------


def test_given_a_token_that_appears_after_boot_when_training_outlasts_heartbeat_seconds_then_heartbeats_keep_the_wait_and_success_ends_it(
    agent, training_repo, waiting_task, s3, bucket
):
    # The agent beats every 0.5 s: 16 chances per window, as a machine running 8 busy processes on 2 cores once
    # got none of 8 through to the workflow in 4 s (the window bounds a failure; the test waits for events)
    heartbeat_seconds = 8
    token = waiting_task.start(heartbeat_seconds=heartbeat_seconds)
    agent.put_job(job_document(training_repo, agent.marks, exec_command=train("hold")))
    agent.start()
    agent.wait_for_file(agent.marks / "started")

    # Given: the token appears only once the agent runs, as await_training writes it seconds after boot.
    put_token(s3, bucket, token)
    wait_for(lambda: "task token of attempt 1 found" in agent_log(agent), "the agent finding its token")
    found = time.time()
    # When: the training runs for 1.5 heartbeat windows after that, silence would have timed the task out.
    wait_for(lambda: time.time() - found > 1.5 * heartbeat_seconds, "1.5 heartbeat windows", timeout=60)
    still = waiting_task.describe()["status"]
    (agent.marks / "release").write_text("1")
    ended = waiting_task.wait_until_over()
    agent.wait()

    # Then: the wait was open all along, and the agent's success is its output, after completed.json.
    reaction = ended["stopDate"].timestamp() - float((agent.marks / "exit_time").read_text())
    print(f"\nmeasured: training exit -> execution SUCCEEDED (final sync, completed.json, callback): {reaction:.2f}s")
    assert still == "RUNNING"
    assert ended["status"] == "SUCCEEDED", ended
    assert json.loads(ended["output"]) == {
        "attempt": 1,
        "instance_id": FakeImds.instance_id,
        "execution": EXECUTION_ID,
        "outcome": "completed",
    }
    assert agent.json(COMPLETED)["exit_code"] == 0
    # Heartbeats add no history events: the history grows with attempts, not with hours.
    assert waiting_task.history() == WAIT_HISTORY + ["TaskSucceeded", "TaskStateExited", "ExecutionSucceeded"]
    assert agent.process.returncode == 0 and agent.shutdown_flag.exists()


def test_given_a_failing_training_when_it_exits_then_the_wait_fails_with_training_failed_and_a_short_cause(
    agent, training_repo, waiting_task, s3, bucket
):
    put_token(s3, bucket, waiting_task.start())
    agent.put_job(job_document(training_repo, agent.marks, exec_command=train("fail")))

    agent.start().wait()
    ended = waiting_task.wait_until_over()

    assert ended["status"] == "FAILED"
    assert ended["error"] == "TrainingFailed"
    # moto's server drops the cause (AWS keeps it): the agent log shows what was sent.
    assert "SendTaskFailure(TrainingFailed, 'attempt 1: exec command exited with code 3') sent" in agent_log(agent)
    assert agent.json(COMPLETED)["exit_code"] == 3


def test_given_a_missing_repository_when_cloning_fails_then_the_wait_fails_with_clone_failed(
    agent, training_repo, waiting_task, s3, bucket, tmp_path
):
    put_token(s3, bucket, waiting_task.start())
    agent.put_job(job_document(training_repo, agent.marks, repository_url=(tmp_path / "nowhere").as_uri()))

    agent.start().wait()
    ended = waiting_task.wait_until_over()

    assert ended["status"] == "FAILED" and ended["error"] == "CloneFailed"
    sent = [line for line in agent_log(agent).splitlines() if "SendTaskFailure(CloneFailed" in line]
    assert len(sent) == 1 and "attempt 1: git clone of file://" in sent[0] and "nowhere" in sent[0]


def test_given_a_spot_notice_when_training_is_still_saving_then_spot_interrupted_has_already_failed_the_wait(
    agent, training_repo, waiting_task, s3, bucket, imds
):
    put_token(s3, bucket, waiting_task.start())
    agent.put_job(job_document(training_repo, agent.marks, exec_command=train("holdsave")))
    agent.start()
    agent.wait_for_file(agent.marks / "started")
    wait_for(lambda: "task token of attempt 1 found" in agent_log(agent), "the agent finding its token")

    # When: the notice comes; the training's save on SIGTERM lasts until the test releases it, so the
    # final sync cannot have run before the release, and the release waits for the execution's end.
    posted = imds.reclaim(seconds_left=120)
    ended = waiting_task.wait_until_over()
    early = agent.json(INTERRUPTED)
    (agent.marks / "release").write_text("1")
    agent.wait()

    # Then: the workflow heard of it, and the marker said so, before the final sync ...
    reaction = ended["stopDate"].timestamp() - posted
    print(f"\nmeasured: spot notice -> SpotInterrupted ends the wait: {reaction:.2f}s (notice poll 0.2s)")
    assert ended["status"] == "FAILED" and ended["error"] == "SpotInterrupted"
    assert f"SendTaskFailure(SpotInterrupted, 'spot interruption notice on {FakeImds.instance_id}" in agent_log(agent)
    assert early["final_sync_done"] is False and early["attempt"] == 1 and early["execution"] == EXECUTION_ID
    assert early["instance_id"] == FakeImds.instance_id and early["action"] == "terminate"
    # ... and the marker tells the truth once it has.
    final = agent.json(INTERRUPTED)
    assert final["final_sync_done"] is True and final["checkpoints_synced"] is True
    assert final["command_killed"] is False and final["not_synced"] == []
    assert agent.text("checkpoints/snapshot_on_sigterm") == "saved at SIGTERM"
    assert agent.shutdown_flag.exists() and not agent.exists(COMPLETED)


def test_given_a_token_already_used_when_the_agent_heartbeats_then_it_stops_calling_and_still_finishes(
    agent, training_repo, waiting_task, s3, bucket
):
    token = waiting_task.start()
    waiting_task.sfn.send_task_success(taskToken=token, output="{}")  # e.g. await_training answered it
    assert waiting_task.wait_until_over()["status"] == "SUCCEEDED"
    put_token(s3, bucket, token)
    agent.put_job(job_document(training_repo, agent.marks, exec_command=train("hold")))
    agent.start()
    wait_for(lambda: "answered InvalidToken" in agent_log(agent), "the agent hearing InvalidToken")
    beats = set()

    def three_more_heartbeats():
        beats.add(agent.json("status/heartbeat.json")["time"])
        return len(beats) > 3

    wait_for(three_more_heartbeats, "three more heartbeats")

    (agent.marks / "release").write_text("1")
    agent.wait()

    log = agent_log(agent)
    assert log.count("answered InvalidToken") == 1  # once: no call after the first answer
    assert "SendTaskSuccess" not in log
    assert agent.json(COMPLETED)["exit_code"] == 0
    assert agent.process.returncode == 0 and agent.shutdown_flag.exists()


def test_given_no_token_by_the_end_when_training_completes_then_the_agent_just_finishes(agent, training_repo):
    agent.put_job(job_document(training_repo, agent.marks))

    agent.start().wait()

    assert agent.json(COMPLETED)["exit_code"] == 0
    assert "SendTaskSuccess skipped: no task token for attempt 1" in agent_log(agent)
    assert agent.process.returncode == 0 and agent.shutdown_flag.exists()


# --- TaskCallback on its own, with Step Functions' answers stubbed -------------------------------


def callback_with(token_document):
    states = boto3.client("stepfunctions", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    callback = TaskCallback(states, lambda: token_document, attempt=1, instance_id="i-1", retry_delay=0)
    callback.execution = "exec-1"
    return callback, Stubber(states)


OURS = {"token": "t-1", "attempt": 1, "instance_id": "i-1", "execution": "exec-1"}


@pytest.mark.parametrize("code", ["TaskTimedOut", "InvalidToken", "TaskDoesNotExist"])
def test_given_the_wait_is_over_when_a_heartbeat_hears_so_then_no_later_call_is_made(code):
    callback, stub = callback_with(OURS)
    stub.add_client_error("send_task_heartbeat", service_error_code=code, expected_params={"taskToken": "t-1"})

    with stub:  # the Stubber raises on any call it was not told to expect
        callback.heartbeat()
        callback.heartbeat()
        answered = callback.succeed({"outcome": "completed"})
        failed = callback.fail(CallbackError.TRAINING_FAILED, "exit 3")

    stub.assert_no_pending_responses()
    assert callback.over and not answered and not failed


def test_given_an_answer_sent_when_the_end_answers_again_then_it_is_not_sent_twice():
    callback, stub = callback_with(OURS)
    stub.add_response("send_task_failure", {}, {"taskToken": "t-1", "error": "SpotInterrupted", "cause": "notice"})

    with stub:
        first = callback.fail(CallbackError.SPOT_INTERRUPTED, "notice", tries=1)
        again = callback.fail(CallbackError.SPOT_INTERRUPTED, "after the final sync")
        callback.heartbeat()

    assert first and not again


def test_given_a_throttled_answer_when_retried_then_the_second_try_answers():
    callback, stub = callback_with(OURS)
    stub.add_client_error("send_task_success", service_error_code="ThrottlingException", http_status_code=400)
    stub.add_response("send_task_success", {}, {"taskToken": "t-1", "output": '{"outcome": "completed"}'})

    with stub:
        assert callback.succeed({"outcome": "completed"})


@pytest.mark.parametrize("field, value", [("execution", "exec-0"), ("instance_id", "i-0"), ("attempt", 2)])
def test_given_a_token_file_of_another_run_when_read_then_it_is_never_used(field, value):
    callback, stub = callback_with({**OURS, field: value})  # e.g. a rerun reuses attempt-1's key

    with stub:
        callback.heartbeat()
        answered = callback.succeed({"outcome": "completed"})

    assert callback.token is None and not answered


def test_given_a_long_message_when_failing_then_the_cause_is_one_line_of_at_most_256_characters():
    callback, stub = callback_with(OURS)
    one_line = ("x " * 400).strip()
    stub.add_response(
        "send_task_failure", {}, {"taskToken": "t-1", "error": "AgentError", "cause": one_line[:253] + "..."}
    )
    with stub:
        assert callback.fail(CallbackError.AGENT_ERROR, "x\n" * 400)


@pytest.mark.parametrize(
    "reason, error",
    [
        ("exit", "TrainingFailed"),
        ("max_runtime", "RuntimeLimit"),
        ("spend_cap", "SpendCap"),
        ("disk_full", "DiskFull"),
        ("clone_failed", "CloneFailed"),
        ("job_invalid", "JobInvalid"),
        ("job_unreadable", "JobInvalid"),
        ("interrupted", "SpotInterrupted"),
        ("restore_failed", "AgentError"),
        ("agent_error", "AgentError"),
    ],
)
def test_each_outcome_reason_maps_to_its_contract_error(reason, error):
    assert error_for(reason) == error
