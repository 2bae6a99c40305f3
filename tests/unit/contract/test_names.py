"""Derived names and credential patterns: one copy each, and every side that derives one agrees."""

from __future__ import annotations

import copy

import pytest

from jobstate_support import ORIGINAL_2017_SPEC, make_settings
from spottrain.agent.job import InvalidJob, Job
from spottrain.contract import names, schema
from spottrain.contract.jobspec import validate_spec

URLS = [
    ("https://github.com/pfnet-research/chainer-pix2pix.git", "chainer-pix2pix"),
    ("https://github.com/owner/repo/", "repo"),
    ("git@github.com:owner/private-repo.git", "private-repo"),
    ("git@github.com:solo", "solo"),
    ("ssh://git@github.com/owner/repo.git", "repo"),
    ("file:///srv/git/payload", "payload"),
    ("/srv/git/payload.git", "payload"),
]


@pytest.mark.parametrize("url, name", URLS)
def test_given_a_clone_url_then_the_folder_is_its_last_path_part_without_git(url, name):
    assert names.repository_name(url) == name


@pytest.mark.parametrize("url, name", URLS)
def test_given_a_spec_without_repository_name_then_the_agent_derives_what_validate_job_filled_in(url, name):
    # ValidateJob writes repository_name into job.json; a job.json written without it (by hand, or an
    # older stack) must still clone into the same folder on the instance.
    spec = dict(copy.deepcopy(ORIGINAL_2017_SPEC), repository_url=url)
    del spec["repository_name"]

    validated = validate_spec(spec, make_settings())["repository_name"]
    on_instance = Job.from_document({"job": spec}).repository_name

    assert validated == on_instance == name


def test_the_schemas_repository_name_pattern_is_the_one_both_sides_check():
    pattern = schema.load()["properties"]["repository_name"]["pattern"]
    assert pattern.replace("$", r"\Z") == names.REPOSITORY_NAME.pattern


@pytest.mark.parametrize("name", [".", "..", "a b", "a/b", "repo\n"])
def test_given_a_folder_name_the_schema_refuses_then_the_agent_refuses_it_too(name):
    spec = dict(copy.deepcopy(ORIGINAL_2017_SPEC), repository_name=name)

    with pytest.raises(InvalidJob, match="repository_name"):
        Job.from_document({"job": spec})


def test_given_the_linux_user_rule_then_it_takes_ubuntu_and_ec2_user_and_refuses_shell_text():
    assert names.LINUX_USER_NAME.match("ubuntu") and names.LINUX_USER_NAME.match("ec2-user")
    assert not names.LINUX_USER_NAME.match("ubuntu; reboot") and not names.LINUX_USER_NAME.match("ubuntu\n")


@pytest.mark.parametrize(
    "text, shown",
    [
        ("git clone https://user:ghp_secret@github.com/o/r.git", "git clone https://***@github.com/o/r.git"),
        # AWS's documented example key id, assembled so no key-shaped literal sits in the source
        ("key " + "AKIA" + "IOSFODNN7EXAMPLE" + " here", "key AKIA**************** here"),
        ("aws_secret_access_key = abc/123+xyz", "aws_secret_access_key = [redacted]"),
        (
            "ssh://git@github.com/o/r.git and https://github.com/o/r",
            "ssh://***@github.com/o/r.git and https://github.com/o/r",
        ),
    ],
)
def test_given_credentials_in_text_then_redaction_masks_them_and_keeps_the_rest(text, shown):
    assert names.redact_credentials(text) == shown


def test_the_bucket_name_is_the_stack_prefix_then_the_job_name():
    assert names.bucket_name("spottrain-123456789012", "demo") == "spottrain-123456789012-demo"
