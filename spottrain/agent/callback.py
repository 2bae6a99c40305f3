"""The attempt's WaitForTraining task: heartbeats while the training runs, one answer when it ends.

The workflow waits on a Step Functions task token that it drops into the job bucket
(`layout.task_token_key(attempt)`) seconds after the instance boots. The token is the only
capability the instance needs: whoever holds it may answer the wait. The answer only makes the
workflow look now rather than at a timeout; the S3 markers stay what the workflow judges.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, Mapping, Optional

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from spottrain.contract import layout, markers
from spottrain.contract.status import CALLBACK_CAUSE_MAX_CHARS, TASK_OVER_CODES, CallbackError

ANSWER_ATTEMPTS = 4  # the answer saves the workflow a heartbeat timeout: worth a few tries

# Outcome.reason -> the error the workflow's Catch sees; exit (non-zero) is TrainingFailed.
REASON_ERRORS = {
    "exit": CallbackError.TRAINING_FAILED,
    "max_runtime": CallbackError.RUNTIME_LIMIT,
    "spend_cap": CallbackError.SPEND_CAP,
    "disk_full": CallbackError.DISK_FULL,
    "clone_failed": CallbackError.CLONE_FAILED,
    "job_invalid": CallbackError.JOB_INVALID,
    "job_unreadable": CallbackError.JOB_INVALID,
    "interrupted": CallbackError.SPOT_INTERRUPTED,
    "restore_failed": CallbackError.AGENT_ERROR,
    "agent_error": CallbackError.AGENT_ERROR,
}

log = logging.getLogger(__name__)


def states_client(region: Optional[str]):
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    return boto3.session.Session(region_name=region).client("stepfunctions", config=config)


def error_for(reason: str) -> CallbackError:
    return REASON_ERRORS.get(reason, CallbackError.AGENT_ERROR)


class TaskCallback:
    """One attempt's token: found once, answered once; every call after the wait is over is skipped.

    Thread-safe: the heartbeat, the spot-notice watcher and the main thread all use it.
    """

    def __init__(
        self,
        states,
        read_token: Callable[[], Optional[Mapping]],
        attempt: int,
        instance_id: str,
        retry_delay: float = 1.0,
    ):
        self.states = states
        self.read_token = read_token
        self.attempt = attempt
        self.instance_id = instance_id
        self.execution: Optional[str] = None  # set once job.json is read: a token of another execution is not ours
        self.retry_delay = retry_delay
        self.token: Optional[str] = None
        self.over = False  # answered by us, or Step Functions said the wait is over
        self._skipped: Optional[str] = None  # the last foreign token file logged, so it is logged once
        self._lock = threading.Lock()

    def discover(self) -> bool:
        """Read the token file until this attempt's token is found; True once known."""
        with self._lock:
            if self.token is None and not self.over:
                self._read()
            return self.token is not None

    def heartbeat(self) -> None:
        with self._lock:
            if self.token is None and not self.over:
                self._read()
            if self.token and not self.over:
                self._call("SendTaskHeartbeat", lambda: self.states.send_task_heartbeat(taskToken=self.token), tries=1)

    def succeed(self, output: Mapping) -> bool:
        document = json.dumps(dict(output))
        return self._answer(
            "SendTaskSuccess", lambda: self.states.send_task_success(taskToken=self.token, output=document)
        )

    def fail(self, error: CallbackError, cause: str, tries: int = ANSWER_ATTEMPTS) -> bool:
        cause = _short(cause)
        return self._answer(
            f"SendTaskFailure({error.value}, {cause!r})",
            lambda: self.states.send_task_failure(taskToken=self.token, error=error.value, cause=cause),
            tries=tries,
        )

    # --- internals -------------------------------------------------------------------------------

    def _answer(self, what: str, call: Callable[[], object], tries: int = ANSWER_ATTEMPTS) -> bool:
        """True when this call answered the wait; a wait that is over, or no token, is not an error."""
        with self._lock:
            if self.token is None and not self.over:
                self._read()  # the last chance: the token may have appeared since the last heartbeat
            if self.over:
                return False
            if self.token is None:
                log.info("%s skipped: no task token for attempt %d (the workflow armed no wait)", what, self.attempt)
                return False
            if self._call(what, call, tries):
                self.over = True
                log.info("%s sent: the workflow judges attempt %d now", what, self.attempt)
                return True
            return False

    def _call(self, what: str, call: Callable[[], object], tries: int) -> bool:
        # Tries per call, over botocore's own: a wait that is over (TASK_OVER_CODES) ends them, and a
        # heartbeat or the spot-notice answer wants one where the final answer wants several.
        for attempt in range(1, tries + 1):
            try:
                call()
                return True
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code in TASK_OVER_CODES:
                    self.over = True
                    log.info(
                        "%s answered %s: the workflow is done waiting for attempt %d; no more calls",
                        what,
                        code,
                        self.attempt,
                    )
                    return False
                failure = error
            except BotoCoreError as error:
                failure = error
            if attempt < tries:
                log.warning("%s failed (%s); retry %d/%d", what, failure, attempt, tries - 1)
                time.sleep(self.retry_delay * 2 ** (attempt - 1))
        log.error(
            "%s failed after %d tries (%s); the workflow's heartbeat timeout or EC2 event ends the wait",
            what,
            tries,
            failure,
        )
        return False

    def _read(self) -> None:
        try:
            document = self.read_token()
        except (BotoCoreError, ClientError, ValueError) as error:
            log.warning("cannot read the task token of attempt %d yet: %s", self.attempt, error)
            return
        if not document:
            return
        foreign = self._foreign(document)
        if foreign:
            if foreign != self._skipped:
                log.info("ignoring %s: it belongs to %s", layout.task_token_key(self.attempt), foreign)
                self._skipped = foreign
            return
        self.token = str(document[markers.TOKEN])
        log.info("task token of attempt %d found: heartbeats now reach the workflow", self.attempt)

    def _foreign(self, document: Mapping) -> Optional[str]:
        """Why a token file is not this attempt's (a rerun reuses attempt numbers), or None."""
        if not isinstance(document, Mapping) or not document.get(markers.TOKEN):
            return "nobody (no token in it)"
        for field, ours in markers.identity(self.attempt, self.instance_id, self.execution).items():
            theirs = document.get(field)
            if theirs is not None and ours is not None and str(theirs) != str(ours):
                return f"{field} {theirs}, not {ours}"
        return None


def token_reader(store, attempt: int) -> Callable[[], Optional[Mapping]]:
    """Reads the attempt's token file once: None while it does not exist (no retries: the next tick is one)."""
    return lambda: store.find_json(layout.task_token_key(attempt))


def _short(cause: str) -> str:
    cause = " ".join(str(cause).split())
    return cause if len(cause) <= CALLBACK_CAUSE_MAX_CHARS else cause[: CALLBACK_CAUSE_MAX_CHARS - 3] + "..."
