"""Test bed for the instance agent: moto's S3 server, a fake IMDSv2, a local git repo, the agent as a process.

Imported by name (`from agent_support import ...`); conftest.py hands its fixtures to pytest."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from spottrain.contract import layout, markers

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request drowns the failure

REPO_ROOT = Path(__file__).resolve().parents[3]
# The AMI's Python may be as old as 3.8: point this at such an interpreter (with boto3) to prove it.
AGENT_PYTHON = os.environ.get("SPOTTRAIN_TEST_AGENT_PYTHON") or sys.executable
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Seconds instead of minutes, so a whole attempt takes a few seconds.
FAST_TIMINGS = {
    "SPOTTRAIN_SYNC_SECONDS": "0.5",
    "SPOTTRAIN_HEARTBEAT_SECONDS": "0.5",
    "SPOTTRAIN_NOTICE_POLL_SECONDS": "0.2",
    "SPOTTRAIN_SECONDS_PER_MINUTE": "1",
    "SPOTTRAIN_KILL_GRACE_SECONDS": "1",
}

EXECUTION_ID = "arn:aws:states:us-east-1:123456789012:execution:spottrain:exec-1"

# The job's training script: one file, modes chosen by the command line.
TRAIN_PY = r"""
import json, os, signal, sys, time
from pathlib import Path

mode = sys.argv[1]
marks = Path(os.environ["MARK_DIR"])
out = Path(os.environ["SPOTTRAIN_OUTPUT_DIR"])
ckpt = Path(os.environ["SPOTTRAIN_CHECKPOINT_DIR"])

def exit_now(code):
    (marks / "exit_time").write_text(repr(time.time()))
    sys.exit(code)

if mode == "ok":
    env = {k: v for k, v in os.environ.items() if k.startswith("SPOTTRAIN_") or k == "GREETING"}
    (out / "env.json").write_text(json.dumps(env))
    (out / "model.txt").write_text("weights")
    (ckpt / "snapshot_iter_1").write_text("state")
    for i in range(5):
        print("epoch", i, "loss", 1.0 / (i + 1), flush=True)
    exit_now(0)
if mode == "fail":
    for i in range(30):
        print("line", i, flush=True)
    print("Traceback: CUDA out of memory", file=sys.stderr, flush=True)
    exit_now(3)
if mode == "wait":
    def on_term(signum, frame):
        (ckpt / "snapshot_on_sigterm").write_text("saved at SIGTERM")
        print("got SIGTERM, snapshot saved", flush=True)
        exit_now(143)
    signal.signal(signal.SIGTERM, on_term)
    (marks / "started").write_text("1")
    print("training...", flush=True)
    while True:
        time.sleep(0.05)
if mode == "slowsave":
    # A real snapshot takes seconds to write: longer than the agent's pipe drain, well within the grace.
    def on_term(signum, frame):
        (ckpt / "snapshot_on_sigterm.partial").write_text("saved at SIGTERM")
        time.sleep(float(os.environ.get("SAVE_SECONDS", "3")))
        os.rename(ckpt / "snapshot_on_sigterm.partial", ckpt / "snapshot_on_sigterm")
        exit_now(143)
    signal.signal(signal.SIGTERM, on_term)
    (marks / "started").write_text("1")
    while True:
        time.sleep(0.05)
if mode == "resume":
    seen = {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()}
    (out / "seen_at_start.json").write_text(json.dumps({
        "files": seen, "resume": os.environ.get("SPOTTRAIN_RESUME"),
        "latest": os.environ.get("SPOTTRAIN_LATEST_CHECKPOINT")}))
    exit_now(0)
if mode == "rotate":
    # What training_payload/resume.py does: keep the newest two, write .partial then rename.
    (ckpt / "snapshot_iter_3.partial").write_text("state 3")
    os.rename(ckpt / "snapshot_iter_3.partial", ckpt / "snapshot_iter_3")
    os.remove(ckpt / "snapshot_iter_1")
    (ckpt / "snapshot_iter_4.partial").write_text("half written when the agent synced")
    (out / "model.txt").write_text("weights")
    exit_now(0)
