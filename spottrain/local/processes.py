"""Every process a simulated instance started, so that terminating the instance ends them all.

A real termination takes the whole machine down; a local process tree does not. The agent runs each
command in a session of its own, and a command that daemonises (`setsid nohup ... &`, a double fork)
leaves even that, so no `killpg` reaches everything. Each instance therefore gets a cgroup v2 of its
own where one can be made (root, or a delegated subtree): membership is inherited by every fork and
cannot be left by an unprivileged process. Elsewhere a marker in the instance's environment, which
every descendant inherits, finds them in `/proc/<pid>/environ`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "SPOTTRAIN_SIMULATED_INSTANCE"
# Ending every process of an instance takes milliseconds; this long means one is stuck in the
# kernel (uninterruptible I/O), which no signal can hurry.
END_TIMEOUT_SECONDS = 30.0
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)  # its bit in /proc/<pid>/status' pending-signal masks


class InstanceProcesses:
    """The processes of one instance, found by its environment marker (works for any user)."""

    def __init__(self, name: str):
        self.name = name

    @property
    def environment(self) -> dict[str, str]:
        return {MARKER: self.name}

    def command(self, argv: list[str]) -> list[str]:
        """The argv that starts the instance's first process inside the tracking."""
        return argv

    def describe(self) -> dict:
        """What `restore` needs to find these processes from another process."""
        return {"name": self.name}

    def command_pids(self, leader: int) -> list[int]:
        """Processes the agent started for its commands: each runs in a session of its own, apart from
        the instance's first process `leader` (started as a session leader) and the agent in it."""
        pids = []
        for pid in self.pids():
            found = state(pid)
            if found is not None and not found.zombie and found.session != leader:
                pids.append(pid)
        return pids

    def pids(self) -> list[int]:
        needle = f"{MARKER}={self.name}\0".encode()
        found = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and needle in _read_bytes(f"/proc/{entry.name}/environ"):
                found.append(int(entry.name))
        return found

    def end_all(self) -> None:
        """SIGKILL every process, again and again until none is left (one may fork meanwhile)."""
        deadline = time.monotonic() + END_TIMEOUT_SECONDS
        while pids := self.pids():
            for pid in pids:
                signal_quietly(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                log.error("instance %s: processes %s survive SIGKILL", self.name, pids)
                return
            time.sleep(0.01)


class CgroupProcesses(InstanceProcesses):
    """The processes of one instance, as the members of a cgroup v2 made for it."""

    def __init__(self, name: str, group: Path):
        super().__init__(name)
        self.group = group

    def command(self, argv: list[str]) -> list[str]:
        # The shell joins the group before it execs the instance, so no fork can happen outside it.
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.group / "cgroup.procs"), *argv]

    def describe(self) -> dict:
        return {"name": self.name, "group": str(self.group)}

    def pids(self) -> list[int]:
        return [int(line) for line in _read_bytes(self.group / "cgroup.procs").split()]

    def end_all(self) -> None:
        if not self.group.exists():
            return
        if (self.group / "cgroup.kill").exists():
            (self.group / "cgroup.kill").write_text("1")
        else:  # kernels before 5.14: freeze the group so nothing forks while it is killed
            (self.group / "cgroup.freeze").write_text("1")
            for pid in self.pids():
                signal_quietly(pid, signal.SIGKILL)
            (self.group / "cgroup.freeze").write_text("0")
        if not self._emptied():
            log.error("instance %s: processes %s survive SIGKILL", self.name, self.pids())
            return
        self.group.rmdir()

    def _emptied(self) -> bool:
        deadline = time.monotonic() + END_TIMEOUT_SECONDS
        while b"populated 1" in _read_bytes(self.group / "cgroup.events"):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


def track(name: str) -> InstanceProcesses:
    """Tracking for a new instance (`name` must be unique on this machine): a cgroup where possible."""
    parent = _cgroup_parent()
    if parent is not None:
        group = parent / f"spottrain-{name}"
        try:
            group.mkdir()
            return CgroupProcesses(name, group)
        except OSError as error:
            log.warning("no cgroup for instance %s (%s): tracking its processes by environment", name, error)
    return InstanceProcesses(name)


