#!/usr/bin/env python3
"""CDK entry point (`cdk.json` runs it): settings come from context, see docs/CONFIGURATION.md."""

import os
from pathlib import Path

from spottrain.infra.app import build_app

# The CDK CLI names the output folder in CDK_OUTDIR; run directly, write ./cdk.out like the CLI would.
OUTDIR = None if os.environ.get("CDK_OUTDIR") else str(Path(__file__).resolve().parent / "cdk.out")

build_app(outdir=OUTDIR, cfn_validation=True).synth()
