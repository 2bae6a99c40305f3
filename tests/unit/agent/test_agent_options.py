"""Agent timings come from the environment so the emulator can shrink them; bad values are named."""

from __future__ import annotations

import pytest

from spottrain.agent.options import timings_from_env


def test_given_overrides_then_they_replace_the_defaults():
    timings = timings_from_env(
        {"SPOTTRAIN_SYNC_SECONDS": "0.5", "SPOTTRAIN_SECONDS_PER_MINUTE": "1", "SPOTTRAIN_LOG_PART_BYTES": "4096"}
    )

    assert timings == {"sync_seconds": 0.5, "seconds_per_minute": 1.0, "log_part_bytes": 4096}


@pytest.mark.parametrize("value", ["soon", "0", "-3"])
def test_given_a_bad_override_then_the_error_names_the_variable(value):
    with pytest.raises(ValueError, match="SPOTTRAIN_HEARTBEAT_SECONDS"):
        timings_from_env({"SPOTTRAIN_HEARTBEAT_SECONDS": value})
