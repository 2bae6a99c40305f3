"""Does each deployed function's role allow every AWS call that function really made?

moto enforces no IAM, so a Lambda calling an action its role lacks passes every local run and fails
on AWS at the first job. The emulator records the calls (`Emulator.lambda_calls`); this module maps
each to the IAM action(s) it needs and compares them with the Allow statements of the policies
attached to the function's role in the synthesized template.

Action level only: resource scoping and conditions are tests/infra's job. (The simulated instances'
calls are authorized as they happen, resources and conditions included: instance_iam.py.) Deny statements,
NotAction and AWS managed policies (ARNs whose documents the template does not hold) are not
evaluated, nor actions a call needs only for some parameters (iam:PassRole, ec2:CreateTags at launch).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
from typing import Any, Iterable, Mapping

import botocore.session

from spottrain.local.lambda_host import ApiCall

# Where an S3 operation's IAM action differs from its name (IAM service authorization reference).
S3_ACTIONS: dict[str, tuple[str, ...]] = {
    "HeadBucket": ("s3:ListBucket",),
    "HeadObject": ("s3:GetObject",),
    "ListObjects": ("s3:ListBucket",),
    "ListObjectsV2": ("s3:ListBucket",),
    "ListObjectVersions": ("s3:ListBucketVersions",),
    "ListBuckets": ("s3:ListAllMyBuckets",),
    "ListMultipartUploads": ("s3:ListBucketMultipartUploads",),
    "ListParts": ("s3:ListMultipartUploadParts",),
    "PutBucketEncryption": ("s3:PutEncryptionConfiguration",),
    "GetBucketEncryption": ("s3:GetEncryptionConfiguration",),
    "PutPublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
    "GetPublicAccessBlock": ("s3:GetBucketPublicAccessBlock",),
    "DeletePublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
    "DeleteBucketTagging": ("s3:PutBucketTagging",),
    "DeleteBucketEncryption": ("s3:PutEncryptionConfiguration",),
    "PutBucketLifecycleConfiguration": ("s3:PutLifecycleConfiguration",),
    "GetBucketLifecycleConfiguration": ("s3:GetLifecycleConfiguration",),
    "PutBucketNotificationConfiguration": ("s3:PutBucketNotification",),
    "GetBucketNotificationConfiguration": ("s3:GetBucketNotification",),
    "DeleteObjects": ("s3:DeleteObject",),
    "CopyObject": ("s3:GetObject", "s3:PutObject"),
    "UploadPartCopy": ("s3:GetObject", "s3:PutObject"),
    "CreateMultipartUpload": ("s3:PutObject",),
    "UploadPart": ("s3:PutObject",),
    "CompleteMultipartUpload": ("s3:PutObject",),
    "SelectObjectContent": ("s3:GetObject",),
}
# Other operations whose action is not "<prefix>:<operation>"; () = no permission needed.
OTHER_ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("sts", "GetCallerIdentity"): (),
    ("lambda", "Invoke"): ("lambda:InvokeFunction",),
    ("lambda", "InvokeAsync"): ("lambda:InvokeFunction",),
    ("lambda", "InvokeWithResponseStream"): ("lambda:InvokeFunction",),
}


@dataclasses.dataclass(frozen=True)
class MissingPermission:
    """A call a function made that its role's policies do not allow."""

    function: str  # the function's logical id in the template
    call: ApiCall
    action: str

    def __str__(self) -> str:
        return (
            f"{self.function} ({self.call.handler}) calls {self.call.service}.{self.call.operation}, which needs "
            f"{self.action}; no Allow statement of its role grants it: add it to that task in spottrain/infra/permissions.py"
        )


def iam_actions(service: str, operation: str) -> tuple[str, ...]:
    """The IAM actions one API call needs; botocore names the service ("s3") and the operation."""
    if service == "s3" and operation in S3_ACTIONS:
        return S3_ACTIONS[operation]
    if (service, operation) in OTHER_ACTIONS:
        return OTHER_ACTIONS[(service, operation)]
    return (f"{_action_prefix(service)}:{operation}",)


@functools.cache
def _action_prefix(service: str) -> str:
    # IAM prefixes follow the signing name ("states" for stepfunctions), not the SDK's service name
    return botocore.session.get_session().get_service_model(service).signing_name


def missing_permissions(template: Mapping[str, Any], calls: Iterable[ApiCall]) -> list[MissingPermission]:
    """Every recorded call whose IAM action no Allow statement on its function's role grants."""
    allowed = allowed_actions_by_handler(template)
    missing = []
    for call in sorted(calls):
        if call.handler not in allowed:
            raise ValueError(
                f"handler {call.handler!r} made calls but no AWS::Lambda::Function in the template has it; "
                "check the template against the stack that ran"
            )
        function, patterns = allowed[call.handler]
        missing += [
            MissingPermission(function, call, action)
            for action in iam_actions(call.service, call.operation)
            if not action_allowed(action, patterns)
        ]
    return missing


def action_allowed(action: str, patterns: Iterable[str]) -> bool:
    """IAM matches actions case-insensitively, with * and ? wildcards (`s3:Get*`, `*`)."""
    return any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in patterns)


def allowed_actions_by_handler(template: Mapping[str, Any]) -> dict[str, tuple[str, set[str]]]:
    """handler → (function logical id, action patterns its role's policies allow)."""
    resources = template.get("Resources", {})
    by_role = _allowed_actions_by_role(resources)
    functions: dict[str, tuple[str, set[str]]] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        handler = resource["Properties"].get("Handler", "")
        if handler in functions:
            raise ValueError(
                f"functions {functions[handler][0]} and {logical_id} share handler {handler!r}; "
                "recorded calls name only the handler, so they cannot be told apart"
            )
        functions[handler] = (logical_id, by_role.get(_role_id(logical_id, resource), set()))
    return functions


def _role_id(function_id: str, function: Mapping[str, Any]) -> str:
    role = function["Properties"].get("Role")
    if isinstance(role, dict) and "Fn::GetAtt" in role:
        return role["Fn::GetAtt"][0]
    raise ValueError(
        f"{function_id}.Role is {role!r}: only a role defined in the same template (Fn::GetAtt) "
        "can be checked; define the role in the stack"
    )


def _allowed_actions_by_role(resources: Mapping[str, Any]) -> dict[str, set[str]]:
    allowed: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                allowed.setdefault(logical_id, set()).update(_allow_actions(policy["PolicyDocument"]))
        elif resource.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for role in properties.get("Roles", []):
                if isinstance(role, dict) and "Ref" in role:
                    allowed.setdefault(role["Ref"], set()).update(_allow_actions(properties["PolicyDocument"]))
    return allowed


def _allow_actions(document: Mapping[str, Any]) -> set[str]:
    return {
        action
        for statement in _as_list(document.get("Statement", []))
        if statement.get("Effect") == "Allow"
        for action in _as_list(statement.get("Action", []))
    }


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]
