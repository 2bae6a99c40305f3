"""The job spec's required fields: one list, the schema's, which ValidateJob and the agent both enforce."""

from __future__ import annotations

import copy

import pytest

from jobstate_support import ORIGINAL_2017_SPEC, make_settings
from spottrain.agent.job import InvalidJob, Job
from spottrain.contract import schema
from spottrain.contract.jobspec import InvalidJobSpec, validate_spec


def test_the_required_fields_are_the_2017_ones_the_schema_lists():
    assert set(schema.required_fields()) == {
        "exec_name",
        "repository_url",
        "data_dir",
        "output_dir",
        "data_get_command",
        "exec_command",
    }


@pytest.mark.parametrize("field", schema.required_fields())
def test_given_a_spec_without_a_required_field_then_validate_job_and_the_agent_both_refuse_it(field):
    spec = copy.deepcopy(ORIGINAL_2017_SPEC)
    del spec[field]

    with pytest.raises(InvalidJobSpec, match=field):
        validate_spec(spec, make_settings())
    with pytest.raises(InvalidJob, match=field):
        Job.from_document({"job": spec})


@pytest.mark.parametrize("field", sorted(set(ORIGINAL_2017_SPEC) - set(schema.required_fields())))
def test_given_a_spec_without_an_optional_field_then_the_agent_takes_it(field):
    spec = copy.deepcopy(ORIGINAL_2017_SPEC)
    del spec[field]

    assert Job.from_document({"job": spec}).exec_name == spec["exec_name"]
