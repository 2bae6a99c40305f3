"""Notify for a sweep's variant whose sweep sends one summary email instead (`sweep.emails: "summary"`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobstate_support import FakeLambdaContext, aws, job_state, lambda_env, received, subscribe_queue  # noqa: F401
from spottrain.contract import sweep
from spottrain.contract.status import NotifyEvent
from spottrain.functions import notify

SWEEP_SPEC = json.loads(
    (Path(__file__).resolve().parents[3] / "examples" / "jobs" / "multihead-sweep.json").read_text()
)


def variant_state(emails: str) -> dict:
    spec = {**SWEEP_SPEC, "sweep": {**SWEEP_SPEC["sweep"], "emails": emails}}
    return job_state(sweep.variants(spec)[0].spec)


@pytest.mark.parametrize("event", list(NotifyEvent))
def test_given_a_summary_only_sweep_when_its_variant_notifies_then_no_email_goes_out(lambda_env, event):
    inbox = subscribe_queue(lambda_env)
    answer = notify.handler({"event": event.value, "state": variant_state("summary")}, FakeLambdaContext())
    assert answer == {"message_id": None} and received(inbox) == []


def test_given_a_sweep_with_every_email_when_its_variant_notifies_then_the_email_goes_out(lambda_env):
    inbox = subscribe_queue(lambda_env)
    notify.handler({"event": NotifyEvent.COMPLETED.value, "state": variant_state("each")}, FakeLambdaContext())
    (email,) = received(inbox)
    assert email["Subject"].startswith("[spottrain] multihead-sweep-1 ")
