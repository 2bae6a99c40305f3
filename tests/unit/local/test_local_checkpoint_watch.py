"""interrupt-at=checkpoint's watch holds the training at its checkpoint in a process of its own."""

from __future__ import annotations

import ctypes
import os
import re
import secrets
import select
import subprocess
import sys
import time
import pytest

from spottrain.local import checkpoint_watch, processes

# A training that writes snapshot_iter_1, _2, ... a moment apart, and then, if told to, trains on until stopped.
TRAINING = """
import os, sys, time
from pathlib import Path
folder = Path(os.environ["SPOTTRAIN_CHECKPOINT_DIR"])
folder.mkdir(parents=True, exist_ok=True)
for n in range(1, int(sys.argv[1]) + 1):
    (folder / f"snapshot_iter_{n}.partial").write_text("weights")
    os.replace(folder / f"snapshot_iter_{n}.partial", folder / f"snapshot_iter_{n}")
    time.sleep(0.05)
while sys.argv[2] == "endless":
    time.sleep(0.01)
"""
# The instance's first process: a session leader, whose commands each get a session of their own (as the agent's).
LEADER = 'setsid "$0" -c "$1" "$2" "$3" & wait'


@pytest.fixture
def instance(tmp_path):
    """Start a simulated instance's process tree; (leader, tracking, checkpoint folder)."""
    started = []

    def boot(checkpoints: int, endless: bool, restored: bool = False):
        folder = tmp_path / "checkpoints"
        if restored:  # a snapshot restored from S3 keeps the mtime of its upload
            folder.mkdir()
            (folder / "snapshot_iter_0").write_text("old weights")
            os.utime(folder / "snapshot_iter_0", ns=(0, 0))
        tracked = processes.track(f"watch-{secrets.token_hex(4)}")
        env = {
            **os.environ,
            **tracked.environment,
            "SPOTTRAIN_CHECKPOINT_DIR": str(folder),
            "SPOTTRAIN_OUTPUT_DIR": str(tmp_path / "result"),
            "SPOTTRAIN_BUCKET": "job-bucket",
        }
        since_ns = time.time_ns()
        argv = ["sh", "-c", LEADER, sys.executable, TRAINING, str(checkpoints), "endless" if endless else "once"]
        leader = subprocess.Popen(tracked.command(argv), env=env, start_new_session=True)
        started.append((leader, tracked))
        spec = checkpoint_watch.Watch(tracked.describe(), leader.pid, since_ns, nth=1, parent=os.getpid())
        return leader, tracked, spec

    yield boot
    for leader, tracked in started:
        tracked.end_all()
        leader.wait()


def _holding_the_gil_until_readable(stream, timeout_ms: int = 120_000) -> None:
    """Block on poll(2) through ctypes.PyDLL, which keeps the GIL: no thread of this process runs meanwhile."""
    poll = ctypes.PyDLL(None).poll
    fds = (ctypes.c_int * 2)(stream.fileno(), select.POLLIN)  # struct pollfd {int fd; short events, revents}
    assert poll(fds, 1, timeout_ms) == 1, "the watch did not answer (the timeout only bounds a failure)"


def test_given_the_emulators_process_cannot_run_a_thread_then_the_watch_still_holds_the_training_at_its_checkpoint(
    instance,
):
    # Given a training that writes its first checkpoint and trains on
    leader, tracked, spec = instance(checkpoints=3, endless=True)

    # When the watch runs while this process holds its GIL (a busy emulator, with no thread of it scheduled)
    watch = checkpoint_watch.start(spec)
    _holding_the_gil_until_readable(watch.stdout)
    answer = checkpoint_watch.answer(watch)

    # Then the training was held at the attempt's first checkpoint, by the watch alone
    assert answer["key"] == "checkpoints/snapshot_iter_1", answer
    assert answer["bucket"] == "job-bucket"
    held = answer["held"]
    assert held and all(processes.state(pid).stopped for pid in held), answer
    assert leader.pid not in held, "the instance's own process was held, not only its commands"


def test_given_restored_checkpoints_then_the_watch_counts_only_this_attempts_own(instance):
    # Given an attempt that restored an older snapshot before its training writes its own
    _, _, spec = instance(checkpoints=1, endless=True, restored=True)

    # When the watch answers, then it held the training at the attempt's own first snapshot
    assert checkpoint_watch.answer(checkpoint_watch.start(spec))["key"] == "checkpoints/snapshot_iter_1"


def test_given_a_training_that_ends_before_its_nth_checkpoint_then_the_watch_says_how_many_it_wrote(instance):
    # Given a training that writes one checkpoint and ends, and an instance that ends with it
    leader, _, spec = instance(checkpoints=1, endless=False)
    spec = checkpoint_watch.Watch(spec.tracking, spec.leader, spec.since_ns, nth=5, parent=spec.parent)

    # When the watch waits for the fifth
    answer = checkpoint_watch.answer(checkpoint_watch.start(spec))

    # Then it answers that it never came, and how many it saw (the one, unless it ended before the watch looked)
    assert re.fullmatch(r"ended after writing [01] checkpoint file\(s\) in this attempt, not 5", answer["never"]), (
        answer
    )
    assert leader.poll() is not None
