"""The agent in-process, for faults that must be injected into it: here a disk that fills up."""

from __future__ import annotations

import json
import time

from agent_support import EXECUTION_ID, FAST_TIMINGS, FillingDisk, job_document

from spottrain.agent import options as agent_options
from spottrain.agent.imds import Imds
from spottrain.agent.lifecycle import Agent
from spottrain.agent.logs import OutputLog
from spottrain.agent.s3sync import Store, s3_client


def test_given_the_disk_fills_while_training_prints_when_the_agent_runs_then_it_fails_at_once_saying_disk_full(
    s3, bucket, imds, training_repo, tmp_path
):
    # Prints 200 kB, then would train for 10 minutes; 100 kB of disk are left for its log.
    command = "head -c 200000 /dev/zero | tr '\\0' x | fold -w 99; sleep 600"
    document = job_document(training_repo, tmp_path, exec_command=command, limits={"max_runtime_minutes": 600})
    s3.put_object(Bucket=bucket, Key="job.json", Body=json.dumps(document).encode())
    options = agent_options.Options(
        bucket=bucket,
        attempt=1,
        workdir=tmp_path / "work",
        region="us-east-1",
        shutdown_command="true",
        **agent_options.timings_from_env(FAST_TIMINGS),
    )
    agent = Agent(options, Store(s3_client("us-east-1"), bucket), Imds(imds.endpoint))
    agent.output = OutputLog(agent.output.directory, 1, 1 << 30, opener=lambda path: FillingDisk(room=100_000))
    started = time.monotonic()

    assert agent.run() == 0

    completed = json.loads(s3.get_object(Bucket=bucket, Key="status/completed.json")["Body"].read())
    assert completed["reason"] == "disk_full" and completed["failed_phase"] == "exec"
    assert "disk full" in completed["message"] and "instance.volume_gb" in completed["message"]
    assert completed["exit_code"] == 128 + 15 and completed["execution"] == EXECUTION_ID
    assert "phase exec ended with exit code 143" in completed["last_log_lines"][-1]  # the tail outlives the disk
    assert time.monotonic() - started < 300  # stopped by the disk, not by max_runtime_minutes (600 s here)
