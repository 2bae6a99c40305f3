"""The debug door end to end in the emulator: a failed job's instance is kept, reachable by
`spottrain shell`, announced with the start-session command, and terminated when its time is up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from e2e_support import processes_under, wait_until
from spottrain.contract import layout
from spottrain.local import Emulator
from spottrain.local import shell

REPO_ROOT = Path(__file__).resolve().parents[2]
KEPT_MINUTES = 20  # 20 s in the emulator: time for a session, and a wait the test sees end
# A door far longer than any test (300 s here), under the stack's raised cap: only a cancel ends it early.
LONG_DOOR_MINUTES = 300


def shell_session(workdir: Path, exec_name: str, commands: str) -> subprocess.CompletedProcess:
    """`spottrain shell` as a user runs it from a second terminal, its commands fed on stdin."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "SHELL": "/bin/sh"}
    return subprocess.run(
        [sys.executable, "-m", "spottrain.cli", "shell", exec_name, "--workdir", str(workdir)],
        input=commands,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=60,
    )


@pytest.fixture(scope="module")
def emulator(emulator_workdir) -> Iterator[Emulator]:
    with Emulator(emulator_workdir, context={"maxFailureKeepAliveMinutes": LONG_DOOR_MINUTES}) as running:
        yield running
        gaps = running.permission_gaps()  # a kept instance makes no call its role does not allow
        assert gaps == [], "\n".join(str(gap) for gap in gaps)


def failing_job(demo_job: dict, exec_name: str, kept_minutes: int) -> dict:
    """A job whose command leaves a clue in its clone and fails, with on_failure.keep_alive_minutes."""
    spec = {key: value for key, value in demo_job.items() if key not in ("setup_command", "checkpoint_dir")}
    return spec | {
        "exec_name": exec_name,
        "data_get_command": "true",
        "exec_command": "echo 'loss went NaN' > clue.txt; exit 3",
        "on_failure": {"keep_alive_minutes": kept_minutes},
    }


@pytest.mark.timeout(300)
def test_given_a_failing_job_with_the_debug_door_then_kept_reachable_announced_and_terminated_after(
    emulator, emulator_workdir, demo_job
):
    # Given a job whose command leaves a clue and fails, with on_failure.keep_alive_minutes
    spec = failing_job(demo_job, "debug-door", KEPT_MINUTES)
    # When it runs
    arn = emulator.start_job(spec)

    # Then the failure email gives the start-session command for the instance, and when it stops
    def failure_email() -> dict | None:
        emulator.wait_for_emails(len(emulator.emails) + 1, timeout=0.5)
        return next((e for e in emulator.emails if e["subject"].startswith("[spottrain] debug-door failed")), None)

    email = wait_until(failure_email, timeout=180, what="the failure email")
    (instance,) = emulator.client("ec2").describe_instances(
        Filters=[{"Name": f"tag:{layout.TAG_JOB}", "Values": ["debug-door"]}]
    )["Reservations"][0]["Instances"]
    assert f"aws ssm start-session --target {instance['InstanceId']}" in email["body"], email["body"]
    assert "kept for debugging (on_failure.keep_alive_minutes) until " in email["body"]

    # And while it is kept, `spottrain shell` opens a shell in its home, where the clone and its clue are
    folder = wait_until(lambda: _kept(emulator_workdir, "debug-door"), timeout=30, what="the door note")
    assert folder.name == instance["InstanceId"]
    session = shell_session(emulator_workdir, "debug-door", "cat */clue.txt\n")
    assert session.returncode == 0, session.stderr
    assert "loss went NaN" in session.stdout

    # And after the keep-alive the workflow terminates it: the job failed, nothing is left
    final = emulator.wait(arn, timeout=120)
    assert (final["status"], final.get("error")) == ("FAILED", "TrainingFailed"), final
    ec2 = emulator.client("ec2")
    wait_until(
        lambda: ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"][0]["Instances"][0][
            "State"
        ]["Name"]
        == "terminated",
        timeout=30,
        what="the kept instance terminated",
    )
    wait_until(lambda: not processes_under(emulator.run_dir / "instances"), timeout=30, what="no process left")
    # And the door is closed
    closed = shell_session(emulator_workdir, "debug-door", "pwd\n")
    assert closed.returncode == 1 and "no kept instance of debug-door" in closed.stdout + closed.stderr


@pytest.mark.timeout(300)
def test_given_a_kept_instance_when_the_job_is_cancelled_then_it_is_terminated_at_once(
    emulator, emulator_workdir, demo_job
):
    # Given a failed job whose instance the door keeps for longer than this test
    arn = emulator.start_job(failing_job(demo_job, "debug-door-cancel", LONG_DOOR_MINUTES))
    folder = wait_until(lambda: _kept(emulator_workdir, "debug-door-cancel"), timeout=180, what="the door note")

    # When the user cancels the job
    emulator.cancel("debug-door-cancel")

    # Then the execution stops and the kept instance is terminated now, not after the keep-alive
    assert emulator.wait(arn, timeout=30)["status"] == "ABORTED"
    ec2 = emulator.client("ec2")
    wait_until(
        lambda: ec2.describe_instances(InstanceIds=[folder.name])["Reservations"][0]["Instances"][0]["State"]["Name"]
        == "terminated",
        timeout=30,
        what="the kept instance terminated",
    )
    wait_until(lambda: (folder / shell.ENDED_FILE).exists(), timeout=30, what="its processes ended")
    assert _kept(emulator_workdir, "debug-door-cancel") is None


def _kept(workdir: Path, exec_name: str) -> Path | None:
    try:
        return shell.kept_instance(workdir, exec_name)
    except shell.NoKeptInstance:
        return None
