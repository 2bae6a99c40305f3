"""The bridge: a hand-written stack (a Lambda and a state machine) deployed through moto's CloudFormation."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from function_asset import function_zip, handler_name
from spottrain.functions.shared import pricing
from spottrain.local.bridge import Bridge, CallbackBridge
from spottrain.local.faults import Faults
from spottrain.local.lambda_host import LambdaHost
from spottrain.local.server import REGION

# A function bundling its own copy of `spottrain.functions`, like every spottrain function does.
ECHO_MODULE = """
import os
import boto3

class InvalidJobSpec(Exception):
    pass

def handler(event, context):
    if event.get("bad"):
        raise InvalidJobSpec("field exec_name: must be lowercase; rename the job")
    boto3.client("s3").list_buckets()  # proves AWS_ENDPOINT_URL points at the emulator
    return {**event, "greeting": os.environ["GREETING"], "function": context.function_name}
"""
RETRY = [{"ErrorEquals": ["Lambda.ServiceException"], "IntervalSeconds": 1, "MaxAttempts": 2}]
DEFINITION = {
    "StartAt": "Echo",
    "States": {"Echo": {"Type": "Task", "Resource": "${EchoArn}", "Retry": RETRY, "End": True}},
}


def _code_zip() -> bytes:
    return function_zip("echo", ECHO_MODULE)


def _template() -> dict:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = {"Fn::GetAtt": ["Role", "Arn"]}
    return {
        "Resources": {
            "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": trust}},
            "Echo": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Code": {"S3Bucket": "assets", "S3Key": "code.zip"},
                    "Handler": handler_name("echo"),
                    "Runtime": "python3.11",
                    "Role": role,
                    "Environment": {"Variables": {"GREETING": "hello"}},
                },
            },
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "RoleArn": role,
                    "DefinitionString": json.dumps(DEFINITION),
                    "DefinitionSubstitutions": {"EchoArn": {"Fn::GetAtt": ["Echo", "Arn"]}},
                },
            },
        },
        "Outputs": {"MachineArn": {"Value": {"Ref": "Machine"}}},
    }


@pytest.fixture
def deployed(aws, moto_endpoint, tmp_path):
    """(state machine ARN, faults) with the toy stack deployed while the bridge is installed."""
    faults = Faults()
    env = {
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    with Bridge(LambdaHost(tmp_path, env), faults):
        aws("s3").create_bucket(Bucket="assets")
        aws("s3").put_object(Bucket="assets", Key="code.zip", Body=_code_zip())
        cloudformation = aws("cloudformation")
        cloudformation.create_stack(StackName="toy", TemplateBody=json.dumps(_template()))
        outputs = cloudformation.describe_stacks(StackName="toy")["Stacks"][0]["Outputs"]
        yield outputs[0]["OutputValue"], faults


def _run(aws, machine_arn: str, name: str | None, event: dict | None, arn: str | None = None) -> dict:
    """Start an execution (or follow `arn`, started by someone else) until it ends."""
    sfn = aws("stepfunctions")
    if arn is None:
        arn = sfn.start_execution(stateMachineArn=machine_arn, name=name, input=json.dumps(event))["executionArn"]
    deadline = time.monotonic() + 30
    while (described := _describe_when_exists(sfn, arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution did not finish"
        time.sleep(0.1)
    return described


def _describe_when_exists(sfn, arn: str) -> dict:
    try:
        return sfn.describe_execution(executionArn=arn)
    except sfn.exceptions.ExecutionDoesNotExist:
        return {"status": "RUNNING"}


def test_given_substitutions_when_executed_then_the_deployed_handler_runs_with_its_environment(aws, deployed):
    machine_arn, _ = deployed

    described = _run(aws, machine_arn, "ok", {"job": "demo"})

    assert described["status"] == "SUCCEEDED", described.get("cause")
    output = json.loads(described["output"])
    assert output["greeting"] == "hello"
    assert output["function"].startswith("toy-Echo")
    assert "GREETING" not in os.environ  # the function's environment is its own, not the emulator's


def test_given_the_handler_raises_then_step_functions_sees_the_exception_class_as_error(aws, deployed):
    machine_arn, _ = deployed

    described = _run(aws, machine_arn, "bad", {"bad": True})

    assert described["status"] == "FAILED"
    assert described["error"] == "InvalidJobSpec"
    assert "field exec_name" in json.loads(described["cause"])["errorMessage"]


def test_given_a_lambda_error_fault_then_the_workflow_retries_and_succeeds(aws, deployed):
    machine_arn, faults = deployed
    faults.lambda_errors["Echo"] = 1

    described = _run(aws, machine_arn, "retried", {"job": "demo"})

    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert faults.lambda_errors["Echo"] == 0
    history = aws("stepfunctions").get_execution_history(executionArn=described["executionArn"])["events"]
    assert [e["type"] for e in history].count("LambdaFunctionFailed") == 1


def test_given_a_function_ran_then_the_repos_own_packages_are_untouched(aws, deployed):
    import spottrain
    import spottrain.functions
    import spottrain.local

    machine_arn, _ = deployed
    _run(aws, machine_arn, "isolated", {"job": "demo"})

    assert sys.modules["spottrain.functions"] is spottrain.functions is spottrain.__dict__["functions"]
    assert sys.modules["spottrain.local"] is spottrain.local
    assert "spottrain.functions.echo" not in sys.modules


def test_given_no_capacity_fault_when_run_instances_then_insufficient_capacity(aws, tmp_path):
    ec2 = aws("ec2")
    image = ec2.register_image(Name="gpu", RootDeviceName="/dev/sda1")["ImageId"]
    with Bridge(LambdaHost(tmp_path, {}), Faults.parse(["no-capacity=g5.xlarge"])):
        with pytest.raises(ec2.exceptions.ClientError) as error:
            ec2.run_instances(ImageId=image, InstanceType="g5.xlarge", MinCount=1, MaxCount=1)
        launched = ec2.run_instances(ImageId=image, InstanceType="g6.xlarge", MinCount=1, MaxCount=1)

    assert error.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
    assert launched["Instances"][0]["InstanceType"] == "g6.xlarge"


def test_given_the_bridge_then_the_price_list_api_answers_with_the_types_list_price(aws, tmp_path, monkeypatch):
    # Given moto, which has no Price List API, behind the bridge
    monkeypatch.setattr(pricing, "_CACHE", {})
    with Bridge(LambdaHost(tmp_path, {}), Faults()):
        # When a Lambda asks the on-demand price of a type in the stack's region
        price = pricing.list_price(aws("pricing"), "us-east-1", "g5.xlarge")
        unknown = pricing.list_price(aws("pricing"), "us-east-1", "x9.huge")

    # Then the bridged API answers it (as AWS would, not through the labelled fallback)
    assert price == pricing.OnDemandPrice(1.006, pricing.PRICE_LIST_API)
    assert unknown == pricing.OnDemandPrice(None, pricing.BUNDLED_TABLE)


def test_given_the_bridge_then_placement_scores_rank_each_az_of_the_region(aws, tmp_path):
    with Bridge(LambdaHost(tmp_path, {}), Faults()):
        scores = aws("ec2").get_spot_placement_scores(
            InstanceTypes=["g5.xlarge"], TargetCapacity=1, SingleAvailabilityZone=True, RegionNames=["us-east-1"]
        )
    zones = {z["ZoneId"]: z["ZoneName"] for z in aws("ec2").describe_availability_zones()["AvailabilityZones"]}
    by_name = sorted((zones[s["AvailabilityZoneId"]], s["Score"]) for s in scores["SpotPlacementScores"])
    assert by_name[:2] == [("us-east-1a", 10), ("us-east-1b", 9)] and len(by_name) == len(zones)


def test_given_a_tls_only_bucket_policy_then_loopback_requests_still_work(aws, tmp_path):
    s3 = aws("s3")
    s3.create_bucket(Bucket="job-bucket")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": ["arn:aws:s3:::job-bucket", "arn:aws:s3:::job-bucket/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    with Bridge(LambdaHost(tmp_path, {}), Faults()):
        s3.put_bucket_policy(Bucket="job-bucket", Policy=json.dumps(policy))
        s3.put_object(Bucket="job-bucket", Key="job.json", Body=b"{}")

        assert s3.get_object(Bucket="job-bucket", Key="job.json")["Body"].read() == b"{}"


def test_given_the_bridge_then_spot_prices_are_a_fraction_of_on_demand(aws, deployed):
    # Given moto's canned $0.00001/h, When a Lambda asks for the spot price of a GPU type
    history = aws("ec2").describe_spot_price_history(
        InstanceTypes=["g5.xlarge"],
        ProductDescriptions=["Linux/UNIX"],
        Filters=[{"Name": "availability-zone", "Values": ["us-east-1a"]}],
    )["SpotPriceHistory"]
    # Then it sees a plausible spot price, so reports do not claim a 100% saving
    assert history
    price = float(history[0]["SpotPrice"])
    assert 0.1 < price < 1.006  # below g5.xlarge's on-demand list price, far above moto's canned value


def test_given_a_simulated_instance_when_its_console_is_read_then_what_it_printed_comes_back(
    aws, moto_endpoint, tmp_path
):
    # Given two instances in moto, one of which a simulated boot wrote a console log for
    ec2 = aws("ec2")
    printed, silent = (
        ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        for _ in range(2)
    )
    console = tmp_path / "instances" / printed / "console.log"
    console.parent.mkdir(parents=True)
    console.write_bytes(b"x" * 70_000 + "\nspottrain bootstrap: FAILED (exit 1) at line 32 — no route\n".encode())

    # When their console output is asked for while the bridge is installed
    with Bridge(LambdaHost(tmp_path, {}), Faults()):
        answers = {
            instance: ec2.get_console_output(InstanceId=instance).get("Output", "") for instance in (printed, silent)
        }

    # Then the booted one answers its own console's last 64 KiB, and the other nothing (not moto's canned boot log)
    assert answers[printed].endswith("spottrain bootstrap: FAILED (exit 1) at line 32 — no route\n")
    assert len(answers[printed].encode()) == 64 * 1024
    assert answers[silent] == ""


# ----- the callback wait (CallbackBridge): answers as AWS gives them ----------------------------------


def _waiting_machine(aws, timing: dict, retry: list | None = None) -> tuple[str, str]:
    """(machine ARN, queue URL): one wait whose token goes to the queue, its end recorded by the state it ends in."""
    queue = aws("sqs").create_queue(QueueName="tokens")["QueueUrl"]
    catch = [
        {"ErrorEquals": ["States.HeartbeatTimeout"], "ResultPath": "$.ended", "Next": "HeartbeatLost"},
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.ended", "Next": "Failed"},
    ]
    wait = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}},
        **timing,
        "ResultPath": "$.ended",
        "Catch": catch,
        "Next": "Answered",
    }
    if retry:
        wait["Retry"] = retry
    definition = {
        "StartAt": "Wait",
        "States": {
            "Wait": wait,
            "Answered": {"Type": "Succeed"},
            "HeartbeatLost": {"Type": "Succeed"},
            "Failed": {"Type": "Succeed"},
        },
    }
    machine = aws("stepfunctions").create_state_machine(
        name="waits", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/w"
    )["stateMachineArn"]
    return machine, queue


def _token(aws, queue: str) -> str:
    sqs = aws("sqs")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # long polling: the message arrives when the wait starts
        messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5).get("Messages", [])
        if messages:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=messages[0]["ReceiptHandle"])
            return json.loads(messages[0]["Body"])["token"]
    raise AssertionError("the wait never sent its token")


def _ended_in(aws, arn: str) -> tuple[str, dict]:
    described = _run(aws, None, None, None, arn=arn)
    history = aws("stepfunctions").get_execution_history(executionArn=arn)["events"]
    last = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e][-1]
    return last, json.loads(described.get("output") or "{}").get("ended", {})


@pytest.fixture
def callbacks(aws):
    with CallbackBridge():
        yield aws


def _start(aws, machine: str) -> str:
    return aws("stepfunctions").start_execution(stateMachineArn=machine, input="{}")["executionArn"]


def test_given_a_silent_agent_then_the_wait_fails_as_a_heartbeat_timeout(callbacks):
    # Given a wait with a 1 s heartbeat whose token nobody answers
    machine, queue = _waiting_machine(callbacks, {"HeartbeatSeconds": 1, "TimeoutSeconds": 60})
    arn = _start(callbacks, machine)
    _token(callbacks, queue)

    # Then it ends as AWS ends it: States.HeartbeatTimeout (moto alone says States.Timeout)
    state, ended = _ended_in(callbacks, arn)
    assert (state, ended["Error"]) == ("HeartbeatLost", "States.HeartbeatTimeout")


def test_given_a_failure_answer_then_its_error_and_cause_reach_the_state(callbacks):
    machine, queue = _waiting_machine(callbacks, {"HeartbeatSeconds": 30, "TimeoutSeconds": 60})
    arn = _start(callbacks, machine)
    callbacks("stepfunctions").send_task_failure(
        taskToken=_token(callbacks, queue), error="InstanceLost", cause="instance i-1 shutting-down"
    )

    assert _ended_in(callbacks, arn) == ("Failed", {"Error": "InstanceLost", "Cause": "instance i-1 shutting-down"})


def test_given_the_wait_already_answered_then_late_and_duplicate_answers_are_refused_as_timed_out(callbacks):
    # Given a wait answered once (the agent's success)
    machine, queue = _waiting_machine(callbacks, {"HeartbeatSeconds": 30, "TimeoutSeconds": 60})
    arn = _start(callbacks, machine)
    token = _token(callbacks, queue)
    sfn = callbacks("stepfunctions")
    sfn.send_task_success(taskToken=token, output='{"outcome": "completed"}')
    assert _ended_in(callbacks, arn)[0] == "Answered"

    # When the EC2 handler's failure and a heartbeat arrive after it, Then AWS's TaskTimedOut, and nothing changes
    for late in (
        lambda: sfn.send_task_failure(taskToken=token, error="InstanceLost", cause="late"),
        lambda: sfn.send_task_heartbeat(taskToken=token),
    ):
        with pytest.raises(sfn.exceptions.ClientError) as refused:
            late()
        assert refused.value.response["Error"]["Code"] == "TaskTimedOut"
    assert _ended_in(callbacks, arn) == ("Answered", {"outcome": "completed"})


def test_given_a_waiting_execution_when_stopped_then_it_is_aborted_at_once_and_its_token_closed(callbacks):
    # Given a wait that would last a minute
    machine, queue = _waiting_machine(callbacks, {"HeartbeatSeconds": 60, "TimeoutSeconds": 120})
    arn = _start(callbacks, machine)
    token = _token(callbacks, queue)
    sfn = callbacks("stepfunctions")

    # When it is stopped (spottrain cancel), Then it is ABORTED without waiting out the heartbeat
    started = time.monotonic()
    sfn.stop_execution(executionArn=arn, error="Cancelled", cause="spottrain cancel")
    assert _run(callbacks, None, None, None, arn=arn)["status"] == "ABORTED"
    assert time.monotonic() - started < 30
    with pytest.raises(sfn.exceptions.ClientError) as refused:
        sfn.send_task_success(taskToken=token, output="{}")
    assert refused.value.response["Error"]["Code"] == "TaskTimedOut"


def test_given_a_retried_wait_then_the_retry_has_a_fresh_token_and_the_old_one_is_closed(callbacks):
    # Given a wait retried once on InstanceLost
    retry = [{"ErrorEquals": ["InstanceLost"], "IntervalSeconds": 1, "MaxAttempts": 1}]
    machine, queue = _waiting_machine(callbacks, {"HeartbeatSeconds": 30, "TimeoutSeconds": 60}, retry)
    arn = _start(callbacks, machine)
    sfn = callbacks("stepfunctions")
    first = _token(callbacks, queue)
    sfn.send_task_failure(taskToken=first, error="InstanceLost", cause="first try")

    # When the retry waits, Then it has its own token; the first try's is over
    second = _token(callbacks, queue)
    assert second != first
    sfn.send_task_success(taskToken=second, output='{"try": 2}')
    assert _ended_in(callbacks, arn) == ("Answered", {"try": 2})


ANSWERING_MODULE = """
import boto3

