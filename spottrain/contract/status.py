"""The values the state machine's Choice states compare, and the error names its Catch/Retry match.

One source of truth: every Lambda returns these, `statemachine/*.asl.json` compares exactly these,
and `tests/unit/contract/test_contract.py` fails if the two drift apart (the classic bug: the Lambda says
COMPLETED, the Choice waits for COMPLETE, the loop spins until the execution times out).
"""

from enum import Enum


class BidStatus(str, Enum):
    """What `check_bid` found about the spot request / instance it was given."""

    FULFILLED = "FULFILLED"  # instance is pending/running: training can start
    PENDING = "PENDING"  # request still being evaluated: wait and check again (bounded)
    FAILED = "FAILED"  # capacity/price/other: request cancelled, try the next pool


class JobStatus(str, Enum):
    """How `poll_completion` judged the current attempt once its callback wait ended."""

    SUCCEEDED = "SUCCEEDED"  # completed.json with exit code 0
    FAILED = "FAILED"  # completed.json with non-zero exit code (or max runtime hit), or the bootstrap failed
    INTERRUPTED = "INTERRUPTED"  # spot reclaimed: interrupted.json, or instance gone after it had started


class LaunchStatus(str, Enum):
    """What `request_spot_instance` did."""

    LAUNCHED = "LAUNCHED"  # an instance (spot, or on-demand fallback) was requested
    WAITING = "WAITING"  # no pool had room: wait launch.wait_seconds, then try again (within capacity_wait_minutes)
    EXHAUSTED = "EXHAUSTED"  # no pool had room for the whole capacity wait: give up


class NotifyEvent(str, Enum):
    """One email per event; `notify` renders subject and body for each."""

    REQUEST_FULFILLED = "REQUEST_FULFILLED"
    REQUEST_FAILED = "REQUEST_FAILED"
    CAPACITY_WAIT = "CAPACITY_WAIT"  # no pool has room: the job starts waiting (once per wait)
    INTERRUPTED = "INTERRUPTED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    ERROR = "ERROR"  # an unexpected error caught by the workflow


class ErrorName(str, Enum):
    """Error names raised by Lambdas (exception class names, as Lambda reports them)."""

    INVALID_JOB_SPEC = "InvalidJobSpec"
    JOB_ALREADY_RUNNING = "JobAlreadyRunning"  # another execution runs the same exec_name
    BUCKET_NAME_TAKEN = "BucketNameTaken"
    NO_SPOT_CAPACITY = "NoSpotCapacity"
    ATTEMPTS_EXHAUSTED = "AttemptsExhausted"
    TRAINING_FAILED = "TrainingFailed"  # the job failed: non-zero exit, max runtime, or its bootstrap failed
    SPEND_CAP_REACHED = "SpendCapReached"  # limits.max_cost_usd reached: stopped, or no relaunch after an interruption
    JOB_ERRORED = "JobErrored"  # anything else caught after validation; the cause names the original error
    # Transient errors worth a Retry with backoff (Lambda service errors are named by AWS).
    TRANSIENT = "TransientError"


class CallbackError(str, Enum):
    """The error names of SendTaskFailure on the attempt's WaitForTraining task.

    The agent sends all but INSTANCE_LOST, which the EC2 state-change handler sends for an
    instance that vanished without its agent reporting.
    """

    TRAINING_FAILED = "TrainingFailed"  # a command exited non-zero
    CLONE_FAILED = "CloneFailed"
    JOB_INVALID = "JobInvalid"  # job.json unreadable or invalid
    RUNTIME_LIMIT = "RuntimeLimit"  # limits.max_runtime_minutes reached
    SPEND_CAP = "SpendCap"  # limits.max_cost_usd reached (the attempt's budget.json stop_at)
    DISK_FULL = "DiskFull"
    SPOT_INTERRUPTED = "SpotInterrupted"  # sent at the notice, before the final sync
    AGENT_ERROR = "AgentError"
    INSTANCE_LOST = "InstanceLost"


# Step Functions' answers to SendTask* meaning "this wait is already over" (answered, timed out, or its
# execution ended): a late answer, from the agent or a Lambda, is no error and nothing to retry.
TASK_OVER_CODES = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})
# The most characters a SendTaskFailure cause carries, from the agent or a Lambda: it shows in the
# console and in emails, so it stays one short, secret-free line.
CALLBACK_CAUSE_MAX_CHARS = 256


class TransientError(Exception):
    """Raised for throttling and 5xx answers from AWS so the state machine retries with backoff."""
