"""The CLI's output (spottrain/console.py): rich where a terminal reads it, plain lines everywhere else."""

from __future__ import annotations

import io

from spottrain.console import Console
from spottrain.jobs import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _snapshot(seconds: float, state: str = "WaitForTraining") -> Progress:
    return Progress("arn:exec", "RUNNING", state, 1, "i-1", seconds, None)


def test_given_a_terminal_when_the_clock_moves_then_one_live_line_is_redrawn_and_messages_print_above_it():
    # Given a terminal
    screen = Terminal()
    console = Console(screen)
    # When the job is polled 30 times, a message arrives, and the follow ends
    for second in range(30):
        console.progress(_snapshot(second))
    console.say("✉ started")
    console.progress(_snapshot(31, state="PollCompletion"))
    console.end_progress()
    # Then the line was redrawn in place (far fewer newlines than polls), the message and the last state shown
    output = screen.getvalue()
    assert output.count("\n") < 10 and "\x1b[" in output
    assert "✉ started" in output and "0m31s  PollCompletion  attempt 1  i-1" in output


def test_given_a_file_when_listing_then_one_padded_line_per_row_without_header():
    stream = io.StringIO()
    Console(stream).table(("job", "status"), [("pix2pix", "RUNNING"), ("a", "SUCCEEDED")])
    assert stream.getvalue().splitlines() == ["pix2pix  RUNNING", "a        SUCCEEDED"]


def test_given_a_terminal_when_listing_then_a_table_with_headers():
    screen = Terminal()
    Console(screen).table(("job", "status"), [("pix2pix", "RUNNING")])
    output = screen.getvalue()
    assert "job" in output and "status" in output and "pix2pix" in output and "RUNNING" in output


def test_given_a_file_when_a_message_holds_markup_like_text_then_it_prints_unchanged():
    stream = io.StringIO()
    Console(stream).say("[bold]exec_name[/bold] :smile: " + "x" * 200)
    assert stream.getvalue() == "[bold]exec_name[/bold] :smile: " + "x" * 200 + "\n"
