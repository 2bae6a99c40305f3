"""Operations on jobs of a deployed stack: start, follow, read logs, cancel, download.

The same code runs against AWS (the user's credentials, the stack's outputs) and against the
embedded emulator (its session and outputs): a job is a Step Functions execution plus its bucket.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from spottrain.contract import layout, names, sweep
from spottrain.functions.shared import runs
from spottrain.functions.shared.logtext import readable, readable_lines

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class JobNotFound(LookupError):
    pass


class JobAlreadyRunning(RuntimeError):
    """A run of the same exec_name is active: a second one would share its bucket and instances."""


@dataclasses.dataclass(frozen=True)
class Stack:
    """What the CLI needs from a deployed stack (its CloudFormation outputs)."""

    state_machine_arn: str
    topic_arn: str
    bucket_name: str
    job_bucket_prefix: str
    terminate_function_name: str
    sweep_state_machine_arn: str = ""  # "" for a stack deployed before sweeps existed
    max_sweep_parallel: int = sweep.DEFAULT_PARALLEL  # its maxSweepParallel (older stacks: the default)

    @classmethod
    def from_outputs(cls, outputs: dict[str, str]) -> "Stack":
        return cls(
            state_machine_arn=outputs["StateMachineArn"],
            topic_arn=outputs["TopicArn"],
            bucket_name=outputs["BucketName"],
            job_bucket_prefix=outputs["JobBucketPrefix"],
            terminate_function_name=outputs["TerminateFunctionName"],
            sweep_state_machine_arn=outputs.get("SweepStateMachineArn", ""),
            max_sweep_parallel=int(outputs.get("MaxSweepParallel") or sweep.DEFAULT_PARALLEL),
        )

    @classmethod
    def lookup(cls, cloudformation: Any, stack_name: str) -> "Stack":
        try:
            stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
        except cloudformation.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] != "ValidationError":  # e.g. expired credentials: not "not found"
                raise
            raise JobNotFound(
                f"stack {stack_name!r} not found ({exc.response['Error']['Message']}); "
                "deploy it with `npx cdk deploy` or pass --stack-name"
            ) from None
        return cls.from_outputs({o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])})

    def job_bucket(self, exec_name: str) -> str:
        return names.bucket_name(self.job_bucket_prefix, exec_name)


def execution_name(exec_name: str, now: dt.datetime | None = None) -> str:
    """Unique per run (Step Functions keeps names for 90 days), and traceable to the job."""
    moment = now or dt.datetime.now(dt.timezone.utc)
    return f"{exec_name}-{moment:%Y%m%dT%H%M%S}"


def _belongs_to(name: str, exec_name: str) -> bool:
    return re.fullmatch(re.escape(exec_name) + r"-\d{8}T\d{6}", name) is not None


def job_of(execution_name_: str) -> str:
    return re.sub(r"-\d{8}T\d{6}$", "", execution_name_)


def refuse_if_running(sfn: Any, stack: Stack, exec_name: str) -> None:
    """Fail before starting anything while the job runs (ValidateJob would refuse it too, after the start)."""
    active = runs.running(sfn, stack.state_machine_arn, exec_name)
    if active:
        raise JobAlreadyRunning(
            f"job {exec_name!r} is already running as execution {active[0].name} "
            f"(started {active[0].started:%Y-%m-%d %H:%M:%S %Z}); a second run would share its bucket and instances. "
            f"Wait for it to end (spottrain status {exec_name}), or stop it with `spottrain cancel {exec_name}`."
        )


def start(sfn: Any, stack: Stack, spec: dict) -> str:
    response = sfn.start_execution(
        stateMachineArn=stack.state_machine_arn,
        name=execution_name(spec.get("exec_name", "job")),
        input=json.dumps(spec),
    )
    return response["executionArn"]


def list_executions(sfn: Any, stack: Stack) -> list[dict]:
    """Every execution of the stack's state machine, newest first."""
    executions: list[dict] = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=stack.state_machine_arn):
        executions.extend(page["executions"])
    return sorted(executions, key=lambda e: e["startDate"], reverse=True)


def executions_of(sfn: Any, stack: Stack, exec_name: str) -> list[dict]:
    found = [e for e in list_executions(sfn, stack) if _belongs_to(e["name"], exec_name)]
    if not found:
        raise JobNotFound(f"no execution found for job {exec_name!r}; `spottrain list` shows the jobs")
    return found


