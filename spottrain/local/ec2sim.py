"""Simulated EC2: boots every instance the workflow launches as a local process in a sandbox folder.

An instance is "booted" by running its user data (the real bootstrap, fetched from moto) with bash,
against the emulator's endpoint and a local IMDS. Its lifetime is tied to moto's record both ways:
when the process ends the instance terminates (instance-initiated shutdown = terminate, as the launch
template says), and when the workflow terminates the instance every process it started ends, daemons
included (see processes.py), as pulling the plug on a machine would.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from spottrain.contract import layout
from spottrain.contract.instances import LIVE_INSTANCE_STATES
from spottrain.local import aws_shim, interruptions, processes, shell
from spottrain.local.faults import Faults, Interruption
from spottrain.local.imds import InstanceMetadata
from spottrain.local.instance_iam import InstanceIam
from spottrain.local.server import ACCOUNT_ID, REGION
from spottrain.local.sandbox import boot_command

log = logging.getLogger(__name__)

# AWS gives two minutes between the spot notice and the reclaim; the emulator gives the agent this
# long to stop the training and sync its checkpoints.
INTERRUPT_GRACE_SECONDS = 10.0
# Agent timings shrunk so a demo takes seconds, not a quarter hour (spottrain/agent/options.py).
AGENT_TIMINGS = {
    "SPOTTRAIN_SYNC_SECONDS": "1",
    "SPOTTRAIN_HEARTBEAT_SECONDS": "1",
    "SPOTTRAIN_NOTICE_POLL_SECONDS": "0.5",
    "SPOTTRAIN_SECONDS_PER_MINUTE": "1",
    "SPOTTRAIN_KILL_GRACE_SECONDS": "3",
    "SPOTTRAIN_SYNC_RESERVE_SECONDS": "2",
}

CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@dataclasses.dataclass
class SimulatedInstance:
    instance_id: str
    instance_type: str
    sandbox: Path
    imds: InstanceMetadata
    tracked: processes.InstanceProcesses  # every process it started
    process: subprocess.Popen
    booted_ns: int
    guard: subprocess.Popen | None = None  # ends its processes should the emulator die without ending them
    killed: bool = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def command_pids(self) -> list[int]:
        return self.tracked.command_pids(self.process.pid)


class Ec2Simulator:
    """Watches moto for new instances of the stack and runs each one until it ends."""

    def __init__(
        self,
        ec2: Any,
        workdir: Path,
        base_env: dict[str, str],
        faults: Faults,
        *,
        s3: Any,
        poll_seconds: float = 0.25,
        on_event: Callable[[str], None] | None = None,
        interrupt_grace_seconds: float = INTERRUPT_GRACE_SECONDS,
        agent_env: dict[str, str] | None = None,
        iam: InstanceIam | None = None,
    ):
        self.ec2 = ec2
        self.workdir = workdir
        self.base_env = base_env
        self.faults = faults
        self.poll_seconds = poll_seconds
        self.interrupt_grace_seconds = interrupt_grace_seconds
        # Read at each boot: replaces AGENT_TIMINGS' values (a benchmark runs the agent at its real pace).
        self.agent_env = agent_env if agent_env is not None else {}
        self.on_event = on_event or (lambda message: log.info("%s", message))
        self.s3 = s3  # interrupt-at=checkpoint waits for the checkpoint in the job's bucket
        # With it, each instance signs with its role's own credentials from its IMDS, and IAM decides
        # its calls; without it (unit tests of the simulator alone), it uses the base environment's.
        self.iam = iam
        self.instances: dict[str, SimulatedInstance] = {}
        self._interrupters: list[threading.Thread] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ec2sim", daemon=True)
        self._shim_dir = workdir / "bin"

    def start(self) -> "Ec2Simulator":
        self._write_shim()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Pull the plug on every instance (its processes end, daemons too) once the watchers stopped."""
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            for instance in self.instances.values():
                self._kill(instance)
        for interrupter in self._interrupters:  # each ends with its instance, its verdict recorded
            interrupter.join(timeout=10)

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
                if known is None and described["State"]["Name"] in LIVE_INSTANCE_STATES:
                    self.instances[instance_id] = self._boot(described)
                elif known is not None and known.alive and described["State"]["Name"] not in LIVE_INSTANCE_STATES:
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
        if self.iam is not None:
            role, credentials = self.iam.issue(instance_id, described, REGION, ACCOUNT_ID)
            imds.assign_role(role.name, credentials)
        argv, env = boot_command(sandbox, script, self._environment(sandbox, imds))  # the simulated AMI's /home
        # moto's ids repeat from one emulator to the next: a token keeps the tracking of each apart
        tracked = processes.track(f"{instance_id}-{secrets.token_hex(4)}")
        guard = processes.guard(tracked)  # before the first process: no moment when a kill -9 would orphan it
        booted_ns = time.time_ns()
        with open(sandbox / "console.log", "ab") as console:
            process = subprocess.Popen(
                tracked.command(argv),
                cwd=sandbox,
                env={**env, **tracked.environment},
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.on_event(f"instance {instance_id} ({described['InstanceType']}) booted: {sandbox}")
        instance = SimulatedInstance(
            instance_id, described["InstanceType"], sandbox, imds, tracked, process, booted_ns, guard=guard
        )
        trigger = self.faults.take_interrupt(instance_id)
        if trigger is not None:
            self._start_interrupter(instance, trigger)
        return instance

    def _environment(self, sandbox: Path, imds: InstanceMetadata) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)
        # The SDKs prefer environment credentials to the IMDS's: an instance with a role has none.
        base = {
            name: value for name, value in self.base_env.items() if self.iam is None or name not in CREDENTIAL_VARIABLES
        }
        return {
            **base,
            # EC2's metadata service answers in milliseconds; this one shares a busy laptop's cores with the
            # emulator, and the SDKs give it one try of one second before "Unable to locate credentials".
            "AWS_METADATA_SERVICE_TIMEOUT": "5",
            "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "5",
            **AGENT_TIMINGS,
            **self.agent_env,
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

    def _start_interrupter(self, instance: SimulatedInstance, trigger: Interruption) -> None:
        thread = threading.Thread(
            target=self._interrupt, args=(instance, trigger), name=f"interrupt-{instance.instance_id}", daemon=True
        )
        self._interrupters.append(thread)
        thread.start()

    def _interrupt(self, instance: SimulatedInstance, trigger: Interruption) -> None:
        try:
            interruptions.interrupt(
                instance, trigger, s3=self.s3, grace_seconds=self.interrupt_grace_seconds, on_event=self.on_event
            )
        except interruptions.NeverFired as missed:
            self.faults.interrupt_missed(instance.instance_id, str(missed))
            self.on_event(f"fault {trigger} never fired on {instance.instance_id}: {missed}")
            return
        except Exception as error:  # noqa: BLE001 - the verdict must not wait for a thread that died
            log.exception("interrupting %s failed", instance.instance_id)
            self.faults.interrupt_missed(instance.instance_id, f"the simulator failed: {error!r}")
            return
        self.faults.interrupt_fired(instance.instance_id)
        self._reclaim(instance)

    def _reclaim(self, instance: SimulatedInstance) -> None:
        """AWS takes a noticed instance at the notice's time, if its agent has not shut it down before."""
        deadline = time.monotonic() + self.interrupt_grace_seconds
        while instance.alive and time.monotonic() < deadline:
            if self._stop.wait(0.1):
                return  # stop() pulls the plug on every instance
        self.on_event(f"instance {instance.instance_id} reclaimed (spot interruption)")
        self._terminate(instance.instance_id)
        with self._lock:
            self._kill(instance)

    def _after_exit(self, instance: SimulatedInstance, described: dict | None) -> None:
        """The process ended by itself: like `shutdown -h now` with shutdown behaviour terminate."""
        if instance.alive or instance.killed:
            return
        self._kill(instance)  # what its commands left running goes down with the machine
        if described is not None and described["State"]["Name"] in LIVE_INSTANCE_STATES:
            self.on_event(f"instance {instance.instance_id} shut down (exit {instance.process.returncode})")
            self._terminate(instance.instance_id)

    def _terminate(self, instance_id: str) -> None:
        self.ec2.terminate_instances(InstanceIds=[instance_id])

    def _kill(self, instance: SimulatedInstance) -> None:
        """End every process the instance started, and wait until none is left."""
        instance.tracked.end_all()
        try:
            instance.process.wait(timeout=processes.END_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            log.error("instance %s: its first process %d survives SIGKILL", instance.instance_id, instance.process.pid)
        if not instance.killed:
            instance.killed = True
            if instance.guard is not None:
                processes.release(instance.guard)
            instance.imds.stop()
            (instance.sandbox / shell.ENDED_FILE).touch()  # `spottrain shell` no longer finds it
