"""A job's secrets: the spec names them under the stack's prefix, and the agent masks their values."""

from __future__ import annotations

import os
import subprocess

import pytest

from jobstate_support import ORIGINAL_2017_SPEC, make_settings
from spottrain.contract.jobspec import spec_problems, validate_spec
from spottrain.contract.secrets import MASK, mask


def _spec(**fields) -> dict:
    return {**ORIGINAL_2017_SPEC, **fields}


def test_given_secrets_under_the_prefix_then_the_spec_is_valid_and_job_json_holds_only_their_names():
    job = validate_spec(
        _spec(secrets={"HF_TOKEN": "/spottrain/hf-token", "WANDB_API_KEY": "/spottrain/team/wandb"}), make_settings()
    )

    assert job["secrets"] == {"HF_TOKEN": "/spottrain/hf-token", "WANDB_API_KEY": "/spottrain/team/wandb"}


@pytest.mark.parametrize(
    "secrets,field,fix",
    [
        ({"HF_TOKEN": "/prod/hf-token"}, "secrets.HF_TOKEN", "/spottrain/"),
        ({"HF_TOKEN": "hf-token"}, "secrets.HF_TOKEN", "spottrain secret put"),
        ({"PATH": "/spottrain/p"}, "secrets.PATH", "Rename the variable"),
        ({"AWS_SECRET_ACCESS_KEY": "/spottrain/k"}, "secrets.AWS_SECRET_ACCESS_KEY", "Rename the variable"),
        ({"1TOKEN": "/spottrain/t"}, "secrets", "letters, digits"),
    ],
)
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


# The leak a user found: every shell metacharacter, both quotes, a backtick and a second line
LEAKY_SECRET = "Sup3r$ecr3t'\"`;|&<>()\n" + "s3cond-line x"
LEAK_COMMANDS = {
    "bash -x": 'set -x; : "$MY_SECRET"',
    "printf %q": "printf '%q\\n' \"$MY_SECRET\"",
    "printf %q of one line": "printf '%q\\n' \"${MY_SECRET%%$'\\n'*}\"",
    "python repr": "python3 -c 'import os; print(repr(os.environ[\"MY_SECRET\"]))'",
    "python repr of bytes": "python3 -c 'import os; print(repr(os.environb[b\"MY_SECRET\"]))'",
    "json.dumps": "python3 -c 'import json, os; print(json.dumps(os.environ[\"MY_SECRET\"]))'",
    "json.dumps without ascii": 'python3 -c \'import json, os; print(json.dumps(os.environ["MY_SECRET"] + "é", '
    "ensure_ascii=False))'",
}


@pytest.mark.parametrize("command", LEAK_COMMANDS.values(), ids=list(LEAK_COMMANDS))
def test_given_a_secret_printed_quoted_by_a_command_then_no_line_of_its_output_shows_any_part_of_it(command):
    # Given the secret in a command's environment, as the agent hands it over
    env = {"PATH": os.environ["PATH"], "MY_SECRET": LEAKY_SECRET, "LANG": "C.UTF-8"}
    # When the command prints it in bash's or Python's quoting and the agent masks each line it writes
    output = subprocess.run(
        ["bash", "-c", command], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True
    ).stdout
    masked = b"".join(mask(line, [LEAKY_SECRET.encode()]) for line in output.splitlines(keepends=True))
    # Then neither line of the value shows, in any of its encodings
    assert MASK in masked, output
    assert b"ecr3t" not in masked and b"s3cond" not in masked, (output, masked)


def test_given_a_short_value_then_it_is_left_alone_even_quoted_as_masking_it_would_blank_ordinary_output():
    assert mask(b"+ : 'a'\\''b'\n", [b"a'b"]) == b"+ : 'a'\\''b'\n"


@pytest.mark.parametrize(
    "secret,says",
    [
        ("/spottrain/../x", "has a '..' level"),
        ("/spottrain/team//x", "has an empty level ('//')"),
        ("/spottrain/team/", "ends with '/'"),
        ("/spottrain/", "names nothing after '/spottrain/'"),
        ("/spottrain/hf token", "has a character a name may not hold: ' '"),
        ("/prod/hf-token", "is not under '/spottrain/'"),
    ],
)
def test_given_a_secret_name_of_a_bad_form_then_refused_naming_the_rule(secret, says):
    problems = spec_problems(_spec(secrets={"HF_TOKEN": secret}), make_settings())

    assert any(p.startswith(f'secrets.HF_TOKEN: "{secret}" {says}') for p in problems), problems


def test_given_a_name_off_the_prefix_then_one_problem_says_so_not_two():
    problems = spec_problems(_spec(secrets={"HF_TOKEN": "/prod/hf-token"}), make_settings())

    assert len([p for p in problems if p.startswith("secrets.HF_TOKEN")]) == 1, problems


@pytest.mark.parametrize("variable", ["SSH_ASKPASS", "SSH_AUTH_SOCK", "GIT_ASKPASS", "GIT_SSH_COMMAND"])
def test_given_a_variable_git_or_ssh_reads_then_refused_as_secret_and_as_env(variable):
    problems = spec_problems(_spec(secrets={variable: "/spottrain/x-token"}, env={variable: "x"}), make_settings())

    assert any(p.startswith(f"secrets.{variable}: is reserved") for p in problems), problems
    assert any(p.startswith(f"env.{variable}: is reserved") for p in problems), problems
