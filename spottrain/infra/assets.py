"""What each asset ships, as whole package folders, and the exclude patterns that ship only those.

Both assets carry `spottrain/__init__.py` and the contract package; each adds its own side's package.
Nothing else of the repository (payload, tests, virtualenv, node_modules, the CLI, the emulator, this
CDK app) reaches AWS. The stack, the emulator (through the synthesized assets) and the tests all ship
these lists, so they cannot drift apart.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[2]
_SHARED = ("spottrain/__init__.py", "spottrain/contract/**")
LAMBDA_ASSET = (*_SHARED, "spottrain/functions/**")
AGENT_ASSET = (*_SHARED, "spottrain/agent/**")

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


def asset_files(paths: tuple[str, ...], repo_root: Path = REPO_ROOT) -> Iterator[tuple[Path, str]]:
    """(file, name in the asset) for every file `paths` names, caches left out, as CDK stages them."""
    for path in paths:
        folder = path.removesuffix("/**")
        found = sorted((repo_root / folder).rglob("*")) if folder != path else [repo_root / path]
        for file in found:
            if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
                yield file, file.relative_to(repo_root).as_posix()


def build_zip(paths: tuple[str, ...], destination: Path, repo_root: Path = REPO_ROOT) -> Path:
    """The asset as a zip, for tests that run the bootstrap without synthesizing the stack."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as archive:
        for file, name in asset_files(paths, repo_root):
            archive.write(file, name)
    return destination
