"""S3 for the agent: retried puts and gets, and one-way directory sync that keeps mtimes.

botocore retries (standard mode: throttling, 5xx and connection errors, exponential backoff with
jitter; https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html). Uploads are best
effort by design: a caller gets False (and a log line) after the retries, never an exception, because a
failed upload must never kill hours of training. AWS_ENDPOINT_URL is honoured
by boto3 itself, which is how the emulator's S3 is reached.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from pathlib import Path
from typing import Callable, Dict, List, Optional, Set, Tuple

import boto3
from botocore.config import Config
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from spottrain.contract.layout import is_temporary

DELETE_BATCH = 1000  # the most keys one DeleteObjects call takes
MTIME_METADATA = "mtime-ns"  # x-amz-meta-mtime-ns: the file's mtime, so a restore can put it back
# x-amz-meta-execution: the execution whose agent uploaded the object; its later attempts may
# rotate it away, no other execution may.
EXECUTION_METADATA = "execution"
RETRYABLE = (BotoCoreError, ClientError, S3UploadFailedError)

log = logging.getLogger(__name__)


# 8 tries back off about a minute in all (1, 2, 4, 8, 16, 20, 20 s at most): a blip or a throttled
# minute passes, a missing key or a denied call (never retried) is reported at once.
S3_ATTEMPTS = 8


def s3_client(region: Optional[str]):
    config = Config(retries={"mode": "standard", "total_max_attempts": S3_ATTEMPTS}, connect_timeout=5, read_timeout=60)
    return boto3.session.Session(region_name=region).client("s3", config=config)


class Store:
    """One job bucket; its client retries (s3_client), this class decides what a failure means."""

    def __init__(self, client, bucket: str):
        self.client = client
        self.bucket = bucket

    def best_effort(self, what: str, call: Callable[[], object]) -> bool:
        try:
            call()
            return True
        except RETRYABLE + (OSError,) as error:  # OSError: the file vanished or is unreadable
            log.error("%s failed after botocore's retries, carrying on: %s", what, error)
            return False

    def get_json(self, key: str) -> dict:
        return json.loads(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def find_json(self, key: str) -> Optional[dict]:
        """The object's JSON, None while it does not exist."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return json.loads(body["Body"].read())

    def put_json(self, key: str, document: dict) -> bool:
        body = json.dumps(document, indent=2, sort_keys=True).encode()
        return self.best_effort(
            f"put s3://{self.bucket}/{key}",
            lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json"),
        )

    def upload(self, path: Path, key: str, metadata: Optional[Dict[str, str]] = None) -> bool:
        extra = {"Metadata": metadata} if metadata else None
        return self.best_effort(
            f"upload {path} to s3://{self.bucket}/{key}",
            lambda: self.client.upload_file(str(path), self.bucket, key, ExtraArgs=extra),
        )

    def list_keys(self, prefix: str):
        """(key, last_modified) under prefix, all pages."""

        def collect():
            found = []
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                found.extend((item["Key"], item["LastModified"]) for item in page.get("Contents", []))
            return found

        return collect()

    def download(self, key: str, path: Path) -> dict:
        """Download key to path; returns the object's user metadata."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.client.download_file(self.bucket, key, str(path))
        return self.client.head_object(Bucket=self.bucket, Key=key).get("Metadata", {})

    def delete_keys(self, keys: List[str]) -> bool:
        """Best-effort delete; False when any key is still there."""
        ok = True
        for start in range(0, len(keys), DELETE_BATCH):
            objects = [{"Key": key} for key in keys[start : start + DELETE_BATCH]]
            batch = {"Objects": objects, "Quiet": True}
            what = f"delete {len(objects)} keys from s3://{self.bucket}"
            ok = (
                self.best_effort(
                    what, lambda: _raise_errors(self.client.delete_objects(Bucket=self.bucket, Delete=batch))
                )
                and ok
            )
        return ok


Signature = Tuple[int, int]  # (size, mtime_ns): a file whose signature is unchanged is not uploaded again


@dataclasses.dataclass
class SyncReport:
    """What one sync pass really did: the agent's markers repeat it, so it must be the whole truth."""

    uploaded: List[str] = dataclasses.field(default_factory=list)
    deleted: List[str] = dataclasses.field(default_factory=list)
    failed: List[str] = dataclasses.field(default_factory=list)  # keys not uploaded or not deleted

    @property
    def ok(self) -> bool:
        return not self.failed

    def add(self, other: "SyncReport") -> "SyncReport":
        return SyncReport(self.uploaded + other.uploaded, self.deleted + other.deleted, self.failed + other.failed)


