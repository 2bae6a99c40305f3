"""sshKnownHosts: the stack's known_hosts for deploy keys' ssh hosts, checked at synth and handed to ValidateJob."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from spottrain.contract.settings import settings_from_env
from spottrain.infra.app import default_context
from spottrain.infra.config import ConfigError, StackConfig


def _config(**overrides) -> StackConfig:
    context = {**default_context(), **overrides}
    return StackConfig.from_context(context.get)


def _line(host: str) -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return f"{host} " + key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def test_given_known_hosts_lines_in_context_then_validate_job_gets_them_and_none_by_default():
    lines = f"{_line('github.com')}\n{_line('[git.example.com]:2222')}"

    env = _config(sshKnownHosts=lines).lambda_environment()

    assert settings_from_env({"STACK_NAME": "s", "BUCKET_PREFIX": "p", **env}).ssh_known_hosts == lines
    assert _config().lambda_environment()["SSH_KNOWN_HOSTS"] == ""


@pytest.mark.parametrize(
    "value",
    [
        "github.com AAAA-not-a-key",
        # more than Lambda's 4 KB of environment leaves room for: CloudFormation would fail the deploy instead
        "\n".join(_line(f"host{number}.example.com") for number in range(30)),
    ],
)
def test_given_context_that_is_not_known_hosts_lines_or_too_long_then_synth_fails_naming_key_rule_and_fix(value):
    with pytest.raises(ConfigError) as raised:
        _config(sshKnownHosts=value)

    message = str(raised.value)
    assert message.startswith(f"context sshKnownHosts={value!r}: must be known_hosts lines")
    assert "at most 2048 characters" in message and "-c sshKnownHosts=<value>" in message
