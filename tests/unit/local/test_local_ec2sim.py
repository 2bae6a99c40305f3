"""Simulated EC2: an instance's user data runs as a local process tied to moto's record of it."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from spottrain.contract import layout, markers
from spottrain.local import interruptions
from spottrain.local.ec2sim import Ec2Simulator
from spottrain.local.faults import Faults

BUCKET = "job-bucket"
NOTICE = "/latest/meta-data/spot/instance-action"

# What a bootstrap needs from its machine: the aws CLI, the metadata service, its root folder.
PROBE = r"""#!/bin/bash
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
"""
SLEEPER = "#!/bin/bash\nsleep 120\n"

# The agent, cut to what the interruption fault depends on: its heartbeat names the exec phase, it runs
# the training in a session of its own with the job's variables, syncs its checkpoints to the bucket,
# and on the spot notice records what it saw, SIGTERMs the training's process group and syncs once more.
FAKE_AGENT = r'''#!/bin/bash
exec "$SPOTTRAIN_PYTHON" - <<'PY'
import json, os, signal, subprocess, sys, time, urllib.error, urllib.request
from pathlib import Path
import boto3

ROOT = Path(os.environ["SPOTTRAIN_ROOT"])
IMDS = os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
s3 = boto3.client("s3")
ckpt = ROOT / "ckpt"
ckpt.mkdir()
if @RESTORED@:  # the agent restores the last attempt's snapshot with its old mtime
    (ckpt / "snapshot_iter_0").write_text("restored")
    os.utime(ckpt / "snapshot_iter_0", (946684800, 946684800))
uploaded = {}

def sync():
    for path in sorted(ckpt.iterdir()):
        if not path.name.endswith(".partial") and uploaded.get(path.name) != path.stat().st_mtime_ns:
            s3.upload_file(str(path), "@BUCKET@", "checkpoints/" + path.name)
            uploaded[path.name] = path.stat().st_mtime_ns

def metadata(path):
    token = opener.open(urllib.request.Request(IMDS + "/latest/api/token", method="PUT")).read().decode()
    return opener.open(urllib.request.Request(IMDS + path, headers={"X-aws-ec2-metadata-token": token})).read()

def notice():
    try:
        return metadata("@NOTICE@")
    except urllib.error.HTTPError:
        return None

sync()
heartbeat = {"instance_id": metadata("/latest/meta-data/instance-id").decode(), "phase": "@EXEC@"}
s3.put_object(Bucket="@BUCKET@", Key="@HEARTBEAT_KEY@", Body=json.dumps(heartbeat).encode())
env = {**os.environ, "SPOTTRAIN_BUCKET": "@BUCKET@", "SPOTTRAIN_CHECKPOINT_DIR": str(ckpt),
       "SPOTTRAIN_OUTPUT_DIR": str(ROOT / "out")}
training = subprocess.Popen([sys.executable, "-c", """@TRAINING@"""], env=env, start_new_session=True)
while training.poll() is None:
    if notice():
        state = Path(f"/proc/{training.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="@BUCKET@").get("Contents", [])]
        (ROOT / "noticed.json").write_text(json.dumps({"training_state": state, "keys": keys}))
        os.killpg(training.pid, signal.SIGTERM)
        training.wait()
    sync()
    time.sleep(0.3)
sync()
PY
'''
# A training that writes `checkpoints` snapshots (write, then rename, as the payload does), then
# trains on forever or ends; on SIGTERM it notes the iteration it stopped at and exits 143.
TRAINING = r"""
import os, signal, sys, time
from pathlib import Path
ckpt = Path(os.environ["SPOTTRAIN_CHECKPOINT_DIR"])
iteration = 0
def stop(signum, frame):
    (ckpt.parent / "training-stopped").write_text(str(iteration))
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
time.sleep(@FIRST_DELAY@)
for iteration in range(1, @CHECKPOINTS@ + 1):
    (ckpt / f"snapshot_iter_{iteration}.partial").write_text("weights " * 100)
    os.replace(ckpt / f"snapshot_iter_{iteration}.partial", ckpt / f"snapshot_iter_{iteration}")
    time.sleep(0.05)
while @ENDLESS@:
    time.sleep(0.01)
