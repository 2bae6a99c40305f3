"""Simulated EC2: an instance's user data runs as a local process tied to moto's record of it."""
from __future__ import annotations

import json
import time

import pytest

from lambdas.shared import layout
from spottrain.local import ec2sim
from spottrain.local.ec2sim import Ec2Simulator
from spottrain.local.faults import Faults

# What a bootstrap needs from its machine: the aws CLI, the metadata service, its root folder.
PROBE = r'''#!/bin/bash
set -eu
aws s3 cp --only-show-errors s3://agent-assets/agent.txt "$SPOTTRAIN_ROOT/agent.txt"
"$SPOTTRAIN_PYTHON" - <<'PY'
import json, os, urllib.request
imds = os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
token = urllib.request.urlopen(urllib.request.Request(imds + "/latest/api/token", method="PUT")).read().decode()
ask = lambda path: urllib.request.urlopen(urllib.request.Request(
    imds + "/latest/meta-data/" + path, headers={"X-aws-ec2-metadata-token": token})).read().decode()
facts = {"instance_id": ask("instance-id"), "gpu": os.environ["SPOTTRAIN_GPU"], "home": os.environ["HOME"]}
open(os.path.join(os.environ["SPOTTRAIN_ROOT"], "facts.json"), "w").write(json.dumps(facts))
PY
'''
SLEEPER = "#!/bin/bash\nsleep 120\n"
# What the agent writes when the job's training command starts: interrupt-after counts from there.
TRAINER = ('#!/bin/bash\nmkdir -p "$SPOTTRAIN_ROOT/work/logs/attempt-1"\nsleep 1\n'
           'echo "[spottrain] phase exec: python train.py" > "$SPOTTRAIN_ROOT/work/logs/attempt-1/output-0001.log"\n'
           'sleep 120\n')


def _wait_until(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


@pytest.fixture
def launch(aws):
    ec2 = aws("ec2")
    image = ec2.register_image(Name="gpu", RootDeviceName="/dev/sda1")["ImageId"]

    def launch_instance(user_data: str, tagged: bool = True) -> str:
        tags = [{"ResourceType": "instance", "Tags": [{"Key": layout.TAG_STACK, "Value": "Test"}]}] if tagged else []
        return ec2.run_instances(ImageId=image, InstanceType="g5.xlarge", MinCount=1, MaxCount=1,
                                 UserData=user_data, TagSpecifications=tags)["Instances"][0]["InstanceId"]
    return launch_instance


@pytest.fixture
def simulator(aws, moto_endpoint, tmp_path):
    def start(faults: Faults = Faults()) -> Ec2Simulator:
        env = {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        sim = Ec2Simulator(aws("ec2"), tmp_path, env, faults, poll_seconds=0.1, interrupt_grace_seconds=1)
        started.append(sim.start())
        return sim
    started: list[Ec2Simulator] = []
    yield start
    for sim in started:
        sim.stop()


def _state(aws, instance_id: str) -> str:
    return aws("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


def test_given_a_launched_instance_when_its_user_data_ends_then_it_ran_sandboxed_and_the_instance_terminated(
    aws, launch, simulator, tmp_path
):
    aws("s3").create_bucket(Bucket="agent-assets")
    aws("s3").put_object(Bucket="agent-assets", Key="agent.txt", Body=b"agent")
    sim = simulator()

    instance_id = launch(PROBE)
    _wait_until(lambda: _state(aws, instance_id) == "terminated")

    sandbox = tmp_path / "instances" / instance_id
    facts = json.loads((sandbox / "facts.json").read_text())
    assert facts == {"instance_id": instance_id, "gpu": "-1", "home": str(sandbox / "home")}
    assert (sandbox / "agent.txt").read_text() == "agent"
    assert not sim.instances[instance_id].alive


def test_given_a_running_instance_when_the_workflow_terminates_it_then_its_process_is_killed(aws, launch, simulator):
    sim = simulator()
    instance_id = launch(SLEEPER)
    _wait_until(lambda: instance_id in sim.instances)

    aws("ec2").terminate_instances(InstanceIds=[instance_id])

    _wait_until(lambda: not sim.instances[instance_id].alive)


def test_given_an_instance_of_another_stack_then_it_is_not_booted(aws, launch, simulator):
    sim = simulator()
    ours = launch(SLEEPER)
    theirs = launch(SLEEPER, tagged=False)

    _wait_until(lambda: ours in sim.instances)
    assert theirs not in sim.instances


def test_given_interrupt_fault_then_the_notice_is_posted_and_the_instance_is_reclaimed_after_the_grace(
    aws, launch, simulator
):
    sim = simulator(Faults.parse(["interrupt-after=0.5"]))
    instance_id = launch(TRAINER)
    _wait_until(lambda: instance_id in sim.instances)

    _wait_until(lambda: "/latest/meta-data/spot/instance-action" in sim.instances[instance_id].imds.values, 5)
    # the notice came only once the training had started, not 0.5 s after boot
    assert ec2sim.training_started(sim.instances[instance_id].sandbox)
    _wait_until(lambda: _state(aws, instance_id) == "terminated", 10)
    _wait_until(lambda: not sim.instances[instance_id].alive, 5)


def test_given_interrupt_fault_and_no_training_yet_then_no_notice(aws, launch, simulator):
    sim = simulator(Faults.parse(["interrupt-after=0.1"]))
    instance_id = launch(SLEEPER)
    _wait_until(lambda: instance_id in sim.instances)
    time.sleep(1.5)
    assert "/latest/meta-data/spot/instance-action" not in sim.instances[instance_id].imds.values
    assert _state(aws, instance_id) == "running"