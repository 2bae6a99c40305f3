"""A simulated instance boots where /home is its sandbox's home/: 2017's /home/ubuntu paths work, and
nothing lands in the real /home; where no namespace can be made, absolute folders are refused, saying why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from spottrain.local import sandbox
from spottrain.local.sandbox import boot_command

# The user data stand-in: writes where a 2017 job writes, and reports what it saw.
PROBE = """#!/bin/bash
set -eu
mkdir -p /home/ubuntu/data && echo facade > /home/ubuntu/data/cmp_b0001.txt
python3 - "$1" <<'PY'
import json, os, sys
home = {name: sorted(os.listdir(os.path.join("/home", name))) for name in os.listdir("/home") if name != "ubuntu"}
facts = {key: os.environ.get(key) for key in ("SPOTTRAIN_RUN_AS", "SPOTTRAIN_RUN_AS_HOME", "SPOTTRAIN_ABSOLUTE_PATHS_REFUSED")}
facts["other_homes"] = home
facts["uid"] = os.getuid()
open(sys.argv[1], "w").write(json.dumps(facts))
PY
"""
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")


def snapshot(folder: Path) -> set:
    return {str(path) for path in folder.rglob("*")} if folder.is_dir() else set()


def boot(box: Path, facts: Path, python: str | None = None, prefix: tuple = ()) -> dict:
    script = box / "user-data.sh"
    script.write_text(PROBE.replace('"$1"', f'"{facts}"'))
    argv, env = boot_command(box, script, {"PATH": os.environ["PATH"]})
    if python:
        argv[0] = python
    result = subprocess.run([*prefix, *argv], env=env, cwd=box, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return {**json.loads(facts.read_text()), "console": result.stderr}


def test_given_a_sandbox_when_an_instance_boots_then_home_ubuntu_is_the_sandboxs_and_the_real_home_is_untouched(
    tmp_path,
):
    before = snapshot(Path("/home"))

    facts = boot(tmp_path, tmp_path / "facts.json")

    assert (tmp_path / "home" / "ubuntu" / "data" / "cmp_b0001.txt").read_text() == "facade\n"
    assert snapshot(Path("/home")) == before
    assert facts["SPOTTRAIN_RUN_AS_HOME"] == "/home/ubuntu" and facts["SPOTTRAIN_ABSOLUTE_PATHS_REFUSED"] is None
    assert facts["SPOTTRAIN_RUN_AS"] == sandbox._own_name()
    # the host's other homes (checkouts, virtualenvs) are still there for the instance
    assert facts["other_homes"] == {
        entry.name: sorted(os.listdir(entry))
        for entry in Path("/home").iterdir()
        if entry.is_dir() and entry.name != "ubuntu"
    }
    assert "private mount namespace" in facts["console"]


@pytest.mark.skipif(os.geteuid() != 0 or SYSTEM_PYTHON is None, reason="needs root to become another user")
def test_given_a_non_root_emulator_when_an_instance_boots_then_a_user_namespace_maps_home_all_the_same():
    box = Path(tempfile.mkdtemp(prefix="spottrain-sandbox-"))  # pytest's tmp_path is root's alone
    try:
        (box / "home" / "ubuntu").mkdir(parents=True)
        for folder in (box, box / "home", box / "home" / "ubuntu"):
            os.chown(folder, 65534, 65534)  # the emulator's folder is its user's
        before = snapshot(Path("/home"))

        # The emulator's own interpreter may sit in root's home: the system one stands in for it.
        facts = boot(
            box,
            box / "facts.json",
            python=SYSTEM_PYTHON,
            prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"),
        )

        if facts["SPOTTRAIN_ABSOLUTE_PATHS_REFUSED"]:
            pytest.skip(
                f"this kernel allows no unprivileged user namespace: {facts['SPOTTRAIN_ABSOLUTE_PATHS_REFUSED']}"
            )
        assert facts["uid"] == 65534 and facts["SPOTTRAIN_RUN_AS"] == "nobody"
        assert facts["SPOTTRAIN_RUN_AS_HOME"] == "/home/ubuntu"
        assert (box / "home" / "ubuntu" / "data" / "cmp_b0001.txt").stat().st_uid == 65534
        assert snapshot(Path("/home")) == before
    finally:
        shutil.rmtree(box)


def test_given_no_namespace_can_be_made_when_booting_then_home_is_the_real_path_and_absolute_folders_are_refused(
    tmp_path, monkeypatch
):
    def no_namespace():
        raise sandbox.SandboxError(1, "unshare(CLONE_NEWUSER|CLONE_NEWNS): Operation not permitted")

    booted = {}
    monkeypatch.setattr(sandbox, "_enter_namespace", no_namespace)
    monkeypatch.setattr(os, "execvpe", lambda file, argv, env: booted.update(argv=argv, env=env))

    sandbox.main([str(tmp_path / "home"), "--", "bash", "user-data.sh"])

    assert booted["argv"] == ["bash", "user-data.sh"]
    assert booted["env"]["SPOTTRAIN_RUN_AS_HOME"] == str(tmp_path / "home" / "ubuntu")
    refusal = booted["env"]["SPOTTRAIN_ABSOLUTE_PATHS_REFUSED"]
    assert (
        "cannot map absolute paths" in refusal and "Operation not permitted" in refusal and "run it as root" in refusal
    )


def test_given_the_emulator_inside_the_hosts_home_ubuntu_then_it_refuses_to_hide_its_own_files(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "HOST_HOME", tmp_path)
    box_home = tmp_path / "ubuntu" / "spottrain" / ".spottrain" / "instances" / "i-1" / "home"
    box_home.mkdir(parents=True)

    why = sandbox._outside_simulated_home(box_home)

    assert str(box_home) in why and f"keep the emulator's folder and virtualenv outside {tmp_path / 'ubuntu'}" in why
    assert sandbox._outside_simulated_home(tmp_path / "alice" / "home") == ""


def test_given_a_boot_command_then_the_simulated_ubuntu_profile_puts_the_emulators_tools_on_path(tmp_path):
    boot_command(tmp_path, tmp_path / "user-data.sh", {"PATH": "/emulator/bin:/venv/bin"})

    profile = (tmp_path / "home" / "ubuntu" / ".profile").read_text()
    result = subprocess.run(
        ["bash", "-c", f". {tmp_path / 'home' / 'ubuntu' / '.profile'}; echo $PATH"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "/emulator/bin:/venv/bin:/usr/bin:/bin", profile
