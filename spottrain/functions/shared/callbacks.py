"""Answering an attempt's task token from the workflow's side, where a late answer is no error.

The token belongs to the attempt's WaitForTraining task. Once that wait is over (answered, timed out,
or its execution stopped), Step Functions refuses further answers; that only means someone answered
first, so these helpers report it instead of raising.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from spottrain.contract import layout, markers
from spottrain.contract.status import CALLBACK_CAUSE_MAX_CHARS, TASK_OVER_CODES
from spottrain.functions.shared.attempts import read_json
from spottrain.functions.shared.awserrors import error_code


def write_token(s3: Any, bucket: str, record: dict) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=layout.task_token_key(record["attempt"]),
        Body=json.dumps(record).encode(),
        ContentType="application/json",
    )


def read_token(s3: Any, bucket: str, attempt: int) -> dict | None:
    """The attempt's token record; None when the wait was never armed (or the bucket is gone)."""
    try:
        record = read_json(s3, bucket, layout.task_token_key(attempt))
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucket":
            return None
        raise
    return record if isinstance(record, dict) and record.get(markers.TOKEN) else None


def succeed(sfn: Any, token: str, output: dict) -> bool:
    """SendTaskSuccess; False when the wait was already over."""
    return _answer(lambda: sfn.send_task_success(taskToken=token, output=json.dumps(output)))


def fail(sfn: Any, token: str, error: str, cause: str) -> bool:
    """SendTaskFailure; False when the wait was already over."""
    return _answer(lambda: sfn.send_task_failure(taskToken=token, error=error, cause=cause[:CALLBACK_CAUSE_MAX_CHARS]))


def _answer(call: Any) -> bool:
    try:
        call()
    except ClientError as exc:
        if error_code(exc) in TASK_OVER_CODES:
            return False
        raise
    return True
