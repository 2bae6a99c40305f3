"""Cancelling a running job in the emulator: the execution stops and no instance outlives it."""
from __future__ import annotations

import subprocess
import time

import pytest

from spottrain.local import Emulator

# A job that would run for minutes: only a cancel ends it early.
SLOW_TRAINING = "import time\nfor step in range(600):\n    print('step', step, flush=True)\n    time.sleep(1)\n"


@pytest.fixture
def slow_job(tmp_path) -> dict:
    repo = tmp_path / "slow-repo"
    repo.mkdir()
    (repo / "train.py").write_text(SLOW_TRAINING)
    git = ["git", "-C", str(repo), "-c", "user.name=spottrain", "-c", "user.email=spottrain@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(git + ["add", "train.py"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "slow training"], check=True)
    return {"exec_name": "slow-job", "repository_url": repo.as_uri(), "repository_name": "slow-repo",
            "repository_ref": "main", "data_dir": "data", "output_dir": "result",
            "data_get_command": "true", "exec_command": "python train.py"}


def _wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


@pytest.mark.timeout(300)
def test_given_a_training_job_when_cancelled_then_aborted_instance_terminated_and_user_told(emulator_workdir, slow_job):
    with Emulator(emulator_workdir) as emulator:
        arn = emulator.start_job(slow_job)
        _wait_until(lambda: any(instance.alive for instance in emulator.ec2.instances.values()), timeout=120)

        emulator.cancel("slow-job")

        final = emulator.wait(arn, timeout=30)
        assert final["status"] == "ABORTED"
        ec2 = emulator.client("ec2")
        _wait_until(lambda: {i["State"]["Name"] for r in ec2.describe_instances()["Reservations"]
                             for i in r["Instances"]} == {"terminated"}, timeout=30)
        _wait_until(lambda: not any(instance.alive for instance in emulator.ec2.instances.values()), timeout=15)
        emails = emulator.wait_for_emails(2, timeout=15)
        assert any("cancelled" in email["subject"] for email in emails), [e["subject"] for e in emails]
