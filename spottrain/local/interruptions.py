"""The injected spot interruption of one simulated instance: trigger, hold, notice, release.

AWS posts the notice two minutes before it reclaims an instance, whatever the training is doing. The
emulator's trainings last seconds, and a snapshot reaches S3 up to a sync interval after it is
written, so a notice posted when something is seen in the bucket lands mid-training only on a
machine of the right speed. Instead, the moment the trigger fires (the instance's n-th checkpoint
file written, or so many seconds into its training) the simulator holds the instance's commands still
(SIGSTOP; the agent keeps running and syncing), posts the notice once that checkpoint is in the
bucket, and lets the commands go on (SIGCONT) only when the agent has acted on it: its SIGTERM is
pending, or the command is gone. The notice lands mid-training on any machine; a training that ended
before its trigger is a fault that never fired, and says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from spottrain.contract import layout, markers
from spottrain.local import checkpoint_watch, processes
from spottrain.local.checkpoint_watch import WATCH_SECONDS, Checkpoint
from spottrain.local.faults import Interruption
from spottrain.local.imds import InstanceMetadata

# The agent uploads a new checkpoint within its sync interval (a second in the emulator). A file
# still missing after this long will never arrive: its sync is broken, not slow.
CHECKPOINT_UPLOAD_TIMEOUT = 60.0


class Instance(Protocol):
    instance_id: str
    sandbox: Path
    imds: InstanceMetadata
    booted_ns: int
    tracked: processes.InstanceProcesses
    process: subprocess.Popen

    @property
    def alive(self) -> bool: ...

    def command_pids(self) -> list[int]: ...


class NeverFired(Exception):
    """The trigger cannot fire any more; the message says why (for `injected fault ... never fired`)."""


def training_started(instance: Instance, s3: Any) -> bool:
    """Whether the agent on this instance has started the job's exec_command: its heartbeat says so.

    The agent writes a heartbeat the moment it enters a phase; the bucket is the one its commands name.
    """
    bucket = _job_bucket(instance)
    if bucket is None:
        return False
    try:
        heartbeat = json.loads(s3.get_object(Bucket=bucket, Key=layout.HEARTBEAT_KEY)["Body"].read())
    except (ValueError, s3.exceptions.ClientError):
        return False
    return heartbeat.get("instance_id") == instance.instance_id and heartbeat.get("phase") == markers.EXEC


def _job_bucket(instance: Instance) -> str | None:
    """The job's bucket, as the agent tells its commands (SPOTTRAIN_BUCKET); None before any command runs."""
    for pid in instance.command_pids():
        bucket = processes.environment(pid).get("SPOTTRAIN_BUCKET")
        if bucket:
            return bucket
    return None


# --- holding the commands still ----------------------------------------------------------------


@dataclasses.dataclass
class Hold:
    """Commands stopped with SIGSTOP: they make no progress until released."""

    pids: set[int]

    @classmethod
    def take(cls, find_pids: Callable[[], list[int]]) -> "Hold":
        """Stop every process `find_pids` names, again until no new one appears (one may fork meanwhile)."""
        return cls(checkpoint_watch.hold(find_pids))

    def acted_on(self) -> bool:
        """The agent sent its SIGTERM: pending in a held process (it handles it once released), or one died of it."""
        for pid in self.pids:
            state = processes.state(pid)
            if state is None or state.zombie or processes.sigterm_pending(pid):
                return True
        return False

    def release(self) -> None:
        for pid in self.pids:
            processes.signal_quietly(pid, signal.SIGCONT)


# --- the triggers ------------------------------------------------------------------------------


