"""Red team: root on job A's instance, with A's instance role credentials, goes after job B and the stack.

Two jobs train at once; B names a secret. A's instance tries, with its own credentials and with its own secrets
role's: B's bucket and secret, B's secrets role, B's instance and execution, escalation through IAM, EC2, Lambda
and Step Functions, rewriting its own workflow records and bucket policy, and planting objects in a third job's
bucket in the moment between CreateBucket making it and writing its policy. Every step must be refused, and the
third job's bucket must hold nothing it did not write.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import threading

import pytest
from botocore.exceptions import ClientError

from e2e_support import instance_session, outcome, wait_until
from spottrain.contract import layout, markers
from spottrain.contract.secrets import SECRETS_ROLE_FIELD
from spottrain.local import Emulator
from spottrain.secret_store import put_secret
from test_emulator_scenarios import agent_pid

PLANTED = layout.CHECKPOINTS_PREFIX + "planted.npz"  # restored into the job's checkpoint_dir before a retry


def _job_document(emulator, exec_name: str) -> dict:
    body = emulator.client("s3").get_object(Bucket=emulator.stack.job_bucket(exec_name), Key=layout.JOB_KEY)["Body"]
    return json.loads(body.read())


def _instance_of(emulator, exec_name: str) -> str:
    bucket = emulator.stack.job_bucket(exec_name)
    for reservation in emulator.client("ec2").describe_instances()["Reservations"]:
        for instance in reservation["Instances"]:
            tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
            if instance["State"]["Name"] == "running" and tags.get(layout.TAG_JOB) == exec_name:
                return instance["InstanceId"]
    raise AssertionError(f"no running instance for {exec_name} ({bucket})")


def _plant_until(s3, bucket: str, stop: threading.Event, landed: list[str]) -> None:
    """Keep writing into `bucket` (which does not exist yet) until `stop`: what a waiting attacker would do."""
    while not stop.is_set():
        try:
            s3.put_object(Bucket=bucket, Key=PLANTED, Body=b"attacker's checkpoint")
            landed.append(PLANTED)
        except ClientError:
            pass


@pytest.mark.timeout(420)
def test_given_two_training_jobs_when_a_s_instance_attacks_then_every_step_is_refused(
    emulator_workdir, slow_job, record_property
):
    with Emulator(emulator_workdir) as emulator:
        # Given two training jobs, A and B; B names a secret
        ssm = emulator.client("ssm")
        secret_name, value = "/spottrain/e2e/redteam-b", "b-" + secrets.token_urlsafe(16)
        put_secret(ssm, secret_name, value)
        specs = {
            "red-a": {**slow_job, "exec_name": "red-a", "secrets": {"OWN": "/spottrain/e2e/redteam-a"}},
            "red-b": {**slow_job, "exec_name": "red-b", "secrets": {"JOB_SECRET": secret_name}},
        }
        put_secret(ssm, "/spottrain/e2e/redteam-a", "a-" + secrets.token_urlsafe(16))
        runs = {name: emulator.start_job(spec) for name, spec in specs.items()}
        ids = {name: wait_until(lambda: _try_instance(emulator, name), 150, f"{name} running") for name in specs}
        wait_until(
            lambda: emulator.client("s3")
            .list_objects_v2(Bucket=emulator.stack.job_bucket("red-b"), Prefix=layout.LOGS_PREFIX)
            .get("KeyCount"),
            150,
            "B training",
        )
        b_doc, a_doc = _job_document(emulator, "red-b"), _job_document(emulator, "red-a")
        own_bucket, b_bucket = emulator.stack.job_bucket("red-a"), emulator.stack.job_bucket("red-b")

        # When A's instance attacks, with its instance role
        attacker = instance_session(emulator, ids["red-a"])

        def client(service: str, credentials: dict | None = None):
            keys = (
                {
                    "aws_access_key_id": credentials["AccessKeyId"],
                    "aws_secret_access_key": credentials["SecretAccessKey"],
                    "aws_session_token": credentials["SessionToken"],
                }
                if credentials
                else {}
            )
            return attacker.client(service, endpoint_url=emulator.endpoint, **keys)

        s3, iam, ec2 = client("s3"), client("iam"), client("ec2")
        sfn, lam = client("stepfunctions"), client("lambda")
        own_role = client("sts").assume_role(RoleArn=a_doc[SECRETS_ROLE_FIELD], RoleSessionName="attack")["Credentials"]
        as_own_role = {service: client(service, own_role) for service in ("ssm", "iam", "sts", "s3")}
        trust_any = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
            }
        )
        open_policy = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": f"arn:aws:s3:::{b_bucket}/*"}
                ],
            }
        )
        attack = {
            "read B's job.json": outcome(lambda: s3.get_object(Bucket=b_bucket, Key=layout.JOB_KEY)),
            "read B's task token": outcome(lambda: s3.get_object(Bucket=b_bucket, Key=layout.task_token_key(1))),
            "plant B's checkpoint": outcome(lambda: s3.put_object(Bucket=b_bucket, Key=PLANTED, Body=b"x")),
            "rewrite B's bucket policy": outcome(lambda: s3.put_bucket_policy(Bucket=b_bucket, Policy=open_policy)),
            "delete own bucket policy": outcome(lambda: s3.delete_bucket_policy(Bucket=own_bucket)),
            "rewrite own budget": outcome(
                lambda: s3.put_object(Bucket=own_bucket, Key=layout.budget_key(1), Body=b"{}")
            ),
            "rewrite own report": outcome(lambda: s3.put_object(Bucket=own_bucket, Key=layout.REPORT_KEY, Body=b"{}")),
            "B's secret, instance role": outcome(
                lambda: client("ssm").get_parameter(Name=secret_name, WithDecryption=True)
            ),
            "B's secret, A's role": outcome(
                lambda: as_own_role["ssm"].get_parameter(Name=secret_name, WithDecryption=True)
            ),
            "assume B's role": outcome(
                lambda: client("sts").assume_role(RoleArn=b_doc[SECRETS_ROLE_FIELD], RoleSessionName=ids["red-b"])
            ),
            "assume B's role from A's role": outcome(
                lambda: as_own_role["sts"].assume_role(RoleArn=b_doc[SECRETS_ROLE_FIELD], RoleSessionName="attack")
            ),
            "B's bucket, A's role": outcome(lambda: as_own_role["s3"].list_objects_v2(Bucket=b_bucket)),
            "open B's role's trust": outcome(
                lambda: iam.update_assume_role_policy(
                    RoleName=b_doc[SECRETS_ROLE_FIELD].rsplit("/", 1)[-1], PolicyDocument=trust_any
                )
            ),
            "widen own role": outcome(
                lambda: as_own_role["iam"].put_role_policy(
                    RoleName=a_doc[SECRETS_ROLE_FIELD].rsplit("/", 1)[-1], PolicyName="more", PolicyDocument=trust_any
                )
            ),
            "create a role": outcome(
                lambda: iam.create_role(
                    RoleName="escalate", AssumeRolePolicyDocument=trust_any, Path="/spottrain/jobs/"
                )
            ),
            "terminate B's instance": outcome(lambda: ec2.terminate_instances(InstanceIds=[ids["red-b"]])),
            "launch an instance": outcome(lambda: ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)),
            "read B's user data": outcome(
                lambda: ec2.describe_instance_attribute(InstanceId=ids["red-b"], Attribute="userData")
            ),
            "change launch templates": outcome(
                lambda: ec2.create_launch_template_version(
                    LaunchTemplateName="spottrain-template", LaunchTemplateData={}
                )
            ),
            "read the Lambdas' environment": outcome(
                lambda: lam.get_function_configuration(FunctionName="spottrain-create-bucket")
            ),
            "list executions": outcome(lambda: sfn.list_executions(stateMachineArn=runs["red-b"].rsplit(":", 1)[0])),
            "read B's execution": outcome(lambda: sfn.get_execution_history(executionArn=runs["red-b"])),
            "stop B's execution": outcome(lambda: sfn.stop_execution(executionArn=runs["red-b"])),
        }

        # And, waiting for a third job's bucket, writes into it the moment it exists
        stop, landed = threading.Event(), []
        c_bucket = emulator.stack.job_bucket("red-c")
        planter = threading.Thread(target=_plant_until, args=(s3, c_bucket, stop, landed), daemon=True)
        planter.start()
        c_run = emulator.start_job({**slow_job, "exec_name": "red-c"})
        wait_until(lambda: _has_job_json(emulator, c_bucket), 60, "C's job.json")
        stop.set()
        planter.join(timeout=10)
        c_keys = [item["Key"] for item in emulator.client("s3").list_objects_v2(Bucket=c_bucket).get("Contents", [])]
        for name in [*specs, "red-c"]:
            emulator.cancel(name)
        ended = {name: emulator.wait(arn, timeout=60)["status"] for name, arn in [*runs.items(), ("red-c", c_run)]}

    # Then every step is refused
    allowed = {step: outcome for step, outcome in attack.items() if outcome == "allowed"}
    assert allowed == {}, attack
    # And nothing the attacker wrote before C's policy was in place is left in C's bucket
    assert PLANTED not in c_keys, (c_keys, len(landed))
    record_property("writes_before_policy", len(landed))  # how often the attacker won the race (then emptied)
    assert set(ended.values()) == {"ABORTED"}, ended


def _try_instance(emulator, exec_name: str) -> str:
    try:
        return _instance_of(emulator, exec_name)
    except AssertionError:
        return ""


def _has_job_json(emulator, bucket: str) -> bool:
    try:
        emulator.client("s3").head_object(Bucket=bucket, Key=layout.JOB_KEY)
    except ClientError:
        return False
    return True


@pytest.mark.timeout(300)
def test_given_the_last_attempt_fakes_an_interruption_when_the_job_ends_then_its_instance_does_not_outlive_it(
    emulator_workdir, slow_job
):
    with Emulator(emulator_workdir) as emulator:
        # Given a job with one attempt, training
        job = {**slow_job, "exec_name": "red-fake", "limits": {"max_attempts": 1}}
        arn = emulator.start_job(job)
        instance = wait_until(lambda: _try_instance(emulator, "red-fake"), 150, "red-fake running")
        bucket = emulator.stack.job_bucket("red-fake")
        token = wait_until(lambda: _json_or_none(emulator, bucket, layout.task_token_key(1)), 150, "the wait's token")
        execution = _job_document(emulator, "red-fake")["execution"]["id"]

        # When root on its instance stops the agent (so nothing shuts the instance down), says the attempt was
        # interrupted with its final sync still running, and answers its own wait so
        wait_until(lambda: _json_or_none(emulator, bucket, layout.HEARTBEAT_KEY), 150, "red-fake training")
        os.kill(agent_pid(emulator, "red-fake"), signal.SIGSTOP)
        attacker = instance_session(emulator, instance)
        marker = {
            **markers.identity(1, instance, execution),
            markers.FINAL_SYNC_DONE: False,
            "noticed_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        attacker.client("s3", endpoint_url=emulator.endpoint).put_object(
            Bucket=bucket, Key=layout.INTERRUPTED_KEY, Body=json.dumps(marker).encode()
        )
        attacker.client("stepfunctions", endpoint_url=emulator.endpoint).send_task_failure(
            taskToken=token[markers.TOKEN], error="SpotInterrupted", cause="spot instance-action terminate"
        )
        final = emulator.wait(arn, timeout=120)
        state_after = _instance_state(emulator, instance)

    # Then the job ends as out of attempts, and its instance with it: not spared as "still syncing"
    assert final["status"] == "FAILED", final
    assert state_after in ("shutting-down", "terminated"), state_after


def _json_or_none(emulator, bucket: str, key: str) -> dict | None:
    try:
        return json.loads(emulator.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError:
        return None


def _instance_state(emulator, instance_id: str) -> str:
    reservations = emulator.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservations[0]["Instances"][0]["State"]["Name"]