def current_execution(sfn: Any, stack: Stack, exec_name: str) -> dict:
    """The running execution of a job, else its newest one."""
    executions = executions_of(sfn, stack, exec_name)
    running = [e for e in executions if e["status"] == "RUNNING"]
    return (running or executions)[0]


@dataclasses.dataclass
class Progress:
    execution_arn: str
    status: str
    state: str
    attempt: int | None = None
    instance: str | None = None
    elapsed_seconds: float = 0.0
    last_log_line: str | None = None

    def same_as(self, other: "Progress | None") -> bool:
        """Nothing but the clock moved since `other`."""
        return other is not None and dataclasses.replace(other, elapsed_seconds=self.elapsed_seconds) == self

    def line(self) -> str:
        minutes, seconds = divmod(int(self.elapsed_seconds), 60)
        parts = [f"{minutes:d}m{seconds:02d}s", self.status if self.status != "RUNNING" else self.state]
        if self.attempt:
            parts.append(f"attempt {self.attempt}")
        if self.instance:
            parts.append(self.instance)
        if self.last_log_line:
            parts.append(f"| {self.last_log_line[:100]}")
        return "  ".join(parts)


def _last_state_entered(sfn: Any, execution_arn: str) -> str:
    # Newest first on AWS; the emulator ignores ordering and paging, so pick the highest event id.
    events = sfn.get_execution_history(executionArn=execution_arn, reverseOrder=True, maxResults=100)["events"]
    entered = [e for e in events if e.get("stateEnteredEventDetails")]
    if not entered:
        return "Starting"
    return max(entered, key=lambda e: e["id"])["stateEnteredEventDetails"]["name"]


def last_poll_detail(sfn: Any, execution_arn: str) -> dict:
    """The newest `poll.detail` a state passed on (the agent's reason and message for a failed attempt:
    spottrain/functions/poll_completion.py); {} when none. Read from the execution history, since a
    Fail state's cause is fixed text."""
    events = sfn.get_execution_history(executionArn=execution_arn, reverseOrder=True, maxResults=100)["events"]
    for event in sorted(events, key=lambda e: e["id"], reverse=True):  # the emulator ignores reverseOrder
        try:
            output = json.loads((event.get("stateExitedEventDetails") or {}).get("output") or "")
        except ValueError:  # output over the history's size limit is cut
            continue
        detail = (output.get("poll") or {}).get("detail") if isinstance(output, dict) else None
        if isinstance(detail, dict):
            return detail
    return {}


def _read_json(s3: Any, bucket: str, key: str) -> dict | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except (s3.exceptions.NoSuchKey, s3.exceptions.NoSuchBucket):
        return None
    except s3.exceptions.ClientError:
        return None


def progress(sfn: Any, s3: Any, stack: Stack, execution_arn: str) -> Progress:
    execution = sfn.describe_execution(executionArn=execution_arn)
    started = execution["startDate"]
    ended = execution.get("stopDate") or dt.datetime.now(started.tzinfo)
    snapshot = Progress(
        execution_arn=execution_arn,
        status=execution["status"],
        state=_last_state_entered(sfn, execution_arn),
        elapsed_seconds=(ended - started).total_seconds(),
    )
    heartbeat = _read_json(s3, stack.job_bucket(job_of(execution["name"])), layout.HEARTBEAT_KEY)
    if heartbeat:
        snapshot.attempt = heartbeat.get("attempt")
        snapshot.instance = heartbeat.get("instance_id")
        lines = readable_lines(heartbeat.get("last_log_line") or "")
        snapshot.last_log_line = lines[-1] if lines else None
    return snapshot


def wait(
    sfn: Any,
    s3: Any,
    stack: Stack,
    execution_arn: str,
    timeout: float,
    on_progress: Callable[[Progress], None] | None = None,
    interval: float = 1.0,
) -> dict:
    """Follow a job to its end (one execution, however many attempts): the execution's final description."""
    deadline = time.monotonic() + timeout
    while True:
        execution = sfn.describe_execution(executionArn=execution_arn)
        if on_progress:
            on_progress(progress(sfn, s3, stack, execution_arn))
        if execution["status"] in TERMINAL:
            return execution
        if time.monotonic() > deadline:
            raise TimeoutError(f"{execution['name']} still {execution['status']} after {timeout:.0f}s")
        time.sleep(interval)


