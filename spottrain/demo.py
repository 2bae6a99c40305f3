"""The bundled demo job, pointed at this checkout so the emulator's instance clones it locally."""

from __future__ import annotations

import subprocess
from pathlib import Path


def current_branch(repo: Path) -> str | None:
    """The checked-out branch, or None when HEAD is detached (then the clone takes the default)."""
    result = subprocess.run(
        ["git", "-C", str(repo), "symbolic-ref", "--quiet", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or None


def demo_spec(repo: Path, spec: dict) -> dict:
    """The example spec with its repository replaced by this checkout (committed files only)."""
    local = {**spec, "repository_url": repo.resolve().as_uri()}
    local.pop("repository_ref", None)
    branch = current_branch(repo)
    if branch:
        local["repository_ref"] = branch
    return local
