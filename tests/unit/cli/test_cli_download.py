"""Results downloaded to runs/<exec_name>/ are exactly one run's: nothing of an earlier run lingers."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from spottrain import jobs


@pytest.fixture
def s3(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="job")
        yield client


def test_given_an_earlier_runs_results_when_a_new_run_downloads_then_only_the_new_runs_files_remain(s3, tmp_path):
    # Given an interrupted run left attempt-2 logs and interrupted.json in the folder
    destination = tmp_path / "runs" / "multihead-demo"
    (destination / "logs" / "attempt-2").mkdir(parents=True)
    (destination / "logs" / "attempt-2" / "agent.log").write_text("old run")
    (destination / "status").mkdir()
    (destination / "status" / "interrupted.json").write_text("{}")
    s3.put_object(Bucket="job", Key="report.json", Body=b'{"attempts": [1]}')
    s3.put_object(Bucket="job", Key="logs/attempt-1/agent.log", Body=b"new run")

    # When the new run's results are downloaded
    written = jobs.download(s3, "job", destination)

    # Then the folder holds this run's files only, and nothing is left beside it
    assert sorted(p.relative_to(destination).as_posix() for p in written) == ["logs/attempt-1/agent.log", "report.json"]
    assert sorted(p.name for p in destination.parent.iterdir()) == ["multihead-demo"]


def test_given_a_download_that_fails_midway_then_the_earlier_results_stay_whole(s3, tmp_path):
    destination = tmp_path / "runs" / "job"
    destination.mkdir(parents=True)
    (destination / "report.json").write_text("earlier")
    s3.put_object(Bucket="job", Key="report.json", Body=b"new")

    class Broken:
        def __getattr__(self, name):
            return getattr(s3, name)

        def download_file(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError):
        jobs.download(Broken(), "job", destination)

    assert (destination / "report.json").read_text() == "earlier"
    assert sorted(p.name for p in destination.parent.iterdir()) == ["job"]
