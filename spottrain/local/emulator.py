"""The emulator itself: `Emulator`, the stack it deploys and the events it raises (see spottrain/local/__init__.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3

from spottrain import jobs
from spottrain.contract.defaults import STACK_DEFAULTS
from spottrain.contract.instances import ENDED_INSTANCE_STATES
from spottrain.contract.layout import TAG_STACK
from spottrain.local import deploy
from spottrain.local.bridge import Bridge
from spottrain.local.ec2sim import AGENT_TIMINGS, Ec2Simulator
from spottrain.local.emails import EmailWatcher
from spottrain.local.faults import FaultError, Faults
from spottrain.local.iam_check import missing_permissions
from spottrain.local.instance_iam import InstanceCall, InstanceIam
from spottrain.local.lambda_host import ApiCall, LambdaHost
from spottrain.local.server import ACCOUNT_ID, LOOPBACK_NO_PROXY, REGION, MotoServer

__all__ = ["Emulator", "Faults", "FaultError", "DEFAULT_WORKDIR", "capacity_wait_seconds"]

log = logging.getLogger(__name__)

DEFAULT_WORKDIR = deploy.REPO_ROOT / ".spottrain"
STACK_NAME = "SpotTrainLocal"
AMI_PARAMETER = "/spottrain/local/ami-id"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
# Stack timings shrunk through context (never by patching) so a job's story takes seconds.
FAST_CONTEXT = {
    "bidWaitSeconds": 1,
    # 45 of the simulated agent's 1 s heartbeats: a frozen agent is caught in under a minute, a busy machine is
    # not. The wait's first heartbeat is due that long after the task starts, boot included: several simulated
    # instances booting at once on 2 busy cores (a sweep's 4) took 10-20 s to their first heartbeat.
    "heartbeatLostSeconds": 45,
    # a minute's wait for capacity: `--inject capacity-outage=20` ends well inside it on a busy machine
    "capacityWaitMinutes": 60,
    # moto rejects the public Powertools layer (not in its account); handlers use the venv's copy
    "powertoolsLayerArn": "",
}
STATUS_CHANGE = "Step Functions Execution Status Change"


def capacity_wait_seconds(spec: dict) -> float:
    """Seconds a job of this spec waits for spot capacity in the emulator: its capacity_wait_minutes,
    else the emulator stack's, at the emulator's one second a minute."""
    minutes = spec.get("capacity_wait_minutes")
    default = FAST_CONTEXT["capacityWaitMinutes"]
    assert isinstance(default, int)  # FAST_CONTEXT mixes types; this one is a number of minutes
    return float(default if minutes is None else minutes) * float(AGENT_TIMINGS["SPOTTRAIN_SECONDS_PER_MINUTE"])


INSTANCE_STATE_CHANGE = "EC2 Instance State-change Notification"
# moto logs every request and every caught task error at length; the emulator reports what matters
_QUIET_LOGGERS = {
    "werkzeug": logging.WARNING,
    "moto.stepfunctions.parser": logging.CRITICAL,
    "moto": logging.ERROR,  # its CloudFormation warns per skipped resource type; deploy.py reports them once
}


class EmulatorSession(boto3.Session):
    """A boto3 session whose clients talk to the emulator."""

    def __init__(self, endpoint: str):
        super().__init__(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        self.endpoint = endpoint

    def client(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint)
        return super().client(*args, **kwargs)

    def resource(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint)
        return super().resource(*args, **kwargs)


class Emulator:
    """Starts moto, deploys the stack, simulates EC2 and shows the emails; stops it all on exit."""

    def __init__(
        self,
        workdir: Path = DEFAULT_WORKDIR,
        faults: Faults | None = None,
        on_email: Callable[[dict], None] | None = None,
        context: dict | None = None,
        stack_name: str = STACK_NAME,
        agent_env: dict[str, str] | None = None,
    ):
        self.workdir = Path(workdir).resolve()
        self.faults = faults or Faults()
        self.on_email = on_email
        self.context_overrides = dict(context or {})
        self.agent_env = dict(agent_env or {})  # the simulated agents' environment over the shrunk timings
        self.faults.check_instance_types(self.allowed_instance_types)
        self.stack_name = stack_name
        self.endpoint = ""
        self.outputs: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self.run_dir = self.workdir
        self.instance_iam = InstanceIam()  # every simulated instance's call, authorized as IAM would
        self._server = MotoServer(wrap=self.instance_iam.wsgi)
        self._stack = contextlib.ExitStack()
        self._emails: EmailWatcher | None = None
        self.ec2: Ec2Simulator | None = None
        self.lambda_host: LambdaHost | None = None
        self._handled_status_changes: set[str] = set()
        self._instance_states: dict[str, str] = {}
        self._stop = threading.Event()

    @property
    def allowed_instance_types(self) -> frozenset[str]:
        """The stack's allow-list: this emulator's context override, else the stack's default."""
        allowed = {**STACK_DEFAULTS, **self.context_overrides}["allowedInstanceTypes"]
        return frozenset(allowed.split(",") if isinstance(allowed, str) else allowed)

    def inject(self, *specs: str) -> Faults:
        """Inject these faults (CLI syntax) instead of the current ones; the bridge and EC2 read them live."""
        self.faults.load(Faults.parse(specs, self.allowed_instance_types))
        return self.faults

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> "Emulator":
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    def _start(self) -> None:
        self.run_dir = self.workdir / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        self.run_dir.mkdir(parents=True)
        self._stack.enter_context(_quiet_loggers())
        with self._timed("setup"):
            context = self._start_server()
        with self._timed("synth"):
            cdk_out = deploy.synthesize(context, self.stack_name, self.workdir / "cdk.out")
        with self._timed("deploy"):
            self.outputs = deploy.deploy(self.session(), cdk_out, self.stack_name, self.workdir)
        self._start_watchers()

    @contextlib.contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.timings[step] = time.monotonic() - started

    def _start_server(self) -> dict:
        """moto with the bridge installed; returns the stack's context for this emulator."""
        self.endpoint = self._server.start()
        self._stack.callback(self._server.stop)
        self.instance_iam.connect(self.client)
        # minutes shrink for the hosted Lambdas (keep-alive, callback timeouts) as for the simulated agents
        minutes = {"SPOTTRAIN_SECONDS_PER_MINUTE": AGENT_TIMINGS["SPOTTRAIN_SECONDS_PER_MINUTE"]}
        self.lambda_host = LambdaHost(self.run_dir, {**self._base_env(), **minutes})
        self._stack.enter_context(Bridge(self.lambda_host, self.faults))
        return {**self._network_context(), **FAST_CONTEXT, **self.context_overrides}

    def _start_watchers(self) -> None:
        """The inbox, the simulated EC2 and the EventBridge stand-in; stopped in reverse order on exit."""
        self._emails = EmailWatcher(self.client("sqs"), self.client("sns"), self.outputs["TopicArn"], self.on_email)
        self._emails.start()
        self._stack.callback(self._emails.stop)
        self.ec2 = Ec2Simulator(
            self.client("ec2"),
            self.run_dir,
            self._base_env(),
            self.faults,
            s3=self.client("s3"),
            agent_env=self.agent_env,
            iam=self.instance_iam,
        ).start()
        self._stack.callback(self.ec2.stop)
        for target, name in (
            (self._watch_status_changes, "status-changes"),
            (self._watch_instance_states, "instance-state-changes"),
        ):
            watcher = threading.Thread(target=target, name=name, daemon=True)
            watcher.start()
            self._stack.callback(watcher.join, timeout=5)
        self._stack.callback(self._stop.set)

    def _base_env(self) -> dict[str, str]:
        """What every Lambda and simulated instance gets: the region, the endpoint, fake credentials."""
        return {
            **FAKE_CREDENTIALS,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            **LOOPBACK_NO_PROXY,
        }

    def _network_context(self) -> dict:
        """Where instances launch: an AMI moto knows behind the SSM parameter, and the default VPC.

        The VPC and subnets are left to the stack's run-time default-VPC lookup rather than named:
        moto's ids change whenever its state is reset in the same process, and naming them would
        make every such run re-synthesize the app.
        """
        # a fresh image is far cheaper than listing moto's thousands of public ones
        image = self.client("ec2").register_image(
            Name="spottrain-local-gpu", Architecture="x86_64", RootDeviceName="/dev/sda1", VirtualizationType="hvm"
        )["ImageId"]
        self.client("ssm").put_parameter(Name=AMI_PARAMETER, Value=image, Type="String", Overwrite=True)
        return {"vpcId": "", "subnetIds": [], "amiSsmParameter": AMI_PARAMETER}

    # --- clients ---------------------------------------------------------------------------------

    def session(self) -> EmulatorSession:
        return EmulatorSession(self.endpoint)

    def client(self, service: str) -> Any:
        return self.session().client(service)

    @property
    def emails(self) -> list[dict]:
        return self._emails.emails if self._emails else []

    @property
    def lambda_calls(self) -> set[ApiCall]:
        """Every AWS API call the deployed functions made so far (moto checks no IAM; iam_check does)."""
        return self.lambda_host.calls.copy() if self.lambda_host else set()  # copy() is atomic; set() is not

    @property
    def instance_calls(self) -> list[InstanceCall]:
        """Every IAM action the simulated instances' requests needed so far, with IAM's verdict on each."""
        return list(self.instance_iam.calls)

    def deployed_template(self) -> dict:
        body = self.client("cloudformation").get_template(StackName=self.stack_name)["TemplateBody"]
        return json.loads(body) if isinstance(body, str) else body

    def permission_gaps(self) -> list:
        """Calls the functions made so far that their deployed roles would deny on AWS."""
        return missing_permissions(self.deployed_template(), self.lambda_calls)

    def wait_for_emails(self, count: int, timeout: float) -> list[dict]:
        """Wait until `count` emails arrived (SNS to SQS to here takes a moment); returns them all."""
        deadline = time.monotonic() + timeout
        while len(self.emails) < count and time.monotonic() < deadline:
            if self._emails is not None:
                self._emails.drain()
            time.sleep(0.1)
        return list(self.emails)

    # --- jobs ------------------------------------------------------------------------------------

    @property
    def stack(self) -> jobs.Stack:
        return jobs.Stack.from_outputs(self.outputs)

    def start_job(self, spec: dict) -> str:
        """Start the workflow with the spec as its input, as `spottrain submit` does on AWS."""
        return jobs.start(self.client("stepfunctions"), self.stack, spec)

    def wait(
        self, execution_arn: str, timeout: float, on_progress: Callable[[jobs.Progress], None] | None = None
    ) -> dict:
        """Follow the execution until it ends."""
        return jobs.wait(
            self.client("stepfunctions"),
            self.client("s3"),
            self.stack,
            execution_arn,
            timeout=timeout,
            on_progress=on_progress,
            interval=0.5,
        )

    def cancel(self, exec_name: str) -> list[str]:
        """Stop the job and terminate what it launched, exactly as `spottrain cancel` does on AWS."""
        return jobs.cancel(self.client("stepfunctions"), self.client("lambda"), self.stack, exec_name)

    # --- EventBridge stand-in --------------------------------------------------------------------

    def _watch_status_changes(self) -> None:
        """moto's Step Functions emits no events: raise the stack's rule for ABORTED/TIMED_OUT ourselves."""
        sfn = self.client("stepfunctions")
        while not self._stop.wait(1.0):
            for status in ("ABORTED", "TIMED_OUT"):
                try:
                    ended = sfn.list_executions(stateMachineArn=self.outputs["StateMachineArn"], statusFilter=status)
                    for execution in ended["executions"]:
                        if execution["executionArn"] not in self._handled_status_changes:
                            self._send_status_change(sfn.describe_execution(executionArn=execution["executionArn"]))
                except Exception:  # noqa: BLE001 - keep watching; the next round retries
                    log.exception("raising status change events failed")

    def _watch_instance_states(self) -> None:
        """moto's EC2 emits no events: raise the stack's rule on EC2 state changes ourselves, within a second."""
        ec2, lambda_ = self.client("ec2"), self.client("lambda")
        while not self._stop.wait(0.25):
            try:
                pages = ec2.get_paginator("describe_instances").paginate(
                    Filters=[{"Name": f"tag:{TAG_STACK}", "Values": [self.stack_name]}]
                )
                for instance in (i for page in pages for r in page["Reservations"] for i in r["Instances"]):
                    self._raise_instance_state_change(lambda_, instance["InstanceId"], instance["State"]["Name"])
            except Exception:  # noqa: BLE001 - keep watching; the next round retries
                log.exception("raising EC2 state change events failed")

    def _raise_instance_state_change(self, lambda_: Any, instance_id: str, state: str) -> None:
        if self._instance_states.get(instance_id) == state:
            return
        self._instance_states[instance_id] = state
        if state not in ENDED_INSTANCE_STATES:  # what the stack's rule on EC2 state changes matches
            return
        response = lambda_.invoke(
            FunctionName=self.outputs["InstanceStateChangeFunctionName"],
            Payload=json.dumps(instance_state_change_event(instance_id, state)),
        )
        if response.get("FunctionError"):
            log.error("instance_state_change failed for %s: %s", instance_id, response["Payload"].read())

    def _send_status_change(self, described: dict) -> None:
        self._handled_status_changes.add(described["executionArn"])
        event = status_change_event(described)
        response = self.client("lambda").invoke(
            FunctionName=self.outputs["TerminateFunctionName"], Payload=json.dumps(event).encode()
        )
        if response.get("FunctionError"):
            log.error("terminate_instance failed for %s: %s", described["executionArn"], response["Payload"].read())


