"""The IAM check: which calls a function made, which actions they need, and whether its role allows them."""

from __future__ import annotations

import pytest
from botocore.client import BaseClient

from function_asset import handler_name, task_spec
from spottrain.local.iam_check import action_allowed, iam_actions, missing_permissions
from spottrain.local.lambda_host import ApiCall, FunctionSpec, LambdaHost

HANDLER = handler_name("notify")


def _template(*statements: dict, handler: str = HANDLER) -> dict:
    """A function, its role, and one policy attached to the role, as CDK synthesizes them."""
    return {
        "Resources": {
            "NotifyRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {}}},
            "NotifyRoleDefaultPolicy": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "PolicyDocument": {"Statement": list(statements), "Version": "2012-10-17"},
                    "PolicyName": "NotifyRoleDefaultPolicy",
                    "Roles": [{"Ref": "NotifyRole"}],
                },
            },
            "NotifyFunction": {
                "Type": "AWS::Lambda::Function",
                "Properties": {"Handler": handler, "Role": {"Fn::GetAtt": ["NotifyRole", "Arn"]}},
            },
        }
    }


def _allow(*actions: str, effect: str = "Allow") -> dict:
    return {"Effect": effect, "Action": list(actions) if len(actions) > 1 else actions[0], "Resource": "*"}


def _call(service: str, operation: str) -> ApiCall:
    return ApiCall(HANDLER, service, operation)


# --- which action a call needs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "service, operation, actions",
    [
        ("s3", "HeadBucket", ("s3:ListBucket",)),
        ("s3", "HeadObject", ("s3:GetObject",)),
        ("s3", "ListObjectsV2", ("s3:ListBucket",)),
        ("s3", "PutBucketEncryption", ("s3:PutEncryptionConfiguration",)),
        ("s3", "PutPublicAccessBlock", ("s3:PutBucketPublicAccessBlock",)),
        ("s3", "DeleteObjects", ("s3:DeleteObject",)),
        ("s3", "CopyObject", ("s3:GetObject", "s3:PutObject")),
        ("s3", "PutBucketTagging", ("s3:PutBucketTagging",)),
        ("sns", "Publish", ("sns:Publish",)),
        ("ec2", "RunInstances", ("ec2:RunInstances",)),
        ("stepfunctions", "StartExecution", ("states:StartExecution",)),
        ("lambda", "Invoke", ("lambda:InvokeFunction",)),
        ("sts", "GetCallerIdentity", ()),
    ],
)
def test_given_an_api_call_then_it_needs_the_iam_actions_of_the_service_authorization_reference(
    service, operation, actions
):
    assert iam_actions(service, operation) == actions


def test_given_wildcards_and_other_case_then_actions_match_as_iam_matches_them():
    assert action_allowed("s3:GetObject", ["s3:Get*"])
    assert action_allowed("s3:GetObject", ["*"])
    assert action_allowed("s3:GetObject", ["S3:getobject"])
    assert not action_allowed("s3:PutObject", ["s3:Get*", "s3:PutObjectAcl"])


# --- does the role allow it -----------------------------------------------------------------------


def test_given_a_call_its_role_lacks_then_it_is_reported_with_the_function_the_action_and_the_fix():
    template = _template(_allow("s3:GetObject"))

    missing = missing_permissions(template, {_call("s3", "GetObject"), _call("s3", "PutObject")})

    assert [(m.function, m.action) for m in missing] == [("NotifyFunction", "s3:PutObject")]
    message = str(missing[0])
    assert "s3.PutObject" in message and HANDLER in message and "infra/permissions.py" in message


def test_given_a_wildcard_grant_then_every_matching_call_is_allowed():
    template = _template(_allow("s3:Get*", "sns:Publish"))

    assert (
        missing_permissions(template, {_call("s3", "GetObject"), _call("s3", "HeadObject"), _call("sns", "Publish")})
        == []
    )


def test_given_head_bucket_with_only_object_reads_then_list_bucket_is_missing():
    # the bug this check exists for: report.json lookups that 403 on AWS without s3:ListBucket
    missing = missing_permissions(_template(_allow("s3:GetObject")), {_call("s3", "HeadBucket")})

    assert [m.action for m in missing] == ["s3:ListBucket"]
    assert missing_permissions(_template(_allow("s3:GetObject", "s3:ListBucket")), {_call("s3", "HeadBucket")}) == []


def test_given_only_a_deny_statement_then_the_action_is_not_allowed():
    template = _template(_allow("sns:Publish", effect="Deny"))

    assert [m.action for m in missing_permissions(template, {_call("sns", "Publish")})] == ["sns:Publish"]


def test_given_a_grant_inline_on_the_role_then_it_counts():
    template = _template()
    template["Resources"]["NotifyRole"]["Properties"]["Policies"] = [
        {"PolicyName": "inline", "PolicyDocument": {"Statement": [_allow("sns:Publish")]}}
    ]

    assert missing_permissions(template, {_call("sns", "Publish")}) == []


def test_given_a_policy_on_another_role_then_it_does_not_count():
    template = _template(_allow("sns:Publish"))
    template["Resources"]["NotifyRoleDefaultPolicy"]["Properties"]["Roles"] = [{"Ref": "OtherRole"}]

    assert [m.action for m in missing_permissions(template, {_call("sns", "Publish")})] == ["sns:Publish"]


def test_given_calls_from_a_handler_the_template_lacks_then_the_check_refuses_to_guess():
    with pytest.raises(ValueError, match=handler_name("gone")):
        missing_permissions(_template(), {ApiCall(handler_name("gone"), "s3", "GetObject")})


# --- recording the calls a handler makes ----------------------------------------------------------

RECORDING_HANDLER = """
import boto3

S3 = boto3.client("s3")  # cached at cold start, as the task Lambdas do
S3.list_buckets()

def handler(event, context):
    S3.head_bucket(Bucket=event["bucket"])
    return {}
"""


def _recording_spec() -> FunctionSpec:
    return task_spec("Stack-Task-1", RECORDING_HANDLER)


def test_given_a_handler_calling_aws_then_the_host_records_its_calls_and_only_its_calls(tmp_path, aws, moto_endpoint):
    aws("s3").create_bucket(Bucket="job-bucket")
    original = BaseClient._make_api_call
    host = LambdaHost(tmp_path, {"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_endpoint})

    _, errored = host.invoke(_recording_spec(), {"bucket": "job-bucket"})
    aws("s3").list_objects_v2(Bucket="job-bucket")  # the test's own call: not the function's
    host.close()

    assert not errored
    assert host.calls == {
        ApiCall(handler_name("task"), "s3", "ListBuckets"),
        ApiCall(handler_name("task"), "s3", "HeadBucket"),
    }
    assert host.invocations == {handler_name("task"): 1}
    assert BaseClient._make_api_call is original  # closing the host unhooks botocore
