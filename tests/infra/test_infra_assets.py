"""The staged assets ship exactly what runs in AWS: nothing from the payload, tests, venv or node_modules.

The Lambda asset is `spottrain/__init__.py` + `spottrain/contract/` + `spottrain/functions/`; the agent
asset is `spottrain/__init__.py` + `spottrain/contract/` + `spottrain/agent/`: whole package folders.
"""

from __future__ import annotations

from pathlib import Path

from spottrain.infra.assets import AGENT_ASSET, LAMBDA_ASSET, REPO_ROOT, asset_files
from spottrain.infra.layers import REQUIREMENTS


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


def _agent_dir(synth) -> Path:
    (fn,) = list(synth.resources("AWS::Lambda::Function").values())[:1]
    return _staged_dir_for_key(synth, fn["Properties"]["Environment"]["Variables"]["AGENT_KEY"])


def test_all_functions_share_one_code_asset(default_synth):
    assert len(_lambda_code_dirs(default_synth)) == 1


def test_lambda_asset_holds_the_contract_and_functions_packages_and_nothing_else(default_synth):
    (code_dir,) = _lambda_code_dirs(default_synth)
    staged = _files(code_dir)

    assert {p.name for p in code_dir.iterdir()} == {"spottrain"}
    assert {p.name for p in (code_dir / "spottrain").iterdir()} == {"__init__.py", "contract", "functions"}
    assert staged == {"spottrain/__init__.py"} | _repo_files("spottrain/contract") | _repo_files("spottrain/functions")
    assert "spottrain/contract/job-spec.schema.json" in staged and "spottrain/contract/bootstrap.sh" in staged
    assert staged == {name for _, name in asset_files(LAMBDA_ASSET)}


def test_agent_asset_holds_the_contract_and_agent_packages_and_nothing_else(default_synth):
    agent_dir = _agent_dir(default_synth)
    staged = _files(agent_dir)

    assert {p.name for p in (agent_dir / "spottrain").iterdir()} == {"__init__.py", "contract", "agent"}
    assert staged == {"spottrain/__init__.py"} | _repo_files("spottrain/contract") | _repo_files("spottrain/agent")
    assert staged == {name for _, name in asset_files(AGENT_ASSET)}


def test_jsonschema_layer_asset_holds_the_pinned_wheels_for_the_lambda_runtime_under_python(default_synth):
    # Given the synthesized stack, When reading the layer's staged asset
    (layer,) = default_synth.resources("AWS::Lambda::LayerVersion").values()
    layer_dir = _staged_dir_for_key(default_synth, layer["Properties"]["Content"]["S3Key"])
    # Then everything sits under python/ (Lambda's sys.path entry for layers), one dist-info per pin,
    assert {p.name for p in layer_dir.iterdir()} == {"python"}
    pins = {
        line.split("==")[0].lower().replace("-", "_") + "-" + line.split("==")[1]
        for line in REQUIREMENTS.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert {p.name.removesuffix(".dist-info").lower() for p in (layer_dir / "python").glob("*.dist-info")} == pins
    # rpds-py compiled for CPython 3.12 on x86_64 Linux (not for the synthesizing machine), and no scripts or caches
    assert [p.name for p in (layer_dir / "python" / "rpds").glob("*.so")] == ["rpds.cpython-312-x86_64-linux-gnu.so"]
    assert (layer_dir / "python" / "jsonschema" / "validators.py").is_file()
    assert not (layer_dir / "python" / "bin").exists() and not list(layer_dir.rglob("*.pyc"))
