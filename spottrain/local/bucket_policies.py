"""Bucket policies for the emulator's stack: moto's CloudFormation skips AWS::S3::BucketPolicy.

moto's S3 reads a bucket's policy where AWS does something with it that the emulator exercises: its
PutBucketLogging refuses a target bucket whose policy does not let logging.s3.amazonaws.com write (as
AWS does). So after the stack exists, each policy of the template is resolved against the stack's
physical ids and put on its bucket, unchanged. Only the intrinsics CDK writes into these policies are
resolved (Ref, Fn::GetAtt Arn of a bucket, Fn::Join); anything else stops the deployment, named.
"""

from __future__ import annotations

import json
from typing import Any

POLICY_TYPE = "AWS::S3::BucketPolicy"


class UnresolvableIntrinsic(ValueError):
    """A bucket policy uses an intrinsic function this stand-in does not resolve."""


def apply_bucket_policies(session: Any, template: dict, stack_name: str, account: str, region: str) -> list[str]:
    """Put every bucket policy of `template` on its bucket; returns the buckets, in template order."""
    resources = session.client("cloudformation").describe_stack_resources(StackName=stack_name)["StackResources"]
    context = {
        # moto lists a skipped resource without its ids
        "physical": {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in resources
            if "LogicalResourceId" in r and "PhysicalResourceId" in r
        },
        "types": {name: resource["Type"] for name, resource in template.get("Resources", {}).items()},
        "pseudo": {
            "AWS::Partition": "aws",
            "AWS::AccountId": account,
            "AWS::Region": region,
            "AWS::StackName": stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        },
    }
    s3, buckets = session.client("s3"), []
    for resource in template.get("Resources", {}).values():
        if resource["Type"] == POLICY_TYPE:
            bucket = resolve(resource["Properties"]["Bucket"], context)
            s3.put_bucket_policy(
                Bucket=bucket, Policy=json.dumps(resolve(resource["Properties"]["PolicyDocument"], context))
            )
            buckets.append(bucket)
    return buckets


def resolve(value: Any, context: dict) -> Any:
    """`value` with Ref, Fn::GetAtt [bucket, Arn] and Fn::Join replaced by their deployed values."""
    if isinstance(value, list):
        return [resolve(item, context) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        name = value["Ref"]
        return context["pseudo"][name] if name in context["pseudo"] else context["physical"][name]
    if set(value) == {"Fn::GetAtt"}:
        name, attribute = value["Fn::GetAtt"]
        if attribute != "Arn" or context["types"].get(name) != "AWS::S3::Bucket":
            raise UnresolvableIntrinsic(f"Fn::GetAtt {name}.{attribute} in a bucket policy")
        return f"arn:aws:s3:::{context['physical'][name]}"
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(str(resolve(part, context)) for part in parts)
    if any(key.startswith("Fn::") for key in value):
        raise UnresolvableIntrinsic(f"{sorted(value)} in a bucket policy")
    return {key: resolve(item, context) for key, item in value.items()}
