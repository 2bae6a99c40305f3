"""The replacement boots while the reclaimed instance still syncs: it restores only after that sync."""

from __future__ import annotations

import json
import time

import pytest
from agent_support import EXECUTION_ID, job_document, train

from spottrain.agent.overlap import previous_sync_pending, wait_for_previous_sync

SYNCING = {"attempt": 1, "execution": "exec-1", "final_sync_done": False}


def agent_log(agent, attempt: int = 2) -> str:
    return (agent.workdir / "logs" / f"attempt-{attempt}" / "agent.log").read_text()


def heartbeat_phase(agent):
    return agent.json("status/heartbeat.json")["phase"] if agent.exists("status/heartbeat.json") else None


def put_marker(s3, bucket, **fields) -> None:
    marker = {"attempt": 1, "instance_id": "i-previous", "execution": EXECUTION_ID, "action": "terminate", **fields}
    s3.put_object(Bucket=bucket, Key="status/interrupted.json", Body=json.dumps(marker).encode())


def test_given_attempt_1_still_syncing_when_attempt_2_starts_then_it_restores_only_what_the_final_sync_uploaded(
    agent, training_repo, s3, bucket
):
    s3.put_object(Bucket=bucket, Key="checkpoints/snapshot_iter_1", Body=b"periodic sync")
    put_marker(s3, bucket, final_sync_done=False)
    agent.put_job(job_document(training_repo, agent.marks, exec_command=train("resume")))

    agent.start(attempt=2)
    deadline = time.time() + 30
    while heartbeat_phase(agent) != "wait_previous_sync":
        assert time.time() < deadline and agent.process.poll() is None, "attempt 2 never waited"
        time.sleep(0.05)
    # When: attempt 1's final sync uploads the snapshot it saved at SIGTERM, then says so.
    s3.put_object(Bucket=bucket, Key="checkpoints/snapshot_iter_2", Body=b"saved at SIGTERM")
    put_marker(s3, bucket, final_sync_done=True, checkpoints_synced=True)
    agent.wait()

    # Then: the training resumed from the snapshot of the final sync, and the log says what it waited for.
    seen = json.loads(agent.text("output/seen_at_start.json"))
    assert set(seen["files"]) == {"snapshot_iter_1", "snapshot_iter_2"}
    assert "waited" in agent_log(agent) and "for attempt 1's final sync" in agent_log(agent)
    assert agent.json("status/completed.json")["phase_seconds"]["wait_previous_sync"] >= 0


def test_given_attempt_1_never_finishes_its_sync_when_the_bound_passes_then_attempt_2_restores_what_is_there(
    agent, training_repo, s3, bucket
):
    s3.put_object(Bucket=bucket, Key="checkpoints/snapshot_iter_1", Body=b"periodic sync")
    put_marker(s3, bucket, final_sync_done=False)  # e.g. its instance was reclaimed mid-upload
    agent.put_job(job_document(training_repo, agent.marks, exec_command=train("resume")))

    agent.start(attempt=2, SPOTTRAIN_PREVIOUS_SYNC_WAIT_SECONDS="1").wait()

    assert set(json.loads(agent.text("output/seen_at_start.json"))["files"]) == {"snapshot_iter_1"}
    assert agent.json("status/completed.json")["exit_code"] == 0
    log = agent_log(agent)
    assert "gave up after" in log and "SPOTTRAIN_PREVIOUS_SYNC_WAIT_SECONDS=1" in log


@pytest.mark.parametrize(
    "marker, attempt, why",
    [
        ({**SYNCING, "final_sync_done": True}, 2, "the sync is over"),
        ({"attempt": 1, "execution": "exec-1"}, 2, "an older agent's marker has no final_sync_done"),
        ({**SYNCING, "execution": "exec-0"}, 2, "a marker of another execution"),
        (SYNCING, 3, "a marker of an attempt before the previous one"),
        (SYNCING, 1, "the first attempt has no previous one"),
        (None, 2, "no marker at all"),
    ],
)
def test_given_nothing_to_wait_for_then_no_wait(marker, attempt, why):
    assert not previous_sync_pending(marker, attempt, "exec-1"), why


def test_given_the_previous_attempt_still_syncing_then_wait():
    assert previous_sync_pending(SYNCING, 2, "exec-1")


def test_given_the_marker_unreadable_for_a_moment_when_waiting_then_it_keeps_waiting():
    answers = iter([SYNCING, OSError("S3 hiccup"), SYNCING, {**SYNCING, "final_sync_done": True}])
    reads = []

    def read():
        reads.append(1)
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    waited = wait_for_previous_sync(read, 2, "exec-1", bound_seconds=60, pause=lambda seconds: False)

    assert waited.needed and waited.done and len(reads) == 4


def test_given_a_spot_notice_while_waiting_then_the_wait_ends_at_once():
    waited = wait_for_previous_sync(lambda: SYNCING, 2, "exec-1", bound_seconds=60, pause=lambda seconds: True)

    assert waited.needed and not waited.done
