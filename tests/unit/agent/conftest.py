"""The agent's test bed as fixtures; the helpers tests import by name live in agent_support.py."""
from agent_support import agent, aws_env, bucket, imds, moto_endpoint, s3, training_repo  # noqa: F401 (fixtures)
