"""The 2017 layout on the instance: the clone at ~<user>/<repository_name>, absolute or clone-relative
folders, and the commands in the AMI default user's login shell with the job's environment kept."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from agent_support import AGENT_PYTHON, REPO_ROOT, git, job_document
from spottrain.agent.job import Account, InvalidJob, Job, Paths

USER = "nobody"  # an account that is not the agent's, as ubuntu is not root's
SYSTEM_PYTHON = shutil.which(
    "python3", path="/usr/bin:/bin"
)  # one every account may run (the venv's may be under /root)


def job(**spec) -> Job:
    return Job.from_document(job_document(Path("/src/repo"), Path("/marks"), **spec))


def test_given_relative_folders_then_they_are_inside_the_clone_in_the_home(tmp_path):
    paths = Paths.resolve(job(data_dir="data", output_dir="result", checkpoint_dir="result/ckpt"), tmp_path)

    assert paths.clone == tmp_path / "payload"
    assert (paths.data, paths.output, paths.checkpoint) == (
        tmp_path / "payload" / "data",
        tmp_path / "payload" / "result",
        tmp_path / "payload" / "result" / "ckpt",
    )


def test_given_the_2017_absolute_folders_then_they_are_used_as_written(tmp_path):
    paths = Paths.resolve(
        job(data_dir="/home/ubuntu/data", output_dir="/home/ubuntu/result", checkpoint_dir=None), tmp_path
    )

    assert (paths.data, paths.output, paths.checkpoint) == (
        Path("/home/ubuntu/data"),
        Path("/home/ubuntu/result"),
        None,
    )


@pytest.mark.parametrize("folder", ["/home/ubuntu/../../etc", "/home/ubuntu/./data", "/home/ubuntu/data/", "//data"])
def test_given_an_absolute_folder_that_is_not_normalised_then_the_job_is_invalid_and_the_fix_is_named(tmp_path, folder):
    with pytest.raises(InvalidJob, match=r"data_dir=.* is not a normalised absolute path; write it as"):
        Paths.resolve(job(data_dir=folder), tmp_path)


def test_given_an_emulator_that_cannot_map_absolute_folders_then_the_job_fails_saying_why_and_what_to_do(tmp_path):
    why = "this emulator cannot map absolute paths into its sandbox (no mount namespace)"

    with pytest.raises(InvalidJob) as caught:
        Paths.resolve(job(output_dir="/home/ubuntu/result"), tmp_path, absolute_refused=why)

    assert str(caught.value) == (
        f"output_dir='/home/ubuntu/result' is absolute, and {why}. Use a folder inside the clone instead, e.g. 'result'"
    )


def test_given_a_relative_checkpoint_dir_that_is_the_absolute_output_dir_then_the_job_is_invalid(tmp_path):
    # The Lambda cannot tell these apart: only here is the clone's place known.
    with pytest.raises(InvalidJob, match="checkpoint_dir='result' is output_dir="):
        Paths.resolve(job(checkpoint_dir="result", output_dir=str(tmp_path / "payload" / "result")), tmp_path)


def test_given_folders_to_make_then_only_the_missing_ones_are_made_and_reported(tmp_path):
    (tmp_path / "existing").mkdir()
    paths = Paths.resolve(
        job(data_dir=str(tmp_path / "existing"), output_dir=str(tmp_path / "new" / "result"), checkpoint_dir="ckpt"),
        tmp_path,
    )

    made = paths.make()

    assert made == [tmp_path / "new", tmp_path / "new" / "result", tmp_path / "payload", tmp_path / "payload" / "ckpt"]
    assert all(path.is_dir() for path in made)


def test_given_no_run_as_then_the_agents_own_account_runs_the_commands_in_its_home(tmp_path):
    account = Account.resolve(None, tmp_path)

    assert (account.uid, account.home, account.switch) == (os.geteuid(), tmp_path, False)
    assert account.name == pwd.getpwuid(os.geteuid()).pw_name


def test_given_a_run_as_user_the_machine_lacks_then_the_error_names_the_stack_setting():
    with pytest.raises(
        InvalidJob, match=r"--run-as ubuntu-2017: this machine has no such user\. Set the stack's instanceUser"
    ):
        Account.resolve("ubuntu-2017", None)


def test_given_a_non_root_agent_asked_to_run_as_someone_else_then_the_error_says_root_is_needed(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 4242)

    with pytest.raises(InvalidJob, match="only root can run commands as another user"):
        Account.resolve("root", None)


def test_given_a_login_command_then_the_profile_runs_and_the_jobs_environment_survives(tmp_path):
    (tmp_path / ".profile").write_text("export FRAMEWORK_ON_PATH=yes\n")
    account = Account.resolve(None, tmp_path)
    script = 'echo "$HOME|$FRAMEWORK_ON_PATH|$SPOTTRAIN_JOB|$GREETING"'

    result = subprocess.run(
        account.login_command(script),
        capture_output=True,
        text=True,
        check=True,
        env={
            "PATH": os.environ["PATH"],
            "HOME": "/elsewhere",
            "SPOTTRAIN_JOB": "pix2pix",
            "GREETING": "hello; $(not run)",
        },
    )

    assert result.stdout.strip().splitlines()[-1] == f"{tmp_path}|yes|pix2pix|hello; $(not run)"


# ----- as root: the agent drops to the AMI's default user, as on a real instance ------------------

# The payload of a job run as another account: what it sees, and a SIGTERM it answers with a checkpoint.
WHOAMI_PY = r"""
import json, os, pwd, signal, sys, time
out, ckpt = os.environ["SPOTTRAIN_OUTPUT_DIR"], os.environ["SPOTTRAIN_CHECKPOINT_DIR"]
facts = {"user": pwd.getpwuid(os.getuid()).pw_name, "home": os.environ["HOME"], "cwd": os.getcwd(),
         "login_profile": os.environ.get("FROM_PROFILE"), "job": os.environ.get("SPOTTRAIN_JOB"),
         "greeting": os.environ.get("GREETING"), "data_owner": pwd.getpwuid(os.stat(os.environ["SPOTTRAIN_DATA_DIR"]).st_uid).pw_name}
