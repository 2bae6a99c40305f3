"""`spottrain secret put` and `--local-secret`: names and values refused before anything is stored."""

from __future__ import annotations

import io

import pytest

from spottrain import secret_store
from spottrain.secret_store import SecretUsageError, check_name, parse_local_secrets


def test_given_a_local_secret_with_an_empty_value_then_the_error_says_the_value_is_empty():
    # e.g. --local-secret /spottrain/x="$UNSET_VARIABLE"
    with pytest.raises(SecretUsageError, match=r"--local-secret /spottrain/x=: the value is empty"):
        parse_local_secrets(["/spottrain/x="], _Pipe(""))


@pytest.mark.parametrize(
    "name,says",
    [
        ("/spottrain/../x", "'..'"),
        ("/spottrain/a//b", "'//'"),
        ("/spottrain/a/", "ends with '/'"),
        ("/prod/x", "must be under /spottrain/"),
        ("/spottrain/", "names nothing after '/spottrain/'"),
        ("/spottrain/hf token", "has a character a name may not hold: ' '"),
    ],
)
def test_given_a_bad_secret_name_when_stored_then_refused_naming_the_rule(name, says):
    with pytest.raises(SecretUsageError, match=says):
        check_name(name)


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_given_a_local_secret_name_alone_and_a_pipe_then_the_value_comes_from_stdin_not_the_command_line():
    # e.g. printf %s "$HF_TOKEN" | spottrain submit --local job.json --local-secret /spottrain/hf-token
    assert parse_local_secrets(["/spottrain/hf-token", "/spottrain/other=v2"], _Pipe("s3cr3t-value\n")) == {
        "/spottrain/hf-token": "s3cr3t-value",
        "/spottrain/other": "v2",
    }


def test_given_two_local_secret_names_alone_and_a_pipe_then_refused_as_only_one_can_read_it():
    with pytest.raises(SecretUsageError, match=r"only one NAME can read its value from stdin \(/spottrain/a did\)"):
        parse_local_secrets(["/spottrain/a", "/spottrain/b"], _Pipe("value"))


def test_given_a_local_secret_name_alone_at_a_terminal_then_it_prompts_without_echo(monkeypatch):
    terminal = _Pipe("")
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    prompts = []
    monkeypatch.setattr(secret_store.getpass, "getpass", lambda prompt: prompts.append(prompt) or "typed-value")

    assert parse_local_secrets(["/spottrain/a", "/spottrain/b"], terminal) == {
        "/spottrain/a": "typed-value",
        "/spottrain/b": "typed-value",
    }
    assert prompts == ["value of /spottrain/a (not shown): ", "value of /spottrain/b (not shown): "]


def test_given_a_local_secret_name_alone_and_an_empty_pipe_then_the_error_says_the_value_is_empty():
    with pytest.raises(SecretUsageError, match=r"--local-secret /spottrain/a: the value is empty"):
        parse_local_secrets(["/spottrain/a"], _Pipe(""))


def test_given_a_deploy_key_secret_no_local_secret_seeds_then_the_problem_names_repository_auths_field():
    # Given a spec cloning over ssh with a deploy key, and a seeded value for its other secret only
    spec = {
        "secrets": {"HF_TOKEN": "/spottrain/hf-token"},
        "repository_auth": {"ssh_key_secret": "/spottrain/deploy-key", "known_hosts": "h ssh-ed25519 AAAA"},
    }

    # When checked against what --local-secret seeds
    problems = secret_store.unseeded_problems(spec, {"/spottrain/hf-token": "abcdefgh"})

    # Then one problem, naming the field, the name and the fix
    assert len(problems) == 1
    assert problems[0].startswith("repository_auth.ssh_key_secret: /spottrain/deploy-key is not seeded")
    assert "--local-secret /spottrain/deploy-key" in problems[0]