if mode == "hold":
    # Trains until the test says so: long enough for anything the test must see while it runs.
    (marks / "started").write_text("1")
    while not (marks / "release").exists():
        time.sleep(0.05)
    (out / "model.txt").write_text("weights")
    exit_now(0)
if mode == "holdsave":
    # A snapshot that is still being written when the test looks, until the test releases it.
    def on_term(signum, frame):
        (ckpt / "snapshot_on_sigterm.partial").write_text("saved at SIGTERM")
        (marks / "saving").write_text("1")
        while not (marks / "release").exists():
            time.sleep(0.05)
        os.rename(ckpt / "snapshot_on_sigterm.partial", ckpt / "snapshot_on_sigterm")
        exit_now(143)
    signal.signal(signal.SIGTERM, on_term)
    (marks / "started").write_text("1")
    while True:
        time.sleep(0.05)
if mode == "chatty":
    for i in range(400):
        print("chatty line %04d %s" % (i, "x" * 40), flush=True)
    exit_now(0)
"""


class FillingDisk(io.BytesIO):
    """A part file on a disk with `room` bytes left: then every write fails as a full disk does."""

    def __init__(self, room: int):
        super().__init__()
        self.room = room

    def write(self, data) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch, moto_endpoint):
    for name, value in FAKE_AWS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return {**FAKE_AWS, "AWS_ENDPOINT_URL": moto_endpoint}


@pytest.fixture
def s3(aws_env):
    return boto3.client("s3", region_name="us-east-1", endpoint_url=aws_env["AWS_ENDPOINT_URL"])


@pytest.fixture
def bucket(s3, request):
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    # Names that share their first 40 characters must still get buckets of their own.
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]
    name = f"job-{slug}-{digest}-{os.getpid()}"
    s3.create_bucket(Bucket=name)
    return name


class FakeImds(ThreadingHTTPServer):
    """IMDSv2 as the agent uses it: a token first, then instance-id and spot/instance-action."""

    daemon_threads = True
    token = "imds-token"
    instance_id = "i-0123456789abcdef0"
    notice = None  # dict once the test "reclaims" the instance
    stalls = 0  # how many requests, from the first, get no answer: the client's timeout ends each

    def reclaim(self, seconds_left: float = 120.0) -> float:
        """Post a spot notice, as AWS does two minutes ahead; returns when it was posted."""
        moment = time.time()
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment + seconds_left))
        self.notice = {"action": "terminate", "time": when}
        return moment


class _ImdsHandler(BaseHTTPRequestHandler):
    def handle_one_request(self):
        if self.server.stalls > 0:
            self.server.stalls -= 1
            self.rfile.read()  # nothing is sent back: this ends when the client gives up and closes
            return
        super().handle_one_request()

    def do_PUT(self):
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self._send(200, self.server.token)
        return self._send(400, "")

    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") != self.server.token:
            return self._send(401, "")
        if self.path == "/latest/meta-data/instance-id":
            return self._send(200, self.server.instance_id)
        if self.path == "/latest/meta-data/spot/instance-action" and self.server.notice:
            return self._send(200, json.dumps(self.server.notice))
        return self._send(404, "")

    def _send(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep pytest output readable
        pass


@pytest.fixture
def imds():
    server = FakeImds(("127.0.0.1", 0), _ImdsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def git(*args, cwd):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd, check=True, capture_output=True
    )


@pytest.fixture
def training_repo(tmp_path):
    repo = tmp_path / "payload"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN_PY)
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "payload", cwd=repo)
    git("tag", "v1", cwd=repo)
    return repo


def train(mode: str) -> str:
    return f"{shlex.quote(sys.executable)} train.py {mode}"


def job_document(repo: Path, marks: Path, **overrides) -> dict:
    spec = {
        "exec_name": "demo",
        "repository_url": repo.as_uri(),
        "repository_ref": "v1",
        "repository_name": "payload",
        "data_dir": "data",
        "output_dir": "result",
        "checkpoint_dir": "result/checkpoints",
        "setup_command": "echo setting up",
        "data_get_command": "echo fetching data",
        "exec_command": train("ok"),
        "env": {"MARK_DIR": str(marks), "GREETING": "hello world; $(not run)"},
        "limits": {"max_runtime_minutes": 60, "max_attempts": 3},
        "keep_alive_minutes": 0,
    }
    spec.update(overrides)
    return {"job": spec, "execution": {"name": "exec-1", "id": EXECUTION_ID}}


class AgentRun:
    """The agent as a real process, as the bootstrap starts it, plus what the test needs to watch it."""

    def __init__(self, s3, bucket, tmp_path, aws_env, imds_endpoint):
        self.s3 = s3
        self.bucket = bucket
        self.workdir = tmp_path / "work"
        self.home = tmp_path / "home"  # the agent's own account runs the commands, in a clone at ~/<repository_name>
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.shutdown_flag = tmp_path / "shutdown-called"
        self.env = {
            **os.environ,
            **aws_env,
            **FAST_TIMINGS,
            "PYTHONPATH": str(REPO_ROOT),
            "HOME": str(self.home),
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds_endpoint,
        }
        self.process = None

    def put_job(self, document: dict) -> None:
        self.s3.put_object(Bucket=self.bucket, Key="job.json", Body=json.dumps(document).encode())

    def start(self, attempt: int = 1, **env) -> "AgentRun":
        command = [
            AGENT_PYTHON,
            "-m",
            "spottrain.agent",
            "--bucket",
            self.bucket,
            "--attempt",
            str(attempt),
            "--region",
            "us-east-1",
            "--workdir",
            str(self.workdir),
            "--shutdown-command",
            f"touch {shlex.quote(str(self.shutdown_flag))}",
        ]
        self.process = subprocess.Popen(
            command, env={**self.env, **env}, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        return self

    def wait(self, timeout: float = 60) -> str:
        out, _ = self.process.communicate(timeout=timeout)
        return out.decode()

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except self.s3.exceptions.ClientError:
            return False

    def wait_for_key(self, key: str, timeout: float = 30) -> float:
        """Poll S3 until key exists; returns the wall time it was first seen."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            exited = self.process.poll() is not None
            if self.exists(key):
                return time.time()
            if exited:
                break
            time.sleep(0.05)
        output = self.wait(timeout=5) if self.process.poll() is not None else "(agent still running)"
        raise AssertionError(f"s3://{self.bucket}/{key} did not appear within {timeout}s; agent said:\n{output}")

    def wait_for_file(self, path: Path, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while not path.exists():
            assert time.time() < deadline, f"{path} did not appear within {timeout}s"
            time.sleep(0.05)

    def json(self, key: str) -> dict:
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def text(self, key: str) -> str:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode()

    def keys(self, prefix: str = "") -> list:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def output_log(self, attempt: int = 1) -> str:
        return "".join(self.text(key) for key in self.keys(f"logs/attempt-{attempt}/output-"))


@pytest.fixture
def agent(s3, bucket, tmp_path, aws_env, imds):
    run = AgentRun(s3, bucket, tmp_path, aws_env, imds.endpoint)
    yield run
    if run.process and run.process.poll() is None:
        run.process.kill()
        run.process.wait()


class WaitingTask:
    """A one-state machine whose Task waits for a task token, as the workflow's WaitForTraining does.

    moto's executor runs `sqs:sendMessage.waitForTaskToken` natively: the token it hands out is
    real, and only SendTask* calls end the wait (or its HeartbeatSeconds / TimeoutSeconds).
    """

    def __init__(self, endpoint: str):
        self.sfn = boto3.client("stepfunctions", region_name="us-east-1", endpoint_url=endpoint)
        self.sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
        self.queue = self.sqs.create_queue(QueueName=f"tokens-{uuid.uuid4().hex[:12]}")["QueueUrl"]
        self.arn = None

    def start(self, heartbeat_seconds: int = 300, timeout_seconds: int = 600) -> str:
        """Start the execution; returns its task token once the task waits for it."""
        definition = {
            "StartAt": "WaitForTraining",
            "States": {
                "WaitForTraining": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {"QueueUrl": self.queue, "MessageBody": {"token.$": "$$.Task.Token"}},
                    "HeartbeatSeconds": heartbeat_seconds,
                    "TimeoutSeconds": timeout_seconds,
                    "End": True,
                }
            },
        }
        machine = self.sfn.create_state_machine(
            name=f"wait-{uuid.uuid4().hex[:12]}",
            definition=json.dumps(definition),
            roleArn="arn:aws:iam::123456789012:role/states",
        )["stateMachineArn"]
        self.arn = self.sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
        deadline = time.time() + 30
        while time.time() < deadline:
            messages = self.sqs.receive_message(QueueUrl=self.queue, WaitTimeSeconds=1).get("Messages", [])
            if messages:
                return self._armed(json.loads(messages[0]["Body"])["token"], deadline)
        raise AssertionError(f"the execution {self.arn} sent no task token: {self.describe()}")

    def _armed(self, token: str, deadline: float) -> str:
        """The token, once moto's task waits on it.

        moto sends the token (the SQS message) before it sets up the task's heartbeat wait; an answer in
        between is lost and the task waits until HeartbeatSeconds (the CallbackBridge's case (c), which
        these tests do not install). SendTaskHeartbeat answers InvalidToken until that wait exists.
        """
        while time.time() < deadline:
            try:
                self.sfn.send_task_heartbeat(taskToken=token)
                return token
            except self.sfn.exceptions.InvalidToken:
                time.sleep(0.02)
        raise AssertionError(f"the execution {self.arn} never waited on its task token: {self.describe()}")

    def describe(self) -> dict:
        return self.sfn.describe_execution(executionArn=self.arn)

    def wait_until_over(self, timeout: float = 60) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            described = self.describe()
            if described["status"] != "RUNNING":
                return described
            time.sleep(0.05)
        raise AssertionError(f"the execution still waits after {timeout}s")

    def history(self) -> list:
        return [event["type"] for event in self.sfn.get_execution_history(executionArn=self.arn)["events"]]


