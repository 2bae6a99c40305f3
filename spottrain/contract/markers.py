"""What the status markers say (`status/*.json`, where layout.py puts them): the agent writes them,
PollCompletion and the emulator's spot interruptions read them.

Every marker names the attempt, the instance and the execution it belongs to; a reader counts a
marker only when all three are the ones it asks about, so a marker another run or instance wrote
into the same bucket never decides this one.
"""
from __future__ import annotations

from typing import Mapping, Optional

# The phases of an attempt, in order: a heartbeat's `phase` is the current one, completed.json's
# `failed_phase` the one that failed.
START = "start"  # reading job.json
CLONE = "clone"
RESTORE = "restore"  # checkpoints/ (or output/) back into place
SETUP = "setup"
DATA = "data"
EXEC = "exec"  # the job's exec_command: the training
SYNC = "sync"  # the final sync, before completed.json or interrupted.json
DONE = "done"  # completed.json written; keep-alive, then shutdown
PHASES = (START, CLONE, RESTORE, SETUP, DATA, EXEC, SYNC, DONE)
# The job's commands in run order: (phase, the spec field holding its command).
COMMAND_PHASES = ((SETUP, "setup_command"), (DATA, "data_get_command"), (EXEC, "exec_command"))


def identity(attempt: int, instance_id: str, execution: Optional[str]) -> dict:
    """The fields every marker carries; `execution` is job.json's execution id (None if unreadable)."""
    return {"attempt": attempt, "instance_id": instance_id, "execution": execution}


def written_by(marker: Mapping, attempt: int, instance_id: str, execution: Optional[str]) -> bool:
    """Whether `marker` belongs to this attempt, on this instance, of this execution."""
    return all(marker.get(field) == value for field, value in identity(attempt, instance_id, execution).items())
