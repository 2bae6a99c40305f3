"""How much training an interruption destroyed: from the last durable checkpoint to the notice.

A checkpoint is durable once it is in the job bucket (`checkpoints/`), and the next attempt resumes
from the newest one there; everything trained after it is trained again. So the work redone is the
interruption time (the agent's `noticed_at`, when it stopped the training) minus the newest
checkpoint's S3 LastModified at or before it. It may under-count by up to one sync interval (the
time a checkpoint file waited for its upload). Without any checkpoint the whole attempt is redone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from spottrain.contract import layout
from spottrain.functions.shared.report import isoformat, parse_time


def last_durable_checkpoint(s3: Any, bucket: str, before: dt.datetime) -> dt.datetime | None:
    """LastModified of the newest object under checkpoints/ at or before `before`; None when there is none."""
    newest = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=layout.CHECKPOINTS_PREFIX):
        for item in page.get("Contents", []):
            modified = item["LastModified"]
            if modified <= before and (newest is None or modified > newest):
                newest = modified
    return newest


def work_redone(s3: Any, bucket: str, interrupted_at: dt.datetime, launched_at: str) -> dict:
    """{"interrupted_at", "last_checkpoint_at" (None: none yet), "redone_minutes"} for report.json and the email."""
    checkpoint = last_durable_checkpoint(s3, bucket, interrupted_at)
    since = max(checkpoint, parse_time(launched_at)) if checkpoint else parse_time(launched_at)
    return {
        "interrupted_at": isoformat(interrupted_at),
        "last_checkpoint_at": isoformat(checkpoint) if checkpoint else None,
        "redone_minutes": round(max(0.0, (interrupted_at - since).total_seconds()) / 60, 2),
    }
