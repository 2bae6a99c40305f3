"""A daemon thread that calls one action every interval, and never dies of the action's errors."""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Periodic(threading.Thread):
    def __init__(self, name: str, interval: float, action: Callable[[], object]):
        super().__init__(name=name, daemon=True)
        self.interval = interval
        self.action = action
        self._wake = threading.Event()
        self._stopping = False

    def run(self) -> None:
        while not self._stopping:
            self._call()
            self._wake.wait(self.interval)
            self._wake.clear()

    def poke(self) -> None:
        """Run the action now rather than at the next tick (e.g. a heartbeat when the phase changes)."""
        self._wake.set()

    def stop(self, timeout: float = 60.0) -> None:
        self._stopping = True
        self._wake.set()
        if self.is_alive():
            self.join(timeout)

    def _call(self) -> None:
        try:
            self.action()
        except Exception:  # a bug in one background task must not stop the others, let alone the training
            log.exception("%s failed; will try again in %.1fs", self.name, self.interval)
