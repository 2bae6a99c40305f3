"""`spottrain shell`: the emulator's start-session finds the job's kept instance, and only while it is kept."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spottrain.contract import debug_door
from spottrain.local import shell

REPO_ROOT = Path(__file__).resolve().parents[3]
NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def kept(workdir: Path, run: str, instance_id: str, exec_name: str = "broken", until: dt.datetime = NOW) -> Path:
    """An instance folder as the simulator and the agent leave it while the debug door is open."""
    folder = workdir / "runs" / run / "instances" / instance_id
    (folder / "home" / "ubuntu").mkdir(parents=True)
    (folder / "work").mkdir()
    note = {"exec_name": exec_name, "instance_id": instance_id, "until": (until + dt.timedelta(minutes=1)).isoformat()}
    (folder / "work" / debug_door.DOOR_FILE).write_text(json.dumps(note))
    return folder


def test_given_a_kept_instance_then_the_newest_run_of_that_job_is_found(tmp_path):
    kept(tmp_path, "20260101-110000-aaaa", "i-old")
    newest = kept(tmp_path, "20260101-120000-bbbb", "i-new")
    kept(tmp_path, "20260101-130000-cccc", "i-other", exec_name="another")

    assert shell.kept_instance(tmp_path, "broken", now=NOW) == newest
    assert shell.shell_folder(newest) == newest / "home" / "ubuntu"


@pytest.mark.parametrize(
    "ended, now",
    [(True, NOW), (False, NOW + dt.timedelta(minutes=2))],
    ids=["terminated by the workflow", "keep-alive over"],
)
def test_given_no_instance_is_kept_any_more_then_the_error_says_how_to_keep_one(tmp_path, ended, now):
    folder = kept(tmp_path, "20260101-120000-bbbb", "i-1")
    if ended:
        (folder / shell.ENDED_FILE).touch()

    with pytest.raises(shell.NoKeptInstance) as missing:
        shell.kept_instance(tmp_path, "broken", now=now)

    assert "no kept instance of broken" in str(missing.value)
    assert "on_failure.keep_alive_minutes" in str(missing.value)


def run_cli(workdir: Path, stdin: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "SHELL": "/bin/sh"}
    return subprocess.run(
        [sys.executable, "-m", "spottrain.cli", "shell", "broken", "--workdir", str(workdir)],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=60,
    )


def test_given_a_kept_instance_when_commands_come_on_stdin_then_they_run_in_its_home(tmp_path):
    folder = kept(tmp_path, "20991231-000000-aaaa", "i-1", until=dt.datetime.now(dt.timezone.utc))
    (folder / "home" / "ubuntu" / "train.log").write_text("loss: nan\n")

    result = run_cli(tmp_path, "pwd\ncat train.log\nexit 3\n")

    assert result.returncode == 3, result.stderr  # the shell's own exit status
    assert str(folder / "home" / "ubuntu") in result.stdout and "loss: nan" in result.stdout


def test_given_no_kept_instance_when_the_shell_is_asked_for_then_it_exits_1_saying_why(tmp_path):
    result = run_cli(tmp_path, "pwd\n")

    assert result.returncode == 1
    assert "no kept instance of broken" in result.stdout + result.stderr
