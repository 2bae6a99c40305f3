#!/usr/bin/env python3
"""CDK entry point (`cdk.json` runs it): settings come from context, see docs/CONFIGURATION.md."""
from infra.app import build_app

build_app(cfn_validation=True).synth()
