"""The debug door end to end in the emulator: a failed job's instance is kept, reachable by
`spottrain shell`, announced with the start-session command, and terminated when its time is up."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2e_support import processes_under, wait_until
from spottrain.contract import layout
from spottrain.local import Emulator
from spottrain.local import shell

REPO_ROOT = Path(__file__).resolve().parents[2]
KEPT_MINUTES = 20  # 20 s in the emulator: time for a session, and a wait the test sees end


def shell_session(workdir: Path, exec_name: str, commands: str) -> subprocess.CompletedProcess:
    """`spottrain shell` as a user runs it from a second terminal, its commands fed on stdin."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "SHELL": "/bin/sh"}
    return subprocess.run([sys.executable, "-m", "spottrain.cli", "shell", exec_name, "--workdir", str(workdir)],
                          input=commands, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60)


@pytest.mark.timeout(300)
def test_given_a_failing_job_with_the_debug_door_then_kept_reachable_announced_and_terminated_after(
        emulator_workdir, demo_job):
    # Given a job whose command leaves a clue and fails, with on_failure.keep_alive_minutes
    spec = {key: value for key, value in demo_job.items() if key not in ("setup_command", "checkpoint_dir")}
    spec |= {"exec_name": "debug-door", "data_get_command": "true",
             "exec_command": "echo 'loss went NaN' > clue.txt; exit 3",
             "on_failure": {"keep_alive_minutes": KEPT_MINUTES}}
    with Emulator(emulator_workdir) as emulator:
        arn = emulator.start_job(spec)

        # Then the failure email gives the start-session command for the instance, and when it stops
        def failure_email() -> dict | None:
            emulator.wait_for_emails(len(emulator.emails) + 1, timeout=0.5)
            return next((e for e in emulator.emails if e["subject"].startswith("[spottrain] debug-door failed")), None)
        email = wait_until(failure_email, timeout=180, what="the failure email")
        (instance,) = emulator.client("ec2").describe_instances(
            Filters=[{"Name": f"tag:{layout.TAG_JOB}", "Values": ["debug-door"]}])["Reservations"][0]["Instances"]
        assert f"aws ssm start-session --target {instance['InstanceId']}" in email["body"], email["body"]
        assert "kept for debugging (on_failure.keep_alive_minutes) until " in email["body"]

        # And while it is kept, `spottrain shell` opens a shell in its home, where the clone and its clue are
        folder = wait_until(lambda: _kept(emulator_workdir), timeout=30, what="the door note")
        assert folder.name == instance["InstanceId"]
        session = shell_session(emulator_workdir, "debug-door", "cat */clue.txt\n")
        assert session.returncode == 0, session.stderr
        assert "loss went NaN" in session.stdout

        # And after the keep-alive the workflow terminates it: the job failed, nothing is left
        final = emulator.wait(arn, timeout=120)
        assert (final["status"], final.get("error")) == ("FAILED", "TrainingFailed"), final
        ec2 = emulator.client("ec2")
        wait_until(lambda: ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"][0][
            "Instances"][0]["State"]["Name"] == "terminated", timeout=30, what="the kept instance terminated")
        wait_until(lambda: not processes_under(emulator.run_dir / "instances"), timeout=30, what="no process left")
        # And the door is closed
        closed = shell_session(emulator_workdir, "debug-door", "pwd\n")
        assert closed.returncode == 1 and "no kept instance of debug-door" in closed.stdout + closed.stderr


def _kept(workdir: Path) -> Path | None:
    try:
        return shell.kept_instance(workdir, "debug-door")
    except shell.NoKeptInstance:
        return None
