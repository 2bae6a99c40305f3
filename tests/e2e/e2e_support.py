"""Helpers the emulator scenarios share."""
from __future__ import annotations

import time
from typing import Any, Callable


def wait_until(condition: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
    """Poll until `condition()` is truthy; return it, or fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(0.2)
    return result
