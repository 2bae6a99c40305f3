"""Simulated EC2: boots every instance the workflow launches as a local process in a sandbox folder.

An instance is "booted" by running its user data (the real bootstrap, fetched from moto) with bash,
against the emulator's endpoint and a local IMDS. Its lifetime is tied to moto's record both ways:
when the process ends the instance terminates (instance-initiated shutdown = terminate, as the launch
template says), and when the workflow terminates the instance the process group is killed, as
pulling the plug on a machine would.
"""
from __future__ import annotations

import base64
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from lambdas.shared import layout
from spottrain.local import aws_shim
from spottrain.local.faults import Faults
from spottrain.local.imds import InstanceMetadata
from spottrain.local.sandbox import boot_command

log = logging.getLogger(__name__)

LIVE_STATES = ("pending", "running")
# AWS gives two minutes between the spot notice and the reclaim; the emulator gives the agent this
# long to stop the training and sync its checkpoints.
INTERRUPT_GRACE_SECONDS = 10.0
# The line the instance agent writes to the job's output log when it starts exec_command.
EXEC_PHASE_MARKER = "[spottrain] phase exec:"
# Agent timings shrunk so a demo takes seconds, not a quarter hour (instance/agent/options.py).
AGENT_TIMINGS = {
    "SPOTTRAIN_SYNC_SECONDS": "1",
    "SPOTTRAIN_HEARTBEAT_SECONDS": "1",
    "SPOTTRAIN_NOTICE_POLL_SECONDS": "0.5",
    "SPOTTRAIN_SECONDS_PER_MINUTE": "1",
    "SPOTTRAIN_KILL_GRACE_SECONDS": "3",
    "SPOTTRAIN_SYNC_RESERVE_SECONDS": "2",
}

@dataclasses.dataclass
class SimulatedInstance:
    instance_id: str
    instance_type: str
    sandbox: Path
    imds: InstanceMetadata
    process: subprocess.Popen
    started: float
    killed: bool = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def training_started(sandbox: Path) -> bool:
    """Whether the agent on this instance has started the job's exec_command (read off its disk)."""
    return any(
        EXEC_PHASE_MARKER in log.read_text(errors="replace")
        for log in sandbox.glob("work/logs/attempt-*/output-*.log")
    )