class DirSync:
    """Sync a local directory up to a key prefix (changed files only), or restore it from there.

    Hand-written, not `aws s3 sync`: the AMI's CLI may be missing, and it neither restores mtimes nor
    limits deletions to keys this execution wrote.

    With mirror_deletions, a key written by this execution (this attempt, or an earlier attempt of
    the same execution, known by its `execution` metadata) is deleted once its file is gone locally.
    Keys another execution wrote (an ended run of the same exec_name) are never deleted: a rerun,
    a `rm -rf` of the folder or a partial restore must not be able to wipe the only good copy.
    """

    def __init__(
        self,
        store: Store,
        local_dir: Path,
        prefix: str,
        mirror_deletions: bool = False,
        skip_dir: Optional[Path] = None,
        execution: Optional[str] = None,
    ):
        self.store = store
        self.execution = execution  # stamped on every upload; None: nothing restored counts as ours
        self.local_dir = local_dir
        self.prefix = prefix
        self.mirror_deletions = mirror_deletions
        self.skip_dir = skip_dir  # a subdirectory another DirSync owns
        self._uploaded: Dict[str, Signature] = {}  # in S3 as it is locally: restored or written
        self._written: Set[str] = set()  # uploaded by this execution: the only keys a mirror may delete
        self._lock = threading.Lock()  # the periodic and the final sync must not interleave

    def sync(self) -> SyncReport:
        """Upload new and changed files, then mirror deletions if asked."""
        with self._lock:
            report = SyncReport()
            present = set()
            for path, relative in self._files(report):
                present.add(relative)
                self._upload(path, relative, report)
            # After a failed upload the old snapshot may be the only good copy left in S3: keep it.
            if report.ok and self.mirror_deletions and self.local_dir.is_dir():
                self._delete_missing(present, report)
            return report

    def _upload(self, path: Path, relative: str, report: SyncReport) -> None:
        try:
            stat = path.stat()
        except FileNotFoundError:  # the training rotated it away since the walk
            return
        except OSError as error:
            log.error("cannot read %s: %s", path, error)
            report.failed.append(self.prefix + relative)
            return
        signature = (stat.st_size, stat.st_mtime_ns)
        if self._uploaded.get(relative) == signature:
            return
        metadata = {MTIME_METADATA: str(stat.st_mtime_ns)}
        if self.execution:
            metadata[EXECUTION_METADATA] = self.execution
        if self.store.upload(path, self.prefix + relative, metadata):
            self._uploaded[relative] = signature
            self._written.add(relative)
            report.uploaded.append(self.prefix + relative)
        else:
            report.failed.append(self.prefix + relative)

    def _delete_missing(self, present: Set[str], report: SyncReport) -> None:
        stale = sorted(self._written - present)
        if not stale:
            return
        keys = [self.prefix + relative for relative in stale]
        log.info("deleting %d objects under s3://%s/%s gone locally", len(keys), self.store.bucket, self.prefix)
        if not self.store.delete_keys(keys):
            report.failed.extend(keys)
            return
        for relative in stale:
            self._written.discard(relative)
            self._uploaded.pop(relative, None)
        report.deleted.extend(keys)

    def restore(self) -> List[Path]:
        """Download everything under the prefix with its original mtimes; returns the restored files."""
        with self._lock:
            restored = []
            for key, last_modified in self.store.list_keys(self.prefix):
                relative = key[len(self.prefix) :]
                target = (self.local_dir / relative).resolve()
                if not relative or not _inside(target, self.local_dir.resolve()):
                    log.warning("skipping s3://%s/%s: it would land outside %s", self.store.bucket, key, self.local_dir)
                    continue
                if is_temporary(target.name):  # a save that never completed is nothing to resume from
                    continue
                metadata = self.store.download(key, target)
                mtime_ns = _mtime_ns(metadata, int(last_modified.timestamp() * 1e9))
                os.utime(target, ns=(mtime_ns, mtime_ns))
                stat = target.stat()
                self._uploaded[relative] = (stat.st_size, stat.st_mtime_ns)
                if self.execution and metadata.get(EXECUTION_METADATA) == self.execution:
                    self._written.add(relative)  # an earlier attempt of this execution wrote it
                restored.append(target)
            return restored

    def _files(self, report: SyncReport):
        if not self.local_dir.is_dir():
            return

        def unreadable(error: OSError) -> None:  # a folder the sync cannot see into is not synced
            log.error("cannot list %s: %s", error.filename, error)
            report.failed.append(str(error.filename))

        for root, dirs, names in os.walk(self.local_dir, onerror=unreadable):
            dirs[:] = [name for name in dirs if Path(root) / name != self.skip_dir]
            for name in sorted(names):
                path = Path(root) / name
                if not is_temporary(name) and path.is_file() and not path.is_symlink():
                    yield path, path.relative_to(self.local_dir).as_posix()


def _raise_errors(response: dict) -> None:
    """DeleteObjects reports per-key failures in its answer instead of raising."""
    errors = response.get("Errors") or []
    if errors:
        first = errors[0]
        raise ClientError(
            {"Error": {"Code": first.get("Code", ""), "Message": first.get("Message", "")}}, "DeleteObjects"
        )


def _mtime_ns(metadata: Dict[str, str], fallback: int) -> int:
    try:
        return int(metadata[MTIME_METADATA])
    except (KeyError, ValueError):
        return fallback


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.relative_to(directory)
        return True
    except ValueError:
        return False
