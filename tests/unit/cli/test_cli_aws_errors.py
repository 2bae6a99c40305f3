"""AWS-mode commands on a machine whose AWS set-up is missing or offline: one line saying what to fix.

No test here reaches AWS: credentials are fake, the config files absent, instance metadata lookups
disabled, and the endpoint is a loopback port nobody listens on.
"""

from __future__ import annotations

import json
import socket

import pytest

from spottrain import cli

EXAMPLE = cli.REPO_ROOT / "examples" / "jobs" / "pix2pix.json"
COMMANDS = [
    ["submit", str(EXAMPLE)],
    ["status", "pix2pix-20161231"],
    ["logs", "pix2pix-20161231"],
    ["cancel", "pix2pix-20161231"],
    ["list"],
]
AWS_VARIABLES = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


@pytest.fixture
def bare_machine(tmp_path, monkeypatch):
    """No AWS configuration at all, and no way to reach any network but loopback."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    return monkeypatch


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # released on close: nothing listens there


def run(capsys, argv) -> tuple[int, str]:
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spottrain: ") and "Traceback" not in err, err
    return code, err


@pytest.mark.parametrize("argv", COMMANDS, ids=[argv[0] for argv in COMMANDS])
def test_given_no_region_when_a_stack_command_runs_then_one_line_says_how_to_set_it(bare_machine, capsys, argv):
    bare_machine.setenv("AWS_ACCESS_KEY_ID", "testing")
    bare_machine.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    code, err = run(capsys, argv)

    assert code == 2 and "no AWS region" in err and "--region" in err and "AWS_REGION" in err


def test_given_aws_region_set_when_a_stack_command_runs_then_that_region_is_used(bare_machine, capsys):
    # AWS_REGION is what the other SDKs (and the README's hint) name; botocore alone reads AWS_DEFAULT_REGION
    bare_machine.setenv("AWS_ACCESS_KEY_ID", "testing")
    bare_machine.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    bare_machine.setenv("AWS_REGION", "eu-west-1")

    code, err = run(capsys, ["list"])

    assert code == 2 and "nothing answers at AWS_ENDPOINT_URL=" in err, err


@pytest.mark.parametrize("argv", COMMANDS, ids=[argv[0] for argv in COMMANDS])
def test_given_no_credentials_when_a_stack_command_runs_then_one_line_says_how_to_get_them(bare_machine, capsys, argv):
    code, err = run(capsys, [*argv, "--region", "eu-west-1"])

    assert code == 2 and "no AWS credentials" in err and "aws configure" in err


@pytest.mark.parametrize("argv", COMMANDS, ids=[argv[0] for argv in COMMANDS])
def test_given_an_unreachable_endpoint_when_a_stack_command_runs_then_one_line_says_so(bare_machine, capsys, argv):
    bare_machine.setenv("AWS_ACCESS_KEY_ID", "testing")
    bare_machine.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    code, err = run(capsys, [*argv, "--region", "eu-west-1"])

    # Then the line names the endpoint the user set (an emulator that has stopped), not "AWS"
    assert code == 2 and "nothing answers at AWS_ENDPOINT_URL=http://127.0.0.1:" in err and "--local" in err


@pytest.mark.parametrize("url", ["127.0.0.1:5000", "http://127.0.0.1:99999", "ftp://127.0.0.1:5000"])
@pytest.mark.parametrize("argv", [["status", "lr"], ["cancel", "lr"]], ids=["status", "cancel"])
def test_given_a_malformed_endpoint_url_when_a_stack_command_runs_then_one_line_shows_the_form(
    bare_machine, capsys, argv, url
):
    # Given AWS_ENDPOINT_URL typed without its scheme, with a port out of range, or not http(s)
    bare_machine.setenv("AWS_ACCESS_KEY_ID", "testing")
    bare_machine.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    bare_machine.setenv("AWS_ENDPOINT_URL", url)
    # When status or cancel runs, Then one line (no botocore traceback) names the variable and the form it takes
    code, err = run(capsys, [*argv, "--region", "us-east-1"])
    assert code == 2 and f"AWS_ENDPOINT_URL={url}:" in err and "http://127.0.0.1:5000" in err


def test_given_an_unknown_profile_when_a_stack_command_runs_then_one_line_names_it(bare_machine, capsys):
    code, err = run(capsys, ["list", "--profile", "nosuch"])

    assert code == 2 and "nosuch" in err and "--profile" in err


def test_given_an_invalid_spec_when_submitted_to_aws_then_refused_before_any_aws_call(bare_machine, tmp_path, capsys):
    # Given a bare machine (any AWS call would fail with "no AWS region") and a spec with a bad env name
    path = tmp_path / "job.json"
    path.write_text(json.dumps(dict(json.loads(EXAMPLE.read_text()), env={"GIT_SSH_COMMAND": "ssh -v"})))

    code, err = run(capsys, ["submit", str(path)])

    assert code == 2 and "env.GIT_SSH_COMMAND: is reserved" in err
