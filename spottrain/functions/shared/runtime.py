"""What a handler sets up once per cold start: its settings and its AWS clients.

Handlers call these; the pure functions below them take settings and clients as arguments, so tests
pass their own and nothing here needs patching.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from botocore.config import Config

from spottrain.contract.settings import Settings, settings_from_env

# botocore's standard retry mode (throttling, 5xx and connection errors, jittered backoff) under the state
# machine's own Retry of TransientError: https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3})


@functools.cache
def settings() -> Settings:
    return settings_from_env(os.environ)


@functools.cache
def client(service: str) -> Any:
    return boto3.client(service, config=CLIENT_CONFIG)


@functools.cache
def pricing_client() -> Any:
    """The Price List Query API answers in a few regions only, whatever the stack's."""
    from spottrain.functions.shared.pricing import PRICE_LIST_API_REGION

    return boto3.client("pricing", region_name=PRICE_LIST_API_REGION, config=CLIENT_CONFIG)