"""


def fake_agent(checkpoints: int = 1, endless: bool = True, restored: bool = False, first_delay: float = 0) -> str:
    training = (
        TRAINING.replace("@CHECKPOINTS@", str(checkpoints))
        .replace("@ENDLESS@", str(endless))
        .replace("@FIRST_DELAY@", str(first_delay))
    )
    return (
        FAKE_AGENT.replace("@TRAINING@", training)
        .replace("@RESTORED@", str(restored))
        .replace("@BUCKET@", BUCKET)
        .replace("@NOTICE@", NOTICE)
        .replace("@EXEC@", markers.EXEC)
        .replace("@HEARTBEAT_KEY@", layout.HEARTBEAT_KEY)
    )


def _wait_until(condition, timeout: float = 30) -> None:
    """Wait for an event; the timeout only bounds a failure."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def launch(aws):
    ec2 = aws("ec2")
    image = ec2.register_image(Name="gpu", RootDeviceName="/dev/sda1")["ImageId"]

    def launch_instance(user_data: str, tagged: bool = True) -> str:
        tags = [{"ResourceType": "instance", "Tags": [{"Key": layout.TAG_STACK, "Value": "Test"}]}] if tagged else []
        return ec2.run_instances(
            ImageId=image, InstanceType="g5.xlarge", MinCount=1, MaxCount=1, UserData=user_data, TagSpecifications=tags
        )["Instances"][0]["InstanceId"]

    return launch_instance


