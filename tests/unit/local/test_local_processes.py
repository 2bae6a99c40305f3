"""What the simulator knows of an instance's processes: which they are, how to end them all, what
/proc says about one (the spot interruption's hold reads it)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from spottrain.local import processes

# A process that handles SIGTERM, as the payload does: it notes it and exits 143.
HANDLES_SIGTERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def _wait_until(condition, timeout: float = 10) -> None:
    """Wait for an event; the timeout only bounds a failure."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_given_a_tracked_instance_then_its_processes_are_found_and_all_end_together(tracking):
    # Given an instance's first process that started a child of its own
    tracked = processes.track(f"test-{random.randrange(1 << 30)}")
    first = subprocess.Popen(
        tracked.command(["bash", "-c", "sleep 60 & wait"]),
        env={**os.environ, **tracked.environment},
        start_new_session=True,
    )
    _wait_until(lambda: len(tracked.pids()) == 2)
    assert first.pid in tracked.pids()

    # When it ends
    tracked.end_all()

    # Then both are gone, killed
    assert tracked.pids() == []
    assert first.wait(timeout=5) == -signal.SIGKILL


@pytest.fixture
def stopped_training():
    """A running process that handles SIGTERM, held with SIGSTOP."""
    child = subprocess.Popen([sys.executable, "-c", HANDLES_SIGTERM], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    os.kill(child.pid, signal.SIGSTOP)
    _wait_until(lambda: processes.state(child.pid).stopped)
    yield child
    child.kill()
    child.wait()


def test_given_a_held_process_when_sigterm_arrives_then_it_is_seen_pending_and_handled_once_released(stopped_training):
    assert not processes.sigterm_pending(stopped_training.pid)

    os.kill(stopped_training.pid, signal.SIGTERM)

    assert processes.sigterm_pending(stopped_training.pid)
    assert processes.state(stopped_training.pid).stopped  # still held: nothing ran
    os.kill(stopped_training.pid, signal.SIGCONT)
    assert stopped_training.wait(timeout=10) == 143


def test_given_a_process_then_its_session_environment_and_end_are_read_from_proc():
    child = subprocess.Popen(["sleep", "60"], env={"MARK": "here"}, start_new_session=True)
    try:
        _wait_until(lambda: processes.environment(child.pid).get("MARK") == "here")
        state = processes.state(child.pid)
        assert (state.session, state.stopped, state.zombie) == (child.pid, False, False)
    finally:
        child.kill()
        child.wait()
    assert processes.state(child.pid) is None
    assert processes.environment(child.pid) == {}


# An emulator in miniature: it boots one tracked "instance" that starts a child of its own, guards it, prints
# the tracking and waits to be killed (argv[1] "marker": tracking by environment marker, as a non-root user's).
OWNER = (
    "import json, os, subprocess, sys, time\n"
    "from spottrain.local import processes\n"
    "if sys.argv[1] == 'marker':\n"
    "    processes._cgroup_parent = lambda: None\n"
    "tracked = processes.track(f'guard-test-{os.getpid()}')\n"
    "subprocess.Popen(tracked.command(['bash', '-c', 'sleep 120 & wait']),\n"
    "                 env={**os.environ, **tracked.environment}, start_new_session=True)\n"
    "guard = processes.guard(tracked)\n"
    "print(json.dumps(tracked.describe()), flush=True)\n"
    "time.sleep(120)\n"
)


def test_given_a_guarded_instance_when_its_emulator_is_killed_with_sigkill_then_the_instances_processes_end(
    tracking,
):
    # Given an emulator process whose instance runs a command in a session of its own
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, "marker" if tracking == "environment marker" else "cgroup"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    tracked = processes.restore(json.loads(owner.stdout.readline()))
    _wait_until(lambda: len(tracked.pids()) == 2)

    # When the emulator is killed with SIGKILL (kill -9: no handler, no cleanup of its own runs)
    owner.kill()
    owner.wait()

    # Then the instance's processes end anyway, the guard having noticed its owner's end
    _wait_until(lambda: tracked.pids() == [], timeout=30)


def test_given_a_guarded_instance_when_its_emulator_releases_the_guard_then_the_guard_ends_and_kills_nothing_new():
    # Given a guard over an instance that already ended (the emulator ended it itself)
    tracked = processes.track(f"released-{random.randrange(1 << 30)}")
    guard = processes.guard(tracked)
    tracked.end_all()

    # When the emulator releases it
    processes.release(guard)

    # Then the guard has ended, cleanly
    assert guard.returncode == 0
