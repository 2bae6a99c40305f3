"""What the status markers say (`status/*.json`, where layout.py puts them): the agent writes them,
PollCompletion, AwaitTraining and the emulator's spot interruptions read them. Also the attempt's task
token file, which the workflow writes and the agent reads.

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
WAIT_PREVIOUS_SYNC = "wait_previous_sync"  # attempt > 1: the previous attempt's final sync after its notice
RESTORE = "restore"  # checkpoints/ (or output/) back into place
SETUP = "setup"
DATA = "data"
EXEC = "exec"  # the job's exec_command: the training
SYNC = "sync"  # the final sync, before completed.json or interrupted.json
DONE = "done"  # completed.json written; keep-alive, then shutdown
PHASES = (START, CLONE, WAIT_PREVIOUS_SYNC, RESTORE, SETUP, DATA, EXEC, SYNC, DONE)
# The job's commands in run order: (phase, the spec field holding its command).
COMMAND_PHASES = ((SETUP, "setup_command"), (DATA, "data_get_command"), (EXEC, "exec_command"))

# interrupted.json is written twice: at the spot notice with this field false (the workflow relaunches
# at once), after the final sync with it true; the next attempt restores only once it is true (or
# after a bound). A marker without it is final.
FINAL_SYNC_DONE = "final_sync_done"
# status/attempt-<n>/task-token.json (layout.task_token_key): the attempt's Step Functions task token,
# under this key, with the identity of the attempt it belongs to.
TOKEN = "token"


def identity(attempt: int, instance_id: str, execution: Optional[str]) -> dict:
    """The fields every marker carries; `execution` is job.json's execution id (None if unreadable)."""
    return {"attempt": attempt, "instance_id": instance_id, "execution": execution}


def written_by(marker: Mapping, attempt: int, instance_id: str, execution: Optional[str]) -> bool:
    """Whether `marker` belongs to this attempt, on this instance, of this execution."""
    return all(marker.get(field) == value for field, value in identity(attempt, instance_id, execution).items())


def token_record(token: str, attempt: int, instance_id: str, execution: Optional[str]) -> dict:
    """The task token file's content: the token, and whose wait it is (a rerun reuses attempt numbers)."""
    return {TOKEN: token, **identity(attempt, instance_id, execution)}
