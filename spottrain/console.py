"""The CLI's output: rich on a terminal (a live progress line, tables, mail panels), plain lines elsewhere.

Where no terminal reads it (a pipe, a file, CI), every message is one plain line and progress is one
line per change of the job's state, so `--wait > log` stays readable and greppable.
"""

from __future__ import annotations

import sys
from typing import Sequence

from rich.console import Console as RichConsole
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from spottrain import jobs


class Console:
    """What the commands print through; `tty` decides between rich and plain."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        # markup, emoji codes and highlighting off: job names, logs and errors print as they are
        self._rich = RichConsole(file=self.stream, force_terminal=self.tty, markup=False, emoji=False, highlight=False)
        self._live: Live | None = None
        self._logged: jobs.Progress | None = None  # the newest snapshot written as a plain line

    def progress(self, snapshot: jobs.Progress) -> None:
        """A terminal shows the newest snapshot on one live line; elsewhere one line per change."""
        if not self.tty:
            # A log or a pipe keeps every line: one per poll that only moved the clock is noise.
            if not snapshot.same_as(self._logged):
                self._logged = snapshot
                self._plain(snapshot.line())
            return
        line = Text(snapshot.line(), no_wrap=True, overflow="ellipsis")
        if self._live is None:
            self._live = Live(line, console=self._rich, auto_refresh=False)
            self._live.start()
        self._live.update(line, refresh=True)

    def say(self, text: str = "") -> None:
        """A message; on a terminal it prints above the live progress line, which stays at the bottom."""
        if self.tty:
            self._rich.print(Text(text), soft_wrap=True)
        else:
            self._plain(text)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A rich table on a terminal; elsewhere one line per row, columns padded, no header."""
        if self.tty:
            table = Table(*columns, box=None, header_style="bold")
            for row in rows:
                table.add_row(*row)
            self._rich.print(table)
            return
        widths = [max((len(row[index]) for row in rows), default=0) for index in range(len(columns))]
        for row in rows:
            self._plain("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())

    def end_progress(self) -> None:
        """Leave the last progress line on screen and stop updating it."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def error(self, text: str) -> None:
        self.end_progress()
        sys.stderr.write(f"spottrain: {text}\n")

    def email(self, message: dict) -> None:
        if self.tty:
            self._rich.print(Panel(Text(message["body"]), title=Text(f"✉  {message['subject']}"), title_align="left"))
            return
        rule = "─" * 72
        for line in (
            f"┌{rule}",
            f"│ ✉  {message['subject']}",
            f"├{rule}",
            *(f"│ {line}" for line in message["body"].splitlines()),
            f"└{rule}",
        ):
            self._plain(line)

    def _plain(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
