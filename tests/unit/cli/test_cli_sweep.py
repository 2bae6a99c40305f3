"""The CLI's sweep side: validate lists the variants; the downloaded report becomes a table and a plot."""

from __future__ import annotations

import io
import json
from pathlib import Path

from spottrain import cli, sweeps
from spottrain.sweep_commands import print_rich

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "jobs"


def test_given_the_sweep_example_when_validated_then_each_variant_is_listed_with_its_overrides(capsys):
    assert cli.main(["validate", str(EXAMPLES / "multihead-sweep.json")]) == 0
    out = capsys.readouterr().out
    assert "sweep of 4 variants, 2 at a time:" in out
    assert "multihead-sweep-1: LEARNING_RATE=0.002 LOSS_WEIGHTS=shape=1" in out
    assert "multihead-sweep-4: LEARNING_RATE=0.01 LOSS_WEIGHTS=shape=3,colour=0.5" in out


def test_given_a_sweep_over_the_stack_cap_when_validated_then_it_is_refused_naming_the_setting(tmp_path, capsys):
    spec = json.loads((EXAMPLES / "multihead-sweep.json").read_text())
    spec["sweep"]["max_parallel"] = 11
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec))
    assert cli.main(["validate", str(path)]) == 1
    assert "sweep.max_parallel: 11 is over this stack's cap of 10" in capsys.readouterr().out


REPORT = {
    "sweep": "lr",
    "metric": "loss",
    "goal": "min",
    "best": "lr-2",
    "variants": [
        {
            "name": "lr-1",
            "parameters": {"LR": "0.1"},
            "status": "SUCCEEDED",
            "metric": 0.5,
            "attempts": 1,
            "cost_usd": 0.01,
        },
        {
            "name": "lr-2",
            "parameters": {"LR": "0.01"},
            "status": "SUCCEEDED",
            "metric": 0.25,
            "attempts": 2,
            "cost_usd": 0.02,
        },
        {
            "name": "lr-3",
            "parameters": {"LR": "1"},
            "status": "FAILED",
            "metric": None,
            "attempts": 1,
            "cost_usd": None,
            "reason": "exit code 3",
        },
    ],
}


def test_given_a_report_when_tabled_then_every_variant_shows_and_the_best_is_starred():
    class Sink:
        stream = io.StringIO()

    print_rich(Sink, sweeps.report_table(REPORT))
    text = Sink.stream.getvalue()
    assert "lr-2 ★" in text and "LR=0.01" in text and "0.25" in text and "$0.0200" in text
    assert "lr-3" in text and "FAILED" in text
    # And the failed variant says why
    assert "exit code 3" in text


def test_given_a_report_when_plotted_then_a_png_is_written(tmp_path):
    path = sweeps.plot(REPORT, tmp_path / "sweep-comparison.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_given_the_projects_own_repository_when_submitted_locally_then_this_checkout_is_cloned_instead():
    spec = json.loads((EXAMPLES / "multihead-sweep.json").read_text())
    local = cli._offline(spec)
    assert local["repository_url"] == cli.REPO_ROOT.resolve().as_uri()
    other = dict(spec, repository_url="https://github.com/someone/else.git")
    assert cli._offline(other) == other


def test_given_100_variants_without_max_parallel_when_validated_then_the_stack_default_cap_is_shown(tmp_path, capsys):
    # Given a 100-variant grid with no max_parallel
    spec = json.loads((EXAMPLES / "multihead-sweep.json").read_text())
    spec["sweep"] = {"grid": {"SEED": [str(n) for n in range(100)]}}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec))
    # When validated, Then at most the stack's cap (10) run at once, not all 100
    assert cli.main(["validate", str(path)]) == 0
    assert "sweep of 100 variants, 10 at a time:" in capsys.readouterr().out


def test_given_a_max_parallel_above_the_variant_count_when_validated_then_the_count_is_shown(tmp_path, capsys):
    spec = json.loads((EXAMPLES / "multihead-sweep.json").read_text())
    spec["sweep"] = {"variants": [{"SEED": "1"}, {"SEED": "2"}], "max_parallel": 5}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec))
    assert cli.main(["validate", str(path)]) == 0
    assert "sweep of 2 variants, 2 at a time:" in capsys.readouterr().out
