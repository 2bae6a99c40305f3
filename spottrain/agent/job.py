"""The job as the agent sees it: job.json's spec, who runs it, where it lives, and its environment.

The 2017 layout: the commands run as the AMI's default user (the stack's instanceUser) in a login
shell, in a clone at ~<user>/<repository_name>; data_dir, output_dir and checkpoint_dir are inside
the clone when relative, or where they say when absolute (/home/ubuntu/data).
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import pwd
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from spottrain.contract import markers, names, schema

from .options import Options


class InvalidJob(ValueError):
    """job.json cannot be run as written; the message names the field, the rule and the fix."""


@dataclasses.dataclass(frozen=True)
class Job:
    exec_name: str
    repository_url: str
    repository_ref: Optional[str]
    repository_name: str
    data_dir: str
    output_dir: str
    checkpoint_dir: Optional[str]
    commands: Tuple[Tuple[str, str], ...]  # (phase, command) in run order, absent setup left out
    env: Dict[str, str]
    secrets: Dict[str, str]  # variable -> secret name (the values never enter job.json)
    # {"token_secret", "username"}: a private https repository; {"ssh_key_secret", "known_hosts"}: an ssh one
    repository_auth: Optional[Dict[str, str]]
    max_runtime_minutes: Optional[float]
    keep_alive_minutes: float
    failure_keep_alive_minutes: float  # the debug door: on_failure.keep_alive_minutes, validated within the stack's cap

    @classmethod
    def from_document(cls, document: Mapping) -> "Job":
        spec = document.get("job") or {}
        missing = [name for name in schema.required_fields() if not spec.get(name)]
        if missing:
            raise InvalidJob(f"job.json lacks {', '.join(missing)}: it must hold the validated spec under 'job'")
        limits = spec.get("limits") or {}
        return cls(
            exec_name=spec["exec_name"],
            repository_url=spec["repository_url"],
            repository_ref=spec.get("repository_ref") or None,
            repository_name=_repository_name(spec),
            data_dir=spec["data_dir"],
            output_dir=spec["output_dir"],
            checkpoint_dir=spec.get("checkpoint_dir") or None,
            commands=tuple((phase, spec[field]) for phase, field in markers.COMMAND_PHASES if spec.get(field)),
            env={str(key): str(value) for key, value in (spec.get("env") or {}).items()},
            secrets={str(key): str(value) for key, value in (spec.get("secrets") or {}).items()},
            repository_auth=_repository_auth(spec.get("repository_auth")),
            max_runtime_minutes=limits.get("max_runtime_minutes"),
            keep_alive_minutes=float(spec.get("keep_alive_minutes") or 0),
            failure_keep_alive_minutes=float((spec.get("on_failure") or {}).get("keep_alive_minutes") or 0),
        )


@dataclasses.dataclass(frozen=True)
class Account:
    """Who runs the job's commands: this account's login shell, with its home."""

    name: str
    uid: int
    gid: int
    home: Path
    switch: bool  # the agent (root) drops to this account; False when it already is this account

    @classmethod
    def resolve(cls, run_as: Optional[str], home: Optional[Path]) -> "Account":
        """run_as None: the agent's own account (HOME, or `home`); else that user, and root must be running us."""
        me = _own_user()
        if run_as is None or (me and run_as == me.pw_name):
            name = me.pw_name if me else str(os.geteuid())
            return cls(name, os.geteuid(), os.getegid(), home or Path.home(), switch=False)
        try:
            user = pwd.getpwnam(run_as)
        except KeyError:
            raise InvalidJob(
                f"--run-as {run_as}: this machine has no such user. Set the stack's instanceUser "
                "(cdk.json, or -c instanceUser=...) to the AMI's default user, e.g. ubuntu or ec2-user"
            ) from None
        if os.geteuid() != 0:
            raise InvalidJob(
                f"--run-as {run_as}: the agent runs as uid {os.geteuid()}, and only root can run commands "
                "as another user. Start the agent as root (the user data does), or leave out --run-as"
            )
        return cls(user.pw_name, user.pw_uid, user.pw_gid, home or Path(user.pw_dir), switch=True)

    def login_command(self, command: str) -> List[str]:
        """argv that runs command in this account's login shell, the job's environment kept."""
        # Not `runuser -l`/`su -`: a login resets the environment (SPOTTRAIN_*, the job's env), and su's
        # watching parent SIGKILLs the command 2 s after a SIGTERM, too soon for a checkpoint.
        # setpriv only changes identity and execs; `bash -l` reads the profiles that put frameworks on PATH.
        login = ["env", f"HOME={self.home}", f"USER={self.name}", f"LOGNAME={self.name}", "bash", "-lc", command]
        if not self.switch:
            return login
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--", *login]

    def own(self, folders: Iterable[Path]) -> None:
        """Hand folders the agent made (as root), and all in them, to this account: its commands write there."""
        if not self.switch:
            return
        for folder in folders:
            for path in (folder, *folder.rglob("*")):
                os.chown(path, self.uid, self.gid, follow_symlinks=False)


