"""The staged assets ship exactly what runs in AWS: nothing from the payload, tests, venv or node_modules."""
from __future__ import annotations

from pathlib import Path

from infra.stack import REPO_ROOT
from instance.asset import agent_files

LAMBDA_INSTANCE_FILES = {"instance/__init__.py", "instance/userdata.py", "instance/bootstrap.sh"}


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _repo_files(folder: str) -> set[str]:
    return {
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def _staged_dir_for_key(synth, object_key) -> Path:
    for asset in synth.asset_manifest()["files"].values():
        if any(d["objectKey"] == object_key for d in asset["destinations"].values()):
            return synth.outdir / asset["source"]["path"]
    raise AssertionError(f"no staged asset publishes {object_key}")


def _lambda_code_dirs(synth) -> set[Path]:
    return {
        _staged_dir_for_key(synth, fn["Properties"]["Code"]["S3Key"])
        for fn in synth.resources("AWS::Lambda::Function").values()
    }


def test_all_functions_share_one_code_asset(default_synth):
    assert len(_lambda_code_dirs(default_synth)) == 1


def test_lambda_asset_holds_only_handlers_schema_and_user_data_renderer(default_synth):
    (code_dir,) = _lambda_code_dirs(default_synth)
    staged = _files(code_dir)
    assert {p.name for p in code_dir.iterdir()} == {"lambdas", "schemas", "instance"}
    assert {f for f in staged if f.startswith("instance/")} == LAMBDA_INSTANCE_FILES & _repo_files("instance")
    assert {f for f in staged if f.startswith("lambdas/")} == _repo_files("lambdas")
    assert {f for f in staged if f.startswith("schemas/")} == _repo_files("schemas")
    for absent in ("training_payload", ".venv", "node_modules", "tests", "spottrain", "infra", "cdk.json"):
        assert not (code_dir / absent).exists(), absent
    assert not [f for f in staged if "__pycache__" in f or f.endswith(".pyc")]


def test_agent_asset_matches_the_instance_packages_file_list(default_synth):
    (fn,) = list(default_synth.resources("AWS::Lambda::Function").values())[:1]
    agent_dir = _staged_dir_for_key(default_synth, fn["Properties"]["Environment"]["Variables"]["AGENT_KEY"])
    assert _files(agent_dir) == {name for _, name in agent_files(REPO_ROOT)}

