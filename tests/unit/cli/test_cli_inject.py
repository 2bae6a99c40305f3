"""`--inject` as a user types it: a value the emulator cannot honour stops the run before anything starts."""

from __future__ import annotations

import pytest

from spottrain import cli
from spottrain.local.faults import FORMS


@pytest.mark.parametrize(
    "value",
    [
        "bogus",
        "interrupt-after=nan",
        "interrupt-after=inf",
        "interrupt-at=epoch",
        "lambda-error=NoSuchFunction:1",
        "no-capacity=g9.huge",
    ],
)
def test_given_an_injection_the_emulator_cannot_honour_when_the_demo_starts_then_one_line_and_exit_2(
    value, tmp_path, capsys
):
    # When the user asks the demo for a fault that is malformed, or names no task or allowed type
    workdir = tmp_path / "emulator"
    code = cli.main(["demo", "--workdir", str(workdir), "--runs", str(tmp_path / "runs"), "--inject", value])

    # Then the run stops with one line naming the value and the accepted forms
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("spottrain: --inject ")
    assert value.split("=")[-1] in err and all(form in err for form in FORMS)
    # And before anything started: no emulator, no folder
    assert out == ""
    assert not workdir.exists()
