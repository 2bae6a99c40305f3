"""A replacement boots while the reclaimed instance still saves: wait for its final sync before restoring.

The workflow relaunches at the spot notice, not two minutes later, so attempt n may be cloning while
attempt n-1 is still uploading its last checkpoint. Its `status/interrupted.json` says
`"final_sync_done": false` until that upload is over; restoring earlier would resume from an
older snapshot.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Mapping, Optional, Tuple

from spottrain.contract import layout, markers

POLL_SECONDS = 2.0

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Waited:
    needed: bool = False  # the previous attempt's final sync was under way when we looked
    done: bool = False  # ... and it finished within the bound
    seconds: float = 0.0


def previous_sync_pending(marker: Optional[Mapping], attempt: int, execution: Optional[str]) -> bool:
    """True when the marker is attempt-1's of this execution and its final sync is not over.

    A marker without final_sync_done (an older agent's) or of another execution never holds us up.
    """
    if not isinstance(marker, Mapping) or attempt <= 1:
        return False
    if marker.get("attempt") != attempt - 1:
        return False
    if execution and marker.get("execution") not in (None, execution):
        return False
    return marker.get(markers.FINAL_SYNC_DONE) is False


def wait_for_previous_sync(
    read_marker: Callable[[], Optional[Mapping]],
    attempt: int,
    execution: Optional[str],
    bound_seconds: float,
    pause: Callable[[float], bool],
    poll_seconds: float = POLL_SECONDS,
) -> Waited:
    """Poll the marker until its final sync is done, the bound passes, or pause() says stop (it returns True)."""
    readable, marker = _read(read_marker)
    if not readable or not previous_sync_pending(marker, attempt, execution):
        return Waited()
    started = time.monotonic()
    log.info(
        "attempt %d is still syncing after its spot notice: waiting up to %.0fs for %s to say "
        "final_sync_done before restoring",
        attempt - 1,
        bound_seconds,
        layout.INTERRUPTED_KEY,
    )
    while True:
        left = bound_seconds - (time.monotonic() - started)
        if left <= 0 or pause(min(poll_seconds, left)):
            return Waited(needed=True, done=False, seconds=time.monotonic() - started)
        readable, marker = _read(read_marker)
        if readable and not previous_sync_pending(marker, attempt, execution):
            return Waited(needed=True, done=True, seconds=time.monotonic() - started)


def _read(read_marker: Callable[[], Optional[Mapping]]) -> Tuple[bool, Optional[Mapping]]:
    """(False, None) when the marker cannot be read now: never a reason to fail the attempt."""
    try:
        return True, read_marker()
    except Exception as error:
        log.warning("cannot read %s: %s", layout.INTERRUPTED_KEY, error)
        return False, None
