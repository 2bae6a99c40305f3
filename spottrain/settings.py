"""The Lambda settings a spec is checked against before it is submitted: a default stack's, or a deployed one's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spottrain.contract.defaults import STACK_DEFAULTS
from spottrain.contract.settings import Settings, settings_from_env

# Same length as the deployed default `spottrain-<12-digit account>`, so name-length rules match.
ACCOUNT_PLACEHOLDER_PREFIX = "spottrain-<account-id>"
CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"
VALIDATE_FUNCTION_OUTPUT = "ValidateJobFunctionName"


class StackSettingsUnknown(RuntimeError):
    """The deployed stack does not say which settings its ValidateJob runs with."""


def default_settings() -> Settings:
    """The settings the default stack's Lambdas have (spottrain/contract/defaults.py), its account unknown."""
    prefix = STACK_DEFAULTS["bucketPrefix"] or ACCOUNT_PLACEHOLDER_PREFIX
    return Settings(stack_name="SpotTrain", bucket_prefix=prefix)


def cdk_json_overrides(path: Path = CDK_JSON) -> list[str]:
    """The context keys cdk.json sets over the defaults: a deployment from this checkout would differ there."""
    try:
        return sorted(json.loads(path.read_text()).get("context", {}))
    except (OSError, ValueError):
        return []


def deployed_settings(cloudformation: Any, lambda_client: Any, stack_name: str) -> Settings:
    """The settings `stack_name`'s ValidateJob runs with: its Lambda environment, as the function parses it.

    Raises StackSettingsUnknown when the stack predates the ValidateJobFunctionName output.
    """
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
    if VALIDATE_FUNCTION_OUTPUT not in outputs:
        raise StackSettingsUnknown(
            f"stack {stack_name!r} has no {VALIDATE_FUNCTION_OUTPUT} output (deployed before spottrain "
            "exported it): redeploy it with `npx cdk deploy`, or validate without --stack-name against the defaults"
        )
    function = lambda_client.get_function_configuration(FunctionName=outputs[VALIDATE_FUNCTION_OUTPUT])
    return settings_from_env(function.get("Environment", {}).get("Variables", {}))
