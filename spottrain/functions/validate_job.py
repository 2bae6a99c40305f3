"""ValidateJob: check the execution input against the job schema and the stack's rules, build the state.

No Catch in the workflow: an InvalidJobSpec or JobAlreadyRunning fails the execution before anything
is created.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from spottrain.functions.shared import report, runs, runtime
from spottrain.functions.shared.awserrors import transient_errors
from spottrain.contract.settings import Settings
from spottrain.contract.jobspec import InvalidJobSpec, validate_spec

__all__ = ["InvalidJobSpec", "JobAlreadyRunning", "build_state", "refuse_second_run", "handler"]

logger = Logger(service="spottrain")


class JobAlreadyRunning(Exception):
    """Another execution runs a job of the same exec_name: they would share its bucket and instances."""


def build_state(event: dict, settings: Settings) -> dict:
    """The initial state object (docs/ARCHITECTURE.md): the validated job and this execution's identity."""
    execution = event.get("execution") or {}
    spec = event.get("spec")
    if isinstance(spec, dict) and "sweep" in spec:
        # Run as one job, a sweep would silently train only the base spec, once.
        raise InvalidJobSpec(
            [
                "sweep: the job state machine runs one job, not a sweep. Start the spec with "
                "`spottrain submit` (it starts the stack's sweep state machine), or remove sweep."
            ]
        )
    job = validate_spec(spec, settings)
    return {
        "job": job,
        "execution": {
            "id": execution.get("id"),
            "name": execution.get("name"),
            "started_at": execution.get("started_at"),
        },
    }


def refuse_second_run(sfn: Any, state_machine_arn: str, state: dict) -> None:
    """Raise JobAlreadyRunning when an execution that started first runs the same job."""
    exec_name, execution = state["job"]["exec_name"], state["execution"]
    with transient_errors():
        holders = runs.active_before(
            runs.running(sfn, state_machine_arn, exec_name), execution["id"], report.parse_time(execution["started_at"])
        )
    if holders:
        holder = holders[0]
        raise JobAlreadyRunning(
            f'exec_name: job "{exec_name}" is already running as execution {holder.name} '
            f"(started {report.isoformat(holder.started)}); two runs would share its bucket, markers and instances. "
            f"Wait for it to end, stop it with `spottrain cancel {exec_name}`, or choose another exec_name."
        )


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    try:
        state = build_state(event, runtime.settings())
    except InvalidJobSpec as exc:
        logger.warning("job spec rejected", extra={"problems": exc.problems})
        raise
    refuse_second_run(runtime.client("stepfunctions"), event["state_machine"], state)
    logger.info("job spec accepted", extra={"job": state["job"]["exec_name"], "bucket": state["job"]["bucket"]})
    return state
