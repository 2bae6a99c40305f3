"""interrupt-at=checkpoint's watch, in a process of its own: hold an instance's commands at its n-th checkpoint.

The emulator's trainings write their checkpoints a second or less apart, so the watch has that long to
see one and stop the training. A thread of the emulator's own process shares its GIL with the moto
server, the hosted Lambdas and the IAM check, which all work hardest exactly while an agent syncs: on
a machine with both cores busy such a thread once saw none of the four snapshots a 3.3 s training
wrote. A process of its own is scheduled by the kernel alone, whatever the emulator is doing.

Run as `python -m spottrain.local.checkpoint_watch '<Watch as JSON>'`. It prints one JSON line and exits:
{"held": [pids], "path": ..., "bucket": ..., "key": ...} once the commands are held (SIGSTOP) with the
n-th checkpoint file written, or {"never": "<why>"} when the instance ended first. It also gives up when
the emulator that started it is gone, so it never outlives it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from spottrain.contract import layout
from spottrain.contract.layout import is_temporary
from spottrain.local import processes

WATCH_SECONDS = 0.05  # how often the watch looks: well inside one training iteration


@dataclasses.dataclass(frozen=True)
class Watch:
    """What to watch: the instance's processes (its tracking), its first process, since when, which file."""

    tracking: dict  # processes.InstanceProcesses.describe()
    leader: int  # the instance's first process: it and its session are the instance, not its commands
    since_ns: int  # files older than this (restored from S3 with their mtimes) are not this attempt's
    nth: int
    parent: int  # the emulator's pid


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file as the training wrote it, and where the agent uploads it."""

    path: Path
    bucket: str
    key: str


def new_checkpoints(pids: list[int], since_ns: int) -> list[Checkpoint]:
    """Checkpoint files the commands wrote since `since_ns` (restored ones keep their old mtimes), oldest first."""
    for pid in pids:
        env = processes.environment(pid)
        if "SPOTTRAIN_CHECKPOINT_DIR" in env and "SPOTTRAIN_BUCKET" in env:
            return [checkpoint for _, checkpoint in sorted(_files_since(pid, env, since_ns), key=lambda p: p[0])]
    return []


def _files_since(pid: int, env: dict[str, str], since_ns: int) -> list[tuple[int, Checkpoint]]:
    # Through /proc/<pid>/root: the folder as the command sees it, whatever mount namespace it is in.
    folder = Path(f"/proc/{pid}/root") / env["SPOTTRAIN_CHECKPOINT_DIR"].lstrip("/")
    # Without a checkpoint_dir the output dir holds the checkpoints, synced to output/.
    own_dir = env["SPOTTRAIN_CHECKPOINT_DIR"] != env.get("SPOTTRAIN_OUTPUT_DIR")
    prefix = layout.CHECKPOINTS_PREFIX if own_dir else layout.OUTPUT_PREFIX
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            try:
                mtime = path.stat().st_mtime_ns
            except FileNotFoundError:  # rotated away since the walk
                continue
            if mtime >= since_ns and not is_temporary(name):
                key = prefix + path.relative_to(folder).as_posix()
                found.append((mtime, Checkpoint(path, env["SPOTTRAIN_BUCKET"], key)))
    return found


def hold(find_pids) -> set[int]:
    """SIGSTOP every process `find_pids()` names, again until no new one appears (one may fork meanwhile)."""
    held: set[int] = set()
    while new := [pid for pid in find_pids() if pid not in held]:
        for pid in new:
            processes.signal_quietly(pid, signal.SIGSTOP)
        held.update(new)
        for pid in new:
            _until_stopped(pid)
    return held


def _until_stopped(pid: int) -> None:
    """SIGSTOP takes effect asynchronously; a process still running could fork once more."""
    while (state := processes.state(pid)) is not None and not (state.stopped or state.zombie):
        time.sleep(0.001)


def watch(spec: Watch) -> dict:
    """The line to print: the held commands and their n-th checkpoint, or why that never came."""
    tracked = processes.restore(spec.tracking)
    written: dict[str, Checkpoint] = {}  # by key: the same file is seen through each command's /proc
    while len(written) < spec.nth:
        if not _alive(spec.leader) or os.getppid() != spec.parent:
            return {"never": f"ended after writing {len(written)} checkpoint file(s) in this attempt, not {spec.nth}"}
        for checkpoint in new_checkpoints(tracked.command_pids(spec.leader), spec.since_ns):
            written.setdefault(checkpoint.key, checkpoint)
        if len(written) < spec.nth:
            time.sleep(WATCH_SECONDS)
    checkpoint = list(written.values())[spec.nth - 1]
    held = hold(lambda: tracked.command_pids(spec.leader))
    if not held:
        return {"never": f"ended right after writing {checkpoint.key}"}
    return {"held": sorted(held), "path": str(checkpoint.path), "bucket": checkpoint.bucket, "key": checkpoint.key}


def _alive(pid: int) -> bool:
    state = processes.state(pid)
    return state is not None and not state.zombie


def start(spec: Watch) -> subprocess.Popen:
    """The watch, started in a process of its own; its stdout gets the one line of its answer."""
    return subprocess.Popen(
        [sys.executable, "-m", __name__, json.dumps(dataclasses.asdict(spec))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def answer(process: subprocess.Popen) -> dict:
    """The answer of a started watch (see this module's docstring); blocks until it comes.

    Raises RuntimeError, with its stderr, if the watch process failed.
    """
    out, err = process.communicate()
    try:
        return json.loads(out)
    except ValueError:
        raise RuntimeError(f"the checkpoint watch failed (exit {process.returncode}): {err[-2000:]}") from None


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    print(json.dumps(watch(Watch(**spec))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
