"""How a failed job ends on the CLI: one line a user reads, not a Lambda's stack trace; and a --local run
that could not work is refused before the emulator starts."""

from __future__ import annotations

import io
import json

from spottrain import cli
from spottrain.console import Console


def test_given_a_lambda_failure_when_the_job_ends_then_the_error_and_message_show_without_the_stack_trace():
    # Given an execution failed by a Lambda's unhandled error: Step Functions keeps its payload as the cause
    cause = json.dumps(
        {
            "errorMessage": "could not read /spottrain/github-token",
            "errorType": "ValueError",
            "requestId": "r-1",
            "stackTrace": ['  File "/var/task/launch.py", line 3, in handler\n'],
        }
    )
    execution = {"name": "job-1", "status": "FAILED", "error": "ValueError", "cause": cause}
    out = io.StringIO()

    # When the CLI reports the end
    code = cli._report_end(Console(out), execution)

    # Then one line: the error type and the message only
    assert code == 1
    assert out.getvalue().strip() == "✗ job-1 failed: ValueError could not read /spottrain/github-token"


def test_given_a_plain_cause_then_it_shows_as_it_is():
    assert cli.failure_text("TrainingFailed", "exit code 1") == "TrainingFailed exit code 1"
    assert cli.failure_text(None, None) == ""


def test_given_repository_auth_on_the_projects_own_url_when_submitted_local_then_refused_before_deploying(
    tmp_path, capsys
):
    # Given the demo's spec (this project's URL, which --local rewrites to this checkout) with a token
    spec = {**json.loads(cli.DEMO_SPEC.read_text()), "repository_auth": {"token_secret": "/spottrain/github-token"}}
    (tmp_path / "job.json").write_text(json.dumps(spec))

    # When submitted to the emulator
    code = cli.main(["submit", "--local", str(tmp_path / "job.json"), "--workdir", str(tmp_path / "work")])

    # Then refused in one line naming the field and where a private repository is exercised, nothing started
    err = capsys.readouterr().err
    assert code == 2
    assert (
        err.startswith("spottrain: repository_auth: --local clones this checkout") and "test_emulator_secrets.py" in err
    ), err
    assert not (tmp_path / "work").exists()


def test_given_a_secret_no_local_secret_seeds_when_submitted_local_then_refused_before_deploying_naming_the_fix(
    tmp_path, capsys
):
    # Given a spec whose secrets name two values, and a --local-secret seeding only one of them
    spec = {
        **json.loads(cli.DEMO_SPEC.read_text()),
        "secrets": {"HF_TOKEN": "/spottrain/hf-token", "WANDB_KEY": "/spottrain/wandb"},
    }
    (tmp_path / "job.json").write_text(json.dumps(spec))

    # When submitted to the emulator (whose SSM holds only what --local-secret seeds)
    argv = ["submit", "--local", str(tmp_path / "job.json"), "--workdir", str(tmp_path / "work")]
    code = cli.main([*argv, "--local-secret", "/spottrain/hf-token=abcdefgh"])

    # Then refused in one line naming the field, the rule and the fix, before anything starts
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("spottrain: secrets.WANDB_KEY: /spottrain/wandb is not seeded"), err
    assert "--local-secret /spottrain/wandb" in err and "/spottrain/hf-token" not in err, err
    assert not (tmp_path / "work").exists()


def test_given_an_outage_longer_than_the_emulators_capacity_wait_when_the_demo_starts_then_refused_with_why(
    tmp_path, capsys
):
    # When the demo is asked for an outage no job in the emulator can outwait (its wait: 60 minutes of 1 s)
    code = cli.main(
        [
            "demo",
            "--inject",
            "capacity-outage=99999999999",
            "--workdir",
            str(tmp_path / "work"),
            "--runs",
            str(tmp_path / "runs"),
        ]
    )

    # Then refused before the emulator starts, saying how long the job waits and what to do instead
    err = capsys.readouterr().err
    assert code == 2
    assert "capacity-outage=1e+11: the job waits for capacity for only 60s in the emulator" in err, err
    assert "no-capacity=<type>" in err
    assert not (tmp_path / "work").exists()


def test_given_a_job_with_its_own_capacity_wait_then_the_outage_may_last_up_to_it():
    from spottrain.local import Faults, capacity_wait_seconds

    # Given a job waiting 200 emulator minutes (200 s) for capacity, an outage of 150 s can end inside it
    Faults.parse(["capacity-outage=150"]).check_outage(capacity_wait_seconds({"capacity_wait_minutes": 200}))
    assert capacity_wait_seconds({}) == 60.0  # the emulator stack's capacityWaitMinutes, a second each


class _History:
    """Step Functions' GetExecutionHistory answering with the states' outputs given (ids in order)."""

    def __init__(self, outputs):
        self.events = [
            {"id": i, "stateExitedEventDetails": {"name": f"S{i}", "output": output}}
            for i, output in enumerate(outputs, start=1)
        ]

    def get_execution_history(self, **_):
        return {"events": list(reversed(self.events))}


