"""Following a job (`--wait`, `demo`): what the progress output looks like where no terminal reads it."""

from __future__ import annotations

import io

from spottrain import cli
from spottrain.jobs import Progress


def _snapshot(
    seconds: float, state: str = "WaitForTraining", attempt: int | None = 1, log: str | None = None
) -> Progress:
    return Progress("arn:exec", "RUNNING", state, attempt, "i-1", seconds, log)


def test_given_output_to_a_file_when_only_the_clock_moves_then_no_new_line():
    # Given progress written to a pipe or a log file (not a terminal)
    stream = io.StringIO()
    console = cli.Console(stream)

    # When the job is polled once a second while nothing happens, then its state changes
    for second in range(30):
        console.progress(_snapshot(second))
    console.progress(_snapshot(30, state="PollCompletion"))
    console.progress(_snapshot(31, state="PollCompletion"))
    console.progress(_snapshot(32, state="PollCompletion", log="epoch 1 loss 0.3"))
    console.progress(_snapshot(33, state="PollCompletion", attempt=2, log="epoch 1 loss 0.3"))

    # Then one line per change, each with the time it happened
    assert stream.getvalue().splitlines() == [
        "0m00s  WaitForTraining  attempt 1  i-1",
        "0m30s  PollCompletion  attempt 1  i-1",
        "0m32s  PollCompletion  attempt 1  i-1  | epoch 1 loss 0.3",
        "0m33s  PollCompletion  attempt 2  i-1  | epoch 1 loss 0.3",
    ]
