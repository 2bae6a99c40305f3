"""Helpers the emulator scenarios share."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import boto3
from botocore.exceptions import ClientError


def wait_until(condition: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
    """Poll until `condition()` is truthy; return it, or fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(0.2)
    return result


def git_repository(repo: Path, files: dict[str, str], branch: str = "main") -> Path:
    """A throwaway repository at `repo` holding `files` in one commit on `branch`, for jobs to clone."""
    repo.mkdir()
    for name, text in files.items():
        (repo / name).write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=spottrain", "-c", "user.email=spottrain@example.com"]
    subprocess.run(["git", "init", "-q", "-b", branch, str(repo)], check=True)
    subprocess.run(git + ["add", *files], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "job under test"], check=True)
    return repo


def processes_under(folder: Path) -> list[str]:
    """Command lines of this machine's processes whose environment or working directory lies in `folder`.

    Every process of a simulated instance carries its sandbox path (SPOTTRAIN_ROOT, HOME, TMPDIR) or
    runs in it: found this way, independently of how the emulator itself tracks them.
    """
    needle = str(folder).encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cwd = os.readlink(f"/proc/{pid}/cwd")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if needle in environ or cwd.startswith(str(folder)):
            found.append(f"{pid}: {cmdline.strip()}")
    return found


def assert_nothing_left_running(emulator: Any, instance_seconds: float = 30) -> None:
    """No instance pending or running, no spot request open or active, no process of a simulated instance.

    `instance_seconds` bounds the wait for the instances to end; their processes get half as long after that.
    """
    ec2 = emulator.client("ec2")
    wait_until(
        lambda: not ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])[
            "Reservations"
        ],
        timeout=instance_seconds,
        what="every instance terminated",
    )
    open_requests = ec2.describe_spot_instance_requests(Filters=[{"Name": "state", "Values": ["open", "active"]}])[
        "SpotInstanceRequests"
    ]
    assert open_requests == []
    wait_until(
        lambda: not any(instance.alive for instance in emulator.ec2.instances.values()),
        timeout=instance_seconds / 2,
        what="every simulated instance's process ended",
    )
    wait_until(
        lambda: not processes_under(emulator.run_dir / "instances"),
        timeout=instance_seconds / 2,
        what=f"every process the instances started ended: {processes_under(emulator.run_dir / 'instances')}",
    )


def everything_left(emulator: Any, arn: str, exec_name: str, emails: list) -> dict[str, bytes]:
    """What a run left, by where: each object in the job's bucket (logs, output, markers, report), the emails,
    the execution's input and history, and each file in the emulator's run folder (the instances' sandboxes
    and consoles, the Lambdas' logs): where a secret's value must be found nowhere."""
    s3, bucket = emulator.client("s3"), emulator.stack.job_bucket(exec_name)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    left = {f"s3: {key}": s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}
    history = emulator.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)
    left["emails"] = json.dumps(emails, default=str).encode()
    left["execution history"] = json.dumps(history, default=str).encode()
    left.update({f"file: {path}": path.read_bytes() for path in emulator.run_dir.rglob("*") if path.is_file()})
    return left


def instance_session(emulator: Any, instance_id: str) -> boto3.Session:
    """What code on that instance gets: its role's credentials, read from its metadata service (IMDSv2)."""
    imds = emulator.ec2.instances[instance_id].imds.endpoint
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(path: str, headers: dict) -> str:
        return opener.open(urllib.request.Request(imds + path, headers=headers), timeout=5).read().decode()

    token = opener.open(urllib.request.Request(imds + "/latest/api/token", method="PUT"), timeout=5).read().decode()
    role = get("/latest/meta-data/iam/security-credentials/", {"X-aws-ec2-metadata-token": token})
    creds = json.loads(get(f"/latest/meta-data/iam/security-credentials/{role}", {"X-aws-ec2-metadata-token": token}))
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["Token"],
        region_name="us-east-1",
    )


def outcome(call: Callable[[], Any]) -> str:
    """What AWS answered an attempt: the error code it refused with, or "allowed"."""
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"]
    return "allowed"
