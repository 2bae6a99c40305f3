"""SSH remotes and known_hosts values, as git and OpenSSH read them (spottrain/contract/ssh.py)."""

from __future__ import annotations

import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from spottrain.contract import ssh


def public_key() -> str:
    """A fresh `ssh-ed25519 AAAA...` public key."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@pytest.mark.parametrize(
    ("url", "remote"),
    [
        ("git@github.com:acme/trainer.git", ssh.SshRemote("github.com")),
        ("ssh://git@GitLab.example.com/acme/trainer.git", ssh.SshRemote("gitlab.example.com")),
        ("ssh://git@127.0.0.1:2222/trainer.git", ssh.SshRemote("127.0.0.1", 2222)),
        ("ssh://host/trainer.git", ssh.SshRemote("host")),
        ("https://github.com/acme/trainer.git", None),
        ("file:///srv/trainer.git", None),
        ("/srv/trainer.git", None),
    ],
)
def test_given_a_repository_url_then_its_ssh_remote_is_the_host_and_port_git_connects_to(url, remote):
    assert ssh.ssh_remote(url) == remote


def test_a_remote_off_port_22_is_looked_up_as_bracketed_host_and_port():
    assert ssh.SshRemote("127.0.0.1", 2222).known_hosts_name == "[127.0.0.1]:2222"
    assert ssh.SshRemote("github.com").known_hosts_name == "github.com"
    assert ssh.SshRemote("127.0.0.1", 2222).keyscan() == "ssh-keyscan -p 2222 127.0.0.1"


@pytest.mark.parametrize(
    ("patterns", "remote", "named"),
    [
        ("github.com", ssh.SshRemote("github.com"), True),
        ("GitHub.com,140.82.121.4", ssh.SshRemote("github.com"), True),
        ("github.com", ssh.SshRemote("github.com", 2222), False),  # another port is another entry
        ("[127.0.0.1]:2222", ssh.SshRemote("127.0.0.1", 2222), True),
        ("[127.0.0.1]:*", ssh.SshRemote("127.0.0.1", 2222), True),
        ("*.example.com", ssh.SshRemote("git.example.com"), True),
        ("*.example.com,!git.example.com", ssh.SshRemote("git.example.com"), False),
        ("gitlab.com", ssh.SshRemote("github.com"), False),
    ],
)
def test_given_host_patterns_then_a_line_names_the_hosts_ssh_would_use_it_for(patterns, remote, named):
    assert ssh.names_host(f"{patterns} {public_key()}", remote) is named


def test_given_a_hashed_line_from_ssh_keygen_then_it_names_its_host_only(tmp_path):
    # Given a known_hosts file hashed by OpenSSH itself (`ssh-keyscan -H` writes the same form)
    hosts = tmp_path / "known_hosts"
    hosts.write_text(f"[127.0.0.1]:2222 {public_key()}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(hosts)], check=True, capture_output=True)
    hashed = hosts.read_text()
    assert hashed.startswith("|1|")

    assert ssh.names_host(hashed, ssh.SshRemote("127.0.0.1", 2222))
    assert not ssh.names_host(hashed, ssh.SshRemote("127.0.0.1", 2223))


def test_a_revoked_line_vouches_for_no_host_and_a_cert_authority_line_does():
    assert not ssh.names_host(f"@revoked github.com {public_key()}", ssh.SshRemote("github.com"))
    assert ssh.names_host(f"@cert-authority *.example.com {public_key()}", ssh.SshRemote("git.example.com"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("github.com", "line 1: has fewer than 3 fields"),
        ("github.com ssh-ed25519 not*base64", "line 1: the key after 'ssh-ed25519' is not base64"),
        ("github.com ssh-rsa " + public_key().split()[1], "line 1: the key is not a 'ssh-rsa' public key"),
        ("@trusted github.com " + public_key(), "line 1: '@trusted' is not a known_hosts marker"),
        ("# only a comment\n\n", "holds no known_hosts line"),
        (f"github.com {public_key()}\nnot a line", "line 2: "),
    ],
)
def test_given_text_that_is_not_known_hosts_lines_then_each_bad_line_is_named(text, problem):
    _, problems = ssh.parse_known_hosts(text)

    assert any(found.startswith(problem) for found in problems), problems


def test_given_ssh_keyscan_style_lines_with_comments_then_they_parse():
    text = f"# github.com:22 SSH-2.0-babeld\ngithub.com {public_key()}\n\n140.82.121.4 {public_key()} a comment\n"

    entries, problems = ssh.parse_known_hosts(text)

    assert problems == [] and [entry.patterns for entry in entries] == ["github.com", "140.82.121.4"]


@pytest.mark.parametrize(
    "pasted",
    [
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...\n-----END OPENSSH PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----BEGIN EC PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----",
        "PuTTY-User-Key-File-3: ssh-ed25519",
    ],
)
def test_private_keys_in_every_common_format_are_recognised(pasted):
    assert ssh.PRIVATE_KEY.search(pasted)
    assert not ssh.PRIVATE_KEY.search(public_key())
