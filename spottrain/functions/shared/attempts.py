"""Reading an attempt's status markers and its instance, as await_training and poll_completion both must.

A marker counts only when it names this attempt, this instance and this execution
(`spottrain.contract.markers.written_by`): a marker another run or instance wrote into the same bucket
never decides this one.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from botocore.exceptions import ClientError

from spottrain.contract import markers
from spottrain.functions.shared.awserrors import error_code


@dataclasses.dataclass(frozen=True)
class Attempt:
    """Whose markers count: this attempt, on this instance, of this execution."""

    number: int
    instance_id: str
    execution_id: str  # as job.json names it, and so the agent's markers

    @classmethod
    def of(cls, state: dict) -> "Attempt":
        return cls(state["launch"]["attempt"], state["launch"]["instance"]["instance_id"], state["execution"]["id"])

    def wrote(self, marker: dict) -> bool:
        return markers.written_by(marker, self.number, self.instance_id, self.execution_id)


def read_json(s3: Any, bucket: str, key: str) -> Any:
    """The object's JSON, or None when it does not exist (yet)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise
    return json.loads(body)


def marker(s3: Any, bucket: str, key: str, attempt: Attempt) -> dict | None:
    """The marker if this attempt's instance wrote it for this execution; anything else never decides it."""
    found = read_json(s3, bucket, key)
    return found if isinstance(found, dict) and attempt.wrote(found) else None


def describe_instance(ec2: Any, instance_id: str) -> dict | None:
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except ClientError as exc:
        if error_code(exc) == "InvalidInstanceID.NotFound":
            return None
        raise
    instances = [i for r in reservations for i in r["Instances"]]
    return instances[0] if instances else None


def instance_state(described: dict | None) -> str:
    return described["State"]["Name"] if described else "missing"
