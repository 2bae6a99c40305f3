"""`spottrain demo` and `submit --local`, as a user runs them: the job's story on screen, its results on
disk, a fault that never fired called out, nothing left running after Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from e2e_support import processes_under, wait_until
from spottrain import cli

REPO_ROOT = cli.REPO_ROOT


@pytest.mark.timeout(420)
def test_given_a_fresh_checkout_when_the_demo_is_interrupted_at_its_first_checkpoint_then_it_resumes_and_describes_results(
    emulator_workdir, tmp_path, capsys
):
    # When the user runs the demo with a spot interruption (sharing the session's synthesized stack)
    runs = tmp_path / "runs"
    code = cli.main(
        ["demo", "--workdir", str(emulator_workdir), "--runs", str(runs), "--inject", "interrupt-at=checkpoint"]
    )
    out = capsys.readouterr().out

    # Then it succeeds, and the emails it sent were shown as they arrived
    assert code == 0, out
    assert "✉  [spottrain] multihead-demo started" in out
    assert "✉  [spottrain] multihead-demo completed" in out
    assert re.search(r"✉  \[spottrain\] multihead-demo interrupted.*resuming", out), out
    # And the model, one plot per head, the metrics and the cost report are on disk, and named
    job = runs / "multihead-demo"
    metrics = json.loads((job / "output" / "metrics.json").read_text())
    for head in metrics["heads"]:
        plot = job / "output" / f"curves_{head}.png"
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(plot) in out
    assert (job / "output" / "model.npz").stat().st_size > 0
    report = json.loads((job / "report.json").read_text())
    assert [a["outcome"] for a in report["attempts"]] == ["INTERRUPTED", "SUCCEEDED"]
    # And the relaunch went to another pool than the one that reclaimed the first instance
    first, second = ({key: a[key] for key in ("instance_type", "subnet_id")} for a in report["attempts"])
    assert second != first and report["attempts"][1]["demoted_pool"] == "{instance_type}/{subnet_id}".format(**first)
    # And the summary states where the training resumed, what was learned and what it cost
    resumed = metrics["resumed_from_iteration"]
    assert resumed and f"validation accuracy after 94 iterations (resumed from iteration {resumed})" in out
    assert f"2 attempt(s), {report['billable_seconds']}s billable" in out


@pytest.mark.timeout(420)
def test_given_a_capacity_outage_when_the_demo_runs_then_it_waits_for_capacity_and_succeeds(
    emulator_workdir, tmp_path, capsys
):
    # When the user runs the demo while every pool refuses for 20 s (the demo stack waits 60 s: a minute is 1 s)
    runs = tmp_path / "runs"
    code = cli.main(["demo", "--workdir", str(emulator_workdir), "--runs", str(runs), "--inject", "capacity-outage=20"])
    out = capsys.readouterr().out

    # Then it succeeds after one "waiting" email and a "started" one that says it waited
    assert code == 0, out
    assert out.count("✉  [spottrain] multihead-demo is waiting for spot capacity") == 1, out
    assert re.search(r"✉  \[spottrain\] multihead-demo started on .* after a \d+s capacity wait", out), out
    # And report.json shows the wait: found, after at least one retry, on the one attempt it trained
    report = json.loads((runs / "multihead-demo" / "report.json").read_text())
    (wait,) = report["capacity_waits"]
    assert wait["outcome"] == "FOUND" and wait["waits"] >= 1 and wait["attempt"] == 1, wait
    assert len(wait["pools_refused"]) >= 3, wait  # every type of the demo was refused at least once
    assert [a["outcome"] for a in report["attempts"]] == ["SUCCEEDED"]
    assert "waited for spot capacity" in out and "FOUND" in out


@pytest.mark.timeout(420)
def test_given_a_fault_due_after_the_training_has_ended_when_the_demo_runs_then_it_exits_1_saying_it_never_fired(
    emulator_workdir, tmp_path, capsys
):
    # When the demo runs with an interruption due at a 1000th checkpoint its training never writes (it writes a few)
    code = cli.main(
        [
            "demo",
            "--workdir",
            str(emulator_workdir),
            "--runs",
            str(tmp_path / "runs"),
            "--inject",
            "interrupt-at=checkpoint:1000",
        ]
    )
    out, err = capsys.readouterr()

    # Then the job itself succeeded, but the run fails, saying which fault never happened and why
    assert "✓ multihead-demo" in out and "succeeded" in out
    assert code == 1
    assert re.fullmatch(
        r"spottrain: injected fault interrupt-at=checkpoint:1000 never fired: the training on i-\w+ ended after "
        r"writing \d+ checkpoint file\(s\) in this attempt, not 1000\n",
        err,
    ), err


@pytest.mark.timeout(300)
def test_given_a_local_job_training_when_the_user_presses_ctrl_c_then_no_process_is_left(
    emulator_workdir, slow_job, tmp_path
):
    # Given `spottrain submit --local` of a job whose training daemonised a process out of its session
    spec = tmp_path / "slow.json"
    spec.write_text(
        json.dumps({**slow_job, "exec_command": "setsid nohup sleep 600 >/dev/null 2>&1 & python train.py"})
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [
        sys.executable,
        "-m",
        "spottrain.cli",
        "submit",
        "--local",
        str(spec),
        "--workdir",
        str(emulator_workdir),
    ]
    user = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    instances = emulator_workdir / "runs"
    try:
        wait_until(
            lambda: [p for p in processes_under(instances) if p.endswith("sleep 600")]
            and [p for p in processes_under(instances) if p.endswith("python train.py")],
            timeout=180,
            what="the daemon and the training running",
        )

        # When the user presses Ctrl-C
        user.send_signal(signal.SIGINT)
        out, _ = user.communicate(timeout=60)
    finally:
        if user.poll() is None:
            user.kill()

    # Then the CLI says so and exits 130, and no process of the simulated instance is left
    assert user.returncode == 130, out
    # (moto's executor threads may still log the aborted run after that line: "interrupted" need not be last)
    assert any(line.endswith("interrupted") or "interrupted" in line for line in out.splitlines()), out
    assert processes_under(instances) == []
