"""Everything moto cannot do for spottrain, bridged in this one place.

moto runs in this process (ThreadedMotoServer), so the bridge patches its code paths while
the emulator is up, and restores them on exit:

1. Lambda Invoke: moto needs Docker; we run the deployed handler in-process (see lambda_host), and
   map an exception to Lambda's error payload so Step Functions sees Error = the exception's class.
   The `lambda-error` fault answers with Lambda.ServiceException, which the workflow retries.
2. CloudFormation's AWS::StepFunctions::StateMachine: moto ignores DefinitionSubstitutions and
   DefinitionS3Location and registers the machine only with its non-executing backend. We render
   the definition and register it, under the same name (hence ARN), with the executing backend too.
3. EC2 RunInstances: the `no-capacity` and `capacity-outage` faults make it fail with
   InsufficientInstanceCapacity, the error AWS gives when a spot/on-demand pool has no room.
4. S3 bucket policies: moto ignores Conditions, so every conditioned Deny of a job bucket (TLS only;
   only this job's instances) would deny every request. Requests moto evaluates come from the
   account's own credentials (Lambdas, CLI), which those statements do not concern (the emulator
   speaks plain HTTP on loopback, where the TLS statement has nothing to guard); the simulated
   instances' requests are authorized with their conditions before moto sees them (instance_iam.py).
   So moto evaluates the policy without its conditioned statements.
5. The spot market (`SpotMarket`, which the function tests install on their own): moto answers
   $0.00001/h for every type's spot price history, which would make every report claim a 100% saving,
   and has no GetSpotPlacementScores at all. We answer a typical spot price instead (a fixed fraction
   of the on-demand list price in spottrain/functions/shared/pricing.py), and fixed placement scores:
   each AZ of the region scores 10 minus its position in AZ-name order (us-east-1a 10, us-east-1b 9, ...,
   at least 1), whatever the type. The emulator has no market to sample; these make runs repeatable.
5b. The AWS Price List Query API (`pricing:GetProducts`), which moto lacks: answered below the
   client's call (so the IAM check still records it) with one product per instance type the bundled
   table of spottrain/functions/shared/pricing.py lists, in the shape AWS returns, for any region.
6. EC2 GetConsoleOutput: moto answers a canned Linux boot log for every instance. We answer what the
   simulated instance really printed: the last 64 KiB of its `instances/<id>/console.log` (its user
   data's stdout and stderr), as AWS keeps the last 64 KiB of a console. (moto records every
   termination as Client.UserInitiatedShutdown, also an instance's own shutdown; the workflow never
   needs to tell those apart.)
7. The attempt's callback wait (`lambda:invoke.waitForTaskToken`), in `CallbackBridge`, which the
   state machine tests install on their own: moto 5.2.5's answers differ from AWS's in six ways the
   workflow relies on. (a) SendTaskFailure drops `cause`. (b) A heartbeat timeout fails as
   States.Timeout, not States.HeartbeatTimeout. (c) An answer or heartbeat sent while the invoke
   still runs (await_training answering an attempt that already ended) is lost when HeartbeatSeconds
   is set. (d) Answers to a wait that is over (late, duplicate, execution stopped) are accepted
   silently; AWS answers TaskTimedOut. (e) StopExecution does not wake a waiting task, so
   `spottrain cancel` would leave the execution RUNNING until its timeout, then FAILED, not ABORTED.
   (f) A Retry of the task reuses its token, so the retry ends at once with the first try's answer.
8. A sweep's child executions (`states:startExecution.sync:2`), in `NestedExecutionBridge`: moto 5.2.5
   (a) sends the task's parameters as written (`StateMachineArn`) where botocore wants the API's member
   names (`stateMachineArn`), so every start fails with States.Runtime, and reads the answer under
   AWS's ASL names (`ExecutionArn`, `Status`) that botocore returns in camelCase; (b) stopping the
   parent leaves its running children running. On AWS a `.sync` task stops the execution it waits on
   when its own execution is stopped (hence states:StopExecution in the IAM policy AWS documents for it:
   https://docs.aws.amazon.com/step-functions/latest/dg/stepfunctions-iam.html); the bridge does the same.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from types import SimpleNamespace
from typing import Any

from botocore.client import BaseClient

from moto.awslambda.models import LambdaFunction
from moto.core.exceptions import AWSError, ServiceException
from moto.core.responses import ActionResult, EmptyResult
from moto.ec2.models import EC2Backend
from moto.core.types import Base64EncodedString
from moto.ec2.models.instances import InstanceBackend
from moto.ec2.responses.general import General
from moto.ec2.responses.spot_instances import SpotInstances
from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3.models import FakeBucket, s3_backends
from moto.stepfunctions.models import StateMachine
from moto.stepfunctions.parser.api import ExecutionStatus, HistoryEventType, TaskTimedOutEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
    StateTaskServiceSfn,
)
from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint, HeartbeatTimeoutError
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
from moto.stepfunctions.parser.backend.execution import Execution as ParserExecution
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from moto.stepfunctions.responses import StepFunctionResponse
from moto.stepfunctions.parser.models import stepfunctions_parser_backends
from moto.stepfunctions.models import ExecutionDoesNotExist

from spottrain.functions.shared.pricing import on_demand_price
from spottrain.local.faults import Faults
from spottrain.local.lambda_host import FunctionSpec, LambdaHost, error_payload

log = logging.getLogger(__name__)

TRANSIENT_LAMBDA_ERROR = "Lambda.ServiceException"
# Spot prices for GPU instances have mostly sat at 30-40% of on-demand; the emulator shows that.
SPOT_FRACTION_OF_ON_DEMAND = 0.35
CONSOLE_OUTPUT_BYTES = 64 * 1024  # what EC2 keeps of an instance's console
PLACEMENT_SCORE_BEST = 10  # GetSpotPlacementScores answers 1..10


class InsufficientInstanceCapacity(ServiceException):
    code = "InsufficientInstanceCapacity"


_ABSENT = object()  # an attribute the owner only inherits: removed again on exit


class Patches:
    """Replaces attributes of moto's classes; puts every one back on exit, in reverse order."""

    def __init__(self) -> None:
        self._originals: list[tuple[Any, str, Any]] = []

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._originals.append((owner, name, owner.__dict__.get(name, _ABSENT)))
        setattr(owner, name, replacement)

    def __exit__(self, *exc: Any) -> None:
        for owner, name, original in reversed(self._originals):
            if original is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._originals.clear()