def handler(event, context):
    # Like await_training for an attempt that already ended: answer the token during the invoke itself.
    boto3.client("stepfunctions").send_task_success(taskToken=event["token"], output='{"early": true}')
    return {"armed": True}
"""


def test_given_the_invoked_function_answers_its_own_token_then_the_answer_is_not_lost(aws, moto_endpoint, tmp_path):
    # Given a deployed function that answers its wait's token before its invoke returns, HeartbeatSeconds set
    env = {
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    template = _template()
    template["Resources"]["Machine"]["Properties"]["DefinitionString"] = json.dumps(
        {
            "StartAt": "Wait",
            "States": {
                "Wait": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                    "Parameters": {"FunctionName": "${EchoArn}", "Payload": {"token.$": "$$.Task.Token"}},
                    "HeartbeatSeconds": 5,
                    "TimeoutSeconds": 30,
                    "End": True,
                }
            },
        }
    )
    with Bridge(LambdaHost(tmp_path, env), Faults()):
        aws("s3").create_bucket(Bucket="assets")
        aws("s3").put_object(Bucket="assets", Key="code.zip", Body=function_zip("echo", ANSWERING_MODULE))
        aws("cloudformation").create_stack(StackName="toy", TemplateBody=json.dumps(template))
        machine = aws("cloudformation").describe_stacks(StackName="toy")["Stacks"][0]["Outputs"][0]["OutputValue"]

        # When it runs, Then the wait ends with that answer (moto alone loses it and times out)
        described = _run(aws, machine, "early", {})

    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert json.loads(described["output"]) == {"early": True}
