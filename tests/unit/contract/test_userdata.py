"""User data: the bootstrap rendered for one attempt, checked as text (tests/unit/agent runs it for real)."""

from __future__ import annotations

import re
import subprocess

import pytest

from spottrain.contract.userdata import USER_DATA_LIMIT, render_user_data

AGENT_KEY = "a" * 64 + ".zip"  # a CDK asset key: the sha256 of the zip
VALUES = dict(
    bucket="spottrain-123456789012-demo",
    attempt=1,
    region="us-east-1",
    agent_bucket="cdk-hnb659fds-assets-123456789012-us-east-1",
    agent_key=AGENT_KEY,
    run_as="ubuntu",
)
CREDENTIAL_LOOKING = [
    re.compile(r"(AKIA|ASIA)[0-9A-Z]{16}"),  # access key ids
    re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"),  # secret access keys
    re.compile(r"aws_secret_access_key|AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|AWS_ACCESS_KEY_ID", re.I),
]


def test_given_the_longest_allowed_values_when_rendered_then_user_data_is_far_under_the_ec2_limit():
    # Spec values never reach user data; the longest thing a spec controls is the bucket name (63).
    longest = dict(
        VALUES,
        bucket="b" * 63,
        agent_bucket="c" * 63,
        region="ap-southeast-3",
        agent_key="assets/" + "k" * 1000 + ".zip",
        attempt=10**6,
    )

    user_data = render_user_data(**longest)

    assert len(user_data.encode()) < USER_DATA_LIMIT // 4
    assert user_data.startswith("#!/bin/bash\n") and "set -euo pipefail" in user_data


def test_given_rendered_user_data_then_it_holds_nothing_that_looks_like_a_credential():
    user_data = render_user_data(**VALUES)

    for pattern in CREDENTIAL_LOOKING:
        assert not pattern.search(user_data), pattern.pattern
    assert "{{" not in user_data


def test_given_valid_values_when_rendered_then_each_is_assigned_once_and_bash_parses_it():
    user_data = render_user_data(**VALUES)

    assert f"BUCKET={VALUES['bucket']}\n" in user_data and f"AGENT_KEY={AGENT_KEY}\n" in user_data
    assert "RUN_AS=ubuntu\n" in user_data
    assert subprocess.run(["bash", "-n"], input=user_data.encode()).returncode == 0


@pytest.mark.parametrize(
    "field,value",
    [
        ("bucket", "demo; rm -rf /"),
        ("bucket", "Demo-Upper"),
        ("bucket", "ok-bucket\n"),
        ("region", "us-east-1 && curl evil"),
        ("agent_bucket", "x"),
        ("agent_key", "$(reboot).zip"),
        ("agent_key", "assets/../../etc/passwd"),
        ("attempt", 0),
        ("attempt", "1"),
        ("run_as", "ubuntu; reboot"),
        ("run_as", "Ubuntu"),
        ("run_as", ""),
    ],
)
def test_given_an_unsafe_value_when_rendering_then_value_error_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        render_user_data(**dict(VALUES, **{field: value}))
