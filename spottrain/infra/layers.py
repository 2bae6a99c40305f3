"""The JsonSchema layer: jsonschema and its dependencies for the Lambdas' runtime (python3.12, x86_64).

The Powertools layer has no jsonschema, and rpds-py (under jsonschema's `referencing`) is compiled, so
the layer holds pip's manylinux wheels for the Lambdas' platform, not the packages of the machine that
synthesizes. CDK's local bundling builds it without Docker; the result is cached under `.cache/` by the
requirements file's content, so pip reaches the package index once per clone and pin change, and every
later synth (tests, emulator) only copies. Layer contents go under `python/`, which Lambda puts on
sys.path: https://docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html#packaging-layers-paths
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).with_name("jsonschema_layer") / "requirements.txt"
CACHE_ROOT = REPO_ROOT / ".cache" / "lambda-layers"
# Wheels for the Lambda runtime, whatever machine synthesizes; never an sdist built for this one.
PIP_TARGET_PLATFORM = (
    "--platform",
    "manylinux2014_x86_64",
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    "--only-binary=:all:",
)


class LayerBuildError(RuntimeError):
    """pip could not build the layer (usually: no package index reachable and nothing cached yet)."""


def layer_dir(requirements: Path = REQUIREMENTS, cache_root: Path = CACHE_ROOT) -> Path:
    """The built layer (a folder holding `python/`), from the cache or built by pip into it first."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    built = cache_root / f"{requirements.parent.name}-{digest}"
    if not (built / "python").is_dir():
        _pip_install(requirements, built)
    return built


def _pip_install(requirements: Path, built: Path) -> None:
    built.parent.mkdir(parents=True, exist_ok=True)
    # Built aside and renamed: a synth that stops halfway, or two at once, never leave half a layer.
    staging = Path(tempfile.mkdtemp(dir=built.parent, prefix=".building-"))
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(staging / "python"),
        *PIP_TARGET_PLATFORM,
        "-r",
        str(requirements),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise LayerBuildError(
            f"building the JsonSchema layer failed (pip exit {result.returncode}); it needs the package index "
            f"once per clone. Command: {' '.join(command)}\n{result.stderr[-2000:]}"
        )
    shutil.rmtree(staging / "python" / "bin", ignore_errors=True)  # console scripts: nothing runs them
    try:
        staging.rename(built)
    except OSError:  # another synth finished first; its copy is the same
        shutil.rmtree(staging, ignore_errors=True)


@jsii.implements(ILocalBundling)
class _CachedPipInstall:
    def try_bundle(self, output_dir: str, _options: Any) -> bool:  # options: for Docker bundling only
        shutil.copytree(layer_dir() / "python", Path(output_dir) / "python", dirs_exist_ok=True)
        return True


def jsonschema_layer(scope: Construct, construct_id: str) -> lambda_.LayerVersion:
    code = lambda_.Code.from_asset(
        str(REQUIREMENTS.parent),
        # The pins decide the content: an unchanged requirements file reuses the staged asset.
        asset_hash_type=AssetHashType.SOURCE,
        # cast: jsii passes the options positionally, which the protocol's keyword-only signature cannot say
        bundling=BundlingOptions(
            image=lambda_.Runtime.PYTHON_3_12.bundling_image, local=cast(ILocalBundling, _CachedPipInstall())
        ),
    )
    return lambda_.LayerVersion(
        scope,
        construct_id,
        code=code,
        compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
        compatible_architectures=[lambda_.Architecture.X86_64],
        description="jsonschema and its dependencies for spottrain's job spec validation",
    )
