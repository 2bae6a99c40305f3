"""Command output: an append-only local log, rotated into parts, re-uploaded as it grows.

Memory stays bounded whatever the training prints: lines go straight to disk, only the last few
are kept for the heartbeat and completed.json, and an upload streams the current part from disk.
Disk stays bounded too: parts already in S3 are deleted locally beyond keep_bytes, oldest first.
"""

from __future__ import annotations

import collections
import errno
import logging
import threading
import time
from pathlib import Path
from typing import BinaryIO, Callable, Deque, Dict, List, Optional

from spottrain.contract import layout
from spottrain.contract.secrets import mask

from .s3sync import Store

TAIL_LINES = 20
MAX_LINE_CHARS = 500  # what a marker quotes of one line; the log itself keeps it whole
LOCAL_KEEP_BYTES = 50 * 1024 * 1024  # uploaded parts beyond this are deleted locally, oldest first
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)

log = logging.getLogger(__name__)


def open_part(path: Path) -> BinaryIO:
    return open(path, "ab")


class OutputLog:
    def __init__(
        self,
        directory: Path,
        attempt: int,
        part_bytes: int,
        keep_bytes: int = LOCAL_KEEP_BYTES,
        opener: Callable[[Path], BinaryIO] = open_part,
    ):
        self.directory = directory
        self.attempt = attempt
        self.part_bytes = part_bytes
        self.keep_bytes = keep_bytes
        self.last_line = ""
        self.last_line_time: Optional[float] = None
        self.write_error: Optional[OSError] = None  # the first failed write; nothing reaches the disk after it
        self.secret_values: List[bytes] = []  # the job's secrets: masked in every line written
        self._opener = opener
        self._tail: Deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()
        self._part = 1
        self._oldest_local = 1  # parts below it were uploaded and deleted locally
        self._closed_parts: List[int] = []  # rotated away, not yet uploaded in their final form
        self._uploaded_size: Dict[int, int] = {}  # part -> size at its last upload
        directory.mkdir(parents=True, exist_ok=True)
        self._file = opener(self.part_path(self._part))

    @property
    def disk_full(self) -> bool:
        return self.write_error is not None and self.write_error.errno in DISK_FULL_ERRNOS

    def part_path(self, part: int) -> Path:
        return self.directory / Path(layout.output_log_key(self.attempt, part)).name

    def write(self, line: bytes) -> None:
        line = mask(line, self.secret_values)  # before the disk, the tail, the markers and S3 see it
        with self._lock:
            if self.write_error is None:
                self._write_to_disk(line)
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self._tail.append(text)
            self.last_line = text[:MAX_LINE_CHARS]
            self.last_line_time = time.time()

    def _write_to_disk(self, line: bytes) -> None:
        # A failed write must not stop the caller: the reader thread would die, the command would
        # block on its full pipe, and a healthy-looking instance would idle until max runtime.
        try:
            self._file.write(line)
            self._file.flush()
            if self._file.tell() >= self.part_bytes:
                self._rotate()
        except OSError as error:
            self.write_error = error
            log.error(
                "cannot write the command's output to %s (%s): from now on only its last %d lines are kept, in memory",
                self.part_path(self._part),
                error,
                TAIL_LINES,
            )

    def note(self, message: str) -> None:
        """A line from the agent itself, e.g. where a phase starts, so the log reads as a story."""
        self.write(f"[spottrain] {message}\n".encode())

    def tail(self) -> List[str]:
        with self._lock:
            return [line[:MAX_LINE_CHARS] for line in self._tail]

    def upload(self, store: Store) -> bool:
        """Upload finished parts once more and the current part if it grew; True when all went up."""
        with self._lock:
            closed = list(self._closed_parts)
            pending = closed + [self._part]
        ok = True
        for part in pending:
            path = self.part_path(part)
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # the disk was full before the part could be created
                continue
            if self._uploaded_size.get(part) == size:
                continue
            if store.upload(path, layout.output_log_key(self.attempt, part)):
                self._uploaded_size[part] = size
                # Only a part closed before its size was read went up whole; one that rotated away while it
                # uploaded may have grown since, so it stays pending until an upload of its final size.
                if part in closed:
                    with self._lock:
                        self._closed_parts.remove(part)
            else:
                ok = False
        self._prune()
        return ok

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def _rotate(self) -> None:
        self._file.close()
        self._closed_parts.append(self._part)
        self._part += 1
        self._file = self._opener(self.part_path(self._part))

    def _prune(self) -> None:
        """Delete uploaded parts, oldest first, until the local log fits in keep_bytes: S3 has them."""
        with self._lock:
            closed = range(self._oldest_local, self._part)
            waiting = set(self._closed_parts)
        total = sum(_size(self.part_path(part)) for part in [*closed, self._part])
        for part in closed:
            if total <= self.keep_bytes or part in waiting:
                return
            total -= _size(self.part_path(part))
            self.part_path(part).unlink(missing_ok=True)
            self._oldest_local = part + 1


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


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
