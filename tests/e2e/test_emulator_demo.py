"""The bundled demo job, end to end in the embedded emulator: the real stack on moto, a real training run."""

from __future__ import annotations

import json
import logging
import time

import pytest

from spottrain.local import Emulator

log = logging.getLogger(__name__)


@pytest.mark.timeout(420)
def test_given_the_demo_job_when_it_runs_in_the_emulator_then_model_metrics_emails_and_no_instance_remain(
    emulator_workdir, demo_job, record_property
):
    # Given a fresh emulator with the stack deployed
    with Emulator(emulator_workdir) as emulator:
        ec2, s3 = emulator.client("ec2"), emulator.client("s3")

        # When the demo job runs to its end
        started = time.monotonic()
        final = emulator.wait(emulator.start_job(demo_job), timeout=300)
        orchestration = time.monotonic() - started
        emails = emulator.wait_for_emails(2, timeout=10)

        # Then it succeeded and its model and metrics are in the job's bucket
        assert final["status"] == "SUCCEEDED", final.get("cause")
        bucket = json.loads(final["output"])["storage"]["bucket"]
        keys = {item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]}
        assert {"output/model.npz", "output/metrics.json", "status/completed.json", "report.json"} <= keys
        metrics = json.loads(s3.get_object(Bucket=bucket, Key="output/metrics.json")["Body"].read())
        assert metrics, "metrics.json is empty"

        # And the user was emailed when the instance started and when the job completed
        subjects = [email["subject"] for email in emails]
        assert any("started" in subject for subject in subjects), subjects
        assert any("completed" in subject for subject in subjects), subjects

        # And nothing is left running or open: no instance, no spot request
        instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
        assert instances, "the workflow never launched an instance"
        assert {i["State"]["Name"] for i in instances} == {"terminated"}
        open_requests = ec2.describe_spot_instance_requests(Filters=[{"Name": "state", "Values": ["open", "active"]}])[
            "SpotInstanceRequests"
        ]
        assert open_requests == []
        assert not any(instance.alive for instance in emulator.ec2.instances.values())

        # Measured, not asserted: where the demo's wall time goes (pytest -rA or --junitxml shows them)
        completed = json.loads(s3.get_object(Bucket=bucket, Key="status/completed.json")["Body"].read())
        training = sum((completed.get("phase_seconds") or {}).values())
        timings = {
            **{k: round(v, 1) for k, v in emulator.timings.items()},
            "job": round(orchestration, 1),
            "training": round(training, 1),
            "history_events": len(
                emulator.client("stepfunctions").get_execution_history(
                    executionArn=final["executionArn"], maxResults=1000
                )["events"]
            ),
        }
        for name, value in timings.items():
            record_property(name, value)
        log.info("demo timings: %s", timings)