def instance_state_change_event(instance_id: str, state: str) -> dict:
    """The EventBridge event AWS sends when an EC2 instance changes state."""
    return {
        "version": "0",
        "id": secrets.token_hex(16),
        "detail-type": INSTANCE_STATE_CHANGE,
        "source": "aws.ec2",
        "account": ACCOUNT_ID,
        "time": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:ec2:{REGION}:{ACCOUNT_ID}:instance/{instance_id}"],
        "detail": {"instance-id": instance_id, "state": state},
    }


def status_change_event(described: dict) -> dict:
    """The EventBridge event AWS sends when an execution's status changes."""

    def millis(moment: Any) -> int | None:
        return int(moment.timestamp() * 1000) if isinstance(moment, dt.datetime) else None

    return {
        "version": "0",
        "id": secrets.token_hex(16),
        "detail-type": STATUS_CHANGE,
        "source": "aws.states",
        "account": ACCOUNT_ID,
        "time": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [described["executionArn"]],
        "detail": {
            "executionArn": described["executionArn"],
            "stateMachineArn": described["stateMachineArn"],
            "name": described.get("name"),
            "status": described["status"],
            "startDate": millis(described.get("startDate")),
            "stopDate": millis(described.get("stopDate")),
            "input": described.get("input"),
            "output": described.get("output"),
        },
    }


@contextlib.contextmanager
def _quiet_loggers():
    saved = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    for name, level in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
