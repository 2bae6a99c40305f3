"""A sweep spec: its variants, their names, and the rules that bound them (spottrain/contract/sweep.py, jobspec)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from spottrain.contract import jobspec, sweep
from spottrain.contract.settings import Settings

DEMO = json.loads((Path(__file__).resolve().parents[3] / "examples" / "jobs" / "multihead-demo.json").read_text())
SETTINGS = Settings(stack_name="SpotTrain", bucket_prefix="spottrain-123456789012")


def sweep_spec(**block) -> dict:
    spec = copy.deepcopy(DEMO)
    spec["exec_name"] = "lr-sweep"
    spec["sweep"] = block
    return spec


def test_given_a_grid_and_variants_when_expanded_then_the_product_comes_first_then_the_list_numbered_from_1():
    spec = sweep_spec(grid={"LR": ["0.1", "0.01"], "SEED": ["0", "1"]}, variants=[{"LR": "1"}])
    children = sweep.variants(spec)
    assert [child.name for child in children] == [f"lr-sweep-{n}" for n in range(1, 6)]
    assert [child.overrides for child in children] == [
        {"LR": "0.1", "SEED": "0"},
        {"LR": "0.1", "SEED": "1"},
        {"LR": "0.01", "SEED": "0"},
        {"LR": "0.01", "SEED": "1"},
        {"LR": "1"},
    ]


def test_given_a_variant_when_expanded_then_it_is_an_ordinary_job_spec_with_its_env_overridden():
    spec = sweep_spec(grid={"PYTHONUNBUFFERED": ["0"], "LR": ["0.1"]})
    child = sweep.variants(spec)[0].spec
    assert "sweep" not in child and child["exec_name"] == "lr-sweep-1"
    assert child["env"] == {"PYTHONUNBUFFERED": "0", "LR": "0.1"}
    assert jobspec.spec_problems(child, SETTINGS) == []


def test_given_a_valid_sweep_when_validated_then_there_is_no_problem():
    assert jobspec.spec_problems(sweep_spec(grid={"LR": ["0.1", "0.01"]}, max_parallel=2), SETTINGS) == []


def test_given_a_sweep_with_neither_grid_nor_variants_when_validated_then_the_fix_is_named():
    problems = jobspec.spec_problems(sweep_spec(max_parallel=2), SETTINGS)
    assert problems == [problems[0]] and problems[0].startswith("sweep: must give grid or variants")


@pytest.mark.parametrize("override", [{"PATH": "/x"}, {"AWS_REGION": "us-west-2"}, {"API_TOKEN": "t"}])
def test_given_an_override_that_env_refuses_when_validated_then_the_variant_and_the_rule_are_named(override):
    problems = jobspec.spec_problems(sweep_spec(variants=[{"LR": "0.1"}, override]), SETTINGS)
    assert len(problems) == 1 and problems[0].startswith(f"sweep.variants[1].{next(iter(override))}:")


def test_given_a_reserved_name_in_a_grid_of_many_variants_when_validated_then_it_is_reported_once_at_the_grid():
    problems = jobspec.spec_problems(sweep_spec(grid={"PATH": ["/a", "/b"], "LR": ["1", "2", "3"]}), SETTINGS)
    assert len(problems) == 1 and problems[0].startswith("sweep.grid.PATH: is reserved")


@pytest.mark.parametrize("block", [{"grid": {}}, {"grid": {}, "max_parallel": 2}])
def test_given_a_sweep_with_no_variants_when_validated_then_it_is_refused(block):
    # Given an empty grid and no variants list (the schema lets `{}` through)
    problems = jobspec.spec_problems(sweep_spec(**block), SETTINGS)
    # Then one problem says there is nothing to run and how to add some
    assert len(problems) == 1 and problems[0].startswith("sweep: gives no variants")


def test_given_a_listed_variant_that_repeats_a_grid_one_when_validated_then_it_is_refused_naming_both():
    problems = jobspec.spec_problems(sweep_spec(grid={"LR": ["0.1", "0.01"]}, variants=[{"LR": "0.01"}]), SETTINGS)
    assert problems == [
        "sweep (variant 3): has the same env as variant 2 (LR=0.01). Drop it from variants or the grid."
    ]


def test_given_a_variant_that_only_restates_the_job_env_when_validated_then_it_duplicates_the_bare_variant():
    # Given the job's env already has LR=1: the override {"LR": "1"} runs the same job as {} would
    spec = sweep_spec(variants=[{}, {"LR": "1"}])
    spec["env"] = {**spec.get("env", {}), "LR": "1"}
    assert any(
        p.startswith("sweep (variant 2): has the same env as variant 1") for p in jobspec.spec_problems(spec, SETTINGS)
    )


def test_given_max_parallel_written_as_a_float_when_validated_then_a_whole_number_is_asked_for():
    problems = jobspec.spec_problems(sweep_spec(grid={"LR": ["1", "2"]}, max_parallel=2.0), SETTINGS)
    assert problems == ["sweep.max_parallel: 2.0 must be a whole number. Write 2."]


def test_given_max_parallel_far_over_every_limit_when_validated_then_one_problem_is_reported():
    problems = jobspec.spec_problems(sweep_spec(grid={"LR": ["1", "2"]}, max_parallel=1000000), SETTINGS)
    assert len(problems) == 1 and problems[0].startswith("sweep.max_parallel")


@pytest.mark.parametrize("metric", ["/a//b/", "a/", "/a", "a//b", "/"])
def test_given_a_metric_path_with_an_empty_part_when_validated_then_it_is_refused(metric):
    problems = jobspec.spec_problems(sweep_spec(grid={"LR": ["1"]}, metric=metric), SETTINGS)
    assert len(problems) == 1 and problems[0].startswith(f'sweep.metric: "{metric}" has an empty part')


def test_given_a_job_without_emails_in_a_sweep_that_asks_each_variant_to_email_when_validated_then_it_is_refused():
    spec = {**sweep_spec(grid={"LR": ["1"]}, emails="each"), "emails": False}
    problems = jobspec.spec_problems(spec, SETTINGS)
    assert len(problems) == 1 and problems[0].startswith('sweep.emails: "each" asks every variant to email')
    # And without sweep.emails the job's false stands (the summary still speaks): no problem
    assert jobspec.spec_problems({**sweep_spec(grid={"LR": ["1"]}), "emails": False}, SETTINGS) == []


@pytest.mark.parametrize(
    ("block", "count", "expected"),
    [({}, 100, 10), ({}, 3, 3), ({"max_parallel": 5}, 2, 2), ({"max_parallel": 4}, 16, 4)],
)
def test_given_a_sweep_when_its_parallelism_is_worked_out_then_it_stays_within_the_cap_and_the_variant_count(
    block, count, expected
):
    # Given no max_parallel the stack's default cap (10) applies, never the variant count above it
    assert sweep.parallelism(block, count) == expected


def test_given_values_with_newlines_when_described_then_each_variant_stays_on_one_line():
    assert sweep.describe_overrides({"A": "x\ny", "B": "plain=1"}) == 'A="x\\ny" B=plain=1'


def test_given_a_nan_metric_when_read_then_it_is_no_value():
    assert sweep.metric_value({"loss": float("nan")}, "loss") is None
    assert sweep.metric_value({"loss": float("inf")}, "loss") is None


def test_given_more_variants_than_the_stack_allows_when_validated_then_the_cap_and_its_setting_are_named():
    spec = sweep_spec(grid={"LR": [str(n) for n in range(11)]}, max_parallel=11)
    problems = jobspec.spec_problems(spec, Settings(stack_name="S", bucket_prefix="p-1", max_sweep_variants=10))
    assert any("11 variants is over this stack's cap of 10" in p and "maxSweepVariants" in p for p in problems)
    assert any(p.startswith("sweep.max_parallel: 11 is over this stack's cap of 10") for p in problems)


def test_given_a_name_that_fits_alone_but_not_with_the_variant_number_when_validated_then_the_room_is_named():
    spec = sweep_spec(grid={"LR": [str(n) for n in range(10)]})
    spec["exec_name"] = "a" * 39  # fits 40 alone; "-10" makes 42
    problems = jobspec.spec_problems(spec, SETTINGS)
    assert any("would be 42 characters, over 40" in p and "at most 37 characters" in p for p in problems)


def test_given_a_long_bucket_prefix_when_the_last_variant_bucket_is_too_long_then_it_is_refused():
    spec = sweep_spec(grid={"LR": [str(n) for n in range(10)]})
    spec["exec_name"] = "a" * 30
    long_prefix = Settings(stack_name="S", bucket_prefix="p" * 30)
    assert jobspec.spec_problems({**spec, "sweep": {"grid": {"LR": ["1"]}}}, long_prefix) == []
    problems = jobspec.spec_problems(spec, long_prefix)
    assert any("last variant's bucket" in p and "at most 29 characters" in p for p in problems)


def test_given_a_sweep_when_made_map_input_then_each_item_carries_its_name_overrides_and_spec():
    spec = sweep_spec(grid={"LR": ["0.1", "0.01"]}, max_parallel=1, metric="main/loss")
    made = sweep.map_input(spec, "20261130T120000")
    assert made["max_parallel"] == 1 and made["goal"] == "min" and made["metric"] == "main/loss"
    assert [item["name"] for item in made["variants"]] == ["lr-sweep-1", "lr-sweep-2"]
    assert made["variants"][0]["execution_name"] == "lr-sweep-1-20261130T120000"
    assert made["variants"][1]["spec"]["env"]["LR"] == "0.01"
    assert sweep.map_input(sweep_spec(grid={"LR": ["1", "2", "3"]}), "s")["max_parallel"] == 3
    # Given 100 variants and no max_parallel, the Map runs the stack's default cap at once, not all 100
    assert sweep.map_input(sweep_spec(grid={"LR": [str(n) for n in range(100)]}), "s")["max_parallel"] == 10


@pytest.mark.parametrize(
    "block",
    [
        {"variants": 5},
        {"grid": "LR"},
        {"grid": {"LR": "0.1"}},
        {"variants": ["LR=1"]},
        {"grid": {"LR": [1, 2]}},
        {"max_parallel": "2", "variants": [{}]},
    ],
)
def test_given_a_malformed_sweep_when_validated_then_problems_are_listed_not_raised(block):
    problems = jobspec.spec_problems(sweep_spec(**block), SETTINGS)
    assert problems and all(isinstance(problem, str) for problem in problems)


def test_given_variants_whose_specs_overflow_the_execution_input_when_validated_then_the_limit_is_named():
    # Given 100 variants of a spec with a 3000-character command: each variant carries the whole spec
    spec = sweep_spec(grid={"LR": [str(n) for n in range(100)]})
    spec["exec_command"] = "python train.py " + "x" * 3000
    problems = jobspec.spec_problems(spec, SETTINGS)
    assert any("execution input, over Step Functions' 262144-byte limit" in p for p in problems)
    # And the same sweep of the bundled command fits
    assert jobspec.spec_problems(sweep_spec(grid={"LR": [str(n) for n in range(100)]}), SETTINGS) == []
