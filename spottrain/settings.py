"""The Lambda settings a default deployment has, for checks made before anything is deployed."""
from __future__ import annotations

from spottrain.contract.defaults import STACK_DEFAULTS
from spottrain.contract.settings import Settings

# Same length as the deployed default `spottrain-<12-digit account>`, so name-length rules match.
ACCOUNT_PLACEHOLDER_PREFIX = "spottrain-<account-id>"


def default_settings() -> Settings:
    """The settings the default stack's Lambdas have (spottrain/contract/defaults.py), its account unknown."""
    prefix = STACK_DEFAULTS["bucketPrefix"] or ACCOUNT_PLACEHOLDER_PREFIX
    return Settings(stack_name="SpotTrain", bucket_prefix=prefix)
