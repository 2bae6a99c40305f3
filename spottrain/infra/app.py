"""Builds the CDK app the same way for `python app.py`, `npx cdk synth`, the tests and the local emulator."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import cdk_nag

from spottrain.contract.defaults import STACK_DEFAULTS
from spottrain.infra.stack import SpotTrainStack


def default_context() -> dict[str, Any]:
    """The documented defaults (docs/CONFIGURATION.md), kept in one place: spottrain/contract/defaults.py."""
    return copy.deepcopy(STACK_DEFAULTS)


def build_app(
    context: dict[str, Any] | None = None,
    outdir: str | None = None,
    stack_name: str = "SpotTrain",
    asl_path: Path | None = None,
    cfn_validation: bool = False,
) -> cdk.App:
    """`context` overrides the defaults; cdk.json's context and the CDK CLI's `-c` values override both.

    cdk-nag's AwsSolutions checks run on every synthesis, so an unjustified finding surfaces as an
    error annotation wherever the app is built, not only in CI. CDK's built-in CloudFormation
    validation doubles synthesis time, so only app.py (deployments) and the infra tests turn it on;
    the local emulator synthesizes without it.
    """
    app = cdk.App(
        context={**default_context(), **(context or {})},
        outdir=outdir,
        builtin_cloud_formation_validation=cfn_validation,
    )
    SpotTrainStack(app, stack_name, asl_path=asl_path)
    cdk.Aspects.of(app).add(cdk_nag.AwsSolutionsChecks(verbose=True))
    return app
