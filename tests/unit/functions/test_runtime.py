"""The clients a handler gets retry as botocore's standard mode does, under the state machine's Retry."""

from __future__ import annotations

from spottrain.functions.shared import runtime


def test_given_a_cold_start_when_a_handler_asks_for_a_client_then_it_retries_in_standard_mode(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    runtime.client.cache_clear()
    try:
        retries = runtime.client("s3").meta.config.retries
    finally:
        runtime.client.cache_clear()
    assert retries == {"mode": "standard", "total_max_attempts": 3}
