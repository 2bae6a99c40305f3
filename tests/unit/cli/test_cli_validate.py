"""`spottrain validate` is the user's first contact: clear verdicts, the same rules as ValidateJob."""
import json

import pytest

from spottrain import cli

EXAMPLES = cli.REPO_ROOT / "examples" / "jobs"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_bundled_examples_validate(example, capsys):
    # Given a bundled example, When validated, Then it passes and names the bucket it would use
    assert cli.main(["validate", str(EXAMPLES / example)]) == 0
    assert "is valid" in capsys.readouterr().out


def test_every_problem_is_listed_with_its_field(tmp_path, capsys):
    # Given a spec with two independent mistakes
    spec = json.loads((EXAMPLES / "multihead-demo.json").read_text())
    spec["exec_name"] = "Bad_Name"
    spec["instance"] = {"types": ["p5.48xlarge"]}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    # When validated, Then both are reported and the exit code says failure
    assert cli.main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "exec_name" in out and "p5.48xlarge" in out


def test_broken_json_names_line_and_column(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text('{"exec_name": "x",\n  "oops" 1\n}')
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "line 2" in err


def test_missing_file_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["validate", str(tmp_path / "absent.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