class TaskTimedOut(AWSError):
    """What AWS answers SendTask* for a wait that is over (moto's own class serialises without a code)."""

    TYPE = "TaskTimedOut"
    STATUS = 400


HEARTBEAT_TIMEOUT = StatesErrorName(typ=StatesErrorNameType.StatesHeartbeatTimeout)
TIMEOUT = StatesErrorName(typ=StatesErrorNameType.StatesTimeout)


class CallbackBridge(Patches):
    """moto's `.waitForTaskToken` answering as AWS does (item 7 of this module's list)."""

    def __enter__(self) -> "CallbackBridge":
        try:
            self._keep_failure_cause()
            self._name_heartbeat_timeouts()
            self._keep_early_answers()
            self._refuse_answers_to_ended_waits()
            self._wake_waits_on_stop()
            self._fresh_token_per_retry()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _keep_failure_cause(self) -> None:  # (a)
        def send_task_failure(response: StepFunctionResponse) -> EmptyResult:
            response.stepfunction_backend.send_task_failure(
                response._get_param("taskToken"), error=response._get_param("error"), cause=response._get_param("cause")
            )
            return EmptyResult()

        self._patch(StepFunctionResponse, "send_task_failure", send_task_failure)

    def _name_heartbeat_timeouts(self) -> None:  # (b)
        original_from_error = StateTaskServiceCallback._from_error
        original_equals = ErrorEqualsDecl._eval_body

        def from_error(task: StateTaskServiceCallback, env: Environment, ex: Exception) -> FailureEvent:
            if not isinstance(ex, HeartbeatTimeoutError):
                return original_from_error(task, env, ex)
            details = TaskTimedOutEventDetails(
                resourceType=task._get_sfn_resource_type(),
                resource=task._get_sfn_resource(),
                error=HEARTBEAT_TIMEOUT.error_name,
            )
            return FailureEvent(
                env=env,
                error_name=HEARTBEAT_TIMEOUT,
                event_type=HistoryEventType.TaskTimedOut,
                event_details=EventDetails(taskTimedOutEventDetails=details),
            )

        def equals(decl: ErrorEqualsDecl, env: Environment) -> None:
            # As on AWS, a catcher of States.Timeout also catches a heartbeat timeout.
            if env.stack[-1] == HEARTBEAT_TIMEOUT and TIMEOUT in decl.error_names:
                env.stack.pop()
                env.stack.append(True)
                return
            original_equals(decl, env)

        self._patch(StateTaskServiceCallback, "_from_error", from_error)
        self._patch(ErrorEqualsDecl, "_eval_body", equals)

    def _keep_early_answers(self) -> None:  # (c)
        original_setup = CallbackEndpoint.setup_heartbeat_endpoint
        original_heartbeat = CallbackEndpoint.notify_heartbeat

        def setup_heartbeat_endpoint(endpoint: CallbackEndpoint, heartbeat_seconds: int) -> Any:
            heartbeat = original_setup(endpoint, heartbeat_seconds)
            if endpoint._outcome is not None or getattr(endpoint, "_early_heartbeat", False):
                heartbeat.notify()
            return heartbeat

        def notify_heartbeat(endpoint: CallbackEndpoint) -> bool:
            if endpoint._heartbeat_endpoint is None:
                endpoint._early_heartbeat = True
                return True
            return original_heartbeat(endpoint)

        self._patch(CallbackEndpoint, "setup_heartbeat_endpoint", setup_heartbeat_endpoint)
        self._patch(CallbackEndpoint, "notify_heartbeat", notify_heartbeat)

    def _refuse_answers_to_ended_waits(self) -> None:  # (d)
        original_interrupt = CallbackEndpoint.interrupt_all

        def interrupt_all(endpoint: CallbackEndpoint) -> None:
            endpoint._spottrain_closed = True  # moto calls this whenever the wait ends, however
            original_interrupt(endpoint)

        self._patch(CallbackEndpoint, "interrupt_all", interrupt_all)
        for name in ("send_task_heartbeat", "send_task_success", "send_task_failure"):
            self._patch(
                StepFunctionsParserBackend, name, _refusing_ended_waits(StepFunctionsParserBackend.__dict__[name])
            )

    def _wake_waits_on_stop(self) -> None:  # (e)
        original_stop = ParserExecution.stop
        original_set_error = Environment.set_error

        def stop(execution: ParserExecution, stop_date: Any, error: Any, cause: Any) -> None:
            original_stop(execution, stop_date, error, cause)
            env = getattr(execution.exec_worker, "env", None)
            for endpoint in list(env.callback_pool_manager._pool.values()) if env is not None else []:
                endpoint.interrupt_all()

        def set_error(env: Environment, error: Any) -> None:
            if not isinstance(env._program_state, ProgramStopped):  # the woken task must not undo ABORTED
                original_set_error(env, error)

        self._patch(ParserExecution, "stop", stop)
        self._patch(Environment, "set_error", set_error)

    def _fresh_token_per_retry(self) -> None:  # (f)
        original_attempt = StateTaskServiceCallback._evaluate_with_timeout  # inherited

        def evaluate_with_timeout(task: StateTaskServiceCallback, env: Environment) -> Any:
            context = env.states.context_object.context_object_data
            if task.resource.condition == ResourceCondition.WaitForTaskToken and context["State"].get("RetryCount", 0):
                stale = env.callback_pool_manager.get(context["Task"]["Token"])
                if stale is not None:
                    stale._spottrain_closed = True  # the previous try's token answers TaskTimedOut from now on
                env.callback_pool_manager.add(env.states.context_object.update_task_token())
            return original_attempt(task, env)

        self._patch(StateTaskServiceCallback, "_evaluate_with_timeout", evaluate_with_timeout)


