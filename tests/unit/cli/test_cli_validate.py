"""`spottrain validate` is the user's first contact: clear verdicts, the same rules as ValidateJob."""

import json

import pytest

from spottrain import cli

EXAMPLES = cli.REPO_ROOT / "examples" / "jobs"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_bundled_examples_validate(example, capsys):
    # Given a bundled example, When validated, Then it passes and names the bucket it would use
    assert cli.main(["validate", str(EXAMPLES / example)]) == 0
    assert "is valid" in capsys.readouterr().out


def test_every_problem_is_listed_with_its_field(tmp_path, capsys):
    # Given a spec with two independent mistakes
    spec = json.loads((EXAMPLES / "multihead-demo.json").read_text())
    spec["exec_name"] = "Bad_Name"
    spec["instance"] = {"types": ["p5.48xlarge"]}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    # When validated, Then both are reported and the exit code says failure
    assert cli.main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "exec_name" in out and "p5.48xlarge" in out


def test_broken_json_names_line_and_column(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text('{"exec_name": "x",\n  "oops" 1\n}')
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "line 2" in err


def test_missing_file_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["validate", str(tmp_path / "absent.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_offline_the_verdict_says_it_used_the_defaults_of_cdk_json(capsys):
    assert cli.main(["validate", str(EXAMPLES / "pix2pix.json")]) == 0
    assert "(checked against the defaults cdk.json deploys (spottrain/contract/defaults.py" in capsys.readouterr().out


@pytest.fixture
def deployed_stack(monkeypatch):
    """A stack named S whose ValidateJob runs with MAX_ATTEMPTS=2 (moto: nothing leaves the machine)."""
    import boto3
    from moto import mock_aws

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        boto3.client("lambda").create_function(
            FunctionName="validate-fn",
            Runtime="python3.12",
            Role=role,
            Handler="h.handler",
            Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
            Environment={"Variables": {"STACK_NAME": "S", "BUCKET_PREFIX": "acme", "MAX_ATTEMPTS": "2"}},
        )
        outputs = {
            name: {"Value": value}
            for name, value in {
                "StateMachineArn": "arn:sm",
                "TopicArn": "arn:topic",
                "BucketName": "records",
                "JobBucketPrefix": "acme",
                "TerminateFunctionName": "terminate-fn",
                "ValidateJobFunctionName": "validate-fn",
            }.items()
        }
        template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": outputs}
        boto3.client("cloudformation").create_stack(StackName="S", TemplateBody=json.dumps(template))
        yield


def test_given_a_deployed_stack_when_validating_against_it_then_its_own_caps_apply(deployed_stack, tmp_path, capsys):
    # Given a spec asking for 3 attempts (the defaults allow 3; stack S caps them at 2)
    spec = json.loads((EXAMPLES / "pix2pix.json").read_text())
    spec["limits"] = {"max_attempts": 3}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    assert cli.main(["validate", str(path)]) == 0
    capsys.readouterr()

    # When validated against stack S, Then its cap and its bucket prefix decide
    assert cli.main(["validate", str(path), "--stack-name", "S"]) == 1
    out = capsys.readouterr().out
    assert "limits.max_attempts: 3 is over this stack's cap of 2" in out
    assert "(checked against stack S's settings (its ValidateJob's environment))" in out
    spec["limits"] = {"max_attempts": 2}
    path.write_text(json.dumps(spec))
    assert cli.main(["validate", str(path), "--stack", "S"]) == 0  # argparse takes --stack for --stack-name
    assert "→ bucket acme-pix2pix-20161231" in capsys.readouterr().out


def test_given_no_such_stack_when_validating_against_it_then_one_line_says_so(deployed_stack, capsys):
    assert cli.main(["validate", str(EXAMPLES / "pix2pix.json"), "--stack-name", "Nope"]) == 2
    assert "stack 'Nope' not found" in capsys.readouterr().err
