"""What a handler sets up once per cold start: its settings and its AWS clients.

Handlers call these; the pure functions below them take settings and clients as arguments, so tests
pass their own and nothing here needs patching.
"""
from __future__ import annotations

import functools
import os
from typing import Any

import boto3

from spottrain.contract.settings import Settings, settings_from_env


@functools.cache
def settings() -> Settings:
    return settings_from_env(os.environ)


@functools.cache
def client(service: str) -> Any:
    return boto3.client(service)
