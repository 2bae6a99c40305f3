"""The Lambda settings a default deployment has, for checks made before anything is deployed."""
from __future__ import annotations

import json
from pathlib import Path

from spottrain.infra.config import StackConfig
from spottrain.contract.settings import Settings, settings_from_env

CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"
# Same length as the deployed default `spottrain-<12-digit account>`, so name-length rules match.
ACCOUNT_PLACEHOLDER_PREFIX = "spottrain-<account-id>"


def default_settings(overrides: dict | None = None) -> Settings:
    context = {**json.loads(CDK_JSON.read_text())["context"], **(overrides or {})}
    config = StackConfig.from_context(context.get)
    env = {
        "STACK_NAME": "SpotTrain",
        "BUCKET_PREFIX": config.bucket_prefix or ACCOUNT_PLACEHOLDER_PREFIX,
        **config.lambda_environment(),
    }
    return settings_from_env(env)
