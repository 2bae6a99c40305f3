"""Running one phase: the whole process group stops, leftovers cannot hang it, output stays bounded."""
from __future__ import annotations

import os
import time

from instance.agent import runner
from instance.agent.logs import OutputLog
from instance.agent.periodic import Periodic


def never():
    return None


def after(seconds: float, stop: runner.Stop):
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

    result = runner.run(command, cwd=tmp_path, env=dict(os.environ), output=output,
                        should_stop=after(0.5, runner.Stop("interrupted", 5)))

    assert result.stop.reason == "interrupted" and result.exit_code == 128 + 15
    assert gone_within(int(pid_file.read_text()), seconds=5)  # the data-loader-like child went too


def test_given_a_background_leftover_holding_the_pipe_when_the_command_exits_then_the_phase_still_ends(tmp_path):
    output = OutputLog(tmp_path / "logs", 1, 1 << 20)
    started = time.monotonic()

    result = runner.run("sleep 600 & echo done", cwd=tmp_path, env=dict(os.environ), output=output, should_stop=never)

    assert result.exit_code == 0 and time.monotonic() - started < 10
    assert output.tail() == ["done"]


def test_given_output_without_newlines_when_logged_then_every_byte_lands_in_bounded_pieces(tmp_path):
    output = OutputLog(tmp_path / "logs", 1, 1 << 20)
    size = 5 * runner.MAX_LINE_BYTES + 123

    runner.run(f"head -c {size} /dev/zero | tr '\\0' x", cwd=tmp_path, env=dict(os.environ), output=output,
               should_stop=never)
    output.close()

    assert output.part_path(1).read_bytes() == b"x" * size
    assert len(output.last_line) <= 500


def test_given_a_chore_that_raises_when_it_runs_then_the_thread_keeps_ticking():
    calls = []

    def flaky():
        calls.append(1)
        raise RuntimeError("S3 exploded")

    chore = Periodic("flaky", 0.05, flaky)
    chore.start()
    time.sleep(0.3)
    chore.stop()

    assert len(calls) >= 3 and not chore.is_alive()
