"""The agent's S3 asset: `instance/**` plus the shared modules it imports, as the bootstrap expects.

Kept here so the stack, the emulator and the tests ship exactly the same files.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Iterator, Tuple

REPO_ROOT = Path(__file__).resolve().parent.parent
# layout: the S3 keys; status: the CallbackError names the agent sends. Both stdlib only.
SHARED_FILES = ("lambdas/__init__.py", "lambdas/shared/__init__.py", "lambdas/shared/layout.py",
                "lambdas/shared/status.py")


def agent_files(repo_root: Path = REPO_ROOT) -> Iterator[Tuple[Path, str]]:
    """(file, name in the zip) for every file the agent needs, caches left out."""
    for path in sorted((repo_root / "instance").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path, path.relative_to(repo_root).as_posix()
    for name in SHARED_FILES:
        yield repo_root / name, name


def build_agent_zip(destination: Path, repo_root: Path = REPO_ROOT) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in agent_files(repo_root):
            archive.write(path, name)
    return destination
