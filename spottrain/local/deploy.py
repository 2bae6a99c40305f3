"""Synthesize the CDK app (cached) and deploy its cdk.out through moto's CloudFormation.

This is what `cdk deploy` does, minus the bootstrap stack: upload every file asset from the asset
manifest to its destination bucket, then create the stack from the synthesized template.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

from spottrain.local.bucket_policies import apply_bucket_policies

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
# Everything the synthesized template depends on; a change to any of these invalidates the cache.
SYNTH_INPUTS = (
    "app.py",
    "cdk.json",
    "spottrain/__init__.py",
    "spottrain/contract",
    "spottrain/functions",
    "spottrain/agent",
    "spottrain/infra",
    "statemachine",
)
# The default synthesizer's template asks SSM for the bootstrap stack's version.
BOOTSTRAP_VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
BOOTSTRAP_VERSION = "21"
KEEP_SYNTHS = 3
SYNTH_SCRIPT = (
    "import json, sys\n"
    "from spottrain.infra.app import build_app\n"
    "build_app(context=json.loads(sys.argv[1]), outdir=sys.argv[2], stack_name=sys.argv[3]).synth()\n"
)


class DeployError(RuntimeError):
    """Synthesis or deployment failed; the message says which step and where to look."""


def synthesize(context: dict, stack_name: str, cache_dir: Path) -> Path:
    """cdk.out for this context and these sources, reused when nothing changed (synth takes seconds)."""
    key = synth_cache_key(context, stack_name)
    outdir = cache_dir / key
    if (outdir / "manifest.json").exists():
        log.info("synth: reusing %s", outdir)
        return outdir
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=cache_dir))
    env = {
        **os.environ,
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
        # the machine's Node 20 works for synthesis; jsii's boxed end-of-life banner only alarms users
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "18,20",
        # jsii unpacks its runtime into TMPDIR and caches packages under ~/.cache: keep both in our folder
        "TMPDIR": str(staging.parent),
        "JSII_RUNTIME_PACKAGE_CACHE_ROOT": str(cache_dir / "jsii-cache"),
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in the checkout
    }
    result = subprocess.run(
        [sys.executable, "-c", SYNTH_SCRIPT, json.dumps(context), str(staging), stack_name],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise DeployError(f"cdk synth failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    if outdir.exists():
        shutil.rmtree(outdir)
    staging.rename(outdir)
    _prune(cache_dir, keep=KEEP_SYNTHS)
    return outdir


def _prune(cache_dir: Path, keep: int) -> None:
    """Drop all but the newest synths: every source edit adds one, and each carries the assets."""
    synths = sorted(
        (p for p in cache_dir.iterdir() if (p / "manifest.json").exists()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for stale in synths[keep:]:
        shutil.rmtree(stale, ignore_errors=True)


def synth_cache_key(context: dict, stack_name: str) -> str:
    digest = hashlib.sha256(json.dumps([context, stack_name], sort_keys=True).encode())
    for name in SYNTH_INPUTS:
        path = REPO_ROOT / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts or not file.exists():
                continue
            digest.update(str(file.relative_to(REPO_ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def deploy(session: Any, cdk_out: Path, stack_name: str, workdir: Path, timeout: float = 120) -> dict[str, str]:
    """Upload the assets, create the stack, wait for it; returns the stack's outputs."""
    ssm = session.client("ssm")
    ssm.put_parameter(Name=BOOTSTRAP_VERSION_PARAMETER, Value=BOOTSTRAP_VERSION, Type="String", Overwrite=True)
    account, region = _account_and_region(session)
    template_body = upload_assets(session.client("s3"), cdk_out, stack_name, account, region, workdir)
    skipped = unsupported_resource_types(json.loads(template_body))
    if skipped:
        # TopicPolicy guards AWS accounts; nothing on loopback needs it. Bucket policies are put after the
        # stack exists (bucket_policies.py): S3 reads the records bucket's to allow access logging.
        log.info("moto's CloudFormation skips %s", ", ".join(skipped))
    cloudformation = session.client("cloudformation")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Tried to parse .* not supported by moto", category=UserWarning)
        cloudformation.create_stack(
            StackName=stack_name,
            TemplateBody=template_body,
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
    stack = _wait_for_stack(cloudformation, stack_name, timeout)
    apply_bucket_policies(session, json.loads(template_body), stack_name, account, region)
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def unsupported_resource_types(template: dict) -> list[str]:
    from moto.cloudformation.parsing import get_model_map

    known = get_model_map()
    types = {resource["Type"] for resource in template.get("Resources", {}).values()}
    return sorted(t for t in types if t not in known and not t.startswith("Custom::"))


def upload_assets(s3: Any, cdk_out: Path, stack_name: str, account: str, region: str, workdir: Path) -> str:
    """Put every file asset where the template expects it; returns the template's text."""
    manifest = json.loads((cdk_out / f"{stack_name}.assets.json").read_text())
    template_name = f"{stack_name}.template.json"
    for asset in manifest.get("files", {}).values():
        source = cdk_out / asset["source"]["path"]
        if source.name == template_name:
            continue  # handed to CreateStack directly
        body = _asset_bytes(source, asset["source"].get("packaging", "file"), workdir)
        for destination in asset["destinations"].values():
            bucket = _fill(destination["bucketName"], account, region)
            _ensure_bucket(s3, bucket)
            s3.put_object(Bucket=bucket, Key=_fill(destination["objectKey"], account, region), Body=body)
    if manifest.get("dockerImages"):
        raise DeployError("the stack has Docker image assets; the emulator can only deploy file assets")
    return (cdk_out / template_name).read_text()


def _asset_bytes(source: Path, packaging: str, workdir: Path) -> bytes:
    if packaging == "file":
        return source.read_bytes()
    archive = workdir / "assets" / f"{source.name}.zip"
    if not archive.exists():
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zipped:
            for file in sorted(p for p in source.rglob("*") if p.is_file()):
                zipped.write(file, file.relative_to(source).as_posix())
        partial.rename(archive)
    return archive.read_bytes()


def _fill(text: str, account: str, region: str) -> str:
    return (
        text.replace("${AWS::AccountId}", account).replace("${AWS::Region}", region).replace("${AWS::Partition}", "aws")
    )


def _ensure_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError:
        s3.create_bucket(Bucket=bucket)


def _account_and_region(session: Any) -> tuple[str, str]:
    return session.client("sts").get_caller_identity()["Account"], session.region_name


def _wait_for_stack(cloudformation: Any, stack_name: str, timeout: float) -> dict:
    deadline = time.time() + timeout
    while True:
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status.endswith("_COMPLETE") and "ROLLBACK" not in status:
            return stack
        if status.endswith("FAILED") or "ROLLBACK" in status or time.time() > deadline:
            raise DeployError(f"stack {stack_name} ended {status}: {_failure_reasons(cloudformation, stack_name)}")
        time.sleep(0.2)


def _failure_reasons(cloudformation: Any, stack_name: str) -> str:
    events = cloudformation.describe_stack_events(StackName=stack_name)["StackEvents"]
    reasons = [
        f"{event['LogicalResourceId']}: {event.get('ResourceStatusReason')}"
        for event in events
        if "FAILED" in event.get("ResourceStatus", "")
    ]
    return "; ".join(reasons) or "no resource reported a reason"
