"""The agent's settings: command-line arguments plus timing overrides from the environment.

Timings are environment variables so the emulator can shrink a 15-minute story into seconds
without a different code path.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Mapping, Optional

DEFAULT_SHUTDOWN_COMMAND = "shutdown -h now"

# option field -> (environment variable, default seconds)
TIMING_VARIABLES = {
    "sync_seconds": ("SPOTTRAIN_SYNC_SECONDS", 15.0),
    "heartbeat_seconds": ("SPOTTRAIN_HEARTBEAT_SECONDS", 30.0),
    "notice_poll_seconds": ("SPOTTRAIN_NOTICE_POLL_SECONDS", 5.0),
    "seconds_per_minute": ("SPOTTRAIN_SECONDS_PER_MINUTE", 60.0),
    "kill_grace_seconds": ("SPOTTRAIN_KILL_GRACE_SECONDS", 30.0),
    "sync_reserve_seconds": ("SPOTTRAIN_SYNC_RESERVE_SECONDS", 30.0),
    # The previous attempt's final sync after its notice: the two-minute notice plus a margin.
    "previous_sync_wait_seconds": ("SPOTTRAIN_PREVIOUS_SYNC_WAIT_SECONDS", 150.0),
}
LOG_PART_BYTES_VARIABLE = "SPOTTRAIN_LOG_PART_BYTES"
DEFAULT_LOG_PART_BYTES = 5 * 1024 * 1024
# Set by an emulator that cannot map absolute folders into its sandbox: why, for the job's failure message.
ABSOLUTE_PATHS_REFUSED_VARIABLE = "SPOTTRAIN_ABSOLUTE_PATHS_REFUSED"


@dataclasses.dataclass(frozen=True)
class Options:
    bucket: str
    attempt: int
    workdir: Path
    region: Optional[str] = None
    shutdown_command: str = DEFAULT_SHUTDOWN_COMMAND
    run_as: Optional[str] = None  # None: the commands run as the agent's own account
    home: Optional[Path] = None  # run_as's home; None: from the password database (the agent's own: $HOME)
    absolute_paths_refused: Optional[str] = None
    sync_seconds: float = 15.0
    heartbeat_seconds: float = 30.0
    notice_poll_seconds: float = 5.0
    seconds_per_minute: float = 60.0
    kill_grace_seconds: float = 30.0
    sync_reserve_seconds: float = 30.0
    previous_sync_wait_seconds: float = 150.0
    log_part_bytes: int = DEFAULT_LOG_PART_BYTES


def timings_from_env(env: Mapping[str, str]) -> dict:
    """Every timing override present in env; ValueError names the variable and the rule."""
    values = {}
    for field, (name, _) in TIMING_VARIABLES.items():
        if env.get(name, "").strip():
            values[field] = _positive_number(name, env[name])
    if env.get(LOG_PART_BYTES_VARIABLE, "").strip():
        values["log_part_bytes"] = int(_positive_number(LOG_PART_BYTES_VARIABLE, env[LOG_PART_BYTES_VARIABLE]))
    return values


def from_arguments(args, env: Mapping[str, str] = os.environ) -> Options:
    return Options(
        bucket=args.bucket,
        attempt=args.attempt,
        workdir=Path(args.workdir).resolve(),
        region=args.region,
        shutdown_command=args.shutdown_command,
        run_as=args.run_as,
        home=Path(args.home) if args.home else None,
        absolute_paths_refused=env.get(ABSOLUTE_PATHS_REFUSED_VARIABLE) or None,
        **timings_from_env(env),
    )


def _positive_number(name: str, raw: str) -> float:
    try:
        number = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} must be a number of seconds, e.g. {name}=1") from None
    if number <= 0:
        raise ValueError(f"{name}={raw!r} must be > 0")
    return number
