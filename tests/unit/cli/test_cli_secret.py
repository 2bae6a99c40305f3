"""`spottrain secret put` stores a SecureString a job's secrets role may read; `--local-secret` is checked up front."""

from __future__ import annotations

import io
import secrets

import boto3
import pytest

from test_cli_submit_and_logs import stack  # noqa: F401 (fixture: a stand-in stack in moto)
from spottrain import cli


def test_given_a_value_on_stdin_when_put_then_a_securestring_under_the_prefix_holds_it_and_nothing_prints_it(
    stack,
    monkeypatch,
    capsys,  # noqa: F811
):
    # Given a value piped in (as `printf %s "$TOKEN" | spottrain secret put ...`)
    value = "hf_" + secrets.token_hex(10)
    monkeypatch.setattr("sys.stdin", io.StringIO(value + "\n"))

    # When it is put twice (a rotation)
    assert cli.main(["secret", "put", "/spottrain/hf-token"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(value + "\n"))
    assert cli.main(["secret", "put", "/spottrain/hf-token"]) == 0

    # Then SSM holds it encrypted, without the pipe's newline, and the terminal never showed it
    parameter = boto3.client("ssm").get_parameter(Name="/spottrain/hf-token", WithDecryption=True)["Parameter"]
    assert (parameter["Type"], parameter["Value"], parameter["Version"]) == ("SecureString", value, 2)
    out = capsys.readouterr()
    assert value not in out.out + out.err and '"secrets": {"VAR": "/spottrain/hf-token"}' in out.out


def test_given_a_name_outside_the_prefix_when_put_then_refused_with_the_fix_and_nothing_stored(
    stack,
    monkeypatch,
    capsys,  # noqa: F811
):
    monkeypatch.setattr("sys.stdin", io.StringIO("value"))

    assert cli.main(["secret", "put", "/prod/hf-token"]) == 2

    assert "must be under /spottrain/" in capsys.readouterr().err
    assert boto3.client("ssm").describe_parameters()["Parameters"] == []


@pytest.mark.parametrize(
    "item,message",
    [("/spottrain/t", "/spottrain/t: the value is empty"), ("/other/t=v", "must be under /spottrain/")],
)
def test_given_a_bad_local_secret_when_demo_starts_then_refused_before_the_emulator_starts(
    item, message, capsys, tmp_path, monkeypatch
):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # NAME alone reads its value from stdin: nothing there
    assert cli.main(["demo", "--workdir", str(tmp_path / "emu"), "--local-secret", item]) == 2

    assert message in capsys.readouterr().err
    assert not (tmp_path / "emu").exists()


def test_given_an_empty_pipe_when_put_then_refused_for_the_empty_value_before_any_aws_call(monkeypatch, capsys):
    # Given nothing piped in (`spottrain secret put NAME < /dev/null`, an unset variable) and no AWS to answer
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")

    # When it is put
    code = cli.main(["secret", "put", "/spottrain/hf-token"])

    # Then the empty value is the one problem named, not an unreachable endpoint
    assert code == 2
    assert "/spottrain/hf-token: the value is empty" in capsys.readouterr().err
