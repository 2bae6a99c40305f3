"""`spottrain demo`, as a newcomer runs it: the job's story on screen, its results on disk."""
from __future__ import annotations

import json

import pytest

from spottrain import cli


@pytest.mark.timeout(420)
def test_given_a_fresh_checkout_when_running_the_demo_then_results_are_downloaded_and_described(
    emulator_workdir, tmp_path, capsys
):
    # When the user runs the demo (sharing the session's synthesized stack)
    runs = tmp_path / "runs"
    code = cli.main(["demo", "--workdir", str(emulator_workdir), "--runs", str(runs)])
    out = capsys.readouterr().out

    # Then it succeeds and the emails it sent were shown as they arrived
    assert code == 0, out
    assert "✉  [spottrain] multihead-demo started" in out
    assert "✉  [spottrain] multihead-demo completed" in out
    # And the model, one plot per head, the metrics and the cost report are on disk, and named
    job = runs / "multihead-demo"
    metrics = json.loads((job / "output" / "metrics.json").read_text())
    for head in metrics["heads"]:
        plot = job / "output" / f"curves_{head}.png"
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(plot) in out
    assert (job / "output" / "model.npz").stat().st_size > 0
    report = json.loads((job / "report.json").read_text())
    assert report["status"] == "SUCCEEDED" and report["attempts"][0]["lifecycle"] == "spot"
    # And the summary states what was learned and what it cost
    assert "validation accuracy after 94 iterations" in out
    assert f"{report['billable_seconds']}s billable" in out
