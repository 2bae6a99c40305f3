"""The synthesized template deploys through moto's CloudFormation, as the local emulator does."""

from __future__ import annotations

import copy
import io
import json
import warnings
import zipfile

import boto3
import pytest
from moto import mock_aws

from spottrain.infra.functions import TASKS

REGION = "us-east-1"
EMULATOR_AMI_PARAMETER = "/spottrain/local/ami"  # /aws/... names are reserved, even in moto


@pytest.fixture
def aws_credentials(monkeypatch):
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_SESSION_TOKEN", "testing"),
        ("AWS_DEFAULT_REGION", REGION),
    ):
        monkeypatch.setenv(name, value)


def _zip_dir(folder) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def _publish_assets(synth, s3, account: str) -> None:
    """What `cdk deploy` does before CloudFormation: every file asset to its bootstrap bucket."""
    for asset in synth.asset_manifest()["files"].values():
        source = synth.outdir / asset["source"]["path"]
        body = _zip_dir(source) if asset["source"].get("packaging") == "zip" else source.read_bytes()
        for destination in asset["destinations"].values():
            bucket = destination["bucketName"].replace("${AWS::AccountId}", account).replace("${AWS::Region}", REGION)
            if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
                s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=bucket, Key=destination["objectKey"], Body=body)


def test_given_published_assets_when_template_is_deployed_to_moto_then_stack_completes_with_outputs(
    default_synth, aws_credentials
):
    template = copy.deepcopy(default_synth.template)
    for parameter in template["Parameters"].values():
        if "EC2::Image::Id" in parameter["Type"]:
            parameter["Default"] = EMULATOR_AMI_PARAMETER  # what the emulator passes as amiSsmParameter
    with mock_aws():
        account = boto3.client("sts").get_caller_identity()["Account"]
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="21", Type="String")
        ssm.put_parameter(Name=EMULATOR_AMI_PARAMETER, Value="ami-12c6146b", Type="String")
        _publish_assets(default_synth, boto3.client("s3"), account)
        cfn = boto3.client("cloudformation")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # moto skips policy resources it cannot model; the rest must deploy
            cfn.create_stack(
                StackName=default_synth.stack_name, TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_IAM"]
            )
        stack = cfn.describe_stacks(StackName=default_synth.stack_name)["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        assert outputs["JobBucketPrefix"] == f"spottrain-{account}"
        assert outputs["StateMachineArn"].startswith(f"arn:aws:states:{REGION}:{account}:stateMachine:")
        functions = boto3.client("lambda").list_functions()["Functions"]
        assert sorted(f["Handler"] for f in functions) == sorted(
            f"spottrain.functions.{task}.handler" for task in TASKS
        )
        (template_id,) = [
            t["LaunchTemplateId"] for t in boto3.client("ec2").describe_launch_templates()["LaunchTemplates"]
        ]
        assert {f["Environment"]["Variables"]["LAUNCH_TEMPLATE_ID"] for f in functions} == {template_id}