def _refusing_ended_waits(original: Any) -> Any:
    def answer(backend: StepFunctionsParserBackend, task_token: str, *args: Any, **kwargs: Any) -> Any:
        if _wait_ended(backend, task_token):
            raise TaskTimedOut("Task Timed Out: 'Provided task does not exist anymore'")
        return original(backend, task_token, *args, **kwargs)

    return answer


def _wait_ended(backend: StepFunctionsParserBackend, token: str) -> bool:
    for execution in backend._get_executions():
        env = getattr(execution.exec_worker, "env", None)
        endpoint = env.callback_pool_manager.get(token) if env is not None else None
        if endpoint is not None:
            return getattr(endpoint, "_spottrain_closed", False) or execution.exec_status != ExecutionStatus.RUNNING
    return False


class NestedExecutionBridge(Patches):
    """moto's `startExecution.sync:2` as AWS runs it (item 8 of this module's list)."""

    def __enter__(self) -> "NestedExecutionBridge":
        original_parameters = StateTaskServiceSfn._normalise_parameters
        original_build = StateTaskServiceSfn._build_sync2_resolver
        original_sync = StateTaskServiceSfn._eval_sync

        def normalise_parameters(task: StateTaskServiceSfn, parameters: dict, *args: Any, **kwargs: Any) -> None:
            original_parameters(task, parameters, *args, **kwargs)  # Input becomes a JSON string there
            for name in list(parameters):
                parameters[_camel(name)] = parameters.pop(name)

        def normalise_response(task: StateTaskServiceSfn, response: Any, *args: Any, **kwargs: Any) -> None:
            if isinstance(response, dict):
                for name in list(response):
                    response[name[:1].upper() + name[1:]] = _epoch_millis(response.pop(name))

        def build_sync2_resolver(task: StateTaskServiceSfn, env: Environment, *args: Any, **kwargs: Any) -> Any:
            env._spottrain_child = env.stack[-1]["ExecutionArn"]  # popped by the original
            return original_build(task, env, *args, **kwargs)

        def eval_sync(task: StateTaskServiceSfn, env: Environment, *args: Any, **kwargs: Any) -> Any:
            try:
                return original_sync(task, env, *args, **kwargs)
            finally:
                if not env.is_running():  # the parent was stopped while its child ran
                    stop_child(getattr(env, "_spottrain_child", None))

        try:
            self._patch(StateTaskServiceSfn, "_normalise_parameters", normalise_parameters)
            self._patch(StateTaskServiceSfn, "_normalise_response", normalise_response)
            self._patch(StateTaskServiceSfn, "_build_sync2_resolver", build_sync2_resolver)
            self._patch(StateTaskServiceSfn, "_eval_sync", eval_sync)
        except BaseException:
            self.__exit__()
            raise
        return self


