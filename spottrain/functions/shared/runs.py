"""Which executions of the state machine are running a given job right now.

Everything a run touches is named by its exec_name: the bucket, the status markers, the instances'
job tag. Two runs of one name at once would read each other's markers and terminate each other's
instance, so a second start is refused while one is active (ValidateJob, and `spottrain submit`
before it starts anything). What job an execution runs is read from its input (the spec), not from
its name, which the console or another tool may choose freely.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any


@dataclasses.dataclass(frozen=True)
class Run:
    """A running execution of the job."""

    arn: str
    name: str
    started: dt.datetime


def job_of_input(text: str | None) -> str | None:
    """The exec_name an execution's input runs, or None when it names none."""
    try:
        document = json.loads(text or "null")
    except ValueError:
        return None
    name = document.get("exec_name") if isinstance(document, dict) else None
    return name if isinstance(name, str) else None


def running(sfn: Any, state_machine_arn: str, exec_name: str) -> list[Run]:
    """The state machine's RUNNING executions whose input runs `exec_name`, oldest first."""
    found = []
    pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn, statusFilter="RUNNING")
    for execution in (item for page in pages for item in page["executions"]):
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if described["status"] == "RUNNING" and job_of_input(described.get("input")) == exec_name:
            found.append(Run(described["executionArn"], described["name"], described["startDate"]))
    return sorted(found, key=lambda run: (run.started, run.arn))


def active_before(runs: list[Run], arn: str, started: dt.datetime) -> list[Run]:
    """The runs that hold the job before the execution `arn`, which started at `started`.

    Of two starts racing each other the earlier one proceeds (ties: the smaller ARN). The execution's own
    listing, when present, gives its start time at the precision the others' are compared at.
    """
    started = next((run.started for run in runs if run.arn == arn), started)
    return [run for run in runs if run.arn != arn and (run.started, run.arn) < (started, arn)]
