"""The job specs users copy from examples/jobs/ are valid, for the Lambda's interpreter and for jsonschema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from jobstate_support import make_settings
from spottrain.contract import jobspec

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples" / "jobs").glob("*.json"))
ORIGINAL_FIELDS = {
    "exec_name",
    "repository_url",
    "repository_name",
    "data_dir",
    "output_dir",
    "data_get_command",
    "exec_command",
}
DEFAULT_STACK = make_settings(
    allowed_instance_types=("g5.xlarge", "g6.xlarge", "g4dn.xlarge", "g5.2xlarge", "g6.2xlarge"),
    max_runtime_minutes=1440,
    max_keep_alive_minutes=60,
)


def load(name: str) -> dict:
    return json.loads((EXAMPLES[0].parent / name).read_text())


def test_given_examples_folder_then_both_bundled_jobs_are_there():
    assert {path.name for path in EXAMPLES} >= {"multihead-demo.json", "pix2pix.json"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_given_example_when_validated_for_a_default_stack_then_accepted_by_both_validators(path):
    spec = json.loads(path.read_text())
    jsonschema.Draft202012Validator(jobspec.load_schema()).validate(spec)
    job = jobspec.validate_spec(spec, DEFAULT_STACK)
    assert job["bucket"] == f"{DEFAULT_STACK.bucket_prefix}-{spec['exec_name']}"


def test_given_pix2pix_example_then_it_is_the_2017_seven_field_format():
    spec = load("pix2pix.json")
    assert set(spec) == ORIGINAL_FIELDS
    assert spec["repository_url"] == "https://github.com/mattya/chainer-pix2pix.git"
    assert (spec["data_dir"], spec["output_dir"]) == ("/home/ubuntu/data", "/home/ubuntu/result")


def test_given_multihead_demo_then_it_runs_this_repositorys_payload_resumably():
    spec = load("multihead-demo.json")
    job = jobspec.validate_spec(spec, DEFAULT_STACK)
    assert (job["repository_name"], job["repository_ref"], job["checkpoint_dir"]) == (
        "spottrain",
        "main",
        "checkpoints",
    )
    assert "training_payload/train.py" in spec["exec_command"] and "$SPOTTRAIN_CHECKPOINT_DIR" in spec["exec_command"]
    assert job["keep_alive_minutes"] == 0
