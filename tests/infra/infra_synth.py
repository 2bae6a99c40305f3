"""Synthesizes the app for the infra tests and gives typed access to the assembly."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

from aws_cdk.assertions import Template  # noqa: E402  (after the jsii warning switch)

from spottrain.infra.app import build_app  # noqa: E402

DEFAULT_STACK = "SpotTrainTest"
CUSTOM_STACK = "SpotTrainCustom"
# A deployment that names its network, mail, prefix and layer: every optional branch of the stack.
CUSTOM_CONTEXT = {
    "notificationEmail": "ops@example.com",
    "vpcId": "vpc-0abc1234",
    "subnetIds": "subnet-0aaa1111,subnet-0bbb2222",
    "bucketPrefix": "acme-train",
    "powertoolsLayerArn": "",
    "jobTimeoutHours": "30",
    "heartbeatLostSeconds": "120",
    "rootVolumeGb": "150",
    "maxSpotPrice": "0.75",
    "onDemandFallback": "false",
    "maxFailureKeepAliveMinutes": "0",  # no debug door
    "dataBuckets": "acme-datasets",  # read-only for every job's instance
}


@dataclasses.dataclass(frozen=True)
class Synth:
    stack_name: str
    outdir: Path
    template: dict
    messages: list  # cloud assembly metadata entries (nag errors, warnings, validation)

    @property
    def assertions(self) -> Template:
        return Template.from_json(self.template)

    def resources(self, resource_type: str) -> dict[str, dict]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == resource_type}

    def asset_manifest(self) -> dict:
        return json.loads((self.outdir / f"{self.stack_name}.assets.json").read_text())


def synthesize(outdir: Path, stack_name: str, context: dict | None) -> Synth:
    app = build_app(context=context, outdir=str(outdir), stack_name=stack_name, cfn_validation=True)
    artifact = app.synth().get_stack_by_name(stack_name)
    messages = [{"level": str(m.level), "id": m.id, "data": m.entry.data} for m in artifact.messages]
    return Synth(stack_name=stack_name, outdir=outdir, template=artifact.template, messages=messages)


def job_machines(synth: Synth) -> dict:
    """The job state machine by logical id (the sweep's has its own tests: test_infra_sweep.py)."""
    return {
        mid: m
        for mid, m in synth.resources("AWS::StepFunctions::StateMachine").items()
        if not mid.startswith("SweepWorkflow")
    }
