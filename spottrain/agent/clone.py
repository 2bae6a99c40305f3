"""Clone the job's repository at its ref, as a developer would by hand.

A ref names a branch or tag first (`git clone --branch`, shallow) and a commit only when the
repository has no branch or tag of that name: `deadbeef` or `20240115` are branch names too.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Tuple

from spottrain.contract.names import redact_credentials

from . import runner
from .logs import OutputLog

log = logging.getLogger(__name__)
_COMMIT_ID = re.compile(r"[0-9a-f]{7,40}")
NO_MATCHING_REF = 2  # `git ls-remote --exit-code`: the repository answered, and has no such ref


# git asks its credential helpers (https://git-scm.com/docs/gitcredentials) for a user and password; this one
# answers from its environment, so the token is in no command line (`ps`), config file or log. The empty
# helper first drops any helper the AMI configured.
CREDENTIAL_HELPER = (
    '!f() { if [ "$1" = get ]; then printf "username=%s\\npassword=%s\\n" '
    '"$SPOTTRAIN_GIT_USERNAME" "$SPOTTRAIN_GIT_TOKEN"; fi; }; f'
)


def clone(
    url: str,
    ref: Optional[str],
    dest: Path,
    *,
    env: Mapping[str, str],
    output: OutputLog,
    should_stop: Callable[[], Optional[runner.StopRequest]],
    credentials: Optional[Tuple[str, str]] = None,
) -> runner.Result:
    """env: the agent's own environment; never the job's, which may redirect what git runs or fetches.

    credentials: (username, token) for a private https repository, given to git by CREDENTIAL_HELPER.
    """
    # A never-answered credential prompt would hang the instance until max runtime.
    env = {**env, "GIT_TERMINAL_PROMPT": "0"}
    config: List[str] = []
    if credentials is not None:
        env.update({"SPOTTRAIN_GIT_USERNAME": credentials[0], "SPOTTRAIN_GIT_TOKEN": credentials[1]})
        config = ["-c", "credential.helper=", "-c", f"credential.helper={CREDENTIAL_HELPER}"]

    def git(*args: str, cwd: Path = dest.parent) -> runner.Result:
        output.note("$ git " + " ".join(redact_credentials(arg) for arg in args))
        return runner.run(["git", *config, *args], cwd=cwd, env=env, output=output, should_stop=should_stop)

    _fresh(dest)
    if ref is None:
        return git("clone", "--depth", "1", url, str(dest))
    if _COMMIT_ID.fullmatch(ref):
        found = git("ls-remote", "--exit-code", url, f"refs/heads/{ref}", f"refs/tags/{ref}")
        if found.stop or found.exit_code not in (0, NO_MATCHING_REF):
            return found  # unreachable or not a repository: git said why
        if found.exit_code == NO_MATCHING_REF:
            return _clone_commit(git, url, ref, dest)
    # A name that is neither branch, tag nor commit id gets git's own "Remote branch ... not found".
    return git("clone", "--depth", "1", "--branch", ref, url, str(dest))


def _clone_commit(git, url: str, commit: str, dest: Path) -> runner.Result:
    # --branch takes branches and tags only; a commit id needs the history that holds it.
    result = git("clone", "--no-checkout", url, str(dest))
    if result.exit_code != 0 or result.stop:
        return result
    return git("checkout", "--detach", commit, cwd=dest)


def failure_line(lines: List[str]) -> str:
    """The line of git's output that says what went wrong (its first "fatal:"), else the last one."""
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return next((line for line in reversed(lines) if line.strip()), "no output")


def refused_credentials(line: str) -> bool:
    """git's words when the server answered 401/403 to the credentials it got."""
    return "Authentication failed" in line or "The requested URL returned error: 403" in line


def _fresh(dest: Path) -> None:
    # Leftovers from an earlier agent run in this workdir: checkpoints come from S3, not from here.
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
