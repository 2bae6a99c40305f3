"""The instances' IAM in the emulator: which actions a request needs, and a denied request never reaching moto."""

from __future__ import annotations

import io
import json
import urllib.parse
import xml.etree.ElementTree as ElementTree

import boto3
import pytest
from moto import mock_aws

from jobstate_support import make_settings
from spottrain.functions.shared import secrets_role

from spottrain.local.instance_iam import InstanceIam, InstanceRole, request_actions, s3_actions

BUCKET_ARN = "arn:aws:s3:::spottrain-123456789012-demo"
ROLE = InstanceRole("InstanceRole", "arn:aws:iam::123456789012:role/InstanceRole", "AROA" + "EXAMPLEINSTANCE1")


def environ(method: str, path: str, query: str = "", body: bytes = b"", **headers: str) -> dict:
    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    env.update({f"HTTP_{name.upper()}": value for name, value in headers.items()})
    return env


@pytest.mark.parametrize(
    "method,path,query,expected",
    [
        ("GET", "/spottrain-123456789012-demo/job.json", "", ("s3:GetObject", f"{BUCKET_ARN}/job.json")),
        ("HEAD", "/spottrain-123456789012-demo/output/a b.npz", "", ("s3:GetObject", f"{BUCKET_ARN}/output/a b.npz")),
        (
            "PUT",
            "/spottrain-123456789012-demo/logs/attempt-1/agent.log",
            "",
            ("s3:PutObject", f"{BUCKET_ARN}/logs/attempt-1/agent.log"),
        ),
        ("PUT", "/spottrain-123456789012-demo/big", "partNumber=2&uploadId=u", ("s3:PutObject", f"{BUCKET_ARN}/big")),
        ("POST", "/spottrain-123456789012-demo/big", "uploads", ("s3:PutObject", f"{BUCKET_ARN}/big")),
        ("DELETE", "/spottrain-123456789012-demo/big", "uploadId=u", ("s3:AbortMultipartUpload", f"{BUCKET_ARN}/big")),
        (
            "DELETE",
            "/spottrain-123456789012-demo/checkpoints/x",
            "",
            ("s3:DeleteObject", f"{BUCKET_ARN}/checkpoints/x"),
        ),
        ("GET", "/spottrain-123456789012-demo", "list-type=2&prefix=checkpoints%2F", ("s3:ListBucket", BUCKET_ARN)),
        ("GET", "/spottrain-123456789012-demo", "location", ("s3:GetBucketLocation", BUCKET_ARN)),
        ("PUT", "/spottrain-123456789012-demo", "policy", ("s3:PutBucketPolicy", BUCKET_ARN)),
    ],
)
def test_given_an_s3_request_then_it_needs_the_action_iam_documents_for_it(method, path, query, expected):
    assert s3_actions(environ(method, path, query)) == [expected]


def test_given_delete_objects_then_each_named_key_needs_delete_object_and_moto_still_reads_the_body():
    body = (
        b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>checkpoints/a</Key></Object>'
        b"<Object><Key>checkpoints/b</Key></Object></Delete>"
    )
    request = environ("POST", "/spottrain-123456789012-demo", "delete", body)

    assert s3_actions(request) == [
        ("s3:DeleteObject", f"{BUCKET_ARN}/checkpoints/a"),
        ("s3:DeleteObject", f"{BUCKET_ARN}/checkpoints/b"),
    ]
    assert request["wsgi.input"].read() == body


def test_given_a_copy_then_it_reads_the_source_and_writes_the_target():
    request = environ("PUT", "/spottrain-123456789012-demo/output/b", x_amz_copy_source="/other-bucket/a%20b")

    assert s3_actions(request) == [
        ("s3:GetObject", "arn:aws:s3:::other-bucket/a b"),
        ("s3:PutObject", f"{BUCKET_ARN}/output/b"),
    ]


def test_given_a_json_protocol_call_then_its_target_names_the_action():
    request = environ("POST", "/", x_amz_target="AWSStepFunctions.SendTaskHeartbeat")

    assert request_actions(request, "states") == [("states:SendTaskHeartbeat", "*")]


class _Iam(InstanceIam):
    """The authorizer with fixed policies, as the deployed ones would be read back from moto."""

    def __init__(self, identity: list[dict], bucket: list[dict]):
        super().__init__()
        self._identity_policies[ROLE.name] = identity
        self._bucket = bucket
        self._role_of = lambda described: ROLE

    def _bucket_policies(self, resource: str) -> list[dict]:
        return self._bucket


