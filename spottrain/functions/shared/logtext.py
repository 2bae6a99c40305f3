"""Terminal output made readable as plain text: what a log tail in an email or the CLI shows.

Training tools draw for a terminal: Chainer's PrintReport and ProgressBar erase (ESC[J) and move the
cursor up (ESC[4A) to redraw their rows, tqdm-style bars rewrite one line after a carriage return, and
some tools colour (ESC[31m) or set the window title (ESC]0;...BEL). Replayed on a small line grid, a log
shows what its terminal would have shown at the end, one row per line, with no escape codes left.
Raw logs in S3 are never rewritten; only what people read is.
Stdlib only: the Lambdas and the CLI share it.
"""

from __future__ import annotations

import re

# OSC (ESC ] ... BEL or ST), CSI (ESC [ params final), and the remaining two-character escapes.
_ESCAPES = r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b\[[0-?]*[ -/]*[@-~]|\x1b[ -/]*[0-~]?"
_TOKENS = re.compile(f"({_ESCAPES}|\r|\n)")
_CSI = re.compile(r"\x1b\[([0-?]*)[ -/]*([@-~])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class _Screen:
    """Rows of text and a cursor; enough of a terminal to replay line-oriented redraws."""

    def __init__(self) -> None:
        self.rows: list[str] = [""]
        self.row = 0
        self.col = 0
        self.redraw = False  # after a carriage return, the next text replaces the row (the last redraw wins)

    def text(self, chunk: str) -> None:
        chunk = _CONTROL.sub("", chunk)
        if not chunk:
            return
        line = self.rows[self.row]
        if self.redraw:
            line, self.redraw = "", False
        line = line.ljust(self.col)
        self.rows[self.row] = line[: self.col] + chunk + line[self.col + len(chunk) :]
        self.col += len(chunk)

    def newline(self) -> None:
        self.redraw = False
        self.row += 1
        self.col = 0
        if self.row == len(self.rows):
            self.rows.append("")

    def carriage_return(self) -> None:
        self.col = 0
        self.redraw = True

    def csi(self, params: str, final: str) -> None:
        count = int(params) if params.isdigit() else 1
        if final == "A" and count <= self.row:  # up, as ProgressBar does; never above what we hold
            self.row -= count
            self.redraw = False
        elif final == "J" and params in ("", "0"):  # erase from the cursor to the end of the screen
            self.rows[self.row] = self.rows[self.row][: self.col]
            del self.rows[self.row + 1 :]
        elif final == "K" and params in ("", "0"):  # erase to the end of the line
            self.rows[self.row] = self.rows[self.row][: self.col]
        elif final == "K" and params == "2":
            self.rows[self.row] = ""
        # colours, other moves and modes only decorate: dropped

    def lines(self) -> list[str]:
        """Every row; an empty last row is where the cursor waits after a newline, not a line."""
        rows = [row.rstrip() for row in self.rows]
        return rows[:-1] if rows[-1] == "" else rows


def _replay(text: str) -> _Screen:
    screen = _Screen()
    for token in _TOKENS.split(text):
        if not token:
            continue
        if token == "\n":
            screen.newline()
        elif token == "\r":
            screen.carriage_return()
        elif token.startswith("\x1b"):
            csi = _CSI.fullmatch(token)
            if csi:
                screen.csi(*csi.groups())
        else:
            screen.text(token)
    return screen


def readable_lines(text: str) -> list[str]:
    """The lines a terminal would show after printing `text`, without any escape or control code."""
    return _replay(text).lines()


def readable(text: str) -> str:
    """`readable_lines` as text, each line ended by a newline except an unfinished last one."""
    screen = _replay(text)
    lines = screen.lines()
    finished = not screen.rows[-1].rstrip()
    return "".join(line + "\n" for line in lines) if finished else "\n".join(lines)
