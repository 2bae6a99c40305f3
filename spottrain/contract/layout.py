"""Where things live: S3 keys inside a job's bucket, and the tags on everything a job creates.

Shared by the Lambdas, the instance agent, the emulator and the CLI.
"""

JOB_KEY = "job.json"  # validated spec + execution id, written by create_bucket, read by the agent
REPORT_KEY = "report.json"  # attempts, billable seconds, estimated cost and savings
LOGS_PREFIX = "logs/"
OUTPUT_PREFIX = "output/"  # mirror of the job's output_dir
CHECKPOINTS_PREFIX = "checkpoints/"  # mirror of the job's checkpoint_dir, restored before a retry
STATUS_PREFIX = "status/"
# In the stack's records bucket: S3 server access logs of every job bucket, partitioned by S3 itself as
# access-logs/<account>/<region>/<job bucket>/<yyyy>/<mm>/<dd>/ (PartitionedPrefix key format:
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/ServerLogs.html#server-log-keyname-format)
ACCESS_LOGS_PREFIX = "access-logs/"
HEARTBEAT_KEY = STATUS_PREFIX + "heartbeat.json"
COMPLETED_KEY = STATUS_PREFIX + "completed.json"
INTERRUPTED_KEY = STATUS_PREFIX + "interrupted.json"

# Every marker carries "attempt": a marker from an earlier attempt never decides the current one.

TAG_STACK = "spottrain:stack"  # IAM conditions on terminate/cancel match this tag
TAG_JOB = "spottrain:job"  # exec_name
TAG_EXECUTION = "spottrain:execution"  # Step Functions execution name
TAG_ATTEMPT = "spottrain:attempt"


def attempt_logs_prefix(attempt: int) -> str:
    return f"{LOGS_PREFIX}attempt-{attempt}/"


def agent_log_key(attempt: int) -> str:
    return attempt_logs_prefix(attempt) + "agent.log"


def output_log_key(attempt: int, part: int) -> str:
    """Command output (stdout+stderr of setup/data/exec), rotated into numbered parts."""
    return attempt_logs_prefix(attempt) + f"output-{part:04d}.log"


def task_token_key(attempt: int) -> str:
    """The Step Functions task token of the attempt's wait, for that attempt's instance only.

    {"token", "attempt", "instance_id", "execution"}: written by await_training, read by the agent
    (heartbeats, success, failure) and by instance_state_change (InstanceLost).
    """
    return f"{STATUS_PREFIX}attempt-{attempt}/task-token.json"


# In-flight files (write, then rename) are never uploaded nor restored: a half-written snapshot must
# never reach S3, where a retry would resume from it.
TEMPORARY_SUFFIXES = (".partial", ".tmp")


def is_temporary(name: str) -> bool:
    """A file still being written (the payload's `snapshot_iter_N.partial`, renamed when complete)."""
    return name.endswith(TEMPORARY_SUFFIXES) or ".partial." in name


def budget_key(attempt: int) -> str:
    """The attempt's spend budget (`contract/spendcap.py`): written by request_spot_instance, read by the agent."""
    return f"{STATUS_PREFIX}attempt-{attempt}/budget.json"
