"""IAM for the simulated instances: each gets its role's credentials of its own, and every call is authorized.

moto enforces no IAM. On AWS an instance's calls are signed with its instance profile role's session
credentials, and IAM evaluates them against the role's identity policies and (for S3) the bucket's
policy, conditions included. The emulator does the same: each simulated instance receives credentials
of its own through its IMDS (`issue`), the moto server passes every request through `wsgi` first,
and a request signed with an instance's key is evaluated (spottrain/local/policy_eval.py) against
the policies the stack really deployed, read back from moto (IAM role policies, the bucket's policy as
it is at that moment). A denied request gets AccessDenied and never reaches moto; every decision is
recorded (`calls`), so a run can show that its instances needed nothing they lacked.

Context keys set, as AWS sets them for a role assigned to an EC2 instance
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html#principaltable):
`aws:userid` = `<role-id>:<instance-id>`, `aws:PrincipalArn` = the role's ARN, `ec2:SourceInstanceARN`
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/iam-roles-for-amazon-ec2.html) and
`aws:SecureTransport` = true: the SDKs speak HTTPS to AWS; the emulator's loopback HTTP stands in for it.

An instance may assume a role (a job's secrets role: spottrain/functions/shared/secrets_role.py). `sts:AssumeRole`
needs an Allow from the caller's identity policies and from the target role's trust policy, conditions included
(a role trust policy must always allow the caller explicitly:
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html; requiring the identity
Allow too is stricter than AWS's same-account rule, never looser). The emulator answers an allowed AssumeRole
itself with fresh credentials, as STS would; requests signed with them are that role session's: `aws:userid` =
`<role-id>:<session name>`, evaluated against the assumed role's policies, read at each request (the role may be
deleted meanwhile), intersected with its permissions boundary
(https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import re
import secrets
import string
import threading
import urllib.parse
import xml.etree.ElementTree as ElementTree
from typing import Any, Callable, Iterable
from xml.sax.saxutils import escape

from botocore.exceptions import ClientError

from spottrain.local.policy_eval import Decision, Request, Verdict, evaluate

_SIGNATURE = re.compile(r"Credential=([A-Z0-9]+)/[0-9]{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


@dataclasses.dataclass(frozen=True)
class InstanceRole:
    name: str
    arn: str
    role_id: str


@dataclasses.dataclass(frozen=True)
class InstanceCall:
    """One IAM action one simulated instance's request needed, and IAM's verdict on it."""

    instance_id: str
    action: str
    resource: str
    verdict: Verdict
    assumed_role: str = ""  # the role whose session signed it; "" for the instance role's own credentials

    def __str__(self) -> str:
        decided = f" by {self.verdict.statement}" if self.verdict.statement else ""
        who = f" as {self.assumed_role}" if self.assumed_role else ""
        return f"{self.instance_id}{who}: {self.action} on {self.resource}: {self.verdict.decision.value}{decided}"


@dataclasses.dataclass(frozen=True)
class _Identity:
    instance_id: str
    role: InstanceRole
    region: str
    account: str
    session: str = ""  # an assumed role's session name; "" for the instance profile's credentials

    @property
    def context(self) -> dict[str, str]:
        """The condition keys AWS sets for this identity's requests."""
        keys = {
            "aws:PrincipalArn": self.role.arn,
            "aws:PrincipalAccount": self.account,
            "aws:SecureTransport": "true",
            "aws:userid": f"{self.role.role_id}:{self.session or self.instance_id}",
        }
        if not self.session:  # set for an instance profile's credentials only
            keys["ec2:SourceInstanceARN"] = f"arn:aws:ec2:{self.region}:{self.account}:instance/{self.instance_id}"
        return keys


