"""S3 plumbing of the agent: changed-files-only sync, mtime-preserving restore, retries that never kill."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from spottrain.agent.s3sync import S3_ATTEMPTS, DirSync, Store, SyncReport, s3_client


@pytest.fixture
def store(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="job")
        yield Store(client, "job")


class CountingStore(Store):
    def __init__(self, inner: Store):
        super().__init__(inner.client, inner.bucket)
        self.uploaded = []

    def upload(self, path, key, metadata=None):
        self.uploaded.append(key)
        return super().upload(path, key, metadata)


def test_given_a_synced_dir_when_one_file_changes_then_only_that_file_is_uploaded_again(store, tmp_path):
    counting = CountingStore(store)
    (tmp_path / "a.npz").write_bytes(b"1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.npz").write_bytes(b"2")
    sync = DirSync(counting, tmp_path, "checkpoints/")
    assert sync.sync().ok

    (tmp_path / "a.npz").write_bytes(b"11")
    assert sync.sync().uploaded == ["checkpoints/a.npz"]

    assert counting.uploaded == ["checkpoints/a.npz", "checkpoints/sub/b.npz", "checkpoints/a.npz"]
    assert store.client.get_object(Bucket="job", Key="checkpoints/a.npz")["Body"].read() == b"11"


def test_given_uploaded_files_when_restored_elsewhere_then_contents_and_mtimes_match(store, tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    for index, name in enumerate(["snapshot_iter_100", "snapshot_iter_200"]):
        path = source / name
        path.write_bytes(name.encode())
        os.utime(path, ns=(1_500_000_000_000_000_000 + index, 1_500_000_000_000_000_000 + index))
    DirSync(store, source, "checkpoints/").sync()

    restore = DirSync(store, target, "checkpoints/")
    restored = restore.restore()

    assert sorted(restored) == [target.resolve() / "snapshot_iter_100", target.resolve() / "snapshot_iter_200"]
    for name in ("snapshot_iter_100", "snapshot_iter_200"):
        assert (target / name).read_bytes() == name.encode()
        assert (target / name).stat().st_mtime_ns == (source / name).stat().st_mtime_ns
    assert restore.sync() == SyncReport()  # nothing changed since the restore: nothing to upload


def test_given_a_key_that_climbs_out_when_restoring_then_it_is_skipped(store, tmp_path):
    store.client.put_object(Bucket="job", Key="checkpoints/../../escape", Body=b"x")
    store.client.put_object(Bucket="job", Key="checkpoints/ok", Body=b"x")

    assert DirSync(store, tmp_path / "ckpt", "checkpoints/").restore() == [(tmp_path / "ckpt" / "ok").resolve()]
    assert not (tmp_path.parent / "escape").exists() and (tmp_path / "ckpt" / "ok").exists()


@pytest.fixture
def flaky_s3(monkeypatch):
    """The agent's own S3 client (s3_client) against moto, failing the first `failures` sends as S3 does
    under throttling or a network blip; botocore's backoff sleeps are recorded instead of slept."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    slept = []
    monkeypatch.setattr("botocore.endpoint.time.sleep", slept.append)
    with mock_aws():
        client = s3_client("us-east-1")
        client.create_bucket(Bucket="job")
        sends = {"count": 0, "failures": 0}

        def fail_first(request, **_):
            sends["count"] += 1
            if sends["count"] <= sends["failures"]:
                if sends["count"] % 2:
                    raise EndpointConnectionError(endpoint_url="http://s3")
                return AWSResponse(request.url, 503, {}, _Raw(b"<Error><Code>SlowDown</Code></Error>"))
            return None

        client.meta.events.register_first("before-send.s3.PutObject", fail_first)
        yield client, sends, slept


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


def test_given_transient_s3_errors_when_writing_a_marker_then_botocore_retries_until_it_lands(flaky_s3):
    client, sends, slept = flaky_s3
    sends["failures"] = 3  # a lost connection, SlowDown, a lost connection

    assert Store(client, "job").put_json("status/heartbeat.json", {"phase": "exec"})

    assert sends["count"] == 4 and len(slept) == 3  # three backoffs, then the put landed
    assert client.get_object(Bucket="job", Key="status/heartbeat.json")["Body"].read()


def test_given_s3_down_for_good_when_uploading_then_it_reports_false_after_every_try(flaky_s3):
    client, sends, _ = flaky_s3
    sends["failures"] = 100

    assert Store(client, "job").put_json("status/heartbeat.json", {}) is False
    assert sends["count"] == S3_ATTEMPTS