@dataclasses.dataclass(frozen=True)
class Paths:
    """Absolute places on this instance for one job."""

    clone: Path
    data: Path
    output: Path
    checkpoint: Optional[Path]

    @classmethod
    def resolve(cls, job: Job, home: Path, absolute_refused: Optional[str] = None) -> "Paths":
        """The clone is ~/<repository_name>, as in 2017; absolute_refused says why absolute folders cannot be."""
        clone = (home / job.repository_name).resolve()

        def place(field: str, folder: str) -> Path:
            if not folder.startswith("/"):
                return _inside_clone(clone, field, folder)
            return _absolute(field, folder, absolute_refused)

        checkpoint = place("checkpoint_dir", job.checkpoint_dir) if job.checkpoint_dir else None
        paths = cls(clone, place("data_dir", job.data_dir), place("output_dir", job.output_dir), checkpoint)
        if paths.checkpoint == paths.output:
            # The Lambda cannot compare a relative folder with an absolute one: it does not know the clone's place.
            raise InvalidJob(
                f"checkpoint_dir={job.checkpoint_dir!r} is output_dir={job.output_dir!r} ({paths.output}); "
                "give checkpoints a folder of their own, or leave checkpoint_dir out"
            )
        return paths

    def created(self) -> List[Path]:
        return [path for path in (self.data, self.output, self.checkpoint) if path is not None]

    def make(self) -> List[Path]:
        """Create the missing folders; returns every folder this made, parents included."""
        made: List[Path] = []
        for folder in self.created():
            missing = [path for path in (folder, *folder.parents) if not path.exists()]
            folder.mkdir(parents=True, exist_ok=True)
            made.extend(reversed(missing))
        return made


def command_env(
    job: Job,
    paths: Paths,
    options: Options,
    inherited: Mapping[str, str],
    secret_values: Optional[Mapping[str, str]] = None,
) -> Dict[str, str]:
    """The agent's environment, then the job's env and secrets, then the SPOTTRAIN_* contract (which wins)."""
    env = dict(inherited)
    env.update(job.env)
    env.update(secret_values or {})
    # Unset rather than "0" on a first attempt: `if os.environ.get("SPOTTRAIN_RESUME")` must be false.
    env.pop("SPOTTRAIN_RESUME", None)
    env.update(
        {
            "SPOTTRAIN_JOB": job.exec_name,
            "SPOTTRAIN_BUCKET": options.bucket,
            "SPOTTRAIN_ATTEMPT": str(options.attempt),
            "SPOTTRAIN_DATA_DIR": str(paths.data),
            "SPOTTRAIN_OUTPUT_DIR": str(paths.output),
            "SPOTTRAIN_CHECKPOINT_DIR": str(paths.checkpoint or paths.output),
        }
    )
    return env


def _repository_auth(auth: Optional[Mapping]) -> Optional[Dict[str, str]]:
    if not auth:
        return None
    if "ssh_key_secret" in auth:
        return {"ssh_key_secret": str(auth["ssh_key_secret"]), "known_hosts": str(auth.get("known_hosts") or "")}
    return {"token_secret": str(auth["token_secret"]), "username": str(auth.get("username") or "x-access-token")}


def _repository_name(spec: Mapping) -> str:
    """job.json's repository_name; a job.json written without one derives it as ValidateJob would."""
    name = spec.get("repository_name") or names.repository_name(spec["repository_url"])
    if not names.REPOSITORY_NAME.match(name):
        raise InvalidJob(f"repository_name={name!r} must be {names.REPOSITORY_NAME_RULE}")
    return name


def _own_user() -> Optional[pwd.struct_passwd]:
    try:
        return pwd.getpwuid(os.geteuid())
    except KeyError:  # a container's arbitrary uid, unknown to its password database
        return None


def _absolute(field: str, folder: str, refused: Optional[str]) -> Path:
    if refused:
        raise InvalidJob(
            f"{field}={folder!r} is absolute, and {refused}. "
            f"Use a folder inside the clone instead, e.g. {posixpath.basename(folder)!r}"
        )
    # normpath keeps a leading "//" (POSIX leaves its meaning to the system): refuse it too.
    if posixpath.normpath(folder) != folder or folder.startswith("//"):
        raise InvalidJob(
            f"{field}={folder!r} is not a normalised absolute path; write it as {posixpath.normpath(folder)!r}"
        )
    return Path(folder)


def _inside_clone(clone: Path, field: str, relative: str) -> Path:
    path = (clone / relative).resolve()
    try:
        path.relative_to(clone)
    except ValueError:
        raise InvalidJob(
            f"{field}={relative!r} leaves the cloned repository; use a path relative to its root"
        ) from None
    return path
