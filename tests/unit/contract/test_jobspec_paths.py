"""data_dir, output_dir, checkpoint_dir: inside the clone, or absolute as in 2017 (normalised, outside
system folders, no shell characters). The published 2017 spec passes unchanged."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from jobstate_support import make_settings
from spottrain.contract import jobspec
from spottrain.contract.jobspec import InvalidJobSpec, validate_spec
from spottrain import cli

# The original input, exactly as published in 2017 (DESIGN.md: it must keep working byte for byte).
PUBLISHED_2017_SPEC = """\
{"exec_name": "pix2pix-20161231",
 "repository_url": "https://github.com/mattya/chainer-pix2pix.git",
 "repository_name": "chainer-pix2pix",
 "data_dir": "/home/ubuntu/data",
 "output_dir": "/home/ubuntu/result",
 "data_get_command": "/home/ubuntu/.pyenv/shims/aws s3 cp s3://pix2pixfacade/ /home/ubuntu/data --recursive",
 "exec_command": "/home/ubuntu/.pyenv/shims/python /home/ubuntu/chainer-pix2pix/train_facade.py -g 0 -e 100 -i /home/ubuntu/data --out /home/ubuntu/result --snapshot_interval 10000"}
"""
JSONSCHEMA = jsonschema.Draft202012Validator(jobspec.load_schema())
PATH_FIELDS = ("data_dir", "output_dir", "checkpoint_dir")


def spec_with(**changes) -> dict:
    spec = copy.deepcopy(json.loads(PUBLISHED_2017_SPEC))
    spec.update(changes)
    return spec


def test_given_the_published_2017_spec_verbatim_when_spottrain_validate_runs_then_it_is_accepted(tmp_path, capsys):
    path = tmp_path / "pix2pix.json"
    path.write_text(PUBLISHED_2017_SPEC)

    assert cli.main(["validate", str(path)]) == 0

    assert "is valid" in capsys.readouterr().out


def test_given_the_published_2017_spec_when_validated_then_its_absolute_folders_are_kept_as_written():
    job = validate_spec(json.loads(PUBLISHED_2017_SPEC), make_settings())

    assert (job["data_dir"], job["output_dir"]) == ("/home/ubuntu/data", "/home/ubuntu/result")
    assert job["repository_name"] == "chainer-pix2pix" and job["checkpoint_dir"] is None
    JSONSCHEMA.validate(json.loads(PUBLISHED_2017_SPEC))


def test_given_the_bundled_pix2pix_example_then_it_is_the_published_2017_spec():
    example = (cli.REPO_ROOT / "examples" / "jobs" / "pix2pix.json").read_text()

    assert example == PUBLISHED_2017_SPEC


@pytest.mark.parametrize("field", PATH_FIELDS)
@pytest.mark.parametrize(
    "folder",
    ["/home/ubuntu/data", "/data", "/mnt/scratch/facades_v2", "/opt/datasets/x.y", "/home/ubuntu", "/tmp/run-1"],
)
def test_given_an_absolute_normalised_folder_when_validated_then_it_is_accepted_by_both_validators(field, folder):
    spec = spec_with(**{field: folder})

    validate_spec(spec, make_settings())
    assert JSONSCHEMA.is_valid(spec)


@pytest.mark.parametrize("field", PATH_FIELDS)
@pytest.mark.parametrize(
    "folder, why",
    [
        ("/home/ubuntu//data", "an empty part"),
        ("/home/ubuntu/data/", "a trailing slash"),
        ("/home/ubuntu/./data", "a '.' part"),
        ("/home/ubuntu/../root", "a '..' part"),
        ("/home/ubuntu/..", "a final '..'"),
        ("/", "the root folder"),
        ("/etc", "a system folder"),
        ("/usr/local/data", "inside a system folder"),
        ("/var/lib/docker", "inside a system folder"),
        ("/root/data", "root's home"),
        ("/opt/spottrain/work", "the agent's own folder"),
        ("/home", "every user's home at once"),
        ("/home/ubuntu/data; rm -rf ~", "shell characters"),
        ("/home/ubuntu/$(whoami)", "command substitution"),
        ("/home/ubuntu/my data", "a space"),
        ("/home/ubuntu/data\n", "a trailing newline"),
    ],
)
def test_given_an_unsafe_or_unnormalised_absolute_folder_when_validated_then_the_field_and_fix_are_named(
    field, folder, why
):
    spec = spec_with(**{field: folder})

    with pytest.raises(InvalidJobSpec) as caught:
        validate_spec(spec, make_settings())

    message = next(problem for problem in caught.value.problems if problem.startswith(f"{field}:"))
    assert "not allowed" in message and "absolute, normalised" in message and "system folder" in message, why
    assert not JSONSCHEMA.is_valid(spec), why


def test_given_a_relative_folder_with_a_trailing_newline_then_it_is_refused_too():
    # Python's `$` matches before a final newline: the pattern must not let "data\n" through.
    with pytest.raises(InvalidJobSpec, match="data_dir"):
        validate_spec(spec_with(data_dir="data\n"), make_settings())


@pytest.mark.parametrize(
    "checkpoints, output",
    [
        ("/home/ubuntu/result", "/home/ubuntu/result"),
        ("result/", "result"),
        ("./result", "result"),
    ],
)
def test_given_checkpoint_dir_equal_to_output_dir_when_validated_then_it_is_refused(checkpoints, output):
    with pytest.raises(InvalidJobSpec, match="checkpoint_dir: must differ from output_dir"):
        validate_spec(spec_with(checkpoint_dir=checkpoints, output_dir=output), make_settings())


def test_given_an_absolute_and_a_relative_folder_then_the_lambda_leaves_comparing_them_to_the_instance():
    # "/result" is not the clone's "result": only the instance knows where the clone is.
    job = validate_spec(spec_with(checkpoint_dir="result", output_dir="/result"), make_settings())

    assert (job["checkpoint_dir"], job["output_dir"]) == ("result", "/result")
