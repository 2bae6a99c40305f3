"""Run one phase's command in its own process group, its output into the job's log.

A process group, because a training command is often a shell that starts python that starts data
loader workers: SIGTERM must reach all of them, not only the shell.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Union

from .logs import OutputLog

MAX_LINE_BYTES = 64 * 1024  # a line without a newline (progress bars) is cut into pieces of this size
WAIT_STEP_SECONDS = 0.1
PIPE_DRAIN_SECONDS = 2.0
PROC = Path("/proc")

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StopRequest:
    """Why a running command must stop, and how long it may take before SIGKILL."""

    reason: str  # "interrupted" | "max_runtime" | "spend_cap" | "disk_full"
    grace_seconds: float


@dataclasses.dataclass(frozen=True)
class Result:
    exit_code: int  # a signal death is reported as the shell does: 128 + signal number
    seconds: float
    stop: Optional[StopRequest] = None
    killed: bool = False  # still running when the grace ran out: whatever it was saving may be cut


def run(
    command: Union[str, List[str]],
    *,
    cwd: Path,
    env: Mapping[str, str],
    output: OutputLog,
    should_stop: Callable[[], Optional[StopRequest]],
) -> Result:
    """Run command (a string goes to `bash -c`) until it exits or should_stop() says otherwise."""
    argv = ["bash", "-c", command] if isinstance(command, str) else command
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        cwd=str(cwd),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    reader = threading.Thread(target=_copy_output, args=(process, output), name="output-reader", daemon=True)
    reader.start()
    stop = _wait(process, should_stop)
    killed = _terminate(process, stop) if stop else False
    reader.join(PIPE_DRAIN_SECONDS)
    if reader.is_alive():
        # Something the command left running in the background still holds the pipe: the phase is
        # over, so its leftovers go with it.
        _signal_group(process, signal.SIGKILL)
        reader.join(PIPE_DRAIN_SECONDS)
    return Result(_shell_exit_code(process.returncode), time.monotonic() - started, stop, killed)


def _wait(process: subprocess.Popen, should_stop: Callable[[], Optional[StopRequest]]) -> Optional[StopRequest]:
    while process.poll() is None:
        stop = should_stop()
        if stop is not None:
            return stop
        time.sleep(WAIT_STEP_SECONDS)
    return None


def _terminate(process: subprocess.Popen, stop: StopRequest) -> bool:
    """SIGTERM the group, give it the whole grace, SIGKILL what remains; True when SIGKILL was needed.

    The whole group, not only the command's own process: `python train.py && echo done` is a bash
    that dies at once on SIGTERM while its python child is still writing the snapshot.
    """
    log.warning(
        "stopping the command (%s): SIGTERM to its process group, SIGKILL after %.0fs", stop.reason, stop.grace_seconds
    )
    _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + stop.grace_seconds
    while True:
        process.poll()  # reaps the group's leader, which would otherwise count as a member
        if not group_alive(process.pid):
            process.wait()  # it may have died between the two looks: nothing left to wait for
            return False
        if time.monotonic() >= deadline:
            break
        time.sleep(WAIT_STEP_SECONDS)
    log.warning(
        "the command's process group still ran %.0fs after SIGTERM: SIGKILL; a checkpoint it was writing may be cut",
        stop.grace_seconds,
    )
    _signal_group(process, signal.SIGKILL)
    process.wait()
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs; zombies (dead, waiting to be reaped) do not count.

    Zombies matter: where PID 1 is slow to reap orphans (containers), a finished group would look
    alive for the whole grace, and the agent would report a clean stop as SIGKILLed.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # members that run as another user: alive all the same
        return True
    if not PROC.is_dir():  # not Linux: a zombie counts as alive until reaped, which is only slower
        return True
    return any(_live_member(stat, pgid) for stat in PROC.glob("[0-9]*/stat"))


def _live_member(stat: Path, pgid: int) -> bool:
    try:
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, hence the last ")".
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):  # the process ended while we looked
        return False
    return int(fields[2]) == pgid and fields[0] not in ("Z", "X")


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _copy_output(process: subprocess.Popen, output: OutputLog) -> None:
    stdout = process.stdout
    assert stdout is not None  # started with stdout=PIPE
    for line in iter(lambda: stdout.readline(MAX_LINE_BYTES), b""):
        output.write(line)
    stdout.close()


def _shell_exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode
