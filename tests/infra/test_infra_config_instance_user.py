"""instanceUser: the AMI's default user, whom the job's commands run as (2017: ubuntu), reaches the Lambdas."""

from __future__ import annotations

import pytest

from spottrain.infra.app import default_context
from spottrain.infra.config import ConfigError, StackConfig
from spottrain.contract.settings import Settings, settings_from_env


def _config(**overrides) -> StackConfig:
    context = {**default_context(), **overrides}
    return StackConfig.from_context(context.get)


def test_given_cdk_json_then_the_commands_run_as_ubuntu_like_the_lambdas_default():
    env = _config().lambda_environment()

    assert env["INSTANCE_USER"] == "ubuntu" == Settings(stack_name="s", bucket_prefix="p").instance_user


def test_given_another_ami_user_on_the_command_line_then_the_lambdas_get_it():
    env = _config(instanceUser="ec2-user").lambda_environment()

    assert settings_from_env({"STACK_NAME": "s", "BUCKET_PREFIX": "p", **env}).instance_user == "ec2-user"


@pytest.mark.parametrize("value", ["", "Ubuntu", "ubuntu; reboot", "ubuntu user", "-ubuntu", "u" * 33])
def test_given_a_bad_instance_user_then_synthesis_stops_naming_key_rule_and_fix(value):
    with pytest.raises(ConfigError) as caught:
        _config(instanceUser=value)

    message = str(caught.value)
    assert message.startswith("context instanceUser=") and "default Linux user" in message
    assert "-c instanceUser=<value>" in message