def _epoch_millis(value: Any) -> Any:
    """Dates as AWS's `.sync:2` output gives them (epoch milliseconds); botocore hands moto datetimes."""
    return round(value.timestamp() * 1000) if isinstance(value, dt.datetime) else value


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def stop_child(execution_arn: str | None) -> None:
    """StopExecution on a child a stopped parent waited on; one that already ended stays as it ended."""
    if not execution_arn:
        return
    region, account_id = execution_arn.split(":")[3:5]
    backend = stepfunctions_parser_backends[account_id][region]
    try:
        execution = backend.describe_execution(execution_arn)
        if execution.status == "RUNNING":
            backend.stop_execution(execution_arn)
            log.info("stopped %s with its stopped parent", execution_arn)
    except ExecutionDoesNotExist:
        pass


class SpotMarket(Patches):
    """Spot prices and placement scores for moto's EC2 (see 5. above); restored on exit."""

    def __enter__(self) -> "SpotMarket":
        original = SpotInstances.describe_spot_price_history

        def describe_spot_price_history(response: SpotInstances) -> Any:
            result = original(response)
            for entry in result.result["SpotPriceHistory"]:
                price = on_demand_price(entry["InstanceType"])
                if price:
                    entry["SpotPrice"] = f"{price * SPOT_FRACTION_OF_ON_DEMAND:.4f}"
            return result

        self._patch(SpotInstances, "describe_spot_price_history", describe_spot_price_history)
        self._patch(SpotInstances, "get_spot_placement_scores", get_spot_placement_scores)
        return self


def get_spot_placement_scores(response: SpotInstances) -> ActionResult:
    region = response.region
    if not response._get_bool_param("SingleAvailabilityZone", False):
        return ActionResult({"SpotPlacementScores": [{"Region": region, "Score": PLACEMENT_SCORE_BEST}]})
    zones = sorted(response.ec2_backend.describe_availability_zones(), key=lambda zone: zone.name)
    return ActionResult(
        {
            "SpotPlacementScores": [
                {"Region": region, "AvailabilityZoneId": zone.zone_id, "Score": max(1, PLACEMENT_SCORE_BEST - index)}
                for index, zone in enumerate(zones)
            ]
        }
    )


