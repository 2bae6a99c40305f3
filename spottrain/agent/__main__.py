"""`python -m spottrain.agent`: run one attempt of the job in --bucket, then shut the instance down."""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from spottrain.contract import layout

from . import options as agent_options
from .imds import Imds
from .lifecycle import Agent
from .logs import configure_agent_log
from .s3sync import Store, s3_client

EPILOG = f"""\
what it does, in order:
  1. reads s3://BUCKET/{layout.JOB_KEY} ({{"job": validated spec, "execution": {{"id": ..., "name": ...}}}})
  2. clones repository_url (https, ssh, file:// or a local path) at repository_ref, shallow when the
     remote has a branch or tag of that name, else at that commit, into HOME/<repository_name> (HOME:
     --run-as's home, or --home; git runs with the agent's environment, never the job's env); creates
     data_dir, output_dir and checkpoint_dir (inside the clone when relative, else where they say) and,
     when the agent is root, hands the clone and what it created to --run-as
  3. (attempt > 1) when {layout.INTERRUPTED_KEY} is the previous attempt's and says "final_sync_done": false,
     waits for it to say true (every 2 s, at most SPOTTRAIN_PREVIOUS_SYNC_WAIT_SECONDS, 150), then
     restores {layout.CHECKPOINTS_PREFIX} into checkpoint_dir (or {layout.OUTPUT_PREFIX} into output_dir when the job
     has no checkpoint_dir), file mtimes included, before any command runs, on every attempt and rerun
  4. runs setup_command, data_get_command, exec_command as --run-as in its login shell (`bash -lc`,
     which reads its profile) in the clone, each in its own process group, stdout+stderr to
     {layout.LOGS_PREFIX}attempt-<n>/output-<part>.log (parts of SPOTTRAIN_LOG_PART_BYTES, default 5 MiB; parts
     already in S3 are deleted locally beyond 50 MiB; output that cannot be written is still drained,
     and a full disk stops the command)
  5. stops at the first failing command, on a spot notice, at limits.max_runtime_minutes, at the spend
     cap's stop_at ({layout.STATUS_PREFIX}attempt-<n>/budget.json, read every heartbeat until found), or when the
     disk is full (SIGTERM to the group, SIGKILL for what still runs after SPOTTRAIN_KILL_GRACE_SECONDS)
  6. syncs output_dir -> {layout.OUTPUT_PREFIX} and checkpoint_dir -> {layout.CHECKPOINTS_PREFIX} (changed files only, see below),
     then writes {layout.COMPLETED_KEY} or {layout.INTERRUPTED_KEY}, then answers the workflow's wait
     (SendTaskSuccess, or SendTaskFailure with TrainingFailed|CloneFailed|JobInvalid|RuntimeLimit|
     SpendCap|DiskFull|AgentError and a short cause)
  7. after keep_alive_minutes (success) or on_failure.keep_alive_minutes (failure), runs --shutdown-command
     and exits

while it runs:
  every SPOTTRAIN_SYNC_SECONDS (15)      uploads the logs, syncs output_dir and checkpoint_dir
  every SPOTTRAIN_HEARTBEAT_SECONDS (30) writes {layout.HEARTBEAT_KEY} (phase, time, last_log_time, last_log_line),
     then reads {layout.STATUS_PREFIX}attempt-<n>/task-token.json until it exists (the workflow's task token; one
     naming another execution, instance or attempt is ignored) and calls SendTaskHeartbeat with it;
     TaskTimedOut, InvalidToken or TaskDoesNotExist end all calls (the workflow is done waiting);
     without a token the agent works as before and answers nothing
  every SPOTTRAIN_NOTICE_POLL_SECONDS (5) polls IMDSv2 spot/instance-action; on a notice it writes
     {layout.INTERRUPTED_KEY} with "final_sync_done": false and sends SendTaskFailure(SpotInterrupted)
     (the workflow relaunches at once), then the commands get SIGTERM and until the reclaim time minus
     SPOTTRAIN_SYNC_RESERVE_SECONDS (30) to stop

what a sync uploads and deletes:
  {layout.CHECKPOINTS_PREFIX} mirrors checkpoint_dir: objects this agent uploaded whose file is gone locally are
     deleted (only after a pass whose uploads all succeeded), so rotated-away snapshots leave S3; objects
     it did not upload itself (an earlier attempt's or run's, restored ones included) are never deleted
  {layout.OUTPUT_PREFIX} only grows: nothing there is ever deleted (not even when the job has no checkpoint_dir
     and output_dir doubles as the checkpoint dir);
     a checkpoint_dir inside output_dir is synced to {layout.CHECKPOINTS_PREFIX} only
  in-flight temporaries are never uploaded: file names ending in .partial or .tmp, or containing .partial.
     (write to such a name, then rename, and a half-written file never reaches S3)

environment of the commands: the agent's own, then the job's env, then
  SPOTTRAIN_JOB SPOTTRAIN_BUCKET SPOTTRAIN_ATTEMPT SPOTTRAIN_RESUME (1 when the restore put files back,
  else unset) SPOTTRAIN_LATEST_CHECKPOINT (the newest restored file by mtime; empty on a fresh start)
  SPOTTRAIN_DATA_DIR SPOTTRAIN_OUTPUT_DIR SPOTTRAIN_CHECKPOINT_DIR (absolute; the last is output_dir
  when the job has no checkpoint_dir), then HOME USER LOGNAME of --run-as; its login profile runs first

markers (JSON; all carry attempt, instance_id, execution: the execution id from job.json):
  {layout.COMPLETED_KEY}    exit_code, failed_phase (clone|restore|setup|data|exec|start, null on success),
                            reason (exit|max_runtime|spend_cap|disk_full|clone_failed|restore_failed|
                            job_invalid|job_unreadable|agent_error), message, started_at, finished_at,
                            phase_seconds, last_log_lines, synced, not_synced, command_killed
  {layout.INTERRUPTED_KEY}  notice_time, action, noticed_at, phase, final_sync_done (false at the notice);
                            after the final sync, final_sync_done true, exit_code, finished_at,
                            checkpoints_synced, not_synced, command_killed

endpoints: AWS_ENDPOINT_URL (S3, Step Functions) and AWS_EC2_METADATA_SERVICE_ENDPOINT (IMDS), as for any AWS SDK.
minutes: limits.max_runtime_minutes and keep_alive_minutes last SPOTTRAIN_SECONDS_PER_MINUTE (60) s each.
S3 errors are retried with backoff; a failed upload is logged and never stops the training.
exit status: 0 when the attempt was carried out (whatever the training's exit code), 1 on an agent
error (still reported in completed.json), 2 on bad arguments.
"""


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m spottrain.agent",
        description="Run one attempt of a spottrain job on this instance, report it to S3, then shut down.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_argument("--bucket", required=True, help="the job's S3 bucket (holds job.json)")
    cli.add_argument("--attempt", required=True, type=_attempt, help="1 for the first instance, +1 per relaunch")
    cli.add_argument("--region", help="AWS region of the bucket (default: the SDK's usual lookup)")
    cli.add_argument("--workdir", default="/opt/spottrain/work", help="where the clone and local logs go")
    cli.add_argument(
        "--run-as",
        metavar="USER",
        help="run the commands as USER (the AMI's default user; needs root), in ~USER/<repository_name> "
        "(default: the agent's own account, in $HOME)",
    )
    cli.add_argument("--home", metavar="DIR", help="USER's home instead of the password database's")
    cli.add_argument(
        "--shutdown-command",
        default=agent_options.DEFAULT_SHUTDOWN_COMMAND,
        help="run via bash -c when done (default: %(default)s; the launch template makes "
        "an instance-initiated shutdown a termination)",
    )
    return cli


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        options = agent_options.from_arguments(args, os.environ)
    except ValueError as error:
        parser().error(str(error))
    logs_dir = options.workdir / "logs" / f"attempt-{options.attempt}"
    configure_agent_log(logs_dir / "agent.log")
    store = Store(s3_client(options.region), options.bucket)
    return Agent(options, store, Imds.from_env(os.environ)).run()


def _attempt(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError("--attempt must be >= 1")
    return number


if __name__ == "__main__":
    sys.exit(main())