def test_given_a_file_that_vanished_when_uploading_then_it_reports_false(store, tmp_path):
    assert store.upload(Path(tmp_path / "gone"), "output/gone") is False


def test_given_a_missing_key_when_reading_then_it_fails_at_once_without_retries(flaky_s3):
    client, _, slept = flaky_s3
    with pytest.raises(ClientError, match="NoSuchKey"):
        Store(client, "job").get_json("job.json")
    assert slept == []  # botocore never retries a missing key


def keys_under(store, prefix):
    return sorted(key for key, _ in store.list_keys(prefix))


def snapshot(directory, iteration):
    (directory / f"snapshot_iter_{iteration}").write_bytes(b"state %d" % iteration)


def test_given_snapshots_rotated_locally_when_the_mirror_syncs_then_s3_holds_exactly_the_local_set(store, tmp_path):
    for iteration in (100, 200):
        snapshot(tmp_path, iteration)
    sync = DirSync(store, tmp_path, "checkpoints/", mirror_deletions=True)
    assert sync.sync().ok

    # The payload keeps the newest two: 300 arrives, 100 goes.
    snapshot(tmp_path, 300)
    (tmp_path / "snapshot_iter_100").unlink()
    report = sync.sync()

    assert report.uploaded == ["checkpoints/snapshot_iter_300"]
    assert report.deleted == ["checkpoints/snapshot_iter_100"] and report.ok

    assert keys_under(store, "checkpoints/") == ["checkpoints/snapshot_iter_200", "checkpoints/snapshot_iter_300"]


