"""The CLI's AWS commands against a deployed stack: the emulator stands in for the user's account.

They find the stack by name through CloudFormation and use the default credential chain, exactly as
against AWS; only AWS_ENDPOINT_URL points the SDK at the emulator.
"""

from __future__ import annotations

import json

import pytest

from e2e_support import wait_until
from spottrain import cli
from spottrain.local import STACK_NAME, Emulator


@pytest.fixture
def stack_endpoint(emulator_workdir, monkeypatch):
    with Emulator(emulator_workdir) as emulator:
        monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint)
        yield emulator


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([*argv, "--stack-name", STACK_NAME])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.timeout(300)
def test_given_a_deployed_stack_then_submit_wait_list_status_and_logs_tell_the_jobs_story(
    stack_endpoint, demo_job, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(cli, "AWS_POLL_SECONDS", 0.5)  # a seconds-long job: sample it often
    # Given a spec file for a short job
    spec = {key: value for key, value in demo_job.items() if key not in ("setup_command", "checkpoint_dir")}
    spec.update(exec_name="cli-job", data_get_command="true", exec_command="echo hello-from-the-cli; sleep 1")
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec))

    # When it is submitted and followed to its end
    code, out, _ = _run(capsys, "submit", str(path), "--wait")
    # Then the progress named the states it went through, and it succeeded
    assert code == 0, out
    assert "PollCompletion" in out or "WaitForTraining" in out
    assert "cli-job-" in out and "succeeded" in out

    # And list, status and logs show it
    code, out, _ = _run(capsys, "list")
    assert code == 0 and "cli-job" in out and "SUCCEEDED" in out
    code, out, _ = _run(capsys, "status", "cli-job")
    assert code == 0 and "SUCCEEDED" in out
    code, out, _ = _run(capsys, "logs", "cli-job")
    assert code == 0 and "hello-from-the-cli" in out


@pytest.mark.timeout(300)
def test_given_a_running_job_when_cancelled_from_the_cli_then_nothing_is_left_running(
    stack_endpoint, slow_job, tmp_path, capsys
):
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(slow_job))
    code, out, _ = _run(capsys, "submit", str(path))
    assert code == 0 and "spottrain status slow-job" in out
    wait_until(lambda: any(i.alive for i in stack_endpoint.ec2.instances.values()), 120, "the slow job's instance")

    code, out, _ = _run(capsys, "cancel", "slow-job")

    assert code == 0 and "cancelled slow-job" in out, out
    ec2 = stack_endpoint.client("ec2")
    live = [
        i
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] in ("pending", "running")
    ]
    assert live == []
    code, out, _ = _run(capsys, "status", "slow-job")
    assert code == 0 and "ABORTED" in out


def test_given_an_unknown_job_then_one_clear_line_and_exit_code_2(stack_endpoint, capsys):
    code, out, err = _run(capsys, "status", "no-such-job")
    assert code == 2
    assert err.strip().count("\n") == 0 and "no execution found for job 'no-such-job'" in err


def test_given_no_such_stack_then_the_error_says_how_to_deploy(stack_endpoint, capsys):
    code = cli.main(["list", "--stack-name", "NotDeployed"])
    err = capsys.readouterr().err
    assert code == 2 and "NotDeployed" in err and "cdk deploy" in err
