"""The agent's test bed as fixtures; the helpers tests import by name live in agent_support.py."""

from agent_support import (  # noqa: F401 (fixtures)
    agent,
    aws_env,
    bucket,
    imds,
    moto_endpoint,
    s3,
    step_functions_executor,
    training_repo,
    waiting_task,
)
