"""Running one phase: the whole process group stops, leftovers cannot hang it, output stays bounded."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

import pytest

from spottrain.agent import runner
from spottrain.agent.logs import OutputLog
from spottrain.agent.periodic import Periodic


def never():
    return None


def after(seconds: float, stop: runner.StopRequest):
    deadline = time.monotonic() + seconds
    return lambda: stop if time.monotonic() >= deadline else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone_within(pid: int, seconds: float) -> bool:
    """A killed child is a zombie until init reaps it, which a busy machine may take a while to do."""
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def test_given_a_stop_when_the_command_has_children_then_the_whole_group_gets_sigterm(tmp_path):
    output = OutputLog(tmp_path / "logs", 1, 1 << 20)
    pid_file = tmp_path / "worker.pid"
    command = f"sleep 600 & echo $! > {pid_file}; wait"

    result = runner.run(
        command,
        cwd=tmp_path,
        env=dict(os.environ),
        output=output,
        should_stop=after(0.5, runner.StopRequest("interrupted", 5)),
    )

    assert result.stop.reason == "interrupted" and result.exit_code == 128 + 15
    assert gone_within(int(pid_file.read_text()), seconds=5)  # the data-loader-like child went too


# A payload-like training: on SIGTERM it saves a snapshot that takes longer than the pipe drain (as a
# real multi-GB save does), the way training_payload does: write .partial, then rename.
SLOW_SAVE_PY = r"""
import os, signal, sys, time
from pathlib import Path

here = Path(sys.argv[1])
save_seconds = float(sys.argv[2])

def save(signum, frame):
    (here / "snapshot.partial").write_text("state")
    time.sleep(save_seconds)
    os.rename(here / "snapshot.partial", here / "snapshot")
    sys.exit(143)

signal.signal(signal.SIGTERM, save)
(here / "ready").write_text("1")
while True:
    time.sleep(0.05)
"""


def when_ready(path, stop: runner.StopRequest):
    """Stop once the training says it is ready: the test waits for the event, not for seconds."""
    return lambda: stop if path.exists() else None


@pytest.mark.parametrize(
    "wrap", ["{} && echo done", "{}; echo next", "{} | tee copy.log", "echo start && {} 2>&1 | cat"]
)
def test_given_a_shell_wrapped_training_when_stopped_then_it_gets_the_whole_grace_to_save(tmp_path, wrap):
    output = OutputLog(tmp_path / "logs", 1, 1 << 20)
    (tmp_path / "save.py").write_text(SLOW_SAVE_PY)
    save_seconds = 1.5 * runner.PIPE_DRAIN_SECONDS
    training = f"{shlex.quote(sys.executable)} save.py {shlex.quote(str(tmp_path))} {save_seconds}"

    result = runner.run(
        wrap.format(training),
        cwd=tmp_path,
        env=dict(os.environ),
        output=output,
        should_stop=when_ready(tmp_path / "ready", runner.StopRequest("interrupted", 60)),
    )

    assert (tmp_path / "snapshot").read_text() == "state"  # the save completed before run() returned
    assert result.stop.reason == "interrupted" and result.killed is False


def test_given_a_training_that_ignores_sigterm_when_the_grace_ends_then_it_is_killed_and_says_so(tmp_path):
    output = OutputLog(tmp_path / "logs", 1, 1 << 20)
    command = f"trap '' TERM; touch {shlex.quote(str(tmp_path / 'ready'))}; sleep 600"

    result = runner.run(
        command,
        cwd=tmp_path,
        env=dict(os.environ),
        output=output,
        should_stop=when_ready(tmp_path / "ready", runner.StopRequest("max_runtime", 0.5)),
    )

    assert result.killed is True and result.exit_code == 128 + 9


@pytest.mark.skipif(not runner.PROC.is_dir(), reason="zombies are told apart through /proc (Linux)")
def test_given_a_group_whose_only_member_is_a_zombie_then_it_counts_as_ended():
    process = subprocess.Popen(["true"], start_new_session=True)
    stat = runner.PROC / str(process.pid) / "stat"
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":  # exited, deliberately not reaped yet
        time.sleep(0.01)

    os.killpg(process.pid, 0)  # the kernel still lists it in the group...
    assert runner.group_alive(process.pid) is False  # ...but nothing there can still be saving
    process.wait()


def test_given_a_background_leftover_holding_the_pipe_when_the_command_exits_then_the_phase_still_ends(tmp_path):
    output = OutputLog(tmp_path / "logs", 1, 1 << 20)
    started = time.monotonic()

    result = runner.run("sleep 600 & echo done", cwd=tmp_path, env=dict(os.environ), output=output, should_stop=never)

    assert result.exit_code == 0 and time.monotonic() - started < 10
    assert output.tail() == ["done"]


def test_given_output_without_newlines_when_logged_then_every_byte_lands_in_bounded_pieces(tmp_path):
    output = OutputLog(tmp_path / "logs", 1, 1 << 20)
    size = 5 * runner.MAX_LINE_BYTES + 123

    runner.run(
        f"head -c {size} /dev/zero | tr '\\0' x", cwd=tmp_path, env=dict(os.environ), output=output, should_stop=never
    )
    output.close()

    assert output.part_path(1).read_bytes() == b"x" * size
    assert len(output.last_line) <= 500


def test_given_a_periodic_task_that_raises_when_it_runs_then_the_thread_keeps_ticking():
    calls = []

    def flaky():
        calls.append(1)
        raise RuntimeError("S3 exploded")

    task = Periodic("flaky", 0.05, flaky)
    task.start()
    deadline = time.monotonic() + 30  # bounds a failure only: three ticks come after any error
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    task.stop()

    assert len(calls) >= 3 and not task.is_alive()