class InstanceIam:
    """Credentials per simulated instance, and the authorization of every request made with them."""

    def __init__(self) -> None:
        self._by_key: dict[str, _Identity] = {}
        self._lock = threading.Lock()
        self._clients: Callable[[str], Any] | None = None
        self._identity_policies: dict[str, list[dict]] = {}
        self.calls: list[InstanceCall] = []

    def connect(self, client: Callable[[str], Any]) -> None:
        """Where to read the deployed policies: a client factory on the emulator (account credentials)."""
        self._clients = client

    def issue(self, instance_id: str, described: dict, region: str, account: str) -> tuple[InstanceRole, dict]:
        """The instance's role (through its launch template's instance profile) and fresh credentials for it."""
        role = self._role_of(described)
        return role, self._credentials_for(_Identity(instance_id, role, region, account))

    def _credentials_for(self, identity: _Identity) -> dict:
        credentials = {
            # Shaped as STS's session credentials: assembled here, never a literal key in the source.
            "AccessKeyId": "ASIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
            "SecretAccessKey": secrets.token_urlsafe(30),
            "Token": secrets.token_urlsafe(48),
        }
        with self._lock:
            self._by_key[credentials["AccessKeyId"]] = identity
        return credentials

    def denied(self) -> list[InstanceCall]:
        return [call for call in list(self.calls) if not call.verdict.allowed]

    # --- the request path ------------------------------------------------------------------------

    def wsgi(self, app: WsgiApp) -> WsgiApp:
        """moto's WSGI app behind the instances' authorization."""

        def authorized(environ: dict, start_response: Callable) -> Iterable[bytes]:
            found = _SIGNATURE.search(environ.get("HTTP_AUTHORIZATION", ""))
            identity = self._by_key.get(found.group(1)) if found else None
            if found is None or identity is None:
                return app(environ, start_response)  # the account's own callers: Lambdas, CLI, emulator
            service = found.group(3)
            environ.update({"spottrain.region": identity.region, "spottrain.account": identity.account})
            if service == "sts" and _form(environ).get("Action") == ["AssumeRole"]:
                return self._assume_role(identity, _form(environ), start_response)
            calls = [
                self._decide(identity, action, resource, service)
                for action, resource in request_actions(environ, service)
            ]
            self.calls.extend(calls)
            refused = next((call for call in calls if not call.verdict.allowed), None)
            if refused is None:
                return app(environ, start_response)
            return _access_denied(environ, start_response, service, refused)

        return authorized

    def _decide(self, identity: _Identity, action: str, resource: str, service: str) -> InstanceCall:
        if action == "secretsmanager:GetSecretValue":
            resource = self._secret_arn(resource)
        request = Request(action, resource, identity.role.arn, identity.context)
        resource_policies = self._bucket_policies(resource) if service == "s3" else []
        if not identity.session:
            verdict = evaluate(request, self._identity_policies_of(identity.role), resource_policies)
            return InstanceCall(identity.instance_id, action, resource, verdict)
        policies, boundary = self._assumed_role_policies(identity.role.name)
        verdict = _within_boundary(request, evaluate(request, policies, resource_policies), boundary)
        return InstanceCall(identity.instance_id, action, resource, verdict, identity.role.name)

    # --- sts:AssumeRole ----------------------------------------------------------------------------

    def _assume_role(self, caller: _Identity, form: dict[str, list[str]], start_response: Callable) -> list[bytes]:
        role_arn, session = form.get("RoleArn", [""])[0], form.get("RoleSessionName", ["session"])[0]
        target, verdict = self._assume_verdict(caller, role_arn)
        self.calls.append(
            InstanceCall(
                caller.instance_id, "sts:AssumeRole", role_arn, verdict, caller.role.name if caller.session else ""
            )
        )
        if target is None or not verdict.allowed:
            who = f"{caller.role.arn} ({caller.context['aws:userid']})"
            message = f"User: {who} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
            return _sts_error(start_response, "AccessDenied", message)
        assumed = _Identity(caller.instance_id, target, caller.region, caller.account, session=session)
        return _assume_role_answer(start_response, assumed, self._credentials_for(assumed))

    def _assume_verdict(self, caller: _Identity, role_arn: str) -> tuple[InstanceRole | None, Verdict]:
        """The target role (None when there is none) and IAM's verdict: the caller's identity AND the trust."""
        request = Request("sts:AssumeRole", role_arn, caller.role.arn, caller.context)
        identity = self._decide(caller, "sts:AssumeRole", role_arn, "sts").verdict
        try:
            role = self._client("iam").get_role(RoleName=role_arn.rsplit("/", 1)[-1])["Role"]
        except ClientError as error:
            if error.response["Error"]["Code"] != "NoSuchEntity":
                raise
            return None, Verdict(Decision.IMPLICIT_DENY, "no such role")
        trust = evaluate(request, [], [_document(role["AssumeRolePolicyDocument"])])
        target = InstanceRole(role["RoleName"], role["Arn"], role["RoleId"])
        if not identity.allowed:
            return target, identity
        if not trust.allowed:
            return target, Verdict(trust.decision, trust.statement or "the role's trust policy")
        return target, Verdict(Decision.ALLOWED, f"{identity.statement} and trust {trust.statement}")

    # --- the deployed policies -------------------------------------------------------------------

    def _client(self, service: str) -> Any:
        if self._clients is None:
            raise RuntimeError("InstanceIam.connect() was not called: no way to read the deployed policies")
        return self._clients(service)

    def _role_of(self, described: dict) -> InstanceRole:
        tags = {tag["Key"]: tag["Value"] for tag in described.get("Tags", [])}
        template_id = tags.get("aws:ec2launchtemplate:id")
        if not template_id:
            raise ValueError(
                f"instance {described['InstanceId']} was not launched from a launch template: "
                "the emulator finds an instance's role through its template's instance profile"
            )
        version = self._client("ec2").describe_launch_template_versions(
            LaunchTemplateId=template_id, Versions=[tags.get("aws:ec2launchtemplate:version", "$Latest")]
        )["LaunchTemplateVersions"][0]
        profile = version["LaunchTemplateData"].get("IamInstanceProfile") or {}
        name = profile.get("Name") or profile.get("Arn", "").rsplit("/", 1)[-1]
        if not name:
            raise ValueError(f"launch template {template_id} names no instance profile: its instances have no role")
        roles = self._client("iam").get_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Roles"]
        return InstanceRole(roles[0]["RoleName"], roles[0]["Arn"], roles[0]["RoleId"])

    def _identity_policies_of(self, role: InstanceRole) -> list[dict]:
        # Read once per role: the stack's policies do not change while the emulator runs.
        if role.name not in self._identity_policies:
            iam = self._client("iam")
            inline = [
                _document(iam.get_role_policy(RoleName=role.name, PolicyName=name)["PolicyDocument"])
                for name in iam.list_role_policies(RoleName=role.name)["PolicyNames"]
            ]
            attached = [
                _managed_document(iam, policy["PolicyArn"])
                for policy in iam.list_attached_role_policies(RoleName=role.name)["AttachedPolicies"]
            ]
            self._identity_policies[role.name] = inline + attached
        return self._identity_policies[role.name]

    def _assumed_role_policies(self, role_name: str) -> tuple[list[dict], dict | None]:
        """(identity policies, permissions boundary) of a role, read at each request: job roles come and go."""
        iam = self._client("iam")
        try:
            role = iam.get_role(RoleName=role_name)["Role"]
            inline = [
                _document(iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"])
                for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]
            ]
            attached = [
                _managed_document(iam, policy["PolicyArn"])
                for policy in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
            ]
        except ClientError as error:
            if error.response["Error"]["Code"] == "NoSuchEntity":
                return [], None  # a deleted role's sessions are allowed nothing
            raise
        boundary = (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
        return inline + attached, _managed_document(iam, boundary) if boundary else None

    def _secret_arn(self, resource: str) -> str:
        """A secret named by name is authorized as its full ARN, random suffix included, as AWS does."""
        try:
            return self._client("secretsmanager").describe_secret(SecretId=resource)["ARN"]
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                return resource  # no secret: no suffix to match
            raise

    def _bucket_policies(self, resource: str) -> list[dict]:
        # Read at each request: RequestSpotInstance changes the policy with every attempt.
        bucket = resource.split(":::", 1)[-1].split("/", 1)[0]
        if not bucket or bucket == "*":
            return []
        try:
            return [json.loads(self._client("s3").get_bucket_policy(Bucket=bucket)["Policy"])]
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchBucketPolicy", "NoSuchBucket"):
                return []
            raise


def _within_boundary(request: Request, verdict: Verdict, boundary: dict | None) -> Verdict:
    """A role's permissions boundary caps what its identity policies allow: both must allow."""
    if boundary is None or not verdict.allowed:
        return verdict
    capped = evaluate(request, [boundary])
    return verdict if capped.allowed else Verdict(capped.decision, capped.statement or "permissions boundary")


def _sts_error(start_response: Callable, code: str, message: str) -> list[bytes]:
    """STS's query protocol error (botocore reads Code and Message from it)."""
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{escape(message)}</Message></Error><RequestId>spottrain</RequestId>"
        "</ErrorResponse>"
    ).encode()
    start_response("403 Forbidden", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


def _assume_role_answer(start_response: Callable, assumed: _Identity, credentials: dict) -> list[bytes]:
    """STS's AssumeRole answer (https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html)."""
    expiration = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    session_arn = f"arn:aws:sts::{assumed.account}:assumed-role/{assumed.role.name}/{assumed.session}"
    body = (
        '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials>'
        f"<AccessKeyId>{credentials['AccessKeyId']}</AccessKeyId>"
        f"<SecretAccessKey>{escape(credentials['SecretAccessKey'])}</SecretAccessKey>"
        f"<SessionToken>{escape(credentials['Token'])}</SessionToken><Expiration>{expiration}</Expiration>"
        f"</Credentials><AssumedRoleUser><AssumedRoleId>{assumed.role.role_id}:{escape(assumed.session)}"
        f"</AssumedRoleId><Arn>{escape(session_arn)}</Arn></AssumedRoleUser></AssumeRoleResult>"
        "<ResponseMetadata><RequestId>spottrain</RequestId></ResponseMetadata></AssumeRoleResponse>"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


def _document(document: Any) -> dict:
    return json.loads(urllib.parse.unquote(document)) if isinstance(document, str) else document


def _managed_document(iam: Any, arn: str) -> dict:
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    return _document(iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"])


# --- which IAM actions a request needs --------------------------------------------------------------

# Bucket subresources (the query's first key) and their actions (IAM service authorization reference for S3).
_BUCKET_READS = {
    "location": "s3:GetBucketLocation",
    "policy": "s3:GetBucketPolicy",
    "tagging": "s3:GetBucketTagging",
    "uploads": "s3:ListBucketMultipartUploads",
    "versions": "s3:ListBucketVersions",
    "encryption": "s3:GetEncryptionConfiguration",
    "acl": "s3:GetBucketAcl",
}
_OBJECT_READS = {"tagging": "s3:GetObjectTagging", "acl": "s3:GetObjectAcl", "uploadId": "s3:ListMultipartUploadParts"}
_OBJECT_WRITES = {"tagging": "s3:PutObjectTagging", "acl": "s3:PutObjectAcl"}


def request_actions(environ: dict, service: str) -> list[tuple[str, str]]:
    """(IAM action, resource ARN) pairs one HTTP request needs; every one must be allowed."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if service == "s3":
        return s3_actions(environ)
    if target:  # the JSON protocols: "AWSStepFunctions.SendTaskHeartbeat", "AmazonSSM.GetParameter"
        operation = target.rsplit(".", 1)[-1]
        return [(f"{service}:{operation}", _json_resource(environ, service, operation))]
    operation = _form(environ).get("Action", ["Unknown"])[0]  # the query protocols (STS, ...)
    if (service, operation) == ("sts", "GetCallerIdentity"):
        return []  # needs no permission
    return [(f"{service}:{operation}", "*")]


def _json_resource(environ: dict, service: str, operation: str) -> str:
    """The ARN IAM checks for the secret reads the agent makes; "*" for actions without resource level."""
    region_account = (
        f"{environ.get('spottrain.region', 'us-east-1')}:{environ.get('spottrain.account', '123456789012')}"
    )
    if (service, operation) == ("ssm", "GetParameter"):
        name = json.loads(_body(environ) or b"{}").get("Name", "")
        return f"arn:aws:ssm:{region_account}:parameter{name if name.startswith('/') else '/' + name}"
    if (service, operation) == ("secretsmanager", "GetSecretValue"):
        secret = json.loads(_body(environ) or b"{}").get("SecretId", "")
        return secret if secret.startswith("arn:") else f"arn:aws:secretsmanager:{region_account}:secret:{secret}"
    return "*"


def s3_actions(environ: dict) -> list[tuple[str, str]]:
    """S3's REST API, path-style (as botocore addresses a loopback endpoint)."""
    method = environ["REQUEST_METHOD"]
    bucket, _, key = environ.get("PATH_INFO", "/").lstrip("/").partition("/")
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if not bucket:
        return [("s3:ListAllMyBuckets", "*")]
    bucket_arn = f"arn:aws:s3:::{bucket}"
    if not key:
        return _bucket_actions(environ, method, query, bucket_arn)
    object_arn = f"{bucket_arn}/{key}"
    if method in ("GET", "HEAD"):
        return [(next((a for q, a in _OBJECT_READS.items() if q in query), "s3:GetObject"), object_arn)]
    if method == "DELETE":
        return [("s3:AbortMultipartUpload" if "uploadId" in query else "s3:DeleteObject", object_arn)]
    copied = environ.get("HTTP_X_AMZ_COPY_SOURCE")
    source = [("s3:GetObject", "arn:aws:s3:::" + urllib.parse.unquote(copied).lstrip("/"))] if copied else []
    # PUT and POST: PutObject, a multipart upload's steps, CopyObject's write
    return source + [(next((a for q, a in _OBJECT_WRITES.items() if q in query), "s3:PutObject"), object_arn)]


def _bucket_actions(environ: dict, method: str, query: dict, bucket_arn: str) -> list[tuple[str, str]]:
    if method in ("GET", "HEAD"):
        return [(next((a for q, a in _BUCKET_READS.items() if q in query), "s3:ListBucket"), bucket_arn)]
    if method == "POST" and "delete" in query:  # DeleteObjects: s3:DeleteObject on every key it names
        return [("s3:DeleteObject", f"{bucket_arn}/{key}") for key in _deleted_keys(environ)]
    return [(f"s3:{method.title()}Bucket{''.join(q.title() for q in query)}", bucket_arn)]


def _body(environ: dict) -> bytes:
    """Read the request body and put it back for moto."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _deleted_keys(environ: dict) -> list[str]:
    root = ElementTree.fromstring(_body(environ))
    return [element.text or "" for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Key"]


def _form(environ: dict) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(_body(environ).decode(errors="replace"))


def _access_denied(environ: dict, start_response: Callable, service: str, call: InstanceCall) -> list[bytes]:
    """The error the service itself sends a denied caller, in its protocol's form, so the SDK raises a
    ClientError with the code: S3 and query services `AccessDenied`, EC2 `UnauthorizedOperation`
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html), JSON services
    `AccessDeniedException`."""
    message = f"{call.action} on {call.resource} {call.verdict.decision.value} ({call.verdict.statement or 'no Allow'})"
    text = escape(message)
    if service == "s3":
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>{text}</Message></Error>'
        ).encode()
        content_type, status = "application/xml", "403 Forbidden"
    elif environ.get("HTTP_X_AMZ_TARGET") or service == "lambda":  # the JSON protocols (Lambda's REST JSON too)
        body = json.dumps({"__type": "AccessDeniedException", "message": message}).encode()
        content_type, status = "application/x-amz-json-1.0", "400 Bad Request"
        if service == "lambda":  # botocore reads a REST JSON error's code from this header
            start_response(
                "403 Forbidden", [("Content-Type", content_type), ("x-amzn-ErrorType", "AccessDeniedException")]
            )
            return [body]
    elif service == "ec2":  # EC2's query protocol: <Response><Errors><Error>, code UnauthorizedOperation
        body = (
            "<Response><Errors><Error><Code>UnauthorizedOperation</Code>"
            f"<Message>{text}</Message></Error></Errors><RequestID>spottrain</RequestID></Response>"
        ).encode()
        content_type, status = "text/xml", "403 Forbidden"
    else:  # the other query protocols (IAM, ...): <ErrorResponse><Error>
        return _sts_error(start_response, "AccessDenied", message)
    if environ["REQUEST_METHOD"] == "HEAD":
        body = b""
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]
