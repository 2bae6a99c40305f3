"""ValidateJob: check the execution input against the job schema and the stack's rules, build the state.

No Catch in the workflow: an InvalidJobSpec fails the execution before anything is created.
"""
from __future__ import annotations


from aws_lambda_powertools import Logger

from lambdas.shared import runtime
from lambdas.shared.config import Settings
from lambdas.shared.jobspec import InvalidJobSpec, validate_spec

__all__ = ["InvalidJobSpec", "build_state", "handler"]

logger = Logger(service="spottrain")


def build_state(event: dict, settings: Settings) -> dict:
    """The initial state object (docs/ARCHITECTURE.md): the validated job and this execution's identity."""
    execution = event.get("execution") or {}
    job = validate_spec(event.get("spec"), settings)
    return {
        "job": job,
        "execution": {
            "id": execution.get("id"),
            "name": execution.get("name"),
            "started_at": execution.get("started_at"),
            "first_id": execution.get("id"),
            "handovers": 0,
        },
    }


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    try:
        state = build_state(event, runtime.settings())
    except InvalidJobSpec as exc:
        logger.warning("job spec rejected", extra={"problems": exc.problems})
        raise
    logger.info("job spec accepted", extra={"job": state["job"]["exec_name"], "bucket": state["job"]["bucket"]})
    return state
