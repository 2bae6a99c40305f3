"""`spottrain shell <job>`: the emulator's Session Manager, a shell in a kept instance's folder.

On AWS a failed instance kept by on_failure.keep_alive_minutes is reached with `aws ssm start-session`;
a simulated instance is a folder and its processes, so its "session" is $SHELL (else /bin/sh) started in
the instance's home (the clone is there). An instance is kept while its agent's door note
(spottrain/contract/debug_door.py) is there, its time not up, and the simulator has not ended it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path
from typing import Iterator, Optional

from spottrain.contract import debug_door

ENDED_FILE = "ended"  # written into an instance's folder by the simulator once its processes are gone
SIMULATED_HOME = Path("home") / "ubuntu"


class NoKeptInstance(LookupError):
    """No simulated instance of the job is kept for debugging now; the message says what to do."""


def kept_instance(workdir: Path, exec_name: str, now: Optional[dt.datetime] = None) -> Path:
    """The folder of the job's kept instance, newest run first.

    Raises NoKeptInstance naming the job, the emulator's folder and the field that opens the door.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    for folder in _instances_newest_first(workdir):
        note = _door_note(folder)
        if (
            note
            and note.get("exec_name") == exec_name
            and not (folder / ENDED_FILE).exists()
            and dt.datetime.fromisoformat(note["until"]) > now
        ):
            return folder
    raise NoKeptInstance(
        f"no kept instance of {exec_name} in {workdir}: a failed job's instance is kept only while "
        "on_failure.keep_alive_minutes runs (run it with `spottrain submit --local` and a spec with "
        '"on_failure": {"keep_alive_minutes": N}, then open the shell from another terminal)'
    )


def shell_folder(instance: Path) -> Path:
    """Where the session starts: the simulated /home/ubuntu, as a session on the AMI starts in the user's home."""
    home = instance / SIMULATED_HOME
    return home if home.is_dir() else instance


def open_shell(instance: Path) -> int:
    """Run $SHELL (else /bin/sh) in the instance's folder, attached to this terminal; its exit status."""
    shell = os.environ.get("SHELL") or "/bin/sh"
    return subprocess.call([shell], cwd=shell_folder(instance))


def _instances_newest_first(workdir: Path) -> Iterator[Path]:
    runs = sorted((workdir / "runs").glob("*"), reverse=True)  # run folders are named by their start time
    for run in runs:
        yield from sorted((run / "instances").glob("i-*"))


def _door_note(instance: Path) -> Optional[dict]:
    try:
        return json.loads((instance / "work" / debug_door.DOOR_FILE).read_text())
    except (OSError, ValueError):
        return None