def _set_moto_config(endpoint: str, config: dict) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/config", method="POST", data=json.dumps(config).encode())
    urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request).read()


@pytest.fixture
def step_functions_executor(moto_endpoint):
    """moto executes state machines during the test, and only then.

    moto's config is one per process, shared with every in-process `mock_aws()`: left on, later tests'
    stand-in executions (which must stay RUNNING) would run to their end.
    """
    _set_moto_config(moto_endpoint, {"stepfunctions": {"execute_state_machine": True}})
    yield
    _set_moto_config(moto_endpoint, {"stepfunctions": {"execute_state_machine": False}})


@pytest.fixture
def waiting_task(aws_env, moto_endpoint, step_functions_executor, monkeypatch):
    monkeypatch.setenv("MOTO_PORT", moto_endpoint.rsplit(":", 1)[1])  # where moto's executor sends SQS calls
    return WaitingTask(moto_endpoint)


def put_token(
    s3,
    bucket: str,
    token: str,
    attempt: int = 1,
    instance_id: str = FakeImds.instance_id,
    execution: str = EXECUTION_ID,
) -> None:
    """What the workflow's await_training writes for the attempt's instance."""
    document = markers.token_record(token, attempt, instance_id, execution)
    s3.put_object(Bucket=bucket, Key=layout.task_token_key(attempt), Body=json.dumps(document).encode())
