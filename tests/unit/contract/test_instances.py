"""Instance states: two honest sets for two questions, both drawn from EC2's six states."""

from __future__ import annotations

from spottrain.contract.instances import (
    ALL_INSTANCE_STATES,
    ENDED_INSTANCE_STATES,
    LIVE_INSTANCE_STATES,
    UNTERMINATED_INSTANCE_STATES,
)


def test_every_state_is_either_live_or_ended():
    assert LIVE_INSTANCE_STATES | ENDED_INSTANCE_STATES == ALL_INSTANCE_STATES
    assert not LIVE_INSTANCE_STATES & ENDED_INSTANCE_STATES


def test_a_stopped_instance_is_not_live_yet_still_to_be_terminated():
    assert "stopped" not in LIVE_INSTANCE_STATES and "stopped" in UNTERMINATED_INSTANCE_STATES
    assert LIVE_INSTANCE_STATES < UNTERMINATED_INSTANCE_STATES
    assert not {"shutting-down", "terminated"} & UNTERMINATED_INSTANCE_STATES
