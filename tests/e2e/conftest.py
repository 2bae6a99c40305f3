"""Shared set-up for emulator runs: one work folder per session, so the synthesized stack is cached."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from e2e_support import git_repository

from spottrain.demo import demo_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_SPEC = REPO_ROOT / "examples" / "jobs" / "multihead-demo.json"


@pytest.fixture(scope="session", autouse=True)
def fake_aws_credentials() -> None:
    """Nothing here may reach AWS: fake credentials, and a region, for every client the tests make."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        os.environ[name] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"


@pytest.fixture(scope="session")
def emulator_workdir(tmp_path_factory) -> Path:
    """Every emulator of the session keeps its runs here and reuses the first one's cdk.out."""
    logging.getLogger("spottrain.local").setLevel(logging.INFO)
    return tmp_path_factory.mktemp("spottrain-local")


@pytest.fixture(scope="session")
def demo_job() -> dict:
    """The bundled demo job, cloning this checkout's committed files at its current branch.

    SPOTTRAIN_DEMO_REPOSITORY names another checkout to clone instead (e.g. a snapshot that commits
    work in progress), since a clone never sees uncommitted files.
    """
    spec = demo_spec(Path(os.environ.get("SPOTTRAIN_DEMO_REPOSITORY", REPO_ROOT)), json.loads(DEMO_SPEC.read_text()))
    return spec


# A job that would run for minutes: only a cancel ends it early.
SLOW_TRAINING = "import time\nfor step in range(600):\n    print('step', step, flush=True)\n    time.sleep(1)\n"


@pytest.fixture
def slow_job(tmp_path) -> dict:
    """A job training for ten minutes, from a throwaway repository, for tests that cancel it."""
    repo = git_repository(tmp_path / "slow-repo", {"train.py": SLOW_TRAINING})
    return {
        "exec_name": "slow-job",
        "repository_url": repo.as_uri(),
        "repository_name": "slow-repo",
        "repository_ref": "main",
        "data_dir": "data",
        "output_dir": "result",
        "data_get_command": "true",
        "exec_command": "python train.py",
    }