def test_given_a_file_rotated_away_then_back_when_the_mirror_syncs_then_it_is_uploaded_again(store, tmp_path):
    snapshot(tmp_path, 100)
    sync = DirSync(store, tmp_path, "checkpoints/", mirror_deletions=True)
    sync.sync()
    stat = (tmp_path / "snapshot_iter_100").stat()
    (tmp_path / "snapshot_iter_100").unlink()
    sync.sync()

    # Same size and mtime as before: only forgetting the deleted upload makes the sync send it again.
    snapshot(tmp_path, 100)
    os.utime(tmp_path / "snapshot_iter_100", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert sync.sync().ok

    assert keys_under(store, "checkpoints/") == ["checkpoints/snapshot_iter_100"]


def test_given_files_being_written_when_syncing_then_temporaries_are_never_uploaded(store, tmp_path):
    snapshot(tmp_path, 100)
    for name in ("snapshot_iter_200.partial", "weights.tmp", "model.partial.npz"):
        (tmp_path / name).write_bytes(b"half written")

    assert DirSync(store, tmp_path, "checkpoints/").sync().ok
    assert DirSync(store, tmp_path, "output/").sync().ok

    assert keys_under(store, "") == ["checkpoints/snapshot_iter_100", "output/snapshot_iter_100"]


def test_given_checkpoints_of_an_earlier_run_when_a_new_run_syncs_an_empty_dir_then_none_is_deleted(store, tmp_path):
    # A rerun of a finished job, or a setup command that empties the folder: local is not the truth.
    for iteration in (100, 200):
        store.client.put_object(Bucket="job", Key=f"checkpoints/snapshot_iter_{iteration}", Body=b"state")
    snapshot(tmp_path, 1)

    report = DirSync(store, tmp_path, "checkpoints/", mirror_deletions=True).sync()

    assert report.ok and report.deleted == []
    assert keys_under(store, "checkpoints/") == [
        "checkpoints/snapshot_iter_1",
        "checkpoints/snapshot_iter_100",
        "checkpoints/snapshot_iter_200",
    ]


def test_given_restored_snapshots_rotated_away_when_the_mirror_syncs_then_only_this_runs_own_are_deleted(
    store, tmp_path
):
    store.client.put_object(Bucket="job", Key="checkpoints/snapshot_iter_100", Body=b"from the last attempt")
    sync = DirSync(store, tmp_path, "checkpoints/", mirror_deletions=True)
    sync.restore()

    # The training resumes, writes 200 and 300, keeping the newest one each time.
    (tmp_path / "snapshot_iter_100").unlink()
    snapshot(tmp_path, 200)
    sync.sync()
    (tmp_path / "snapshot_iter_200").unlink()
    snapshot(tmp_path, 300)
    report = sync.sync()

    assert report.deleted == ["checkpoints/snapshot_iter_200"]
    assert keys_under(store, "checkpoints/") == ["checkpoints/snapshot_iter_100", "checkpoints/snapshot_iter_300"]


def test_given_an_earlier_attempt_of_the_same_execution_when_it_rotates_restored_snapshots_then_s3_follows(
    store, tmp_path
):
    # Given attempt 1 of execution E uploaded 100, and an ended run (execution D) left 50
    first = tmp_path / "attempt-1"
    first.mkdir()
    snapshot(first, 100)
    DirSync(store, first, "checkpoints/", mirror_deletions=True, execution="E").sync()
    store.client.put_object(
        Bucket="job", Key="checkpoints/snapshot_iter_50", Body=b"an ended run's", Metadata={"execution": "D"}
    )

    # When attempt 2 of E restores, then rotates 100 away after writing 200
    second = tmp_path / "attempt-2"
    sync = DirSync(store, second, "checkpoints/", mirror_deletions=True, execution="E")
    sync.restore()
    (second / "snapshot_iter_100").unlink()
    (second / "snapshot_iter_50").unlink()
    snapshot(second, 200)
    report = sync.sync()

    # Then E's own 100 goes (storage stays bounded across attempts), D's 50 stays
    assert report.deleted == ["checkpoints/snapshot_iter_100"]
    assert keys_under(store, "checkpoints/") == ["checkpoints/snapshot_iter_200", "checkpoints/snapshot_iter_50"]


def test_given_a_half_written_object_in_s3_when_restoring_then_it_is_left_out(store, tmp_path):
    store.client.put_object(Bucket="job", Key="checkpoints/snapshot_iter_200.partial", Body=b"half")
    store.client.put_object(Bucket="job", Key="checkpoints/snapshot_iter_100", Body=b"state")

    restored = DirSync(store, tmp_path, "checkpoints/").restore()

    assert restored == [(tmp_path / "snapshot_iter_100").resolve()]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["snapshot_iter_100"]


def test_given_output_files_deleted_locally_when_syncing_output_then_they_stay_in_s3(store, tmp_path):
    (tmp_path / "log").write_text("epoch 1")
    (tmp_path / "plot.png").write_bytes(b"png")
    sync = DirSync(store, tmp_path, "output/")  # output/ is never a mirror: a retry does not restore it
    sync.sync()

    (tmp_path / "plot.png").unlink()
    assert sync.sync().ok

    assert keys_under(store, "output/") == ["output/log", "output/plot.png"]


class FailingUploads(Store):
    def __init__(self, inner: Store):
        super().__init__(inner.client, inner.bucket)

    def upload(self, path, key, metadata=None):
        return False


def test_given_a_failed_upload_when_the_mirror_syncs_then_no_old_snapshot_is_deleted(store, tmp_path):
    snapshot(tmp_path, 100)
    sync = DirSync(store, tmp_path, "checkpoints/", mirror_deletions=True)
    sync.sync()
    (tmp_path / "snapshot_iter_100").unlink()
    snapshot(tmp_path, 200)

    # snapshot 200 never reached S3: 100 is the only copy a retry could resume from.
    sync.store = FailingUploads(store)
    report = sync.sync()

    assert report.ok is False and report.failed == ["checkpoints/snapshot_iter_200"]

    assert keys_under(store, "checkpoints/") == ["checkpoints/snapshot_iter_100"]


def test_given_a_missing_local_dir_when_the_mirror_syncs_then_nothing_is_deleted(store, tmp_path):
    store.client.put_object(Bucket="job", Key="checkpoints/snapshot_iter_100", Body=b"state")

    DirSync(store, tmp_path / "not-created-yet", "checkpoints/", mirror_deletions=True).sync()

    assert keys_under(store, "checkpoints/") == ["checkpoints/snapshot_iter_100"]


def test_given_checkpoints_nested_in_output_when_output_syncs_then_they_are_left_to_the_checkpoint_mirror(
    store, tmp_path
):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    snapshot(checkpoints, 100)
    (tmp_path / "model.txt").write_text("weights")

    # output/ never deletes: a snapshot copied there would outlive every rotation.
    assert DirSync(store, tmp_path, "output/", skip_dir=checkpoints).sync().ok

    assert keys_under(store, "output/") == ["output/model.txt"]
