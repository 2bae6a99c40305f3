"""request_spot_instance: the user data names the stack's instanceUser, whom the agent runs the commands as."""

from __future__ import annotations

import base64

from spottrain.functions import request_spot_instance as rsi
from spot_fixtures import aws, clients, job_state, launch_template, make_settings  # noqa: F401 (fixtures)


def test_given_a_stack_for_amazon_linux_when_launching_then_user_data_runs_the_job_as_ec2_user(aws):
    ec2, s3 = aws
    settings = make_settings(launch_template_id=launch_template(ec2), instance_user="ec2-user")

    launch = rsi.request_instance(ec2, s3, settings, job_state())

    encoded = ec2.describe_instance_attribute(InstanceId=launch["instance"]["instance_id"], Attribute="userData")[
        "UserData"
    ]["Value"]
    assert "\nRUN_AS=ec2-user\n" in base64.b64decode(encoded).decode()
