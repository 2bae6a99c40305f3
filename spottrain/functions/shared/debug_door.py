"""The debug door's lines in the failure email: how to reach the kept instance, and until when.

The instance role holds Session Manager's managed-instance permissions only when the stack allows a door
(maxFailureKeepAliveMinutes > 0), so the command works without SSH keys or an open port:
https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-sessions-start.html
"""

from __future__ import annotations

import datetime as dt

from spottrain.contract.status import JobStatus


def debug_door_lines(state: dict, now: dt.datetime) -> list[str]:
    """[] unless the training failed and the workflow keeps its instance (poll.terminate_after_seconds > 0).

    `now` is when the email is rendered: the workflow's wait starts right after it, so now + the kept seconds
    is when the instance is terminated (to within the Lambda's and Step Functions' latency).
    """
    poll = state.get("poll") or {}
    seconds = poll.get("terminate_after_seconds") or 0
    instance_id = (((state.get("launch") or {}).get("instance")) or {}).get("instance_id")
    # A silent agent's instance may be gone already (the heartbeat loss is judged a failure too): no door to announce.
    gone = (poll.get("detail") or {}).get("instance_state") in ("shutting-down", "terminated", "stopping", "stopped")
    if poll.get("status") != JobStatus.FAILED.value or seconds <= 0 or not instance_id or gone:
        return []
    stops_at = (now + dt.timedelta(seconds=seconds)).astimezone(dt.timezone.utc).isoformat(timespec="seconds")
    return [
        f"The instance is kept for debugging (on_failure.keep_alive_minutes) until {stops_at}; "
        "then it is terminated (`spottrain cancel` terminates it at once).",
        f"Open a shell on it: aws ssm start-session --target {instance_id}",
    ]
