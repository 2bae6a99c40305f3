"""Cloning at a ref: the command sees the tree that cloning the repository at that ref by hand gives.

By hand means `git clone --branch REF` for a branch or tag (git's own order: branch, then tag),
and `git clone` + `git checkout COMMIT` only for a commit no branch or tag is named after.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from agent_support import git

from spottrain.agent import clone
from spottrain.agent.logs import OutputLog


def commit(repo, text):
    (repo / "which.txt").write_text(text)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", text, cwd=repo)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def hexy_repo(tmp_path_factory):
    """Branches `deadbeef` and `20240115`, a tag, an older commit, and a branch named like that commit."""
    repo = tmp_path_factory.mktemp("hexy") / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    old = commit(repo, "old commit")
    commit(repo, "main")
    for branch in ("deadbeef", "20240115", old[:10]):
        git("checkout", "-q", "-b", branch, "main", cwd=repo)
        commit(repo, f"branch {branch}")
    git("checkout", "-q", "-b", "release", "main", cwd=repo)
    commit(repo, "tag v2")
    git("tag", "-a", "v2", "-m", "v2", cwd=repo)
    git("checkout", "-q", "main", cwd=repo)
    return repo, old


def clone_at(repo, ref, dest):
    output = OutputLog(dest.parent / "logs", 1, 1 << 20)
    result = clone.clone(repo.as_uri(), ref, dest, env=dict(os.environ), output=output, should_stop=lambda: None)
    return result, output


@pytest.mark.parametrize(
    "ref, expected",
    [
        (None, "main"),
        ("deadbeef", "branch deadbeef"),
        ("20240115", "branch 20240115"),
        ("v2", "tag v2"),
    ],
)
def test_given_a_branch_or_tag_when_cloning_then_the_tree_is_that_refs(hexy_repo, tmp_path, ref, expected):
    repo, _ = hexy_repo

    result, _ = clone_at(repo, ref, tmp_path / "clone")

    assert result.exit_code == 0 and (tmp_path / "clone" / "which.txt").read_text() == expected


@pytest.mark.parametrize("length", [40, 8])
def test_given_a_commit_id_that_no_ref_is_named_after_when_cloning_then_that_commit_is_checked_out(
    hexy_repo, tmp_path, length
):
    repo, old = hexy_repo

    result, _ = clone_at(repo, old[:length], tmp_path / "clone")

    assert result.exit_code == 0 and (tmp_path / "clone" / "which.txt").read_text() == "old commit"


def test_given_a_branch_named_like_a_commit_id_when_cloning_then_the_branch_wins_as_with_git_clone_branch(
    hexy_repo, tmp_path
):
    repo, old = hexy_repo

    result, _ = clone_at(repo, old[:10], tmp_path / "clone")

    assert result.exit_code == 0 and (tmp_path / "clone" / "which.txt").read_text() == f"branch {old[:10]}"


@pytest.mark.parametrize("ref", ["no-such-branch", "abcdef0123"])
def test_given_a_ref_that_does_not_exist_when_cloning_then_git_says_so(hexy_repo, tmp_path, ref):
    repo, _ = hexy_repo

    result, output = clone_at(repo, ref, tmp_path / "clone")

    assert result.exit_code != 0
    assert clone.failure_line(output.tail()).startswith(("fatal:", "error:"))
