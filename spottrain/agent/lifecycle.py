"""One attempt of one job, start to shutdown: clone, restore, commands, sync, markers, shutdown.

Order matters at the end: outputs and checkpoints are synced *before* completed.json or
interrupted.json is written, and the workflow's wait is answered only after that, because the
workflow may terminate the instance as soon as it reads a marker. The one exception is the spot
notice: interrupted.json (final_sync_done false) and SpotInterrupted go out at once, so that the
replacement boots while this instance still saves; nobody terminates an instance AWS reclaims.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Union


from spottrain.contract import debug_door, layout, markers, spendcap
from spottrain.contract.names import redact_credentials
from spottrain.contract.secrets import SECRETS_ROLE_FIELD
from spottrain.contract.status import CallbackError

from . import clone, deploy_key, overlap, runner
from .callback import TaskCallback, error_for, states_client, token_reader
from .imds import Imds
from .job import Account, Job, Paths, command_env
from .logs import OutputLog
from .secrets import SecretUnreadable, read_secrets
from .secrets import clients as secrets_clients
from .options import Options
from .periodic import Periodic
from .s3sync import RETRYABLE, DirSync, Store, SyncReport

SPOT_NOTICE_SECONDS = 120.0  # what AWS promises between the notice and the reclaim
MARKER_LIST_MAX = 20  # keys a marker lists; the agent log has the rest

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Outcome:
    interrupted: bool = False
    exit_code: int = 0
    failed_phase: Optional[str] = None
    # exit | max_runtime | spend_cap | disk_full | clone_failed | restore_failed | job_invalid | job_unreadable | secret_unreadable
    # | agent_error
    reason: str = "exit"
    message: str = ""
    killed: bool = False  # the command outlived its grace and was SIGKILLed: its last save may be cut


class Agent:
    def __init__(
        self,
        options: Options,
        store: Store,
        imds: Imds,
        inherited_env: Mapping[str, str] = os.environ,
        states=None,
        secret_clients: Callable[..., tuple] = secrets_clients,
    ):
        self.options = options
        self.store = store
        self.imds = imds
        self.inherited_env = dict(inherited_env)
        self.output = OutputLog(
            options.workdir / "logs" / f"attempt-{options.attempt}", options.attempt, options.log_part_bytes
        )
        self.agent_log_path = self.output.directory / "agent.log"
        self.instance_id = imds.instance_id()
        self.callback = TaskCallback(
            states or states_client(options.region),
            token_reader(store, options.attempt),
            options.attempt,
            self.instance_id,
        )
        self.job: Optional[Job] = None
        self.paths: Optional[Paths] = None
        self.execution: Optional[str] = None  # the execution id from job.json: every marker names it
        self.account: Optional[Account] = None
        self.secret_values: Dict[str, str] = {}  # variable -> value: for the commands' environment only
        self.git_secret: Optional[str] = None  # repository_auth's token or deploy key: for the agent's git only
        self._secret_clients = secret_clients
        self.secrets_role: Optional[str] = None  # job.json's: the role the job's secrets are read with
        self.phase = markers.CLONE
        self.phase_seconds: Dict[str, float] = {}
        self.started_at = _now()
        self.deadline: Optional[float] = None
        self.budget: Optional[dict] = None  # budget.json (`contract/spendcap.py`) once the workflow wrote it
        self.spend_stop: Optional[dt.datetime] = None
        self.notice: Optional[dict] = None
        self._noticed = threading.Event()
        self._notice_marked = False  # interrupted.json says final_sync_done false: the end must say true
        self._agent_log_size = -1
        self._syncs: List[DirSync] = []
        self._heartbeats = Periodic("heartbeat", options.heartbeat_seconds, self._heartbeat)
        self._notice_watch = Periodic("spot-notice", options.notice_poll_seconds, self._check_notice)
        self._background = [
            self._notice_watch,
            self._heartbeats,
            Periodic("log-upload", options.sync_seconds, self._upload_logs),
        ]
        self._dir_sync = Periodic("dir-sync", options.sync_seconds, self._sync_dirs)

    # --- the story -------------------------------------------------------------------------------

    def run(self) -> int:
        """Do the attempt and shut down; 0 unless the agent itself broke."""
        log.info(
            "attempt %d of job bucket %s on instance %s", self.options.attempt, self.options.bucket, self.instance_id
        )
        try:
            # job.json first: the first heartbeat must already name the execution.
            outcome = self._load_job()
            for task in self._background:
                task.start()
            if not outcome:
                assert self.job is not None and self.paths is not None  # _load_job set both or said why not
                outcome = self._attempt(self.job, self.paths)
        except Exception as error:  # the training's fate must still be reported, and the GPU released
            log.exception("agent error")
            outcome = Outcome(exit_code=70, failed_phase=self.phase, reason="agent_error", message=repr(error))
        self._finish(outcome)
        return 1 if outcome.reason == "agent_error" else 0

    def _job_account(self) -> Account:
        assert self.account is not None  # resolved by _load_job, before any attempt runs
        return self.account

    def _load_job(self) -> Optional[Outcome]:
        try:
            document = self.store.get_json(layout.JOB_KEY)
        except ValueError as error:  # job.json that is not JSON at all
            return Outcome(exit_code=1, failed_phase=markers.START, reason="job_invalid", message=str(error))
        except RETRYABLE as error:
            message = f"cannot read s3://{self.options.bucket}/{layout.JOB_KEY}: {error}"
            return Outcome(exit_code=1, failed_phase=markers.START, reason="job_unreadable", message=message)
        self.execution = _execution_id(document)
        self.callback.execution = self.execution
        self.secrets_role = document.get(SECRETS_ROLE_FIELD) if isinstance(document, Mapping) else None
        try:
            self.job = Job.from_document(document)
            self.account = Account.resolve(self.options.run_as, self.options.home)
            self.paths = Paths.resolve(self.job, self.account.home, self.options.absolute_paths_refused)
        except ValueError as error:  # InvalidJob
            return Outcome(exit_code=1, failed_phase=markers.START, reason="job_invalid", message=str(error))
        return self._read_secrets(self.job)

    def _read_secrets(self, job: Job) -> Optional[Outcome]:
        auth = job.repository_auth or {}
        git = {f"repository_auth.{field}": auth[field] for field in ("token_secret", "ssh_key_secret") if field in auth}
        if not job.secrets and not git:
            return None
        try:
            clients = self._secret_clients(self.options.region, self.secrets_role, f"spottrain-{self.instance_id}")
            self.secret_values = read_secrets(job.secrets, *clients)
            self.git_secret = next(iter(read_secrets(git, *clients).values()), None)
        except SecretUnreadable as error:  # names the variable and the secret, never a value
            return Outcome(exit_code=1, failed_phase=markers.START, reason="secret_unreadable", message=str(error))
        masked = [value.encode() for value in self.secret_values.values()]
        key = self._deploy_key(job)
        git_values = key.mask_values() if key else [self.git_secret.encode()] if self.git_secret else []
        self.output.secret_values = masked + git_values
        log.info("read %d secret(s) for %s", len(self.secret_values), ", ".join(sorted(self.secret_values)))
        return None

    def _attempt(self, job: Job, paths: Paths) -> Outcome:
        if job.max_runtime_minutes:
            self.deadline = time.monotonic() + float(job.max_runtime_minutes) * self.options.seconds_per_minute
        self._load_budget()
        outcome = self._clone(job, paths)
        if outcome:
            return outcome
        made = paths.make()
        # A checkpoint_dir inside output_dir goes to checkpoints/ only, or output/ would keep every snapshot.
        self._syncs = [
            DirSync(self.store, paths.output, layout.OUTPUT_PREFIX, skip_dir=paths.checkpoint, execution=self.execution)
        ]
        if paths.checkpoint:
            # A mirror: the payload rotates snapshots away, and S3 (and the next restore) must follow.
            self._syncs.append(
                DirSync(
                    self.store,
                    paths.checkpoint,
                    layout.CHECKPOINTS_PREFIX,
                    mirror_deletions=True,
                    execution=self.execution,
                )
            )
        self._wait_for_previous_sync()
        # Whatever the attempt number: a rerun of a finished job resumes from its checkpoints too.
        restored = self._restore()
        if isinstance(restored, Outcome):
            return restored
        self._job_account().own([paths.clone, *made])  # after the restore: its files are the account's to rotate
        env = {**command_env(job, paths, self.options, self.inherited_env, self.secret_values), **resume_env(restored)}
        self._dir_sync.start()
        for phase, command in job.commands:
            outcome = self._run_phase(phase, command, paths.clone, env)
            if outcome:
                return outcome
        return Outcome()

    def _clone(self, job: Job, paths: Paths) -> Optional[Outcome]:
        self._enter(markers.CLONE)
        # The agent's own environment, never the job's: its env may hold PATH, LD_PRELOAD or GIT_*
        # values meant for the training that would change what git runs and fetches.
        auth = job.repository_auth or {}
        credentials = (auth["username"], self.git_secret) if "token_secret" in auth and self.git_secret else None
        ssh_key = self._deploy_key(job)
        with deploy_key.git_ssh_env(ssh_key) as ssh_env:  # the key's file exists for this clone only
            result = clone.clone(
                job.repository_url,
                job.repository_ref,
                paths.clone,
                env={**self.inherited_env, **ssh_env},
                output=self.output,
                should_stop=self._should_stop,
                credentials=credentials,
            )
        self.phase_seconds[markers.CLONE] = round(result.seconds, 3)
        if result.stop or result.exit_code == 0:
            return self._stopped(result, markers.CLONE)
        said = clone.failure_line(self.output.tail())
        fix = "check repository_url and repository_ref, and that the repository is public or reachable"
        if credentials and clone.refused_credentials(said):
            fix = (
                f"the server refused the token in {auth['token_secret']} "
                f"(repository_auth.token_secret) for user {auth['username']}: store a token with read "
                f"access with `spottrain secret put {auth['token_secret']}`, or fix repository_auth.username"
            )
        refused = deploy_key.refusal(self.output.tail(), job.repository_url, ssh_key) if ssh_key else None
        fix = refused or fix
        message = (
            f"git clone of {redact_credentials(job.repository_url)} (ref {job.repository_ref or 'default branch'}) "
            f"failed with exit code {result.exit_code}: {said}; {fix}"
        )
        return Outcome(exit_code=result.exit_code, failed_phase=markers.CLONE, reason="clone_failed", message=message)

    def _deploy_key(self, job: Job) -> Optional[deploy_key.DeployKey]:
        auth = job.repository_auth or {}
        if "ssh_key_secret" not in auth or not self.git_secret:
            return None
        return deploy_key.DeployKey(auth["ssh_key_secret"], self.git_secret, auth["known_hosts"])

    def _wait_for_previous_sync(self) -> None:
        """Attempt n-1 may still be uploading its last checkpoint (the workflow relaunched at its notice)."""
        if self.options.attempt <= 1:
            return
        self._enter(markers.WAIT_PREVIOUS_SYNC)
        waited = overlap.wait_for_previous_sync(
            lambda: self.store.find_json(layout.INTERRUPTED_KEY),
            self.options.attempt,
            self.execution,
            self.options.previous_sync_wait_seconds,
            self._noticed.wait,
        )
        if not waited.needed:
            return
        self.phase_seconds[markers.WAIT_PREVIOUS_SYNC] = round(waited.seconds, 3)
        if self._noticed.is_set():
            log.warning(
                "stopped waiting for attempt %d's final sync after %.1fs: this instance got a spot notice too",
                self.options.attempt - 1,
                waited.seconds,
            )
        elif waited.done:
            log.info(
                "waited %.1fs for attempt %d's final sync (%s final_sync_done true); restoring now",
                waited.seconds,
                self.options.attempt - 1,
                layout.INTERRUPTED_KEY,
            )
        else:
            log.warning(
                "gave up after %.1fs waiting for attempt %d's final sync (%s still says final_sync_done "
                "false; SPOTTRAIN_PREVIOUS_SYNC_WAIT_SECONDS=%.0f): restoring what reached S3",
                waited.seconds,
                self.options.attempt - 1,
                layout.INTERRUPTED_KEY,
                self.options.previous_sync_wait_seconds,
            )

    def _restore(self) -> Union[List[Path], Outcome]:
        """Put back what earlier attempts or runs saved (mtimes included: resumers pick the newest)."""
        self._enter(markers.RESTORE)
        started = time.monotonic()
        sync = self._syncs[-1]  # checkpoints/, or output/ for jobs without checkpoint_dir
        try:
            restored = sync.restore()
        except RETRYABLE + (OSError,) as error:  # OSError: e.g. the disk is too small for them
            message = (
                f"cannot restore s3://{self.options.bucket}/{sync.prefix} into {sync.local_dir}: {error}; "
                "if the disk is full, raise instance.volume_gb"
            )
            return Outcome(exit_code=1, failed_phase=markers.RESTORE, reason="restore_failed", message=message)
        self.phase_seconds[markers.RESTORE] = round(time.monotonic() - started, 3)
        self.output.note(f"restored {len(restored)} files from s3://{self.options.bucket}/{sync.prefix}")
        return restored

    def _run_phase(self, phase: str, command: str, cwd: Path, env: Mapping[str, str]) -> Optional[Outcome]:
        stop = self._should_stop()
        if stop:
            return self._stopped(runner.Result(0, 0.0, stop), phase)
        self._enter(phase)
        self.output.note(f"phase {phase}: {command}")
        result = runner.run(
            self._job_account().login_command(command),
            cwd=cwd,
            env=env,
            output=self.output,
            should_stop=self._should_stop,
        )
        self.phase_seconds[phase] = round(result.seconds, 3)
        self.output.note(f"phase {phase} ended with exit code {result.exit_code} after {result.seconds:.1f}s")
        if result.stop:
            return self._stopped(result, phase)
        if result.exit_code != 0:
            message = f"{phase} command exited with code {result.exit_code}"
            return Outcome(exit_code=result.exit_code, failed_phase=phase, message=message)
        return None

    def _stopped(self, result: runner.Result, phase: str) -> Optional[Outcome]:
        if result.stop is None:
            return None
        if result.stop.reason == "interrupted":
            return Outcome(
                interrupted=True,
                exit_code=result.exit_code,
                failed_phase=phase,
                reason="interrupted",
                killed=result.killed,
            )
        if result.stop.reason == "disk_full":
            error = self.output.write_error
            message = (
                f"disk full: the {phase} command's output could not be written "
                f"({error.strerror if error else 'no space left'}), so the command was stopped; "
                "raise instance.volume_gb, or keep fewer snapshots and less output on the instance"
            )
            # A command that exits 0 on SIGTERM still did not finish: never let that read as success.
            return Outcome(
                exit_code=result.exit_code or 1,
                failed_phase=phase,
                reason="disk_full",
                message=message,
                killed=result.killed,
            )
        if result.stop.reason == spendcap.REASON:
            return Outcome(
                exit_code=result.exit_code or 124,
                failed_phase=phase,
                reason=spendcap.REASON,
                killed=result.killed,
                message=spendcap.stop_message(self.budget or {}, phase),
            )
        limit = self.job.max_runtime_minutes if self.job else None
        return Outcome(
            exit_code=result.exit_code or 124,
            failed_phase=phase,
            reason="max_runtime",
            killed=result.killed,
            message=(
                f"limits.max_runtime_minutes={limit} reached during {phase}: the command was stopped; "
                "raise the limit if the job needs longer, or make it resume from checkpoints"
            ),
        )

    def _finish(self, outcome: Outcome) -> None:
        # A notice from now on changes nothing: the training is over, its markers are next.
        self._notice_watch.stop(timeout=30.0)
        self._dir_sync.stop(timeout=max(60.0, self.options.sync_seconds * 4))
        self._enter(markers.SYNC)
        synced = self._final_sync(outcome)
        self._upload_logs()
        if outcome.interrupted or self._notice_marked:
            # Also after a notice that came as the training ended: the next attempt waits for this.
            self.store.put_json(layout.INTERRUPTED_KEY, self._interrupted_marker(outcome, synced))
        if outcome.interrupted:
            log.warning("interrupted by the spot notice")
            self.callback.fail(CallbackError.SPOT_INTERRUPTED, self._notice_cause())  # unless sent at the notice
        else:
            self.store.put_json(layout.COMPLETED_KEY, self._completed_marker(outcome, synced))
            log.info("completed: exit code %d, reason %s", outcome.exit_code, outcome.reason)
            self._answer(outcome)
            self._enter(markers.DONE)
            self._keep_alive(outcome)
        self._shutdown()

    def _answer(self, outcome: Outcome) -> None:
        if outcome.exit_code == 0:
            self.callback.succeed({**self._marker(), "outcome": "completed"})
        else:
            message = outcome.message or f"{outcome.failed_phase} ended with exit code {outcome.exit_code}"
            self.callback.fail(error_for(outcome.reason), f"attempt {self.options.attempt}: {message}")

    def _notice_cause(self) -> str:
        notice = self.notice or {}
        return (
            f"spot interruption notice on {self.instance_id} (attempt {self.options.attempt}): "
            f"{notice.get('action')} at {notice.get('time')}"
        )

    # --- markers ---------------------------------------------------------------------------------

    def _marker(self) -> dict:
        return markers.identity(self.options.attempt, self.instance_id, self.execution)

    def _completed_marker(self, outcome: Outcome, synced: SyncReport) -> dict:
        return {
            **self._marker(),
            "exit_code": outcome.exit_code,
            "failed_phase": outcome.failed_phase if outcome.exit_code != 0 else None,
            "reason": outcome.reason,
            "message": outcome.message,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(_now()),
            "phase_seconds": dict(self.phase_seconds),
            "last_log_lines": self.output.tail(),
            "synced": bool(self._syncs) and synced.ok,
            "not_synced": synced.failed[:MARKER_LIST_MAX],
            "command_killed": outcome.killed,
        }

    def _notice_marker(self) -> dict:
        """What is known at the notice; the final sync is still to come."""
        notice = self.notice or {}
        return {
            **self._marker(),
            "notice_time": notice.get("time"),
            "action": notice.get("action"),
            "noticed_at": notice.get("noticed_at"),
            "phase": self.phase,
            markers.FINAL_SYNC_DONE: False,
        }

    def _interrupted_marker(self, outcome: Outcome, synced: SyncReport) -> dict:
        return {
            **self._notice_marker(),
            "phase": outcome.failed_phase,
            "exit_code": outcome.exit_code,
            "finished_at": _iso(_now()),
            markers.FINAL_SYNC_DONE: True,
            "checkpoints_synced": bool(self._syncs) and synced.ok,
            "not_synced": synced.failed[:MARKER_LIST_MAX],
            "command_killed": outcome.killed,
        }

    # --- background tasks (threads) -------------------------------------------------------------

    def _heartbeat(self) -> None:
        last = self.output.last_line_time
        self.store.put_json(
            layout.HEARTBEAT_KEY,
            {
                **self._marker(),
                "phase": self.phase,
                "time": _iso(_now()),
                "last_log_time": _iso(dt.datetime.fromtimestamp(last, dt.timezone.utc)) if last else None,
                "last_log_line": self.output.last_line,
            },
        )
        self._load_budget()
        self.callback.heartbeat()  # after S3: the file is for people, the call keeps the workflow's wait open

    def _load_budget(self) -> None:
        """Read this attempt's spend budget until found: the workflow writes it right after the launch.

        A wall-clock stop time (launch + what the rest of the cap buys), not a monotonic one: the
        instance's clock and the Lambda's are both NTP-synced UTC, and the budget counts from the launch.
        """
        if self.spend_stop is not None:
            return
        try:
            found = self.store.find_json(layout.budget_key(self.options.attempt))
        except (ValueError, *RETRYABLE) as error:  # the next heartbeat tries again
            log.warning("spend budget unreadable: %s", error)
            return
        if found and markers.written_by(found, self.options.attempt, self.instance_id, self.execution):
            self.budget, self.spend_stop = found, spendcap.stop_time(found)
            log.info("spend cap: stopping at %s (limits.max_cost_usd=%s)", found.get("stop_at"), found.get("cap_usd"))

    def _check_notice(self) -> None:
        if self._noticed.is_set():
            return
        notice = self.imds.spot_notice()
        if notice:
            self.notice = {**notice, "noticed_at": _iso(_now())}
            log.warning("spot interruption notice: %s", notice)
            # Marker first, then the failure: the workflow judges INTERRUPTED from the marker and
            # relaunches at once. Both before SIGTERM: the final marker must never be overwritten by this one.
            self.store.put_json(layout.INTERRUPTED_KEY, self._notice_marker())
            self._notice_marked = True
            self.callback.fail(CallbackError.SPOT_INTERRUPTED, self._notice_cause() + "; final sync under way", tries=1)
            self._noticed.set()

    def _upload_logs(self) -> None:
        self.output.upload(self.store)
        size = self.agent_log_path.stat().st_size if self.agent_log_path.exists() else -1
        if size != self._agent_log_size and size >= 0:
            if self.store.upload(self.agent_log_path, layout.agent_log_key(self.options.attempt)):
                self._agent_log_size = size

    def _sync_dirs(self) -> SyncReport:
        report = SyncReport()
        for sync in self._syncs:
            report = report.add(sync.sync())
        return report

    def _final_sync(self, outcome: Outcome) -> SyncReport:
        """The last sync before a marker, and a log line that says what it really achieved."""
        report = self._sync_dirs()
        if not self._syncs:
            log.warning("final sync: nothing to sync, the attempt ended before its folders existed")
        elif report.ok:
            log.info(
                "final sync: everything is in S3 (%d files uploaded now, %d deleted)",
                len(report.uploaded),
                len(report.deleted),
            )
        else:
            log.error(
                "final sync incomplete: %d objects did not reach S3, e.g. %s",
                len(report.failed),
                ", ".join(report.failed[:5]),
            )
        if outcome.killed:
            log.error("the command was SIGKILLed when its grace ran out: a checkpoint it was writing may be cut")
        return report

    # --- helpers ---------------------------------------------------------------------------------

    def _should_stop(self) -> Optional[runner.StopRequest]:
        if self._noticed.is_set():
            return runner.StopRequest("interrupted", self._grace_left())
        if self.output.disk_full:  # else the GPU idles, heartbeats look fine, until max runtime
            return runner.StopRequest("disk_full", self.options.kill_grace_seconds)
        if self.spend_stop is not None and _now() >= self.spend_stop:
            return runner.StopRequest(spendcap.REASON, self.options.kill_grace_seconds)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return runner.StopRequest("max_runtime", self.options.kill_grace_seconds)
        return None

    def _grace_left(self) -> float:
        """Seconds the training may take to stop, keeping a reserve for the final sync."""
        left = SPOT_NOTICE_SECONDS
        try:
            reclaim = dt.datetime.fromisoformat(str((self.notice or {}).get("time")).replace("Z", "+00:00"))
            left = (reclaim - _now()).total_seconds()
        except ValueError:
            pass
        return max(1.0, left - self.options.sync_reserve_seconds)

    def _enter(self, phase: str) -> None:
        self.phase = phase
        self._heartbeats.poke()  # the workflow learns of a new phase at once, not a tick later

    def _keep_alive(self, outcome: Outcome) -> None:
        """Stay up after the answer: keep_alive_minutes after a success, the debug door's
        on_failure.keep_alive_minutes after a failure, so a session can still reach the instance."""
        if not self.job:
            return
        failed = outcome.exit_code != 0
        minutes = self.job.failure_keep_alive_minutes if failed else self.job.keep_alive_minutes
        seconds = minutes * self.options.seconds_per_minute
        if seconds > 0:
            field = "on_failure.keep_alive_minutes" if failed else "keep_alive_minutes"
            log.info("keeping the instance alive for %.0fs (%s)", seconds, field)
            if failed:
                self._leave_door_note(seconds)
            time.sleep(seconds)

    def _leave_door_note(self, seconds: float) -> None:
        until = _iso(_now() + dt.timedelta(seconds=seconds))
        note = {"exec_name": self.job.exec_name if self.job else None, "instance_id": self.instance_id, "until": until}
        try:
            (self.options.workdir / debug_door.DOOR_FILE).write_text(json.dumps(note))
        except OSError as error:  # a note for people: the door stays open without it
            log.warning("could not write %s: %s", debug_door.DOOR_FILE, error)

    def _shutdown(self) -> None:
        command = self.options.shutdown_command
        log.info("shutting down: %s", command)
        for task in self._background:
            task.stop(timeout=30.0)
        self._upload_logs()
        completed = subprocess.run(["bash", "-c", command], stdin=subprocess.DEVNULL)
        if completed.returncode != 0:
            log.error("shutdown command %r exited with %d", command, completed.returncode)


def resume_env(restored: List[Path]) -> Dict[str, str]:
    """SPOTTRAIN_RESUME and SPOTTRAIN_LATEST_CHECKPOINT from what the restore put back.

    The newest by mtime, as Chainer's snapshot autoload picks it, so that
    `--resume "$SPOTTRAIN_LATEST_CHECKPOINT"` and autoload agree.
    """
    if not restored:
        return {"SPOTTRAIN_LATEST_CHECKPOINT": ""}
    latest = max(restored, key=lambda path: (path.stat().st_mtime_ns, path.name))
    return {"SPOTTRAIN_RESUME": "1", "SPOTTRAIN_LATEST_CHECKPOINT": str(latest)}


def _execution_id(document: Mapping) -> Optional[str]:
    execution = document.get("execution") if isinstance(document, Mapping) else None
    return execution.get("id") if isinstance(execution, Mapping) else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")