class Watcher:
    """Waits for one instance's trigger, then holds its commands; raises NeverFired when it cannot."""

    def __init__(self, instance: Instance, s3: Any):
        self.instance = instance
        self.s3 = s3

    def wait(self, ready: Callable[[], Any], why_not: Callable[[], str]) -> Any:
        """Poll `ready()` until truthy; NeverFired(why_not()) once the instance ended (the emulator's
        stop ends every instance, so this never outlives it)."""
        while not (result := ready()):
            if not self.instance.alive:
                raise NeverFired(why_not())
            time.sleep(WATCH_SECONDS)
        return result

    def hold_after(self, seconds: float) -> Hold:
        """Hold the commands `seconds` after the training command started."""
        iid = self.instance.instance_id
        self.wait(lambda: training_started(self.instance, self.s3), lambda: f"{iid} never started its training")
        due = time.monotonic() + seconds
        self.wait(
            lambda: time.monotonic() >= due,
            lambda: f"{iid} ended {seconds - (due - time.monotonic()):.1f}s into its training, "
            f"before the notice was due at {seconds:g}s",
        )
        hold = Hold.take(self.instance.command_pids)
        if not hold.pids:
            raise NeverFired(f"the training on {iid} had ended before {seconds:g}s into it")
        return hold

    def hold_at_checkpoint(self, nth: int) -> tuple[Hold, Checkpoint]:
        """Hold the commands as soon as the attempt's `nth` checkpoint file is written, from a process of
        its own (spottrain/local/checkpoint_watch.py: a thread here can be starved for a whole training)."""
        instance = self.instance
        spec = checkpoint_watch.Watch(
            tracking=instance.tracked.describe(),
            leader=instance.process.pid,
            since_ns=instance.booted_ns,
            nth=nth,
            parent=os.getpid(),
        )
        answer = checkpoint_watch.answer(checkpoint_watch.start(spec))
        if "never" in answer:
            raise NeverFired(f"the training on {instance.instance_id} {answer['never']}")
        return Hold(set(answer["held"])), Checkpoint(Path(answer["path"]), answer["bucket"], answer["key"])


def uploaded(s3: Any, checkpoint: Checkpoint) -> bool:
    """The agent has uploaded the file as it is now (the training is held: it cannot change)."""
    try:
        size = checkpoint.path.stat().st_size
        return s3.head_object(Bucket=checkpoint.bucket, Key=checkpoint.key)["ContentLength"] == size
    except (OSError, s3.exceptions.ClientError):
        return False


# --- the whole interruption --------------------------------------------------------------------


def interrupt(
    instance: Instance, trigger: Interruption, *, s3: Any, grace_seconds: float, on_event: Callable[[str], None]
) -> None:
    """Post the spot notice on the instance when `trigger` fires, mid-training; NeverFired if it cannot."""
    watcher = Watcher(instance, s3)
    if trigger.checkpoint is not None:
        hold, checkpoint = watcher.hold_at_checkpoint(trigger.checkpoint)
    else:
        hold, checkpoint = watcher.hold_after(trigger.seconds or 0.0), None
    try:
        if checkpoint is not None:
            _await_upload(watcher, s3, checkpoint, hold)
        notice = instance.imds.post_spot_notice(in_seconds=grace_seconds)
        when = (
            f"{checkpoint.key} is in s3://{checkpoint.bucket}" if checkpoint else f"{trigger.seconds:g}s into training"
        )
        on_event(f"fault {trigger}: spot notice for {instance.instance_id} ({when}): {notice}")
        # AWS reclaims at the notice's time whether or not the agent acted; so does the simulator.
        deadline = time.monotonic() + grace_seconds
        while not hold.acted_on() and instance.alive and time.monotonic() < deadline:
            time.sleep(WATCH_SECONDS)
    finally:
        hold.release()


def _await_upload(watcher: Watcher, s3: Any, checkpoint: Checkpoint, hold: Hold) -> None:
    iid = watcher.instance.instance_id
    deadline = time.monotonic() + CHECKPOINT_UPLOAD_TIMEOUT
    watcher.wait(
        lambda: uploaded(s3, checkpoint) or hold.acted_on() or time.monotonic() > deadline,
        lambda: f"{iid} ended before {checkpoint.key} reached s3://{checkpoint.bucket}",
    )
    if not uploaded(s3, checkpoint):
        reason = (
            "the agent stopped the training first"
            if hold.acted_on()
            else f"the agent did not upload it within {CHECKPOINT_UPLOAD_TIMEOUT:.0f}s"
        )
        raise NeverFired(f"{checkpoint.key} of {iid} never reached s3://{checkpoint.bucket}: {reason}")
