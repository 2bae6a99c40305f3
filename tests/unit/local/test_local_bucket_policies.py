"""The emulator puts the template's bucket policies on its buckets (moto's CloudFormation skips them)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from spottrain.local.bucket_policies import UnresolvableIntrinsic, apply_bucket_policies, resolve

# A records bucket and its access-log policy, written as CDK writes them
TEMPLATE = {
    "Resources": {
        "Records": {"Type": "AWS::S3::Bucket", "Properties": {}},
        "RecordsPolicy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": "Records"},
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "logging.s3.amazonaws.com"},
                            "Action": "s3:PutObject",
                            "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": ["Records", "Arn"]}, "/access-logs/*"]]},
                            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
                        }
                    ],
                },
            },
        },
    }
}


@pytest.fixture
def session(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.Session(region_name="us-east-1")


def test_given_a_deployed_stack_with_a_bucket_policy_when_applied_then_the_bucket_has_it_resolved(session):
    # Given the stack deployed by moto (which skips the BucketPolicy resource)
    session.client("cloudformation").create_stack(StackName="S", TemplateBody=json.dumps(TEMPLATE))
    (bucket,) = [
        r["PhysicalResourceId"]
        for r in session.client("cloudformation").describe_stack_resources(StackName="S")["StackResources"]
        if r.get("LogicalResourceId") == "Records"
    ]

    # When the policies are applied
    assert apply_bucket_policies(session, TEMPLATE, "S", "123456789012", "us-east-1") == [bucket]

    # Then the bucket holds the policy with its own ARN and the account filled in
    (statement,) = json.loads(session.client("s3").get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert statement["Resource"] == f"arn:aws:s3:::{bucket}/access-logs/*"
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_given_an_intrinsic_it_cannot_resolve_then_it_says_which():
    with pytest.raises(UnresolvableIntrinsic, match="Fn::Sub"):
        resolve({"Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::x"}}, {"pseudo": {}, "physical": {}, "types": {}})
