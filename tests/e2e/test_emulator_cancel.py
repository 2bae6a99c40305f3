"""Cancelling a running job in the emulator: the execution stops and no instance outlives it."""

from __future__ import annotations


import pytest

from e2e_support import wait_until
from spottrain.local import Emulator


@pytest.mark.timeout(300)
def test_given_a_training_job_when_cancelled_then_aborted_instance_terminated_and_user_told(emulator_workdir, slow_job):
    with Emulator(emulator_workdir) as emulator:
        arn = emulator.start_job(slow_job)
        wait_until(lambda: any(instance.alive for instance in emulator.ec2.instances.values()), timeout=120)

        emulator.cancel("slow-job")

        final = emulator.wait(arn, timeout=30)
        assert final["status"] == "ABORTED"
        ec2 = emulator.client("ec2")
        wait_until(
            lambda: {i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
            == {"terminated"},
            timeout=30,
        )
        wait_until(lambda: not any(instance.alive for instance in emulator.ec2.instances.values()), timeout=15)
        emails = emulator.wait_for_emails(2, timeout=15)
        assert any("cancelled" in email["subject"] for email in emails), [e["subject"] for e in emails]
