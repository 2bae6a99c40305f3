"""Command output: an append-only local log, rotated into parts, re-uploaded as it grows.

Memory stays bounded whatever the training prints: lines go straight to disk, only the last few
are kept for the heartbeat and completed.json, and an upload streams the current part from disk.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path
from typing import List, Optional

from lambdas.shared import layout

from .s3sync import Store

TAIL_LINES = 20
MAX_LINE_CHARS = 500  # what a marker quotes of one line; the log itself keeps it whole

log = logging.getLogger(__name__)


class OutputLog:
    def __init__(self, directory: Path, attempt: int, part_bytes: int):
        self.directory = directory
        self.attempt = attempt
        self.part_bytes = part_bytes
        self.last_line = ""
        self.last_line_time: Optional[float] = None
        self._tail = collections.deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()
        self._part = 1
        self._closed_parts: List[int] = []  # rotated away, not yet uploaded in their final form
        self._uploaded_size = {}  # part -> size at its last upload
        directory.mkdir(parents=True, exist_ok=True)
        self._file = open(self.part_path(self._part), "ab")

    def part_path(self, part: int) -> Path:
        return self.directory / Path(layout.output_log_key(self.attempt, part)).name

    def write(self, line: bytes) -> None:
        with self._lock:
            self._file.write(line)
            self._file.flush()
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self._tail.append(text)
            self.last_line = text[:MAX_LINE_CHARS]
            self.last_line_time = time.time()
            if self._file.tell() >= self.part_bytes:
                self._rotate()

    def note(self, message: str) -> None:
        """A line from the agent itself, e.g. where a phase starts, so the log reads as a story."""
        self.write(f"[spottrain] {message}\n".encode())

    def tail(self) -> List[str]:
        with self._lock:
            return [line[:MAX_LINE_CHARS] for line in self._tail]

    def upload(self, store: Store) -> bool:
        """Upload finished parts once more and the current part if it grew; True when all went up."""
        with self._lock:
            pending = list(self._closed_parts) + [self._part]
        ok = True
        for part in pending:
            path = self.part_path(part)
            size = path.stat().st_size
            if self._uploaded_size.get(part) == size:
                continue
            if store.upload(path, layout.output_log_key(self.attempt, part)):
                self._uploaded_size[part] = size
                with self._lock:
                    if part in self._closed_parts:
                        self._closed_parts.remove(part)
            else:
                ok = False
        return ok

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def _rotate(self) -> None:
        self._file.close()
        self._closed_parts.append(self._part)
        self._part += 1
        self._file = open(self.part_path(self._part), "ab")


def configure_agent_log(path: Path) -> logging.Handler:
    """The agent's own log: to stderr (console output / emulator) and to a file uploaded as agent.log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = logging.FileHandler(path)
    console = logging.StreamHandler()
    root = logging.getLogger()
    for each in (handler, console):
        each.setFormatter(formatter)
        root.addHandler(each)
    root.setLevel(logging.INFO)
    # botocore narrates every retry and credential lookup at INFO; our own lines say what matters.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("boto3").setLevel(logging.WARNING)
    return handler
