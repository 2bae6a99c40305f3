"""Everything moto cannot do for spottrain, bridged in this one place.

moto runs in this process (ThreadedMotoServer), so the bridge patches three of its code paths while
the emulator is up, and restores them on exit:

1. Lambda Invoke: moto needs Docker; we run the deployed handler in-process (see lambda_host), and
   map an exception to Lambda's error payload so Step Functions sees Error = the exception's class.
   The `lambda-error` fault answers with Lambda.ServiceException, which the workflow retries.
2. CloudFormation's AWS::StepFunctions::StateMachine: moto ignores DefinitionSubstitutions and
   DefinitionS3Location and registers the machine only with its non-executing backend. We render
   the definition and register it, under the same name (hence ARN), with the executing backend too.
3. EC2 RunInstances: the `no-capacity` fault makes it fail with InsufficientInstanceCapacity, the
   error AWS gives when a spot/on-demand pool has no room.
4. S3 bucket policies: moto ignores Conditions, so the job bucket's TLS-only statement (Deny unless
   aws:SecureTransport) would deny every request. The emulator speaks plain HTTP on loopback, where
   such a statement has nothing to guard; we evaluate the policy without it.
5. The `states:startExecution` integration (the workflow's hand-over to a fresh execution): moto
   stubs out the step that maps the ASL's PascalCase parameters (StateMachineArn, Name, Input) onto
   the API's member names, so botocore rejects the call. We map them as AWS does.
6. EC2 spot price history: moto answers $0.00001/h for every type, which would make every report
   claim a 100% saving. We answer a typical spot price instead: a fixed fraction of the on-demand
   list price in spottrain/functions/shared/pricing.py (the emulator has no spot market to sample).
7. EC2 GetConsoleOutput: moto answers a canned Linux boot log for every instance. We answer what the
   simulated instance really printed: the last 64 KiB of its `instances/<id>/console.log` (its user
   data's stdout and stderr), as AWS keeps the last 64 KiB of a console. (moto records every
   termination as Client.UserInitiatedShutdown, also an instance's own shutdown; the workflow never
   needs to tell those apart.)
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any

import botocore.session

from moto.awslambda.models import LambdaFunction
from moto.core.exceptions import ServiceException
from moto.ec2.models import EC2Backend
from moto.core.types import Base64EncodedString
from moto.ec2.models.instances import InstanceBackend
from moto.ec2.responses.general import General
from moto.ec2.responses.spot_instances import SpotInstances
from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3.models import FakeBucket, s3_backends
from moto.stepfunctions.models import StateMachine
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
    StateTaskServiceSfn,
)
from moto.stepfunctions.parser.models import stepfunctions_parser_backends

from spottrain.functions.shared.pricing import on_demand_price
from spottrain.local.faults import Faults
from spottrain.local.lambda_host import FunctionSpec, LambdaHost, error_payload

log = logging.getLogger(__name__)

TRANSIENT_LAMBDA_ERROR = "Lambda.ServiceException"
# Spot prices for GPU instances have mostly sat at 30-40% of on-demand; the emulator shows that.
SPOT_FRACTION_OF_ON_DEMAND = 0.35
CONSOLE_OUTPUT_BYTES = 64 * 1024  # what EC2 keeps of an instance's console


class InsufficientInstanceCapacity(ServiceException):
    code = "InsufficientInstanceCapacity"


class Bridge:
    """Installs the patches on enter, removes them on exit. One emulator per process at a time."""

    def __init__(self, host: LambdaHost, faults: Faults):
        self.host = host
        self.faults = faults
        self._originals: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> "Bridge":
        try:
            self._bridge_lambda_invoke()
            self._bridge_state_machines()
            self._bridge_capacity()
            self._patch(FakeBucket, "get_permission", bucket_permission)
            self._bridge_start_execution()
            self._bridge_spot_prices()
            self._bridge_console_output()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _bridge_lambda_invoke(self) -> None:
        def invoke(function: LambdaFunction, body: str, request_headers: Any, response_headers: Any) -> bytes:
            return self.invoke_lambda(function, body, response_headers)

        self._patch(LambdaFunction, "invoke", invoke)

    def _bridge_state_machines(self) -> None:
        original_create = StateMachine.create_from_cloudformation_json.__func__
        original_update = StateMachine.update_from_cloudformation_json.__func__

        def create(cls: type, name: str, template: Any, account_id: str, region: str, **kwargs: Any) -> StateMachine:
            render_definition(template["Properties"], account_id)
            return register_executable(original_create(cls, name, template, account_id, region, **kwargs))

        def update(cls: type, old: Any, name: str, template: Any, account_id: str, region: str) -> StateMachine:
            render_definition(template.get("Properties", {}), account_id)
            return register_executable(original_update(cls, old, name, template, account_id, region))

        self._patch(StateMachine, "create_from_cloudformation_json", classmethod(create))
        self._patch(StateMachine, "update_from_cloudformation_json", classmethod(update))

    def _bridge_capacity(self) -> None:
        original_run = InstanceBackend.run_instances

        def run_instances(backend: EC2Backend, *args: Any, **kwargs: Any) -> Any:
            self.check_capacity(backend, kwargs)
            return original_run(backend, *args, **kwargs)

        self._patch(InstanceBackend, "run_instances", run_instances)

    def _bridge_start_execution(self) -> None:
        original_normalise = StateTaskServiceSfn._normalise_parameters

        def normalise(task: StateTaskServiceSfn, parameters: dict, boto_service_name: str | None = None,
                      service_action_name: str | None = None) -> None:
            original_normalise(task, parameters, boto_service_name, service_action_name)
            if service_action_name is None:
                task._to_boto_request(parameters, _sfn_input_shape(task.resource.api_action))

        self._patch(StateTaskServiceSfn, "_normalise_parameters", normalise)

    def _bridge_spot_prices(self) -> None:
        original = SpotInstances.describe_spot_price_history

        def describe_spot_price_history(response: SpotInstances) -> Any:
            result = original(response)
            for entry in result.result["SpotPriceHistory"]:
                price = on_demand_price(entry["InstanceType"])
                if price:
                    entry["SpotPrice"] = f"{price * SPOT_FRACTION_OF_ON_DEMAND:.4f}"
            return result

        self._patch(SpotInstances, "describe_spot_price_history", describe_spot_price_history)

    def _bridge_console_output(self) -> None:
        original = General.get_console_output
        instances = self.host.workdir / "instances"  # where Ec2Simulator boots each instance of this run

        def get_console_output(response: General) -> Any:
            result = original(response)  # answers InvalidInstanceID.NotFound for an unknown id
            console = instances / result.result["InstanceId"] / "console.log"
            result.result["Output"] = Base64EncodedString.from_raw_string(console_tail(console))
            return result

        self._patch(General, "get_console_output", get_console_output)

    def __exit__(self, *exc: Any) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()
        self.host.close()

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._originals.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, replacement)

    def invoke_lambda(self, function: LambdaFunction, body: str, response_headers: Any) -> bytes:
        event = json.loads(body) if body else {}
        if self.faults.take_lambda_error(function.function_name):
            log.info("fault lambda-error: failing %s once", function.function_name)
            payload, errored = error_payload(
                RuntimeError(f"injected fault: {function.function_name} is unavailable"),
                error_type=TRANSIENT_LAMBDA_ERROR,
            ), True
        else:
            payload, errored = self.host.invoke(function_spec(function), event)
        if errored:
            response_headers["x-amz-function-error"] = "Unhandled"
            log.info("%s failed: %s: %s", function.function_name, payload["errorType"], payload["errorMessage"])
        return json.dumps(payload).encode()

    def check_capacity(self, backend: EC2Backend, kwargs: dict) -> None:
        instance_type = kwargs.get("instance_type") or ""
        if kwargs.get("launch_template") and kwargs.get("is_instance_type_default"):
            template = backend._get_template_from_args(kwargs["launch_template"]).data
            instance_type = template.get("InstanceType", instance_type)
        if self.faults.refuse_capacity(instance_type):
            raise InsufficientInstanceCapacity(
                "InsufficientInstanceCapacity",
                f"We currently do not have sufficient {instance_type} capacity in the Availability Zone you "
                "requested. (fault injected by the emulator: no-capacity)",
            )


def console_tail(path: Any) -> str:
    """The last CONSOLE_OUTPUT_BYTES of a simulated console; empty before the instance printed anything."""
    try:
        with open(path, "rb") as console:
            console.seek(0, 2)
            console.seek(max(0, console.tell() - CONSOLE_OUTPUT_BYTES))
            return console.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _sfn_input_shape(api_action: str) -> Any:
    """botocore's request shape for a Step Functions action named as in the ASL (startExecution)."""
    model = botocore.session.get_session().get_service_model("stepfunctions")
    return model.operation_model(api_action[0].upper() + api_action[1:]).input_shape


