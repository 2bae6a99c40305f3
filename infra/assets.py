"""Exclude patterns that ship only the named paths of the repository in an asset."""
from __future__ import annotations

from pathlib import PurePosixPath

# minimatch skips dotfiles for "*": ".*" keeps .venv, .git and caches out too.
_EVERYTHING = ["*", ".*"]
_CACHES = ["__pycache__", "*.pyc"]


def keep_only(*paths: str) -> list[str]:
    """Exclude everything but `paths` (files, or folders written as "folder/**") and their parents."""
    kept: list[str] = []
    for path in paths:
        for parent in reversed(PurePosixPath(path).parents[:-1]):
            if f"!{parent}" not in kept:
                kept.append(f"!{parent}")
        kept.append(f"!{path}")
    return _EVERYTHING + kept + _CACHES