def _until_stopped(sfn: Any, execution_arn: str, timeout: float = 30) -> None:
    """StopExecution may take effect a moment later (the emulator's executor is asynchronous)."""
    deadline = time.monotonic() + timeout
    while sfn.describe_execution(executionArn=execution_arn)["status"] == "RUNNING":
        if time.monotonic() > deadline:
            raise TimeoutError(f"{execution_arn} still RUNNING {timeout:.0f}s after StopExecution")
        time.sleep(0.2)


def cancel(sfn: Any, lambda_: Any, stack: Stack, exec_name: str) -> list[str]:
    """Stop every running execution of the job, then terminate what it launched (idempotent).

    The terminate call names the job's current run (its CANCELLED email says which) and passes on that
    run's `emails: false` (a summary-only sweep's variant sends no email of its own), also when the run
    had already stopped (a sweep's StopExecution stops its children first).
    """
    executions = executions_of(sfn, stack, exec_name)
    latest = ([e for e in executions if e["status"] == "RUNNING"] or executions)[0]
    emails = _emails_of(sfn, latest["executionArn"])
    stopped = []
    for execution in executions:
        if execution["status"] == "RUNNING":
            sfn.stop_execution(executionArn=execution["executionArn"], error="Cancelled", cause="spottrain cancel")
            _until_stopped(sfn, execution["executionArn"])
            stopped.append(execution["name"])
    payload = {
        "exec_name": exec_name,
        "reason": "cancelled",
        "execution": latest["name"],
        **({"emails": False} if emails is False else {}),
    }
    response = lambda_.invoke(FunctionName=stack.terminate_function_name, Payload=json.dumps(payload).encode())
    if response.get("FunctionError"):
        raise RuntimeError(f"terminating {exec_name}'s instances failed: {response['Payload'].read().decode()}")
    return stopped


def _emails_of(sfn: Any, execution_arn: str) -> Any:
    """The spec's `emails` in the execution's input (None when it has none or is not a spec)."""
    try:
        spec = json.loads(sfn.describe_execution(executionArn=execution_arn).get("input") or "null")
    except ValueError:
        return None
    return spec.get("emails") if isinstance(spec, dict) else None


def log_keys(s3: Any, bucket: str) -> list[str]:
    """Output log parts in order: attempt by attempt, part by part."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=layout.LOGS_PREFIX):
        keys.extend(o["Key"] for o in page.get("Contents", []) if "/output-" in o["Key"])

    def order(key: str) -> tuple[int, str]:
        match = re.search(r"attempt-(\d+)/", key)
        return (int(match.group(1)) if match else 0, key)

    return sorted(keys, key=order)


def follow_logs(
    s3: Any, bucket: str, follow: bool, still_running: Callable[[], bool], interval: float = 2.0
) -> Iterator[str]:
    """Yield new log text as it lands in S3; with follow, until the job ends."""
    seen: dict[str, int] = {}
    while True:
        for key in log_keys(s3, bucket):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            if len(body) > seen.get(key, 0):
                yield body[seen.get(key, 0) :].decode(errors="replace")
                seen[key] = len(body)
        if not follow or not still_running():
            return
        time.sleep(interval)


def readable_stream(chunks: Iterable[str]) -> Iterator[str]:
    """Raw log text as it arrives, made readable a whole line at a time (escape codes, progress redraws).

    A redraw can only be collapsed within the text it is given: lines are passed on once complete, and a
    cursor move back into lines already printed is ignored rather than overwriting them.
    """
    pending = ""
    for chunk in chunks:
        complete, newline, pending = (pending + chunk).rpartition("\n")
        if newline:
            yield readable(complete + newline)
    if pending:
        yield readable(pending)


def download(
    s3: Any,
    bucket: str,
    destination: Path,
    prefixes: tuple[str, ...] = (layout.OUTPUT_PREFIX, layout.LOGS_PREFIX, layout.REPORT_KEY, layout.STATUS_PREFIX),
) -> list[Path]:
    """Replace destination with the job's results (output, logs, report, status markers).

    Files go to a fresh sibling folder that then takes destination's place whole: an earlier run's
    files never linger beside this run's, and of two downloads racing for one folder the last one
    wins entirely instead of mixing with the other.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        for prefix in prefixes:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    target = staging / item["Key"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(bucket, item["Key"], str(target))
        _replace_folder(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(path for path in destination.rglob("*") if path.is_file())


def _replace_folder(new: Path, destination: Path) -> None:
    retired = None
    if destination.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old.", dir=destination.parent))
        destination.rename(retired / destination.name)
    new.rename(destination)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
