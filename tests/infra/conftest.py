"""Synthesize the app once per session (jsii is slow) and share the assembly with every infra test."""

from __future__ import annotations

import pytest

from infra_synth import CUSTOM_CONTEXT, CUSTOM_STACK, DEFAULT_STACK, Synth, synthesize


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-default"), DEFAULT_STACK, None)


@pytest.fixture(scope="session")
def custom_synth(tmp_path_factory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-custom"), CUSTOM_STACK, CUSTOM_CONTEXT)


@pytest.fixture(scope="session", params=["default", "custom"])
def any_synth(request) -> Synth:
    return request.getfixturevalue(f"{request.param}_synth")