def function_spec(function: LambdaFunction) -> FunctionSpec:
    return FunctionSpec(
        name=function.function_name,
        arn=function.function_arn,
        handler=function.handler,
        code_sha=function.code_sha_256,
        code_zip=function.code_bytes,
        environment={k: str(v) for k, v in (function.environment_vars or {}).items()},
        timeout=int(function.timeout or 3),
        memory_mb=int(function.memory_size or 128),
    )


def render_definition(properties: dict, account_id: str) -> None:
    """Fill DefinitionString from Definition / DefinitionS3Location and apply DefinitionSubstitutions."""
    definition = properties.get("DefinitionString")
    if "Definition" in properties:
        definition = json.dumps(properties["Definition"])
    if "DefinitionS3Location" in properties:
        location = properties["DefinitionS3Location"]
        s3 = s3_backends[account_id]["aws"]
        definition = s3.get_object(location["Bucket"], location["Key"]).value.decode()
    substitutions = properties.get("DefinitionSubstitutions") or {}
    if definition and substitutions:
        definition = re.sub(
            r"\$\{([A-Za-z0-9_]+)\}",
            lambda match: str(substitutions.get(match.group(1), match.group(0))),
            definition,
        )
    properties["DefinitionString"] = definition or ""


def bucket_permission(bucket: FakeBucket, action: str, resource: str) -> Any:
    """moto's bucket policy check, minus statements that only guard against plain-HTTP requests."""
    if bucket.policy is None:
        return PermissionResult.NEUTRAL
    policy = json.loads(bucket.policy)
    statements = policy.get("Statement", [])
    statements = [s for s in (statements if isinstance(statements, list) else [statements]) if not _tls_only(s)]
    if not statements:
        return PermissionResult.NEUTRAL
    return IAMPolicy(json.dumps({**policy, "Statement": statements})).is_action_permitted(action, resource)


def _tls_only(statement: dict) -> bool:
    return statement.get("Effect") == "Deny" and statement.get("Condition") == {
        "Bool": {"aws:SecureTransport": "false"}
    }


def register_executable(machine: StateMachine) -> StateMachine:
    """Give the executing backend the same machine (same name, so the stack's ARN works there)."""
    region, account_id = machine.arn.split(":")[3:5]
    backend = stepfunctions_parser_backends[account_id][region]
    if any(known.arn == machine.arn for known in backend.state_machines):
        backend.update_state_machine(machine.arn, definition=machine.definition, role_arn=machine.roleArn)
    else:
        backend.create_state_machine(name=machine.name, definition=machine.definition, roleArn=machine.roleArn)
    return machine
