"""repository_auth's rules: a token for https, a deploy key and known_hosts for ssh (spottrain/contract/repository_auth.py).

Each refusal names the field, the rule and the fix; the known_hosts may come from the stack's sshKnownHosts,
and ValidateJob writes the one that applies into the job the instance reads.
"""

from __future__ import annotations

import copy
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from jobstate_support import ORIGINAL_2017_SPEC, make_settings
from spottrain.contract.jobspec import spec_problems, validate_spec

SSH_URL = "ssh://git@git.example.com:2222/acme/trainer.git"
KEY_SECRET = "/spottrain/deploy-key"


def _public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _private_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    encoded = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    return encoded.decode()


HOST_LINE = f"[git.example.com]:2222 {_public_key()}"


def _spec(url: str = SSH_URL, **auth) -> dict:
    return {**copy.deepcopy(ORIGINAL_2017_SPEC), "repository_url": url, "repository_auth": auth}


def _problems(spec: dict, stack_known_hosts: str = "") -> list[str]:
    return spec_problems(spec, make_settings(ssh_known_hosts=stack_known_hosts))


def test_given_a_deploy_key_and_known_hosts_for_the_urls_host_and_port_then_the_spec_is_valid():
    assert _problems(_spec(ssh_key_secret=KEY_SECRET, known_hosts=HOST_LINE)) == []
    scp_like = _spec(
        "git@github.com:acme/trainer.git", ssh_key_secret=KEY_SECRET, known_hosts=f"github.com {_public_key()}"
    )
    assert _problems(scp_like) == []


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (
            _spec(token_secret="/spottrain/github-token"),
            "repository_auth.token_secret: a token authenticates https clones, and repository_url is an ssh URL",
            "ssh_key_secret",
        ),
        (
            _spec("https://github.com/acme/trainer.git", ssh_key_secret=KEY_SECRET),
            "repository_auth.ssh_key_secret: a deploy key authenticates ssh clones, and repository_url is an https URL",
            "Use the repository's ssh URL",
        ),
        (
            _spec(token_secret="/spottrain/github-token", ssh_key_secret=KEY_SECRET, known_hosts=HOST_LINE),
            "repository_auth: gives both token_secret and ssh_key_secret",
            "Keep token_secret for an https repository_url",
        ),
        (_spec(), "repository_auth: names no secret", "Give token_secret"),
        (
            _spec(ssh_key_secret=KEY_SECRET, known_hosts="git.example.com ssh-ed25519"),
            "repository_auth.known_hosts: line 1: has fewer than 3 fields",
            "`ssh-keyscan -p 2222 git.example.com`",
        ),
        (
            # the right host on the default port: ssh looks up [git.example.com]:2222, not git.example.com
            _spec(ssh_key_secret=KEY_SECRET, known_hosts=f"git.example.com {_public_key()}"),
            "repository_auth.known_hosts: names no key for [git.example.com]:2222",
            "`ssh-keyscan -p 2222 git.example.com`",
        ),
        (
            _spec(ssh_key_secret=KEY_SECRET),
            "repository_auth.known_hosts: is required, as this stack gives no sshKnownHosts",
            "-c sshKnownHosts=",
        ),
        (
            _spec(ssh_key_secret=KEY_SECRET, known_hosts=HOST_LINE, username="git"),
            "repository_auth.username: goes with a token",
            "Remove username",
        ),
        (
            _spec("https://github.com/acme/trainer.git", token_secret="/spottrain/t", known_hosts=HOST_LINE),
            "repository_auth.known_hosts: checks an ssh host's key",
            "Remove it",
        ),
    ],
)
def test_given_a_repository_auth_that_cannot_work_then_validation_names_the_field_rule_and_fix(spec, field, words):
    problems = _problems(spec)

    assert any(problem.startswith(field) and words in problem for problem in problems), problems


def test_given_a_private_key_pasted_in_the_spec_then_it_is_refused_asking_for_a_secret_name_and_never_echoed():
    # Given the deploy key itself where its secret's name belongs, and once more in env
    key = _private_key()
    spec = {**_spec(ssh_key_secret=key, known_hosts=HOST_LINE), "env": {"DEPLOY": key}}

    problems = _problems(spec)

    assert [p for p in problems if p.startswith("repository_auth.ssh_key_secret:")] == [
        next(p for p in problems if p.startswith("repository_auth.ssh_key_secret: holds a private key"))
    ], problems  # once: not also the name pattern's "has characters or a form that is not allowed"
    assert any(p.startswith("env.DEPLOY: holds a private key") for p in problems), problems
    assert any('"ssh_key_secret": "/spottrain/<name>"' in p and "spottrain secret put" in p for p in problems)
    # And no message quotes the value (the schema's pattern message would show its first 57 characters)
    assert not [p for p in problems if any(line in p for line in key.splitlines())], problems


def test_given_the_stacks_known_hosts_then_a_deploy_key_job_without_its_own_gets_them_in_the_job():
    # Given a stack deployed with -c sshKnownHosts naming the host, and a spec giving no known_hosts
    settings = make_settings(ssh_known_hosts=HOST_LINE)
    spec = _spec(ssh_key_secret=KEY_SECRET)

    job = validate_spec(spec, settings)

    # Then the job the instance reads holds the stack's lines; a spec's own lines win over the stack's
    assert job["repository_auth"] == {"ssh_key_secret": KEY_SECRET, "known_hosts": HOST_LINE}
    own = f"[git.example.com]:2222 {_public_key()}"
    assert (
        validate_spec(_spec(ssh_key_secret=KEY_SECRET, known_hosts=own), settings)["repository_auth"]["known_hosts"]
        == own
    )


def test_given_the_stacks_known_hosts_for_another_host_then_a_job_without_its_own_is_refused():
    problems = _problems(_spec(ssh_key_secret=KEY_SECRET), stack_known_hosts=f"github.com {_public_key()}")

    assert problems == [
        "repository_auth.known_hosts: this stack's sshKnownHosts names no key for [git.example.com]:2222. Add the "
        "lines `ssh-keyscan -p 2222 git.example.com` prints as known_hosts, or add them to the stack's sshKnownHosts."
    ]


def test_given_a_token_spec_then_the_validated_job_is_as_before_with_the_default_user_name():
    spec = _spec("https://github.com/acme/trainer.git", token_secret="/spottrain/github-token")

    job = validate_spec(spec, make_settings())

    assert (
        json.dumps(job["repository_auth"])
        == '{"token_secret": "/spottrain/github-token", "username": "x-access-token"}'
    )
