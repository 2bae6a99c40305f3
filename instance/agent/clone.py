"""Clone the job's repository: shallow at the requested branch or tag, else fully at any commit."""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Callable, List, Mapping, Optional

from . import runner
from .logs import OutputLog

log = logging.getLogger(__name__)
_USERINFO = re.compile(r"(://)[^/@]+@")
_COMMIT_ID = re.compile(r"[0-9a-f]{7,40}")


def clone(
    url: str,
    ref: Optional[str],
    dest: Path,
    *,
    env: Mapping[str, str],
    output: OutputLog,
    should_stop: Callable[[], Optional[runner.Stop]],
) -> runner.Result:
    # A never-answered credential prompt would hang the instance until max runtime.
    env = {**env, "GIT_TERMINAL_PROMPT": "0"}

    def git(*args: str, cwd: Path = dest.parent) -> runner.Result:
        output.note("$ git " + " ".join(redact(arg) for arg in args))
        return runner.run(["git", *args], cwd=cwd, env=env, output=output, should_stop=should_stop)

    _fresh(dest)
    if ref is None:
        return git("clone", "--depth", "1", url, str(dest))
    if not _COMMIT_ID.fullmatch(ref):
        return git("clone", "--depth", "1", "--branch", ref, url, str(dest))
    # --branch takes branches and tags only; a commit id needs the history that holds it.
    result = git("clone", "--no-checkout", url, str(dest))
    if result.exit_code != 0 or result.stop:
        return result
    return git("checkout", "--detach", ref, cwd=dest)


def failure_line(lines: List[str]) -> str:
    """The line of git's output that says what went wrong (its first "fatal:"), else the last one."""
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return next((line for line in reversed(lines) if line.strip()), "no output")


def redact(text: str) -> str:
    """Hide user:token@ in URLs: the message goes to logs and email."""
    return _USERINFO.sub(r"\1***@", text)


def _fresh(dest: Path) -> None:
    # Leftovers from an earlier agent run in this workdir: checkpoints come from S3, not from here.
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
