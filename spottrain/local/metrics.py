"""What the emulator itself costs a job: how long each poll takes, how late each wait ends.

Read from an execution's history, so the numbers describe the run that just happened.
"""
from __future__ import annotations

import json
import statistics
from typing import Any

POLL_STATE = "PollCompletion"
POLL_WAIT_STATE = "WaitForTraining"


def poll_overhead(sfn: Any, execution_arns: list[str]) -> dict:
    """Mean seconds per PollCompletion task and mean lateness of each WaitForTraining, over the chain."""
    task_seconds: list[float] = []
    wait_overrun: list[float] = []
    for arn in execution_arns:
        events = _history(sfn, arn)
        task_seconds += _durations(events, "Task", POLL_STATE)
        wait_overrun += [
            seconds - requested
            for seconds, requested in zip(_durations(events, "Wait", POLL_WAIT_STATE), _requested_waits(events))
        ]
    return {
        "polls": len(task_seconds),
        "poll_task_seconds": round(statistics.fmean(task_seconds), 3) if task_seconds else None,
        "wait_overrun_seconds": round(statistics.fmean(wait_overrun), 3) if wait_overrun else None,
    }


def _history(sfn: Any, arn: str) -> list[dict]:
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
    return sorted((event for page in pages for event in page["events"]), key=lambda event: event["id"])


def _durations(events: list[dict], kind: str, state: str) -> list[float]:
    """Seconds from each `<kind>StateEntered` of `state` to the next `<kind>StateExited`."""
    durations, entered = [], None
    for event in events:
        if event["type"] == f"{kind}StateEntered" and event["stateEnteredEventDetails"]["name"] == state:
            entered = event["timestamp"]
        elif event["type"] == f"{kind}StateExited" and entered is not None:
            durations.append((event["timestamp"] - entered).total_seconds())
            entered = None
    return durations


def _requested_waits(events: list[dict]) -> list[float]:
    return [
        float(json.loads(event["stateEnteredEventDetails"].get("input") or "{}").get("poll", {}).get("wait_seconds", 0))
        for event in events
        if event["type"] == "WaitStateEntered" and event["stateEnteredEventDetails"]["name"] == POLL_WAIT_STATE
    ]
