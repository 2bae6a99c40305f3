"""The JsonSchema layer is built by pip once per requirements content, then only copied (offline-safe)."""

from __future__ import annotations

import subprocess

import pytest

from spottrain.infra import layers


def _requirements(tmp_path, text="jsonschema==4.26.0\n"):
    folder = tmp_path / "jsonschema_layer"
    folder.mkdir(exist_ok=True)
    (folder / "requirements.txt").write_text(text)
    return folder / "requirements.txt"


def test_given_a_cached_build_when_the_layer_is_asked_for_again_then_pip_is_not_run(tmp_path, monkeypatch):
    requirements, cache = _requirements(tmp_path), tmp_path / "cache"
    calls = []

    def fake_pip(command, **_kwargs):
        calls.append(command)
        target = command[command.index("--target") + 1]
        (layers.Path(target) / "jsonschema").mkdir(parents=True)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(layers.subprocess, "run", fake_pip)
    # Given a first build (pip asked for Lambda's platform wheels), When asked twice more
    first = layers.layer_dir(requirements, cache)
    assert layers.layer_dir(requirements, cache) == first == layers.layer_dir(requirements, cache)
    # Then pip ran once, for manylinux x86_64 CPython 3.12 binaries only, and the layer is in the cache
    (command,) = calls
    assert command[command.index("--platform") + 1] == "manylinux2014_x86_64"
    assert command[command.index("--python-version") + 1] == "3.12" and "--only-binary=:all:" in command
    assert (first / "python" / "jsonschema").is_dir() and first.parent == cache


def test_given_changed_pins_when_the_layer_is_asked_for_then_it_is_built_anew(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr(
        layers.subprocess,
        "run",
        lambda command, **_: (
            layers.Path(command[command.index("--target") + 1]).mkdir(parents=True),
            subprocess.CompletedProcess(command, 0, "", ""),
        )[1],
    )
    old = layers.layer_dir(_requirements(tmp_path), cache)
    new = layers.layer_dir(_requirements(tmp_path, "jsonschema==4.25.0\n"), cache)
    assert old != new and new.is_dir()


def test_given_no_package_index_and_no_cache_when_building_then_error_names_the_command_and_leaves_nothing(
    tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    monkeypatch.setattr(
        layers.subprocess,
        "run",
        lambda command, **_: subprocess.CompletedProcess(command, 1, "", "No matching distribution"),
    )
    with pytest.raises(layers.LayerBuildError, match="(?s)once per clone.*pip install.*No matching distribution"):
        layers.layer_dir(_requirements(tmp_path), cache)
    assert list(cache.iterdir()) == []  # no half-built layer for the next synth to trust
