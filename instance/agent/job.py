"""The job as the agent sees it: job.json's spec, resolved against the clone, and its environment."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from .options import Options

# Phases that run a user command, in order: (phase, spec field).
COMMAND_PHASES = (("setup", "setup_command"), ("data", "data_get_command"), ("exec", "exec_command"))
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class InvalidJob(ValueError):
    """job.json cannot be run as written; the message names the field, the rule and the fix."""


@dataclasses.dataclass(frozen=True)
class Job:
    exec_name: str
    execution: str
    repository_url: str
    repository_ref: Optional[str]
    repository_name: str
    data_dir: str
    output_dir: str
    checkpoint_dir: Optional[str]
    commands: Tuple[Tuple[str, str], ...]  # (phase, command) in run order, absent setup left out
    env: Dict[str, str]
    max_runtime_minutes: Optional[float]
    keep_alive_minutes: float

    @classmethod
    def from_document(cls, document: Mapping) -> "Job":
        spec = document.get("job") or {}
        missing = [name for name in ("exec_name", "repository_url", "data_dir", "output_dir",
                                     "data_get_command", "exec_command") if not spec.get(name)]
        if missing:
            raise InvalidJob(f"job.json lacks {', '.join(missing)}: it must hold the validated spec under 'job'")
        limits = spec.get("limits") or {}
        return cls(
            exec_name=spec["exec_name"],
            execution=(document.get("execution") or {}).get("name") or "unknown",
            repository_url=spec["repository_url"],
            repository_ref=spec.get("repository_ref") or None,
            repository_name=_repository_name(spec),
            data_dir=spec["data_dir"],
            output_dir=spec["output_dir"],
            checkpoint_dir=spec.get("checkpoint_dir") or None,
            commands=tuple((phase, spec[field]) for phase, field in COMMAND_PHASES if spec.get(field)),
            env={str(key): str(value) for key, value in (spec.get("env") or {}).items()},
            max_runtime_minutes=limits.get("max_runtime_minutes"),
            keep_alive_minutes=float(spec.get("keep_alive_minutes") or 0),
        )


@dataclasses.dataclass(frozen=True)
class Paths:
    """Absolute places on this instance for one job."""

    clone: Path
    data: Path
    output: Path
    checkpoint: Optional[Path]

    @classmethod
    def resolve(cls, job: Job, workdir: Path) -> "Paths":
        clone = (workdir / "repo" / job.repository_name).resolve()
        return cls(
            clone=clone,
            data=_inside_clone(clone, "data_dir", job.data_dir),
            output=_inside_clone(clone, "output_dir", job.output_dir),
            checkpoint=_inside_clone(clone, "checkpoint_dir", job.checkpoint_dir) if job.checkpoint_dir else None,
        )

    def created(self) -> List[Path]:
        return [path for path in (self.data, self.output, self.checkpoint) if path is not None]


def command_env(job: Job, paths: Paths, options: Options, inherited: Mapping[str, str]) -> Dict[str, str]:
    """The agent's environment, then the job's env, then the SPOTTRAIN_* contract (which wins)."""
    env = dict(inherited)
    env.update(job.env)
    # Unset rather than "0" on a first attempt: `if os.environ.get("SPOTTRAIN_RESUME")` must be false.
    env.pop("SPOTTRAIN_RESUME", None)
    env.update({
        "SPOTTRAIN_JOB": job.exec_name,
        "SPOTTRAIN_BUCKET": options.bucket,
        "SPOTTRAIN_ATTEMPT": str(options.attempt),
        "SPOTTRAIN_DATA_DIR": str(paths.data),
        "SPOTTRAIN_OUTPUT_DIR": str(paths.output),
        "SPOTTRAIN_CHECKPOINT_DIR": str(paths.checkpoint or paths.output),
    })
    return env


def _repository_name(spec: Mapping) -> str:
    name = spec.get("repository_name") or spec["repository_url"].rstrip("/").rsplit("/", 1)[-1]
    name = name[:-4] if name.endswith(".git") else name
    if not _SAFE_NAME.fullmatch(name):
        raise InvalidJob(f"repository_name={name!r} must be one directory name (letters, digits, . _ -)")
    return name


def _inside_clone(clone: Path, field: str, relative: str) -> Path:
    path = (clone / relative).resolve()
    try:
        path.relative_to(clone)
    except ValueError:
        raise InvalidJob(f"{field}={relative!r} leaves the cloned repository; use a path relative to its root") from None
    return path