@pytest.fixture
def simulator(aws, moto_endpoint, tmp_path):
    aws("s3").create_bucket(Bucket=BUCKET)

    def start(faults: Faults | None = None) -> Ec2Simulator:
        env = {
            "AWS_ENDPOINT_URL": moto_endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        sim = Ec2Simulator(
            aws("ec2"), tmp_path, env, faults or Faults(), s3=aws("s3"), poll_seconds=0.1, interrupt_grace_seconds=5
        )
        started.append(sim.start())
        return sim

    started: list[Ec2Simulator] = []
    yield start
    for sim in started:
        sim.stop()


def _state(aws, instance_id: str) -> str:
    return aws("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


def _booted(sim: Ec2Simulator, instance_id: str):
    _wait_until(lambda: instance_id in sim.instances)
    return sim.instances[instance_id]


# --- an instance's life ------------------------------------------------------------------------


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


def test_given_an_instance_of_another_stack_then_it_is_not_booted(aws, launch, simulator):
    sim = simulator()
    ours = launch(SLEEPER)
    theirs = launch(SLEEPER, tagged=False)

    _booted(sim, ours)
    assert theirs not in sim.instances


# --- nothing left running ----------------------------------------------------------------------


def _daemons(tag: int, then: str) -> str:
    """User data whose commands escape their session: setsid, nohup, a double fork; then `then`."""
    return (
        f"#!/bin/bash\nsetsid nohup sleep {tag}.1 >/dev/null 2>&1 &\n"
        f"( ( exec sleep {tag}.2 ) & )\n"
        f"bash -c 'setsid sleep {tag}.3 & disown' </dev/null >/dev/null 2>&1\n"
        f'until [ "$(pgrep -fc "sleep {tag}\\.")" = 3 ]; do sleep 0.05; done\n'
        f'touch "$SPOTTRAIN_ROOT/daemons-started"\n{then}\n'
    )


def _running(tag: int) -> list[str]:
    """Command lines of this machine's processes from a _daemons(tag) run: found without the tracking."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"sleep {tag}." in cmdline and "pgrep" not in cmdline:
            found.append(cmdline)
    return found


@pytest.mark.parametrize("how", ["the workflow terminates it", "its user data ends", "the emulator stops"])
def test_given_commands_that_daemonised_when_the_instance_ends_then_none_of_its_processes_is_left(
    aws, launch, simulator, tracking, how
):
    tag = random.randrange(10_000, 99_999)
    # Given an instance whose commands left three processes outside its process group and session
    sim = simulator()
    instance = _booted(sim, launch(_daemons(tag, 'until [ -e "$SPOTTRAIN_ROOT/go" ]; do sleep 0.05; done')))
    _wait_until(lambda: (instance.sandbox / "daemons-started").exists())
    assert len(_running(tag)) == 3, _running(tag)
    assert instance.guard is not None and instance.guard.poll() is None  # should the emulator die, it ends them

    # When the instance ends
    if how == "the workflow terminates it":
        aws("ec2").terminate_instances(InstanceIds=[instance.instance_id])
    elif how == "its user data ends":
        (instance.sandbox / "go").touch()
    else:
        sim.stop()

    # Then every process it started is gone, as on a machine that was switched off
    _wait_until(lambda: instance.killed)
    assert _running(tag) == []
    _wait_until(lambda: instance.guard.poll() is not None)  # released: the emulator ended them itself
    assert instance.guard.returncode == 0
    if how != "the emulator stops":
        _wait_until(lambda: _state(aws, instance.instance_id) == "terminated")


# --- spot interruptions ------------------------------------------------------------------------


def _notice_seen(instance) -> dict:
    _wait_until(lambda: (instance.sandbox / "noticed.json").exists())
    return json.loads((instance.sandbox / "noticed.json").read_text())


def test_given_interrupt_at_checkpoint_then_the_notice_comes_with_the_checkpoint_in_s3_and_the_training_held(
    aws, launch, simulator
):
    # Given a training that writes a snapshot and goes on, on an instance whose first checkpoint is the trigger
    faults = Faults.parse(["interrupt-at=checkpoint"])
    instance = _booted(simulator(faults), launch(fake_agent()))

    # When the agent sees the spot notice
    seen = _notice_seen(instance)

    # Then the first snapshot was in the bucket, and the training was held still until then
    assert "checkpoints/snapshot_iter_1" in seen["keys"]
    assert seen["training_state"] == "T", "the training ran on while the checkpoint was uploaded"
    # And released once the agent acted, the training itself handled the SIGTERM
    _wait_until(lambda: (instance.sandbox / "training-stopped").exists())
    # And the instance was reclaimed, the fault counted as fired
    _wait_until(lambda: _state(aws, instance.instance_id) == "terminated")
    _wait_until(lambda: faults.pending() == [])
    assert faults.never_fired() == []


def test_given_restored_checkpoints_then_only_files_written_in_this_attempt_count(aws, launch, simulator):
    # Given an attempt that restored an older snapshot (its old mtime kept) before the training writes its own
    faults = Faults.parse(["interrupt-at=checkpoint"])
    instance = _booted(simulator(faults), launch(fake_agent(restored=True, first_delay=0.5)))

    # When the agent sees the spot notice, then it came with the attempt's own first snapshot in S3
    assert "checkpoints/snapshot_iter_1" in _notice_seen(instance)["keys"]


def test_given_a_training_that_ends_before_its_nth_checkpoint_then_the_fault_never_fired_and_says_why(
    aws, launch, simulator
):
    faults = Faults.parse(["interrupt-at=checkpoint:2"])
    instance = _booted(simulator(faults), launch(fake_agent(checkpoints=1, endless=False)))

    _wait_until(lambda: faults.pending() == [])

    assert NOTICE not in instance.imds.values
    # (the one it wrote, unless the training ended before the watch's first look)
    [never] = faults.never_fired()
    assert re.fullmatch(
        rf"injected fault interrupt-at=checkpoint:2 never fired: the training on {instance.instance_id} ended "
        r"after writing [01] checkpoint file\(s\) in this attempt, not 2",
        never,
    ), never


def test_given_interrupt_after_then_the_notice_comes_that_long_into_the_training_which_is_held(aws, launch, simulator):
    faults = Faults.parse(["interrupt-after=0.5"])
    instance = _booted(simulator(faults), launch(fake_agent()))

    seen = _notice_seen(instance)

    # the notice came while the training ran, and found it held still
    assert seen["training_state"] == "T"
    _wait_until(lambda: (instance.sandbox / "training-stopped").exists())
    _wait_until(lambda: _state(aws, instance.instance_id) == "terminated")
    _wait_until(lambda: faults.pending() == [])
    assert faults.never_fired() == []


def test_given_interrupt_after_longer_than_the_training_then_the_fault_never_fired_and_says_why(aws, launch, simulator):
    faults = Faults.parse(["interrupt-after=600"])
    instance = _booted(simulator(faults), launch(fake_agent(endless=False)))

    _wait_until(lambda: faults.pending() == [])

    assert NOTICE not in instance.imds.values
    [missed] = faults.never_fired()
    assert missed.startswith(f"injected fault interrupt-after=600 never fired: {instance.instance_id} ended ")
    assert missed.endswith("s into its training, before the notice was due at 600s")


def test_given_interrupt_after_and_no_training_yet_when_the_instance_ends_then_never_fired(aws, launch, simulator):
    faults = Faults.parse(["interrupt-after=0.1"])
    instance = _booted(simulator(faults), launch(SLEEPER))

    aws("ec2").terminate_instances(InstanceIds=[instance.instance_id])
    _wait_until(lambda: faults.pending() == [])

    assert NOTICE not in instance.imds.values
    assert faults.never_fired() == [
        f"injected fault interrupt-after=0.1 never fired: {instance.instance_id} never started its training"
    ]


def test_given_a_heartbeat_of_another_instance_or_phase_then_the_training_has_not_started(aws):
    s3 = aws("s3")
    s3.create_bucket(Bucket=BUCKET)
    command = subprocess.Popen(
        ["sleep", "60"], env={"SPOTTRAIN_BUCKET": BUCKET}
    )  # a job command, as the agent starts it
    instance = SimpleNamespace(instance_id="i-ours", command_pids=lambda: [command.pid])

    def heartbeat(instance_id: str, phase: str) -> bool:
        s3.put_object(
            Bucket=BUCKET,
            Key=layout.HEARTBEAT_KEY,
            Body=json.dumps({"instance_id": instance_id, "phase": phase}).encode(),
        )
        return interruptions.training_started(instance, s3)

    try:
        assert not heartbeat("i-theirs", markers.EXEC)
        assert not heartbeat("i-ours", markers.DATA)
        assert heartbeat("i-ours", markers.EXEC)
    finally:
        command.kill()
        command.wait()