def test_given_a_job_failed_by_an_unreadable_secret_when_it_ends_then_the_last_line_says_so_naming_the_variable():
    # Given a TrainingFailed end whose last poll judged the agent's secret_unreadable failure
    message = "secrets.HF_TOKEN: /spottrain/hf-token is neither an SSM parameter nor a Secrets Manager secret"
    sfn = _History(
        [
            json.dumps({"poll": {"status": "RUNNING", "detail": {}}}),
            "{cut",
            json.dumps(
                {
                    "poll": {
                        "status": "FAILED",
                        "detail": {"reason": "secret_unreadable", "exit_code": 1, "message": message},
                    }
                }
            ),
        ]
    )
    execution = {
        "name": "job-1",
        "status": "FAILED",
        "executionArn": "arn:x",
        "error": "TrainingFailed",
        "cause": "The job failed: its command exited with a non-zero code, ...",
    }
    out = io.StringIO()

    # When the CLI reports the end
    cli._report_end(Console(out), execution, cli._failure_detail(sfn, execution))

    # Then the line names the variable and the fix, not the generic TrainingFailed cause
    assert out.getvalue().strip() == f"✗ job-1 failed: a secret could not be read: {message}"


def test_given_a_job_failed_by_its_clone_when_it_ends_then_the_last_line_gives_the_agents_reason_and_fix():
    # Given a TrainingFailed end whose last poll judged a clone refused by the host (a wrong deploy key)
    message = (
        "git clone of ssh://git@127.0.0.1:2222/priv.git (ref default branch) failed with exit code 128: "
        "fatal: Could not read from remote repository.; the server refused the deploy key in /spottrain/deploy-key "
        "(repository_auth.ssh_key_secret): add its public key as a deploy key"
    )
    detail = {"reason": "clone_failed", "failed_phase": "clone", "exit_code": 128, "message": message}
    sfn = _History([json.dumps({"poll": {"status": "FAILED", "detail": detail}})])
    execution = {
        "name": "job-1",
        "status": "FAILED",
        "executionArn": "arn:x",
        "error": "TrainingFailed",
        "cause": "The job failed: its command exited with a non-zero code, ...",
    }
    out = io.StringIO()

    # When the CLI reports the end
    cli._report_end(Console(out), execution, cli._failure_detail(sfn, execution))

    # Then the line says the clone failed, with the agent's message naming the field and the fix
    assert out.getvalue().strip() == f"✗ job-1 failed: the repository could not be cloned: {message}"


def test_given_a_job_failed_by_its_command_then_the_last_line_keeps_the_workflows_cause():
    sfn = _History([json.dumps({"poll": {"status": "FAILED", "detail": {"reason": "exit", "exit_code": 2}}})])
    execution = {
        "name": "job-1",
        "status": "FAILED",
        "executionArn": "arn:x",
        "error": "TrainingFailed",
        "cause": "The job failed.",
    }
    out = io.StringIO()

    cli._report_end(Console(out), execution, cli._failure_detail(sfn, execution))

    assert out.getvalue().strip() == "✗ job-1 failed: TrainingFailed The job failed."


def test_given_a_job_stopped_by_spottrain_cancel_when_it_ends_then_the_last_line_says_it_was_stopped():
    # Given an execution that StopExecution ended (spottrain cancel from another terminal): no error, no cause
    execution = {"name": "job-1", "status": "ABORTED", "executionArn": "arn:x"}
    out = io.StringIO()

    # When the CLI that follows it reports the end
    code = cli._report_end(Console(out), execution)

    # Then the line says what ended it, not an empty reason
    assert code == 1
    assert out.getvalue().strip() == (
        "✗ job-1 aborted: stopped before it ended (`spottrain cancel`, or StopExecution from the console or an SDK)"
    )


def test_given_a_spec_with_a_debug_door_when_run_local_then_the_hint_gives_the_emulators_shell_command():
    # Given a spec keeping a failed instance 30 minutes (seconds in the emulator), run with its own workdir
    spec = {"exec_name": "door", "on_failure": {"keep_alive_minutes": 30}}

    # When the emulator's hint is made
    hint = cli.debug_door_hint(spec, "/tmp/emu")

    # Then it names the command that opens the door here (the email's aws ssm start-session is AWS's)
    assert hint == (
        "if it fails, its instance is kept for 30 s: look inside from another shell with "
        "`spottrain shell door --workdir /tmp/emu` (the email's aws ssm start-session is for AWS)"
    )
    assert cli.debug_door_hint({"exec_name": "door"}, "/tmp/emu") is None


def test_given_git_ssl_cainfo_when_run_local_then_the_simulated_instances_trust_that_certificate(tmp_path):
    # Given the user's GIT_SSL_CAINFO naming a loopback git host's certificate (as an AMI's trust store would hold)
    certificate = tmp_path / "git-server.pem"
    certificate.write_text("-----BEGIN CERTIFICATE-----\n")

    # When the emulator's instances' environment is made
    env = cli.local_agent_env({"GIT_SSL_CAINFO": str(certificate), "HOME": "/root"})

    # Then git on the instances gets it, and nothing else of the user's environment
    assert env == {"GIT_SSL_CAINFO": str(certificate.resolve())}
    assert cli.local_agent_env({"HOME": "/root"}) == {}


def test_given_git_ssl_cainfo_naming_no_file_when_run_local_then_refused_naming_the_variable_and_the_fix(tmp_path):
    import pytest

    with pytest.raises(cli.UsageError, match=r"GIT_SSL_CAINFO=.*missing.pem: no such file\. Give the PEM file"):
        cli.local_agent_env({"GIT_SSL_CAINFO": str(tmp_path / "missing.pem")})