open(os.path.join(out, "facts.json"), "w").write(json.dumps(facts))
if sys.argv[1:] == ["wait"]:
    def on_term(signum, frame):
        open(os.path.join(ckpt, "snapshot_on_sigterm"), "w").write("saved at SIGTERM")
        sys.exit(143)
    signal.signal(signal.SIGTERM, on_term)
    open(os.path.join(out, "started"), "w").write("1")
    while True:
        time.sleep(0.05)
"""

as_root = pytest.mark.skipif(os.geteuid() != 0 or SYSTEM_PYTHON is None, reason="switching accounts needs root")


@pytest.fixture
def user_home():
    """A home for the other account where it can reach it (pytest's tmp_path is root's alone)."""
    home = Path(tempfile.mkdtemp(prefix="spottrain-home-"))
    home.chmod(0o755)
    (home / ".profile").write_text("export FROM_PROFILE=yes\n")
    yield home
    shutil.rmtree(home)


@pytest.fixture
def whoami_repo(tmp_path):
    repo = tmp_path / "whoami"
    repo.mkdir()
    (repo / "whoami.py").write_text(WHOAMI_PY)
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "payload", cwd=repo)
    return repo


def whoami_job(agent, repo: Path, data_dir: str, mode: str = "") -> dict:
    document = job_document(
        repo,
        agent.marks,
        repository_ref="main",
        repository_name="chainer-pix2pix",
        data_dir=data_dir,
        output_dir="result",
        checkpoint_dir="checkpoints",
        setup_command=None,
        exec_command=f"{SYSTEM_PYTHON} whoami.py {mode}",
    )
    document["job"]["env"] = {"GREETING": "hello; $(not run)"}
    return document


def start_as(agent, user: str, home: Path) -> None:
    """The agent as the bootstrap starts it on an instance: root, told whom the commands run as."""
    command = [
        AGENT_PYTHON,
        "-m",
        "spottrain.agent",
        "--bucket",
        agent.bucket,
        "--attempt",
        "1",
        "--region",
        "us-east-1",
        "--workdir",
        str(agent.workdir),
        "--shutdown-command",
        "true",
        "--run-as",
        user,
        "--home",
        str(home),
    ]
    agent.process = subprocess.Popen(
        command, env=agent.env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


@as_root
def test_given_root_and_run_as_when_the_job_runs_then_commands_run_as_that_user_in_its_login_shell_in_its_clone(
    agent, whoami_repo, user_home
):
    data = user_home.parent / f"{user_home.name}-data" / "facades"  # absolute, under a folder the agent makes
    agent.put_job(whoami_job(agent, whoami_repo, str(data)))

    try:
        start_as(agent, USER, user_home)
        agent.wait()

        facts = json.loads(agent.text("output/facts.json"))
        clone = user_home / "chainer-pix2pix"
        assert facts == {
            "user": USER,
            "home": str(user_home),
            "cwd": str(clone),
            "login_profile": "yes",
            "job": "demo",
            "greeting": "hello; $(not run)",
            "data_owner": USER,
        }
        assert agent.json("status/completed.json")["exit_code"] == 0
        user_id = pwd.getpwnam(USER).pw_uid
        assert {path.stat().st_uid for path in (clone, clone / ".git", clone / "result", data, data.parent)} == {
            user_id
        }
        assert data.parent.parent.stat().st_uid == 0  # a folder that was there already keeps its owner
    finally:
        shutil.rmtree(data.parent, ignore_errors=True)


@as_root
def test_given_root_and_run_as_when_a_spot_notice_comes_then_the_users_command_gets_sigterm_and_its_checkpoint_syncs(
    agent, whoami_repo, user_home, imds
):
    agent.put_job(whoami_job(agent, whoami_repo, "data", mode="wait"))
    start_as(agent, USER, user_home)
    agent.wait_for_file(user_home / "chainer-pix2pix" / "result" / "started")

    imds.reclaim(seconds_left=120)
    agent.wait_for_key("status/interrupted.json")
    agent.wait()

    # The SIGTERM reached the user's process (setpriv leaves nothing in between) and its snapshot was synced.
    assert agent.text("checkpoints/snapshot_on_sigterm") == "saved at SIGTERM"
    assert agent.json("status/interrupted.json")["checkpoints_synced"] is True