def restore(description: dict) -> InstanceProcesses:
    """The tracking `InstanceProcesses.describe()` gave, in this process."""
    group = description.get("group")
    return CgroupProcesses(description["name"], Path(group)) if group else InstanceProcesses(description["name"])


@functools.lru_cache(maxsize=1)
def _cgroup_parent() -> Path | None:
    """This process's own cgroup v2 folder, if a child group can be made there and joined."""
    mount = next(
        (
            line.split()[4]
            for line in _read_bytes("/proc/self/mountinfo").decode().splitlines()
            if " - cgroup2 " in line
        ),
        None,
    )
    own = next(
        (line[3:] for line in _read_bytes("/proc/self/cgroup").decode().splitlines() if line.startswith("0::")), None
    )
    if mount is None or own is None:
        return None
    parent = Path(mount) / own.lstrip("/")
    probe = parent / f"spottrain-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return None
    try:
        joined = (
            subprocess.run(
                ["sh", "-c", 'echo $$ > "$0"', str(probe / "cgroup.procs")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ).returncode
            == 0
        )
    finally:
        CgroupProcesses("probe", probe).end_all()
    return parent if joined else None


# --- what /proc says about one process --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProcessState:
    session: int
    started: int  # clock ticks after boot: orders processes by age
    stopped: bool
    zombie: bool


def state(pid: int) -> ProcessState | None:
    """None once the process is gone."""
    text = _read_bytes(f"/proc/{pid}/stat").decode(errors="replace")
    if not text:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name in parentheses may hold spaces
    return ProcessState(
        session=int(fields[3]), started=int(fields[19]), stopped=fields[0] in ("T", "t"), zombie=fields[0] in ("Z", "X")
    )


def sigterm_pending(pid: int) -> bool:
    for line in _read_bytes(f"/proc/{pid}/status").decode().splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & SIGTERM_BIT:
            return True
    return False


def environment(pid: int) -> dict[str, str]:
    entries = _read_bytes(f"/proc/{pid}/environ").decode(errors="replace").split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def _read_bytes(path: str | Path) -> bytes:
    """The file's content, b"" if the process (or group) is gone or not ours to read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def signal_quietly(pid: int, signum: int) -> None:
    """os.kill, where a process already gone is no error."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


# --- a guard that outlives the emulator ------------------------------------------------------

# The guard's program: wait for the end of its stdin, then end the instance's processes. The emulator holds
# the pipe's only write end, which the kernel closes however it ends, SIGKILL included.
_GUARD_PROGRAM = (
    "import json, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "from spottrain.local import processes\n"
    "sys.stdin.buffer.read()\n"
    "processes.restore(json.loads(sys.argv[1])).end_all()\n"
)


def guard(tracked: InstanceProcesses) -> subprocess.Popen:
    """A process that ends every process of the instance once this one (the emulator) has ended.

    An emulator killed by SIGKILL (or the OOM killer) runs no cleanup: without a guard its instances'
    agents and trainings would run on, orphaned, until their own runtime limits. The guard is in a
    session of its own (a Ctrl-C at the terminal leaves it to the emulator's own cleanup) and outside
    the instance's tracking; `release` ends it once the emulator has ended the instance itself.
    """
    package_root = str(Path(__file__).resolve().parents[2])  # this spottrain, whatever else is installed
    return subprocess.Popen(
        [sys.executable, "-c", _GUARD_PROGRAM, json.dumps(tracked.describe())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": package_root},
        start_new_session=True,
    )


def release(guarded: subprocess.Popen) -> None:
    """Close the guard's pipe and wait for it: it finds nothing left to end."""
    if guarded.stdin is not None and not guarded.stdin.closed:
        guarded.stdin.close()
    try:
        guarded.wait(timeout=END_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        log.error("guard %d of an ended instance did not end", guarded.pid)
