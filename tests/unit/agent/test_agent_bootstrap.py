"""The bootstrap (user data) run for real against moto: it fetches the agent asset and starts the agent."""

from __future__ import annotations

import json
import os
import pwd
import shlex
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent_support import AGENT_PYTHON, FAST_TIMINGS, job_document
from spottrain.infra.assets import AGENT_ASSET, build_zip
from spottrain.contract.userdata import render_user_data

ME = pwd.getpwuid(os.geteuid()).pw_name

# Stands in for the AWS CLI on the instance (the emulator ships its own shim the same way).
AWS_SHIM = textwrap.dedent(f"""\
    #!{sys.executable}
    import sys, boto3
    _, service, verb, *rest = sys.argv
    args = [a for a in rest if not a.startswith("--")]
    assert (service, verb) == ("s3", "cp"), sys.argv
    bucket, key = args[0][len("s3://"):].split("/", 1)
    try:
        boto3.client("s3").download_file(bucket, key, args[1])
    except Exception as error:
        sys.exit(f"download failed: {{error}}")
    """)


@pytest.fixture
def instance_env(tmp_path, aws_env, imds):
    """The environment the emulator gives a booted instance: its own root, Python, shutdown, and aws."""
    shims = tmp_path / "bin"
    shims.mkdir()
    aws = shims / "aws"
    aws.write_text(AWS_SHIM)
    aws.chmod(aws.stat().st_mode | stat.S_IEXEC)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    env.update(aws_env, **FAST_TIMINGS)
    env.update(
        {
            "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
            "SPOTTRAIN_ROOT": str(tmp_path / "root"),
            "SPOTTRAIN_PYTHON": AGENT_PYTHON,
            "SPOTTRAIN_SHUTDOWN_COMMAND": f"touch {shlex.quote(str(tmp_path / 'shutdown-called'))}",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint,
            "SPOTTRAIN_RUN_AS_HOME": str(tmp_path / "home"),
        }
    )
    return env


def boot(user_data: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    # Never the checkout as cwd: `python -m` would import the agent from there, not from the asset.
    return subprocess.run(["bash", "-c", user_data], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_given_an_agent_asset_when_the_bootstrap_runs_then_the_agent_carries_out_the_job(
    tmp_path, instance_env, s3, bucket, training_repo
):
    marks = tmp_path / "marks"
    marks.mkdir()
    s3.put_object(Bucket=bucket, Key="job.json", Body=json.dumps(job_document(training_repo, marks)).encode())
    s3.upload_file(str(build_zip(AGENT_ASSET, tmp_path / "agent.zip")), bucket, "assets/agent.zip")

    # The stack's instanceUser is this test's own account: no second account is needed to run it.
    booted = boot(
        render_user_data(
            bucket=bucket, attempt=1, region="us-east-1", agent_bucket=bucket, agent_key="assets/agent.zip", run_as=ME
        ),
        instance_env,
        tmp_path,
    )

    assert booted.returncode == 0, booted.stderr
    completed = json.loads(s3.get_object(Bucket=bucket, Key="status/completed.json")["Body"].read())
    assert completed["exit_code"] == 0
    root = tmp_path / "root"
    assert (root / "agent" / "spottrain" / "agent" / "__main__.py").is_file()
    assert (root / "agent" / "spottrain" / "contract" / "layout.py").is_file()
    assert (tmp_path / "home" / "payload" / "result" / "model.txt").is_file()  # ~<instanceUser>/<repository>
    assert "starting the agent" in (root / "bootstrap.log").read_text()
    assert (tmp_path / "shutdown-called").exists()


def test_given_a_missing_agent_asset_when_the_bootstrap_runs_then_it_says_so_on_the_console_and_shuts_down(
    tmp_path, instance_env, bucket
):
    booted = boot(
        render_user_data(
            bucket=bucket, attempt=2, region="us-east-1", agent_bucket=bucket, agent_key="assets/missing.zip", run_as=ME
        ),
        instance_env,
        tmp_path,
    )

    assert booted.returncode != 0
    failure = [line for line in booted.stderr.splitlines() if line.startswith("spottrain bootstrap: FAILED")]
    assert failure and "aws s3 cp" in failure[0] and f"s3://{bucket} attempt 2 never started" in failure[0]
    assert failure[0] in (tmp_path / "root" / "bootstrap.log").read_text()
    assert (tmp_path / "shutdown-called").exists()
