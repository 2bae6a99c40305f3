"""Whatever file a user hands the CLI, a bad one gets one line naming the file and the rule, and a
non-zero exit, before anything starts: no traceback, and `submit --local` never starts the emulator."""

from __future__ import annotations

import codecs
import json

import pytest

from spottrain import cli

EXAMPLE = json.loads((cli.REPO_ROOT / "examples" / "jobs" / "pix2pix.json").read_text())


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spottrain: ") and "Traceback" not in err, err
    return err


BAD_FILES = [
    ("UTF-16 with BOM", codecs.BOM_UTF16_LE + json.dumps(EXAMPLE).encode("utf-16-le"), "UTF-16 text"),
    ("UTF-16 without BOM", json.dumps(EXAMPLE).encode("utf-16-le"), "NUL bytes, as UTF-16 text does"),
    ("UTF-32", codecs.BOM_UTF32_LE + json.dumps(EXAMPLE).encode("utf-32-le"), "UTF-32 text"),
    (
        "Latin-1",
        json.dumps(dict(EXAMPLE, exec_command="python train.py # café"))
        .replace("é", "\\u00e9")
        .encode()
        .replace(b"caf\\u00e9", "café".encode("latin-1")),
        "not UTF-8 (byte 0xe9 at offset",
    ),
    ("deeply nested", ("[" * 100_000 + "]" * 100_000).encode(), "nests JSON too deeply"),
    (
        "5000-digit integer",
        json.dumps(dict(EXAMPLE, keep_alive_minutes=0))
        .replace('"keep_alive_minutes": 0', '"keep_alive_minutes": ' + "9" * 5000)
        .encode(),
        "a number with more than 4300 digits",
    ),
]


@pytest.mark.parametrize("content, words", [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
@pytest.mark.parametrize("command", ["validate", "submit"])
def test_given_an_unreadable_spec_file_when_given_to_the_cli_then_one_line_and_a_non_zero_exit(
    tmp_path, capsys, command, content, words
):
    # Given a spec file as other tools may write it
    path = tmp_path / "job.json"
    path.write_bytes(content)

    # When validated or submitted (to the emulator, whose folder must never appear)
    argv = [command, str(path)] + (["--local", "--workdir", str(tmp_path / "emulator")] if command == "submit" else [])
    code = cli.main(argv)

    # Then one line names the file and what is wrong with it
    assert code == 2
    error = one_line_error(capsys)
    assert str(path) in error and words in error
    assert not (tmp_path / "emulator").exists()


def test_given_a_utf8_file_with_a_bom_when_validated_then_accepted(tmp_path, capsys):
    path = tmp_path / "job.json"
    path.write_bytes(codecs.BOM_UTF8 + json.dumps(EXAMPLE).encode())

    assert cli.main(["validate", str(path)]) == 0
    assert "is valid" in capsys.readouterr().out


@pytest.mark.parametrize(
    "spec, words",
    [
        ({key: value for key, value in EXAMPLE.items() if key != "exec_name"}, "exec_name: is required"),
        (dict(EXAMPLE, exec_name=["pix2pix"]), "exec_name: must be a string"),
        (dict(EXAMPLE, exec_name="pix2pix\n"), 'exec_name: "pix2pix\\n" has characters or a form that is not allowed'),
        (dict(EXAMPLE, env={"LD_PRELOAD": "/tmp/x.so"}), "env.LD_PRELOAD: is reserved"),
    ],
    ids=["missing exec_name", "exec_name not a string", "exec_name with a newline", "LD_PRELOAD"],
)
def test_given_an_invalid_spec_when_submitted_locally_then_refused_before_the_emulator_starts(
    tmp_path, capsys, spec, words
):
    # Given a spec that ValidateJob would refuse
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec))

    # When submitted to the emulator
    code = cli.main(["submit", "--local", str(path), "--workdir", str(tmp_path / "emulator")])

    # Then the CLI says why in one line and never started the emulator
    assert code == 2
    error = one_line_error(capsys)
    assert "is not a valid job spec" in error and words in error
    assert not (tmp_path / "emulator").exists()
