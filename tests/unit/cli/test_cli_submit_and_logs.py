"""`spottrain submit` refuses a second run of a running job; `spottrain logs` prints what a terminal showed.

A stand-in stack in moto: a state machine whose executions stay RUNNING, and the CloudFormation
outputs the CLI looks the stack up by.
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from spottrain.contract import layout
from spottrain import cli, jobs

EXAMPLE = json.loads((cli.REPO_ROOT / "examples" / "jobs" / "pix2pix.json").read_text())
JOB = EXAMPLE["exec_name"]
PREFIX = "spottrain-123456789012"
PASS = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})


@pytest.fixture
def stack(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        sfn = boto3.client("stepfunctions")
        machine = sfn.create_state_machine(name="sm", definition=PASS, roleArn="arn:aws:iam::123456789012:role/sm")
        outputs = {
            "StateMachineArn": machine["stateMachineArn"],
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
            "BucketName": "assets",
            "JobBucketPrefix": PREFIX,
            "TerminateFunctionName": "terminate",
        }
        template = {
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
        boto3.client("cloudformation").create_stack(StackName="SpotTrain", TemplateBody=json.dumps(template))
        yield sfn, jobs.Stack.from_outputs(outputs)


def test_given_the_job_is_running_when_submitted_again_then_refused_and_nothing_started(stack, tmp_path, capsys):
    # Given a running execution of the job
    sfn, deployed = stack
    first = jobs.start(sfn, deployed, EXAMPLE)
    path = tmp_path / "job.json"
    path.write_text(json.dumps(EXAMPLE))

    # When the same spec is submitted again
    code = cli.main(["submit", str(path)])

    # Then one line names the running execution and how to stop it, and no second execution exists
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"job '{JOB}' is already running as execution {first.rsplit(':', 1)[1]}" in err
    assert f"spottrain cancel {JOB}" in err
    assert [e["executionArn"] for e in jobs.list_executions(sfn, deployed)] == [first]


def test_given_only_another_job_running_when_submitted_then_it_starts(stack, tmp_path, capsys):
    sfn, deployed = stack
    jobs.start(sfn, deployed, dict(EXAMPLE, exec_name="other-job"))
    path = tmp_path / "job.json"
    path.write_text(json.dumps(EXAMPLE))

    assert cli.main(["submit", str(path)]) == 0
    assert f"started arn:aws:states:us-east-1:123456789012:execution:sm:{JOB}-" in capsys.readouterr().out


def test_given_a_log_drawn_for_a_terminal_when_printed_then_readable_rows_and_no_escape_codes(stack, capsys):
    # Given a job whose output holds coloured text and progress redraws, across two log parts
    sfn, deployed = stack
    jobs.start(sfn, deployed, EXAMPLE)
    s3 = boto3.client("s3")
    bucket = deployed.job_bucket(JOB)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket,
        Key=layout.output_log_key(1, 1),
        Body=b"\x1b[32mepoch 1\x1b[0m\n 10%|#\r 50%|#####\r100%|##########|\nepoch 2 sta",
    )
    s3.put_object(Bucket=bucket, Key=layout.output_log_key(1, 2), Body=b"rted\n\x1b[J  3 iter\n\x1b[1A\x1b[J  6 iter\n")

    # When its log is printed
    assert cli.main(["logs", JOB]) == 0

    # Then each line reads as the terminal showed it, the line cut between the parts whole again
    assert capsys.readouterr().out == "epoch 1\n100%|##########|\nepoch 2 started\n  6 iter\n"


def test_given_chunks_arriving_mid_line_when_streamed_then_lines_come_out_whole_and_readable():
    chunks = ["\x1b[1mloss\x1b[0m 0.5\n10", "%\r", "100%\nlast line without newline"]

    assert list(jobs.readable_stream(chunks)) == ["loss 0.5\n", "100%\n", "last line without newline"]


def test_given_a_heartbeat_whose_last_line_was_drawn_for_a_terminal_when_status_is_shown_then_it_reads_plainly(
    stack, capsys
):
    # Given a running job whose agent reported a progress bar's redraws as its last log line
    sfn, deployed = stack
    jobs.start(sfn, deployed, EXAMPLE)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=deployed.job_bucket(JOB))
    s3.put_object(
        Bucket=deployed.job_bucket(JOB),
        Key=layout.HEARTBEAT_KEY,
        Body=json.dumps(
            {"attempt": 1, "instance_id": "i-0abc", "last_log_line": "\x1b[32m 10%|#\r 80%|########\x1b[0m"}
        ).encode(),
    )

    # When its status is shown
    assert cli.main(["status", JOB]) == 0

    # Then the line ends with the last redraw, without escape codes
    out = capsys.readouterr().out
    assert out.rstrip().endswith("attempt 1  i-0abc  |  80%|########") and "\x1b" not in out
