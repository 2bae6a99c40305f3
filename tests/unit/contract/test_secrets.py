"""A job's secrets: the spec names them under the stack's prefix, and the agent masks their values."""
from __future__ import annotations

import pytest

from jobstate_support import ORIGINAL_2017_SPEC, make_settings
from spottrain.contract.jobspec import spec_problems, validate_spec
from spottrain.contract.secrets import MASK, mask


def _spec(**fields) -> dict:
    return {**ORIGINAL_2017_SPEC, **fields}


def test_given_secrets_under_the_prefix_then_the_spec_is_valid_and_job_json_holds_only_their_names():
    job = validate_spec(_spec(secrets={"HF_TOKEN": "/spottrain/hf-token", "WANDB_API_KEY": "/spottrain/team/wandb"}),
                        make_settings())

    assert job["secrets"] == {"HF_TOKEN": "/spottrain/hf-token", "WANDB_API_KEY": "/spottrain/team/wandb"}


@pytest.mark.parametrize("secrets,field,fix", [
    ({"HF_TOKEN": "/prod/hf-token"}, "secrets.HF_TOKEN", "/spottrain/"),
    ({"HF_TOKEN": "hf-token"}, "secrets.HF_TOKEN", "spottrain secret put"),
    ({"PATH": "/spottrain/p"}, "secrets.PATH", "Rename the variable"),
    ({"AWS_SECRET_ACCESS_KEY": "/spottrain/k"}, "secrets.AWS_SECRET_ACCESS_KEY", "Rename the variable"),
    ({"1TOKEN": "/spottrain/t"}, "secrets", "letters, digits"),
])
def test_given_a_bad_secret_then_the_problem_names_the_field_and_the_fix(secrets, field, fix):
    problems = spec_problems(_spec(secrets=secrets), make_settings())

    assert any(problem.startswith(field) and fix in problem for problem in problems), problems


def test_given_a_variable_both_in_env_and_secrets_then_refused_as_it_would_be_stored_in_the_clear():
    problems = spec_problems(_spec(env={"HF_TOKEN_ID": "x", "MODEL": "a"}, secrets={"MODEL": "/spottrain/m"}), None)

    assert any(p.startswith("secrets.MODEL: is also set in env") for p in problems), problems


def test_given_secret_values_then_every_exact_occurrence_and_each_line_of_a_multiline_value_is_masked():
    value, pem = b"s3cr3t-" + b"value", b"-----BEGIN KEY-----\nAAAAbbbbCCCC\n-----END KEY-----"

    assert mask(b"token=" + value + b" again " + value + b"\n", [value]) == b"token=" + MASK + b" again " + MASK + b"\n"
    assert mask(b"AAAAbbbbCCCC\n", [pem]) == MASK + b"\n"
    assert mask(b"ordinary output\n", [b"abc"]) == b"ordinary output\n"  # too short to mask: nothing is hidden
