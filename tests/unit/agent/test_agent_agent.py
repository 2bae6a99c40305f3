"""The agent end to end, as a process: moto's S3 server for the bucket, a fake IMDSv2, a local git repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from agent_support import EXECUTION_ID, REPO_ROOT, job_document, train

from spottrain.agent import runner
from spottrain.contract import debug_door

COMPLETED = "status/completed.json"
INTERRUPTED = "status/interrupted.json"
HEARTBEAT = "status/heartbeat.json"


def test_given_a_good_job_when_the_agent_runs_then_logs_outputs_and_completed_json_land(agent, training_repo):
    agent.put_job(job_document(training_repo, agent.marks))

    agent.start()
    seen = agent.wait_for_key(COMPLETED)
    agent.wait()

    delay = seen - float((agent.marks / "exit_time").read_text())
    print(f"\nmeasured: command exit -> completed.json in S3: {delay:.2f}s")
    assert delay < 5
    completed = agent.json(COMPLETED)
    assert completed["exit_code"] == 0 and completed["failed_phase"] is None and completed["reason"] == "exit"
    assert completed["attempt"] == 1 and completed["instance_id"] == "i-0123456789abcdef0"
    assert completed["execution"] == EXECUTION_ID  # the id, which a rerun of the same job does not share
    assert completed["synced"] is True and completed["not_synced"] == [] and completed["command_killed"] is False
    assert set(completed["phase_seconds"]) == {"clone", "restore", "setup", "data", "exec"}
    assert agent.text("output/model.txt") == "weights"
    assert agent.text("checkpoints/snapshot_iter_1") == "state"
    log = agent.output_log()
    assert "setting up" in log and "fetching data" in log and "epoch 4 loss 0.2" in log
    assert "attempt 1" in agent.text("logs/attempt-1/agent.log")
    heartbeat = agent.json(HEARTBEAT)
    assert heartbeat["phase"] in ("sync", "done")
    assert heartbeat["execution"] == EXECUTION_ID and heartbeat["instance_id"] == "i-0123456789abcdef0"
    assert agent.process.returncode == 0 and agent.shutdown_flag.exists()


def test_given_a_job_env_when_commands_run_then_they_see_it_and_the_spottrain_variables(agent, training_repo):
    agent.put_job(job_document(training_repo, agent.marks))

    agent.start().wait()

    env = json.loads(agent.text("output/env.json"))
    clone = agent.home / "payload"
    assert env["GREETING"] == "hello world; $(not run)"  # passed as data, never through a shell
    assert env["SPOTTRAIN_JOB"] == "demo" and env["SPOTTRAIN_ATTEMPT"] == "1" and "SPOTTRAIN_RESUME" not in env
    assert env["SPOTTRAIN_LATEST_CHECKPOINT"] == ""  # a fresh start: `${VAR:+--resume "$VAR"}` adds nothing
    assert env["SPOTTRAIN_BUCKET"] == agent.bucket
    assert env["SPOTTRAIN_OUTPUT_DIR"] == str((clone / "result").resolve())
    assert env["SPOTTRAIN_CHECKPOINT_DIR"] == str((clone / "result" / "checkpoints").resolve())
    assert (clone / "data").is_dir()


def test_given_a_failing_exec_command_when_it_exits_then_exit_code_phase_and_last_lines_are_recorded(
    agent, training_repo
):
    agent.put_job(job_document(training_repo, agent.marks, exec_command=train("fail")))

    agent.start().wait()

    completed = agent.json(COMPLETED)
    assert completed["exit_code"] == 3 and completed["failed_phase"] == "exec" and completed["reason"] == "exit"
    assert "Traceback: CUDA out of memory" in completed["last_log_lines"]
    assert "line 29" in completed["last_log_lines"]
    assert "CUDA out of memory" in agent.output_log()
    assert agent.process.returncode == 0  # the agent did its job; the training failed


def test_given_a_failing_setup_command_when_it_exits_then_later_phases_never_run(agent, training_repo):
    agent.put_job(job_document(training_repo, agent.marks, setup_command="echo broken >&2; exit 7"))

    agent.start().wait()

    completed = agent.json(COMPLETED)
    assert completed["exit_code"] == 7 and completed["failed_phase"] == "setup"
    assert "fetching data" not in agent.output_log()


def test_given_a_spot_notice_mid_run_then_training_gets_sigterm_checkpoints_sync_and_interrupted_json_lands(
    agent, training_repo, imds
):
    agent.put_job(job_document(training_repo, agent.marks, exec_command=train("wait")))
    agent.start()
    agent.wait_for_file(agent.marks / "started")

    posted = imds.reclaim(seconds_left=120)
    seen = agent.wait_for_key(INTERRUPTED)
    agent.wait()

    print(f"\nmeasured: spot notice -> interrupted.json in S3: {seen - posted:.2f}s (notice poll 0.2s)")
    assert seen - posted < 5
    interrupted = agent.json(INTERRUPTED)
    assert interrupted["attempt"] == 1 and interrupted["action"] == "terminate"
    assert interrupted["execution"] == EXECUTION_ID and interrupted["instance_id"] == "i-0123456789abcdef0"
    assert interrupted["checkpoints_synced"] is True and interrupted["phase"] == "exec"
    assert interrupted["command_killed"] is False and interrupted["not_synced"] == []
    assert agent.text("checkpoints/snapshot_on_sigterm") == "saved at SIGTERM"
    assert "got SIGTERM, snapshot saved" in agent.output_log()
    assert not agent.exists(COMPLETED)
    assert agent.shutdown_flag.exists()


def test_given_attempt_2_when_it_starts_then_checkpoints_are_restored_with_mtimes_before_the_command(
    agent, training_repo, s3, bucket
):
    old = 1_600_000_000_123_456_789
    s3.put_object(Bucket=bucket, Key="checkpoints/snapshot_iter_500", Body=b"state", Metadata={"mtime-ns": str(old)})
    s3.put_object(
        Bucket=bucket, Key="checkpoints/snapshot_iter_900", Body=b"state", Metadata={"mtime-ns": str(old + 10**9)}
    )
    agent.put_job(job_document(training_repo, agent.marks, exec_command=train("resume")))

    agent.start(attempt=2).wait()

    seen = json.loads(agent.text("output/seen_at_start.json"))
    assert seen["resume"] == "1"
    assert seen["files"] == {"snapshot_iter_500": old, "snapshot_iter_900": old + 10**9}
    checkpoints = (agent.home / "payload" / "result" / "checkpoints").resolve()
    assert seen["latest"] == str(checkpoints / "snapshot_iter_900")  # the newest by mtime, as autoload picks
    assert agent.json(COMPLETED)["attempt"] == 2
    assert "phase_seconds" in agent.json(COMPLETED) and "restore" in agent.json(COMPLETED)["phase_seconds"]


def test_given_no_checkpoint_dir_when_attempt_2_starts_then_output_is_restored_instead(
    agent, training_repo, s3, bucket
):
    s3.put_object(Bucket=bucket, Key="output/snapshot_iter_7", Body=b"old-style snapshot")
    agent.put_job(job_document(training_repo, agent.marks, checkpoint_dir=None, exec_command=train("resume")))

    agent.start(attempt=2).wait()

    assert set(json.loads(agent.text("output/seen_at_start.json"))["files"]) >= {"snapshot_iter_7"}


def test_given_attempt_2_rotating_snapshots_then_checkpoints_mirror_it_and_attempt_1_outputs_stay(
    agent, training_repo, s3, bucket
):
    for key in ("checkpoints/snapshot_iter_1", "checkpoints/snapshot_iter_2", "output/attempt1-plot.png"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"from attempt 1")
    agent.put_job(job_document(training_repo, agent.marks, exec_command=train("rotate")))

    agent.start(attempt=2).wait()

    assert agent.json(COMPLETED)["exit_code"] == 0
    # snapshot_iter_1 went locally, but this run did not write it: only a run's own uploads are deleted.
    assert agent.keys("checkpoints/") == [
        "checkpoints/snapshot_iter_1",
        "checkpoints/snapshot_iter_2",
        "checkpoints/snapshot_iter_3",
    ]
    assert agent.keys("output/") == ["output/attempt1-plot.png", "output/model.txt"]


def test_given_a_finished_run_when_the_job_is_run_again_at_attempt_1_then_it_resumes_and_deletes_nothing(
    agent, training_repo, s3, bucket
):
    # The first run used its only attempt (max_attempts: 1) and was interrupted; the user resubmits.
    old = 1_600_000_000_000_000_000
    for iteration in (10, 20):
        s3.put_object(
            Bucket=bucket,
            Key=f"checkpoints/snapshot_iter_{iteration}",
            Body=b"state",
            Metadata={"mtime-ns": str(old + iteration)},
        )
    agent.put_job(job_document(training_repo, agent.marks, exec_command=train("resume")))

    agent.start(attempt=1).wait()

    seen = json.loads(agent.text("output/seen_at_start.json"))
    assert seen["resume"] == "1" and set(seen["files"]) == {"snapshot_iter_10", "snapshot_iter_20"}
    assert seen["latest"].endswith("/snapshot_iter_20")
    assert agent.keys("checkpoints/") == ["checkpoints/snapshot_iter_10", "checkpoints/snapshot_iter_20"]


def test_given_a_shell_wrapped_training_when_the_spot_notice_comes_then_its_slow_save_completes_and_is_synced(
    agent, training_repo, imds
):
    save_seconds = 1.5 * runner.PIPE_DRAIN_SECONDS  # the agent used to SIGKILL 2 s after bash died
    agent.put_job(job_document(training_repo, agent.marks, exec_command=train("slowsave") + " && echo done"))
    agent.start(SAVE_SECONDS=str(save_seconds))
    agent.wait_for_file(agent.marks / "started")

    imds.reclaim(seconds_left=120)
    agent.wait_for_key(INTERRUPTED)
    agent.wait()

    interrupted = agent.json(INTERRUPTED)
    assert agent.text("checkpoints/snapshot_on_sigterm") == "saved at SIGTERM"
    assert interrupted["checkpoints_synced"] is True and interrupted["command_killed"] is False


def test_given_a_training_that_ignores_sigterm_when_the_notice_grace_ends_then_the_marker_says_it_was_killed(
    agent, training_repo, imds
):
    started = agent.marks / "started"
    agent.put_job(job_document(training_repo, agent.marks, exec_command=f"trap '' TERM; touch {started}; sleep 600"))
    agent.start()
    agent.wait_for_file(started)

    imds.reclaim(seconds_left=2)  # minus the 30 s sync reserve: the 1 s minimum grace
    agent.wait_for_key(INTERRUPTED)
    output = agent.wait()

    assert agent.json(INTERRUPTED)["command_killed"] is True
    assert "SIGKILLed when its grace ran out" in agent.text("logs/attempt-1/agent.log") + output


def test_given_a_job_env_that_would_redirect_git_when_cloning_then_the_agents_git_ignores_it(agent, training_repo):
    # Validation refuses these names; an agent handed them anyway must still clone what the spec names.
    redirect = {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.{(agent.marks / 'nowhere').as_uri()}.insteadOf",
        "GIT_CONFIG_VALUE_0": training_repo.as_uri(),
        "GIT_DIR": str(agent.marks / "not-a-repo"),
    }
    document = job_document(training_repo, agent.marks)
    document["job"]["env"].update(redirect)
    agent.put_job(document)

    agent.start().wait()

    completed = agent.json(COMPLETED)
    assert completed["phase_seconds"].get("exec") is not None, completed["message"]
    assert json.loads(agent.text("output/env.json"))["SPOTTRAIN_JOB"] == "demo"


def test_given_no_checkpoint_dir_when_attempt_2_rotates_snapshots_then_nothing_in_output_is_deleted(
    agent, training_repo, s3, bucket
):
    for key in ("output/snapshot_iter_1", "output/snapshot_iter_2"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"from attempt 1")
    agent.put_job(job_document(training_repo, agent.marks, checkpoint_dir=None, exec_command=train("rotate")))

    agent.start(attempt=2).wait()

    assert agent.json(COMPLETED)["exit_code"] == 0
    assert agent.keys("output/") == [
        "output/model.txt",
        "output/snapshot_iter_1",
        "output/snapshot_iter_2",
        "output/snapshot_iter_3",
    ]


def test_given_a_hanging_command_that_ignores_sigterm_when_max_runtime_passes_then_it_is_killed(agent, training_repo):
    # 2 "minutes" of 1 s each; the command ignores SIGTERM, so only SIGKILL (after 1 s) ends it.
    agent.put_job(
        job_document(
            training_repo, agent.marks, exec_command="trap '' TERM; sleep 600", limits={"max_runtime_minutes": 2}
        )
    )
    started = time.time()

    agent.start().wait(timeout=30)

    completed = agent.json(COMPLETED)
    assert completed["reason"] == "max_runtime" and completed["failed_phase"] == "exec"
    assert completed["exit_code"] == 128 + 9
    assert "max_runtime_minutes=2" in completed["message"]
    assert time.time() - started < 15


def test_given_a_missing_repository_when_cloning_then_the_attempt_fails_clearly(agent, tmp_path, training_repo):
    missing = (tmp_path / "no-such-repo").as_uri()
    agent.put_job(job_document(training_repo, agent.marks, repository_url=missing))

    agent.start().wait()

    completed = agent.json(COMPLETED)
    assert completed["reason"] == "clone_failed" and completed["failed_phase"] == "clone"
    assert completed["exit_code"] == 128
    assert missing in completed["message"] and "not appear to be a git repository" in completed["message"]
    assert "fetching data" not in agent.output_log()


def test_given_a_commit_id_as_ref_when_cloning_then_that_commit_is_checked_out(agent, training_repo):
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=training_repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    agent.put_job(job_document(training_repo, agent.marks, repository_ref=commit))

    agent.start().wait()

    assert agent.json(COMPLETED)["exit_code"] == 0


def test_given_chatty_output_when_a_part_fills_then_the_log_rotates_into_parts_that_add_up(agent, training_repo):
    agent.put_job(job_document(training_repo, agent.marks, exec_command=train("chatty")))

    agent.start(SPOTTRAIN_LOG_PART_BYTES="4096").wait()

    parts = agent.keys("logs/attempt-1/output-")
    assert len(parts) >= 5 and parts[0].endswith("output-0001.log")
    log = agent.output_log()
    assert all(f"chatty line {i:04d}" in log for i in range(400))
    local = b"".join(p.read_bytes() for p in sorted((agent.workdir / "logs" / "attempt-1").glob("output-*.log")))
    assert log.encode() == local


def test_given_keep_alive_when_training_ends_then_shutdown_waits_for_it(agent, training_repo):
    agent.put_job(job_document(training_repo, agent.marks, keep_alive_minutes=2))  # 2 s here

    agent.start()
    agent.wait_for_key(COMPLETED)
    shutdown_early = agent.shutdown_flag.exists()
    agent.wait()

    assert not shutdown_early and agent.shutdown_flag.exists()
    assert agent.json("status/heartbeat.json")["phase"] == "done"


def test_given_the_debug_door_when_training_fails_then_the_instance_stays_up_before_shutting_down(agent, training_repo):
    # Given a failing command with on_failure.keep_alive_minutes=2 (2 s here) and no keep-alive for successes
    agent.put_job(
        job_document(training_repo, agent.marks, exec_command=train("fail"), on_failure={"keep_alive_minutes": 2})
    )

    agent.start()
    agent.wait_for_key(COMPLETED)
    shutdown_early = agent.shutdown_flag.exists()
    agent.wait()

    # Then the failure is reported first, the shutdown waits for the door, and still comes
    assert agent.json(COMPLETED)["exit_code"] != 0
    assert not shutdown_early and agent.shutdown_flag.exists()
    # And the note for whoever opens a session says whose instance it is and until when
    note = json.loads((agent.workdir / debug_door.DOOR_FILE).read_text())
    assert note["exec_name"] == agent.json("job.json")["job"]["exec_name"] and note["until"].endswith("+00:00")


def test_given_no_job_json_when_the_agent_starts_then_it_reports_and_still_shuts_down(agent):
    agent.start().wait()

    completed = agent.json(COMPLETED)
    assert completed["reason"] == "job_unreadable" and "job.json" in completed["message"]
    assert agent.shutdown_flag.exists()


def test_help_documents_the_contract():
    result = subprocess.run(
        [sys.executable, "-m", "spottrain.agent", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0
    for term in (
        "--bucket",
        "--attempt",
        "--workdir",
        "--shutdown-command",
        "status/completed.json",
        "status/interrupted.json",
        "status/heartbeat.json",
        "SPOTTRAIN_SYNC_SECONDS",
        "SPOTTRAIN_HEARTBEAT_SECONDS",
        "SPOTTRAIN_NOTICE_POLL_SECONDS",
        "SPOTTRAIN_SECONDS_PER_MINUTE",
        "AWS_ENDPOINT_URL",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        "SPOTTRAIN_RESUME",
        "checkpoints/ mirrors checkpoint_dir",
        "output/ only grows",
        ".partial",
        ".tmp",
        "status/attempt-<n>/task-token.json",
        "SendTaskHeartbeat",
        "SpotInterrupted",
        "final_sync_done",
        "SPOTTRAIN_PREVIOUS_SYNC_WAIT_SECONDS",
    ):
        assert term in result.stdout, term


def test_given_the_spend_budget_runs_out_mid_training_then_sigterm_checkpoint_synced_and_completed_says_spend_cap(
    agent, training_repo
):
    # Given training that saves a snapshot on SIGTERM, running when the workflow's budget says "stop now"
    agent.put_job(job_document(training_repo, agent.marks, exec_command=train("wait")))
    agent.start()
    agent.wait_for_file(agent.marks / "started")
    budget = {
        "attempt": 1,
        "instance_id": "i-0123456789abcdef0",
        "execution": EXECUTION_ID,
        "cap_usd": 0.05,
        "spent_before_usd": 0.01,
        "usd_per_hour": 1.2,
        "stop_at": "2026-01-01T00:02:00+00:00",
    }
    agent.s3.put_object(Bucket=agent.bucket, Key="status/attempt-1/budget.json", Body=json.dumps(budget).encode())

    # When the agent reads it (next heartbeat) and stops the training
    agent.wait(timeout=30)

    # Then it stopped like max runtime does: the snapshot saved at SIGTERM reached S3, the marker names the cap
    completed = agent.json(COMPLETED)
    assert completed["reason"] == "spend_cap" and completed["failed_phase"] == "exec"
    assert completed["exit_code"] == 143 and completed["command_killed"] is False and completed["synced"] is True
    assert "limits.max_cost_usd=0.05 reached during exec" in completed["message"]
    assert agent.text("checkpoints/snapshot_on_sigterm") == "saved at SIGTERM"


def test_given_a_budget_for_another_instance_then_the_training_is_not_stopped(agent, training_repo):
    # Given a stale budget of the same attempt number from another instance (a rerun into the same bucket)
    budget = {"attempt": 1, "instance_id": "i-other", "execution": EXECUTION_ID, "stop_at": "2026-01-01T00:00:00+00:00"}
    agent.s3.put_object(Bucket=agent.bucket, Key="status/attempt-1/budget.json", Body=json.dumps(budget).encode())
    agent.put_job(job_document(training_repo, agent.marks))

    agent.start().wait()

    assert agent.json(COMPLETED)["reason"] == "exit" and agent.json(COMPLETED)["exit_code"] == 0