class Bridge(Patches):
    """Installs the patches on enter, removes them on exit. One emulator per process at a time."""

    def __init__(self, host: LambdaHost, faults: Faults):
        super().__init__()
        self.host = host
        self.faults = faults
        self._callbacks = CallbackBridge()
        self._nested = NestedExecutionBridge()
        self._market = SpotMarket()

    def __enter__(self) -> "Bridge":
        try:
            self._callbacks.__enter__()
            self._nested.__enter__()
            self._bridge_lambda_invoke()
            self._bridge_state_machines()
            self._bridge_capacity()
            self._patch(FakeBucket, "get_permission", bucket_permission)
            self._market.__enter__()
            self._bridge_price_list()
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

    def _bridge_price_list(self) -> None:
        original = BaseClient._make_request

        def make_request(client: BaseClient, operation_model: Any, request_dict: dict, request_context: dict) -> Any:
            if client.meta.service_model.service_name == "pricing" and operation_model.name == "GetProducts":
                return SimpleNamespace(status_code=200, headers={}), price_list_answer(request_dict["body"])
            return original(client, operation_model, request_dict, request_context)

        self._patch(BaseClient, "_make_request", make_request)

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
        super().__exit__(*exc)
        self._nested.__exit__(*exc)
        self._market.__exit__(*exc)
        self._callbacks.__exit__(*exc)
        self.host.close()

    def invoke_lambda(self, function: LambdaFunction, body: str, response_headers: Any) -> bytes:
        event = json.loads(body) if body else {}
        if self.faults.take_lambda_error(function.function_name):
            log.info("fault lambda-error: failing %s once", function.function_name)
            payload, errored = (
                error_payload(
                    RuntimeError(f"injected fault: {function.function_name} is unavailable"),
                    error_type=TRANSIENT_LAMBDA_ERROR,
                ),
                True,
            )
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
                "requested. (fault injected by the emulator: no-capacity or capacity-outage)",
            )


def price_list_answer(body: Any) -> dict:
    """GetProducts' answer for the request's instanceType filter: its bundled price, hourly, on-demand."""
    request = json.loads(body) if isinstance(body, (str, bytes)) else body
    filters = {item["Field"]: item["Value"] for item in request.get("Filters", [])}
    price = on_demand_price(filters.get("instanceType", ""))
    if price is None:
        return {"FormatVersion": "aws_v1", "PriceList": []}
    dimension = {"unit": "Hrs", "pricePerUnit": {"USD": f"{price:.10f}"}, "description": "bridged by the emulator"}
    document = {
        "product": {"attributes": filters},
        "terms": {"OnDemand": {"EMULATOR.TERM": {"priceDimensions": {"EMULATOR.TERM.HRS": dimension}}}},
    }
    return {"FormatVersion": "aws_v1", "PriceList": [json.dumps(document)]}


def console_tail(path: Any) -> str:
    """The last CONSOLE_OUTPUT_BYTES of a simulated console; empty before the instance printed anything."""
    try:
        with open(path, "rb") as console:
            console.seek(0, 2)
            console.seek(max(0, console.tell() - CONSOLE_OUTPUT_BYTES))
            return console.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


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
    """moto's bucket policy check, minus the conditioned statements it cannot evaluate (see item 4)."""
    if bucket.policy is None:
        return PermissionResult.NEUTRAL
    policy = json.loads(bucket.policy)
    statements = policy.get("Statement", [])
    statements = [s for s in (statements if isinstance(statements, list) else [statements]) if not s.get("Condition")]
    if not statements:
        return PermissionResult.NEUTRAL
    return IAMPolicy(json.dumps({**policy, "Statement": statements})).is_action_permitted(action, resource)


def register_executable(machine: StateMachine) -> StateMachine:
    """Give the executing backend the same machine (same name, so the stack's ARN works there)."""
    region, account_id = machine.arn.split(":")[3:5]
    backend = stepfunctions_parser_backends[account_id][region]
    if any(known.arn == machine.arn for known in backend.state_machines):
        backend.update_state_machine(machine.arn, definition=machine.definition, role_arn=machine.roleArn)
    else:
        backend.create_state_machine(name=machine.name, definition=machine.definition, roleArn=machine.roleArn)
    return machine