def _signed(key: str, method: str, path: str, service: str = "s3") -> dict:
    return environ(
        method,
        path,
        authorization=f"AWS4-HMAC-SHA256 Credential={key}/20261130/us-east-1/{service}/aws4_request, "
        "SignedHeaders=host, Signature=0",
    )


def test_given_an_instance_key_when_its_request_is_denied_then_moto_never_sees_it_and_the_verdict_is_recorded():
    # Given an instance whose role may read every job bucket, and a bucket denying writes to job.json
    identity = [{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::spottrain-*"}]}]
    deny = [
        {
            "Statement": [
                {
                    "Sid": "NoJobJson",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:PutObject",
                    "Resource": f"{BUCKET_ARN}/job.json",
                    "Condition": {"ArnEquals": {"aws:PrincipalArn": ROLE.arn}},
                }
            ]
        }
    ]
    iam = _Iam(identity, deny)
    _, credentials = iam.issue("i-0aaa", {}, "us-east-1", "123456789012")
    reached = []
    app = iam.wsgi(lambda env, start: reached.append(env["PATH_INFO"]) or [b"moto"])
    statuses = []

    # When it writes job.json, then reads it, and the account itself (no instance key) writes it
    denied = app(
        _signed(credentials["AccessKeyId"], "PUT", "/spottrain-123456789012-demo/job.json"),
        lambda status, headers: statuses.append(status),
    )
    app(_signed(credentials["AccessKeyId"], "GET", "/spottrain-123456789012-demo/job.json"), lambda *a: None)
    app(_signed("ACCOUNTKEY", "PUT", "/spottrain-123456789012-demo/job.json"), lambda *a: None)

    # Then the write got S3's AccessDenied without reaching moto; the read and the account's write reached it
    assert statuses == ["403 Forbidden"] and b"<Code>AccessDenied</Code>" in b"".join(denied)
    assert reached == ["/spottrain-123456789012-demo/job.json"] * 2
    assert [(c.action, c.verdict.statement, c.verdict.allowed) for c in iam.calls] == [
        ("s3:PutObject", "NoJobJson", False),
        ("s3:GetObject", "statement 0", True),
    ]
    assert [str(c) for c in iam.denied()] == [
        f"i-0aaa: s3:PutObject on {BUCKET_ARN}/job.json: explicitly denied by NoJobJson"
    ]


def test_given_two_instances_then_each_gets_credentials_of_its_own():
    iam = _Iam([], [])
    first = iam.issue("i-0aaa", {}, "us-east-1", "123456789012")[1]
    second = iam.issue("i-0bbb", {}, "us-east-1", "123456789012")[1]

    assert first["AccessKeyId"] != second["AccessKeyId"] and first["AccessKeyId"].startswith("ASIA")
    assert json.dumps(first) != json.dumps(second)


def test_given_secret_reads_then_they_need_the_named_parameter_or_secret():
    ssm = environ(
        "POST",
        "/",
        body=b'{"Name": "/spottrain/hf-token", "WithDecryption": true}',
        x_amz_target="AmazonSSM.GetParameter",
    )
    manager = environ(
        "POST", "/", body=b'{"SecretId": "/spottrain/wandb"}', x_amz_target="secretsmanager.GetSecretValue"
    )

    assert request_actions(ssm, "ssm") == [
        ("ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/spottrain/hf-token")
    ]
    assert request_actions(manager, "secretsmanager") == [
        ("secretsmanager:GetSecretValue", "arn:aws:secretsmanager:us-east-1:123456789012:secret:/spottrain/wandb")
    ]
    assert ssm["wsgi.input"].read().startswith(b'{"Name"')  # moto still reads the body


# --- a job's secrets role, assumed by an instance ------------------------------------------------------------

ACCOUNT = "123456789012"
SECRETS_SETTINGS = dict(instance_role_arn=ROLE.arn, instance_role_id=ROLE.role_id)
ASSUME_ANY_JOB_ROLE = {
    "Statement": [
        {"Sid": "AssumeJobSecretsRoles", "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"},
    ]
}


@pytest.fixture
def moto_iam(monkeypatch):
    """A job's secrets role in moto, reading /spottrain/a-token, under a boundary allowing /spottrain/* reads."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        iam = boto3.client("iam")
        boundary = iam.create_policy(
            PolicyName="SecretsBoundary",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "ssm:GetParameter",
                            "Resource": f"arn:aws:ssm:*:{ACCOUNT}:parameter/spottrain/*",
                        }
                    ],
                }
            ),
        )["Policy"]["Arn"]
        settings = make_settings(**SECRETS_SETTINGS, secrets_boundary_arn=boundary)
        job = {"exec_name": "job-a", "secrets": {"TOKEN": "/spottrain/a-token"}}
        arn = secrets_role.create_job_role(iam, settings, "us-east-1", job, "run-1")
        # A statement past the boundary, as a tampered role policy would have: the boundary must still cap it
        iam.put_role_policy(
            RoleName=arn.rsplit("/", 1)[-1],
            PolicyName="Extra",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
            ),
        )
        yield iam, settings, arn


def _assume(app, key: str, role_arn: str) -> tuple[str, bytes]:
    body = urllib.parse.urlencode(
        {"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": role_arn, "RoleSessionName": "spottrain-i"}
    ).encode()
    request = environ("POST", "/", body=body, authorization=_authorization(key, "sts"))
    statuses: list[str] = []
    answer = b"".join(app(request, lambda status, headers: statuses.append(status)))
    return statuses[0], answer


def _authorization(key: str, service: str) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential={key}/20261130/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    )


def _session_key(answer: bytes) -> str:
    return next(e.text for e in ElementTree.fromstring(answer).iter() if e.tag.endswith("AccessKeyId")) or ""


def _get_parameter(app, key: str, name: str) -> str:
    body = json.dumps({"Name": name, "WithDecryption": True}).encode()
    request = environ(
        "POST", "/", body=body, x_amz_target="AmazonSSM.GetParameter", authorization=_authorization(key, "ssm")
    )
    statuses: list[str] = []
    app(request, lambda status, headers: statuses.append(status))
    return statuses[0]


def _connected(identity: list[dict]) -> InstanceIam:
    iam = _Iam(identity, [])
    iam.connect(lambda service: boto3.client(service, region_name="us-east-1"))
    return iam


def test_given_a_secrets_role_admitting_instance_a_then_only_a_assumes_it_and_its_session_reads_only_the_jobs_secret(
    moto_iam,
):
    # Given job A's secrets role, admitting instance A; instance B is another job's
    client, settings, role_arn = moto_iam
    secrets_role.admit_instance(client, settings, role_arn, "i-0aaa")
    iam = _connected([ASSUME_ANY_JOB_ROLE])
    key_a = iam.issue("i-0aaa", {}, "us-east-1", ACCOUNT)[1]["AccessKeyId"]
    key_b = iam.issue("i-0bbb", {}, "us-east-1", ACCOUNT)[1]["AccessKeyId"]
    app = iam.wsgi(lambda env, start: start("200 OK", []) or [b"moto"])

    # When B, then A, assume it
    denied_status, denied = _assume(app, key_b, role_arn)
    status, answer = _assume(app, key_a, role_arn)

    # Then B gets STS's AccessDenied, A gets credentials of the role's own session
    assert denied_status == "403 Forbidden" and b"<Code>AccessDenied</Code>" in denied
    assert status == "200 OK" and b"assumed-role/" in answer
    session = _session_key(answer)
    # And that session reads the job's secret, not another name under the prefix, nor what the boundary caps
    assert _get_parameter(app, session, "/spottrain/a-token") == "200 OK"
    assert _get_parameter(app, session, "/spottrain/b-token") == "400 Bad Request"
    app(_signed(session, "PUT", "/spottrain-123456789012-demo/job.json"), lambda status, headers: None)
    calls = [(c.instance_id, c.action, c.verdict.allowed, c.assumed_role) for c in iam.calls]
    role_name = role_arn.rsplit("/", 1)[-1]
    assert calls == [
        ("i-0bbb", "sts:AssumeRole", False, ""),
        ("i-0aaa", "sts:AssumeRole", True, ""),
        ("i-0aaa", "ssm:GetParameter", True, role_name),
        ("i-0aaa", "ssm:GetParameter", False, role_name),
        ("i-0aaa", "s3:PutObject", False, role_name),
    ]
    assert iam.calls[-1].verdict.statement == "permissions boundary"


def test_given_an_instance_role_without_sts_assume_role_then_even_the_admitted_instance_is_refused(moto_iam):
    client, settings, role_arn = moto_iam
    secrets_role.admit_instance(client, settings, role_arn, "i-0aaa")
    iam = _connected([])
    key = iam.issue("i-0aaa", {}, "us-east-1", ACCOUNT)[1]["AccessKeyId"]

    status, _ = _assume(iam.wsgi(lambda env, start: [b"moto"]), key, role_arn)

    assert status == "403 Forbidden" and iam.calls[0].verdict.decision.value == "implicitly denied"


def test_given_a_deleted_secrets_role_then_its_sessions_are_allowed_nothing(moto_iam):
    client, settings, role_arn = moto_iam
    secrets_role.admit_instance(client, settings, role_arn, "i-0aaa")
    iam = _connected([ASSUME_ANY_JOB_ROLE])
    app = iam.wsgi(lambda env, start: start("200 OK", []) or [b"moto"])
    session = _session_key(_assume(app, iam.issue("i-0aaa", {}, "us-east-1", ACCOUNT)[1]["AccessKeyId"], role_arn)[1])

    secrets_role.delete_job_role(client, role_arn.rsplit("/", 1)[-1])

    assert _get_parameter(app, session, "/spottrain/a-token") == "400 Bad Request"


@pytest.mark.parametrize(
    "service, body, code",
    [
        ("iam", b"Action=UpdateAssumeRolePolicy&RoleName=r", b"<Code>AccessDenied</Code>"),
        ("ec2", b"Action=TerminateInstances&InstanceId.1=i-0bbb", b"<Code>UnauthorizedOperation</Code>"),
    ],
)
def test_given_a_denied_query_protocol_call_then_the_error_is_the_xml_botocore_reads(service, body, code):
    # Given an instance whose role allows nothing in IAM or EC2
    iam = _Iam([{"Statement": []}], [])
    _, credentials = iam.issue("i-0aaa", {}, "us-east-1", "123456789012")
    app = iam.wsgi(lambda env, start: [b"moto"])
    request = _signed(credentials["AccessKeyId"], "POST", "/", service=service)
    request.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
    request["CONTENT_TYPE"] = "application/x-www-form-urlencoded"

    # When it calls the query protocol API
    answer = b"".join(app(request, lambda status, headers: None))

    # Then the refusal is XML with the code botocore reports (JSON made botocore fail to parse it)
    assert code in answer
    ElementTree.fromstring(answer)


@pytest.mark.parametrize(
    "service,operation,code",
    [
        ("iam", "ListRoles", "AccessDenied"),
        ("sns", "Publish", "AccessDenied"),
        ("cloudformation", "DescribeStacks", "AccessDenied"),
        ("ec2", "DescribeInstances", "UnauthorizedOperation"),
        ("ssm", "GetParameter", "AccessDeniedException"),
        ("s3", "GetObject", "AccessDenied"),
    ],
)
def test_given_a_denied_instance_request_then_the_sdk_reads_the_services_own_access_denied_error(
    service, operation, code
):
    # Given a request of the instance to a service, which IAM denies
    from botocore.parsers import create_parser
    from botocore.session import get_session

    from spottrain.local.instance_iam import InstanceCall, _access_denied
    from spottrain.local.policy_eval import Decision, Verdict

    call = InstanceCall("i-0aaa", f"{service}:{operation}", "*", Verdict(Decision.IMPLICIT_DENY, ""))
    model = get_session().get_service_model(service)
    request = environ("POST", "/")
    if model.metadata["protocol"] == "json":  # the JSON protocol names its operation in a header
        request["HTTP_X_AMZ_TARGET"] = f"{model.metadata['targetPrefix']}.{operation}"
    answered: list = []

    # When the emulator answers it
    body = b"".join(_access_denied(request, lambda status, headers: answered.extend([status, headers]), service, call))

    # Then the SDK parses the error the service itself would send (a query or EC2 service answers XML, not JSON)
    response = {"status_code": int(answered[0][:3]), "headers": dict(answered[1]), "body": body}
    parsed = create_parser(model.metadata["protocol"]).parse(response, model.operation_model(operation).output_shape)
    assert parsed["Error"]["Code"] == code, parsed
    assert f"{service}:{operation}" in parsed["Error"]["Message"]
