"""The 2017 spec as published runs in the emulator, in the 2017 layout, writing nothing outside its folder.

Only repository_url and the two interpreter paths change: the repository is a local stand-in for
chainer-pix2pix, and /home/ubuntu/.pyenv/shims/{aws,python} become the emulator's aws shim and Python.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from e2e_support import git_repository

from spottrain.local import Emulator

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "jobs" / "pix2pix.json"  # the published spec, verbatim
FACADES = {"base/cmp_b0001.jpg": b"jpg-1", "base/cmp_b0001.png": b"png-1", "base/cmp_b0002.jpg": b"jpg-2"}

# Stands in for chainer-pix2pix's train_facade.py: the same options, no real training.
TRAIN_FACADE = r"""
import argparse, json, os, pathlib
parser = argparse.ArgumentParser()
parser.add_argument("-g", "--gpu", type=int)
parser.add_argument("-e", "--epoch", type=int)
parser.add_argument("-i", "--dataset")
parser.add_argument("--out")
parser.add_argument("--snapshot_interval", type=int)
args = parser.parse_args()
data, out = pathlib.Path(args.dataset), pathlib.Path(args.out)
out.mkdir(parents=True, exist_ok=True)
(out / "trained.json").write_text(json.dumps({
    "seen": sorted(path.relative_to(data).as_posix() for path in data.rglob("*") if path.is_file()),
    "cwd": os.getcwd(), "home": os.environ["HOME"], "script": os.path.abspath(__file__), "epochs": args.epoch,
}))
"""


def files_under(folder: Path) -> set:
    return {str(path) for path in folder.rglob("*")}


@pytest.fixture
def chainer_pix2pix(tmp_path) -> Path:
    return git_repository(tmp_path / "chainer-pix2pix", {"train_facade.py": TRAIN_FACADE}, branch="master")


def as_run_here(published: dict, repository: Path, aws: Path) -> dict:
    spec = dict(published, repository_url=repository.as_uri())
    spec["data_get_command"] = published["data_get_command"].replace("/home/ubuntu/.pyenv/shims/aws", str(aws))
    spec["exec_command"] = published["exec_command"].replace("/home/ubuntu/.pyenv/shims/python", sys.executable)
    assert {key for key in spec if spec[key] != published[key]} == {
        "repository_url",
        "data_get_command",
        "exec_command",
    }
    return spec


@pytest.mark.timeout(420)
def test_given_the_published_2017_spec_when_it_runs_in_the_emulator_then_it_trains_in_the_2017_layout_and_home_is_untouched(
    emulator_workdir, chainer_pix2pix
):
    real_home = files_under(Path("/home"))
    # Given the emulator, with the 2017 data bucket
    # the 2017 job reads its data from s3://pix2pixfacade: the stack grants it as a data bucket
    with Emulator(emulator_workdir, context={"dataBuckets": ["pix2pixfacade"]}) as emulator:
        s3 = emulator.client("s3")
        s3.create_bucket(Bucket="pix2pixfacade")
        for key, body in FACADES.items():
            s3.put_object(Bucket="pix2pixfacade", Key=key, Body=body)
        aws = emulator.run_dir / "bin" / "aws"
        assert aws.is_file(), "the emulator's aws shim moved"
        spec = as_run_here(json.loads(EXAMPLE.read_text()), chainer_pix2pix, aws)

        # When the spec runs
        final = emulator.wait(emulator.start_job(spec), timeout=300)

        (instance,) = emulator.ec2.instances.values()
        bucket = emulator.stack.job_bucket(spec["exec_name"])
        completed = json.loads(s3.get_object(Bucket=bucket, Key="status/completed.json")["Body"].read())
        console = (instance.sandbox / "console.log").read_text()
        if "sandbox: /home is not mapped" in console:
            # Then, where no mount namespace can be made, it fails saying why and what to do
            assert final["status"] == "FAILED" and completed["reason"] == "job_invalid"
            assert "data_dir='/home/ubuntu/data' is absolute, and this emulator cannot map" in completed["message"]
            return

        # Then it succeeded: the data came from s3://pix2pixfacade/ into /home/ubuntu/data
        assert final["status"] == "SUCCEEDED", (final.get("cause"), completed)
        trained = json.loads(s3.get_object(Bucket=bucket, Key="output/trained.json")["Body"].read())
        assert trained["seen"] == sorted(FACADES)
        # And it ran as in 2017: in the clone at /home/ubuntu/chainer-pix2pix, with HOME=/home/ubuntu
        assert trained["cwd"] == trained["home"] + "/chainer-pix2pix" and trained["home"] == "/home/ubuntu"
        assert trained["script"] == "/home/ubuntu/chainer-pix2pix/train_facade.py" and trained["epochs"] == 100
        # And every absolute path landed in the instance's sandbox, none in the real /home
        simulated_home = instance.sandbox / "home" / "ubuntu"
        for folder in ("data/base", "result", "chainer-pix2pix/.git"):
            assert (simulated_home / folder).is_dir(), folder
        assert "private mount namespace" in console
    assert files_under(Path("/home")) == real_home