class Ec2Simulator:
    """Watches moto for new instances of the stack and runs each one until it ends."""

    def __init__(self, ec2: Any, workdir: Path, base_env: dict[str, str], faults: Faults,
                 poll_seconds: float = 0.25, on_event: Callable[[str], None] | None = None,
                 interrupt_grace_seconds: float = INTERRUPT_GRACE_SECONDS):
        self.ec2 = ec2
        self.workdir = workdir
        self.base_env = base_env
        self.faults = faults
        self.poll_seconds = poll_seconds
        self.interrupt_grace_seconds = interrupt_grace_seconds
        self.on_event = on_event or (lambda message: log.info("%s", message))
        self.instances: dict[str, SimulatedInstance] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ec2sim", daemon=True)
        self._shim_dir = workdir / "bin"

    def start(self) -> "Ec2Simulator":
        self._write_shim()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            for instance in self.instances.values():
                self._kill(instance)

    def _write_shim(self) -> None:
        aws_shim.install(self._shim_dir)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.sync_once()
            except Exception:  # noqa: BLE001 - one bad poll must not end the simulation
                log.exception("EC2 simulator poll failed")

    def sync_once(self) -> None:
        """Boot instances moto knows and we don't; kill processes whose instance moto has ended."""
        states = self._stack_instances()
        with self._lock:
            for instance_id, described in states.items():
                known = self.instances.get(instance_id)
                if known is None and described["State"]["Name"] in LIVE_STATES:
                    self.instances[instance_id] = self._boot(described)
                elif known is not None and known.alive and described["State"]["Name"] not in LIVE_STATES:
                    self.on_event(f"instance {instance_id} {described['State']['Name']}: stopping its process")
                    self._kill(known)
            for instance in self.instances.values():
                self._after_exit(instance, states.get(instance.instance_id))

    def _stack_instances(self) -> dict[str, dict]:
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag-key", "Values": [layout.TAG_STACK]}]
        )
        return {
            instance["InstanceId"]: instance
            for page in pages
            for reservation in page["Reservations"]
            for instance in reservation["Instances"]
        }

    def _boot(self, described: dict) -> SimulatedInstance:
        instance_id = described["InstanceId"]
        sandbox = self.workdir / "instances" / instance_id
        for folder in ("home", "tmp"):
            (sandbox / folder).mkdir(parents=True, exist_ok=True)
        user_data = self.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        script = sandbox / "user-data.sh"
        script.write_bytes(base64.b64decode(user_data.get("UserData", {}).get("Value", "") or b""))
        imds = InstanceMetadata(
            instance_id, described["InstanceType"], described["Placement"]["AvailabilityZone"]
        ).start()
        argv, env = boot_command(sandbox, script, self._environment(sandbox, imds))  # the simulated AMI's /home
        with open(sandbox / "console.log", "ab") as console:
            process = subprocess.Popen(
                argv, cwd=sandbox, env=env,
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.on_event(f"instance {instance_id} ({described['InstanceType']}) booted: {sandbox}")
        instance = SimulatedInstance(instance_id, described["InstanceType"], sandbox, imds, process, time.time())
        if self.faults.take_interrupt():
            threading.Thread(target=self._interrupt, args=(instance,), daemon=True).start()
        return instance

    def _environment(self, sandbox: Path, imds: InstanceMetadata) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)
        return {
            **self.base_env,
            **AGENT_TIMINGS,
            "SPOTTRAIN_ROOT": str(sandbox),
            "SPOTTRAIN_PYTHON": sys.executable,
            "SPOTTRAIN_SHUTDOWN_COMMAND": "true",  # the simulator terminates the instance when the process ends
            "SPOTTRAIN_GPU": "-1",  # a simulated instance has no GPU
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint,
            "PATH": f"{self._shim_dir}:{venv_bin}:/usr/bin:/bin",
            # whatever the job's tools cache (pip, matplotlib, chainer datasets) stays in the sandbox
            "HOME": str(sandbox / "home"),
            "TMPDIR": str(sandbox / "tmp"),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",  # the shared virtualenv is not the instance's to write to
        }

    def _interrupt(self, instance: SimulatedInstance) -> None:
        # Counted from the training command's start, not from boot: clone, setup and data take
        # longer or shorter with the machine's load, and the point is to reclaim a training job.
        while not training_started(instance.sandbox):
            if self._stop.wait(0.2) or not instance.alive:
                return
        if self._stop.wait(self.faults.interrupt_after) or not instance.alive:
            return
        notice = instance.imds.post_spot_notice(in_seconds=self.interrupt_grace_seconds)
        self.on_event(f"fault interrupt-after: spot notice for {instance.instance_id}: {notice}")
        deadline = time.time() + self.interrupt_grace_seconds
        while time.time() < deadline and instance.alive and not self._stop.is_set():
            time.sleep(0.2)
        self.on_event(f"instance {instance.instance_id} reclaimed (spot interruption)")
        self._terminate(instance.instance_id)
        with self._lock:
            self._kill(instance)

    def _after_exit(self, instance: SimulatedInstance, described: dict | None) -> None:
        """The process ended by itself: like `shutdown -h now` with shutdown behaviour terminate."""
        if instance.alive or instance.killed:
            return
        instance.killed = True
        instance.imds.stop()
        if described is not None and described["State"]["Name"] in LIVE_STATES:
            self.on_event(f"instance {instance.instance_id} shut down (exit {instance.process.returncode})")
            self._terminate(instance.instance_id)

    def _terminate(self, instance_id: str) -> None:
        self.ec2.terminate_instances(InstanceIds=[instance_id])

    def _kill(self, instance: SimulatedInstance) -> None:
        if instance.alive:
            try:
                os.killpg(instance.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            instance.process.wait(timeout=10)
        if not instance.killed:
            instance.killed = True
            instance.imds.stop()
