"""The step-time benchmark runs and prints both ratios (their values are measured, not asserted)."""

import re
import runpy
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[3] / "benchmarks" / "multihead_step.py"


def test_given_a_tiny_run_when_benchmarking_then_both_ratios_are_printed(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(BENCHMARK), "--repeats", "2", "--batch-size", "4", "--image-size", "16"])
    namespace = runpy.run_path(str(BENCHMARK))  # defines main without running it

    assert namespace["main"]() == 0

    output = capsys.readouterr().out
    heads_ratio = re.search(r"K=4 heads / 1 head step time: ([\d.]+)x", output)
    backward_ratio = re.search(r"per-head backward / summed backward step time: ([\d.]+)x", output)
    assert heads_ratio and backward_ratio, output
    assert float(heads_ratio.group(1)) > 0 and float(backward_ratio.group(1)) > 0
