"""The simulated instance's `aws`: `aws s3 cp`, one file or a whole prefix, as the 2017 data command uses it."""

from __future__ import annotations

import os
import subprocess

import pytest

from spottrain.local import aws_shim


@pytest.fixture
def aws_cli(tmp_path, moto_endpoint):
    """Runs the installed shim as a job's command would, against the moto server."""
    shim = aws_shim.install(tmp_path / "bin")
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return lambda *args: subprocess.run([str(shim), *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def facade_bucket(aws):
    s3 = aws("s3")
    s3.create_bucket(Bucket="pix2pixfacade")
    for key, body in {
        "base/cmp_b0001.jpg": b"jpg-1",
        "base/cmp_b0001.png": b"png-1",
        "extended/cmp_x0001.jpg": b"jpg-x",
        "base/": b"",
    }.items():
        s3.put_object(Bucket="pix2pixfacade", Key=key, Body=body)
    return s3


def test_given_the_2017_data_command_when_run_then_the_whole_bucket_lands_under_the_folder(
    aws_cli, facade_bucket, tmp_path
):
    data = tmp_path / "home" / "ubuntu" / "data"

    result = aws_cli("s3", "cp", "s3://pix2pixfacade/", str(data), "--recursive")

    assert result.returncode == 0, result.stderr
    files = {path.relative_to(data).as_posix(): path.read_bytes() for path in data.rglob("*") if path.is_file()}
    assert files == {"base/cmp_b0001.jpg": b"jpg-1", "base/cmp_b0001.png": b"png-1", "extended/cmp_x0001.jpg": b"jpg-x"}
    assert f"download: s3://pix2pixfacade/base/cmp_b0001.jpg to {data / 'base' / 'cmp_b0001.jpg'}" in result.stdout


def test_given_a_prefix_without_slash_when_copied_recursively_then_only_that_folder_comes(
    aws_cli, facade_bucket, tmp_path
):
    result = aws_cli("s3", "cp", "s3://pix2pixfacade/base", str(tmp_path / "base"), "--recursive", "--only-show-errors")

    assert result.returncode == 0 and result.stdout == ""
    assert sorted(path.name for path in (tmp_path / "base").iterdir()) == ["cmp_b0001.jpg", "cmp_b0001.png"]


def test_given_one_object_and_a_folder_when_copied_then_it_keeps_its_name(aws_cli, facade_bucket, tmp_path):
    assert aws_cli("s3", "cp", "s3://pix2pixfacade/extended/cmp_x0001.jpg", f"{tmp_path}/").returncode == 0

    assert (tmp_path / "cmp_x0001.jpg").read_bytes() == b"jpg-x"


def test_given_a_folder_when_uploaded_recursively_then_the_keys_mirror_it(aws_cli, aws, tmp_path):
    aws("s3").create_bucket(Bucket="results")
    (tmp_path / "result" / "snapshots").mkdir(parents=True)
    (tmp_path / "result" / "log").write_text("loss 0.1")
    (tmp_path / "result" / "snapshots" / "iter_10").write_text("state")

    assert aws_cli("s3", "cp", str(tmp_path / "result"), "s3://results/run-1", "--recursive").returncode == 0

    keys = sorted(item["Key"] for item in aws("s3").list_objects_v2(Bucket="results")["Contents"])
    assert keys == ["run-1/log", "run-1/snapshots/iter_10"]


@pytest.mark.parametrize(
    "args", [("s3", "ls", "s3://pix2pixfacade/"), ("s3", "cp", "a", "b"), ("s3", "cp", "s3://a/x", "s3://b/y")]
)
def test_given_what_the_shim_cannot_do_then_it_says_what_it_can(aws_cli, args):
    result = aws_cli(*args)

    assert result.returncode == 2 and "only 'aws s3 cp SRC DEST [--recursive]'" in result.stderr


def test_given_a_missing_bucket_then_the_command_fails_with_awss_kind_of_message(aws_cli, aws, tmp_path):
    result = aws_cli("s3", "cp", "s3://no-such-bucket/", str(tmp_path), "--recursive")

    assert result.returncode == 1 and result.stderr.startswith("fatal error:") and "NoSuchBucket" in result.stderr
