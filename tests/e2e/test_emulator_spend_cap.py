"""limits.max_cost_usd end to end in the emulator: a training that would run for ten minutes is stopped
at its spend cap, keeps its checkpoints, and the job fails with SpendCapReached.

Cost in the emulator is the real thing's arithmetic on fixed prices: wall-clock seconds since the
instance's LaunchTime x the pool's fixed spot price (plus its volume), so a cap is reached after a
number of real seconds (`secondsPerMinute` shortens minutes-based limits, not the bill). The cap
here buys about 40 s: far more than the simulated instance needs to boot, clone and start training,
so the stop lands in the training, which the test waits for as events (the checkpoint, the end).
"""

from __future__ import annotations

import pytest

from e2e_support import git_repository
from spottrain.contract import layout
from spottrain.functions.shared.pricing import on_demand_price
from spottrain.functions.shared.spotcost import GP3_USD_PER_GB_MONTH, HOURS_PER_MONTH
from spottrain.local import Emulator
from spottrain.local.bridge import SPOT_FRACTION_OF_ON_DEMAND
from test_emulator_scenarios import assert_nothing_left_running, job_emails, job_instances, read_json

# Saves a snapshot at once and another at SIGTERM, as a real training does; without a stop it runs 10 minutes.
TRAINING = """
import os, signal, sys, time
from pathlib import Path
ckpt = Path(os.environ["SPOTTRAIN_CHECKPOINT_DIR"])
def on_term(signum, frame):
    (ckpt / "snapshot_on_sigterm").write_text("saved at SIGTERM")
    print("SIGTERM: snapshot saved", flush=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
(ckpt / "snapshot_iter_1").write_text("state 1")
for step in range(600):
    print("step", step, flush=True)
    time.sleep(1)
"""
CAP_SECONDS = 40


@pytest.fixture(scope="module")
def emulator(emulator_workdir):
    with Emulator(emulator_workdir) as running:
        yield running
        # The budget file and the spend-cap path must be allowed by the stack's IAM, as deployed
        gaps = running.permission_gaps()
        assert gaps == [], "\n".join(str(gap) for gap in gaps)


@pytest.mark.timeout(300)
def test_given_a_spend_cap_reached_mid_training_then_stopped_checkpoints_kept_failed_and_emailed(
    emulator, tmp_path, record_property
):
    # Given a job whose cap buys about CAP_SECONDS of its instance (the emulator's fixed price for its first type)
    repo = git_repository(tmp_path / "capped-repo", {"train.py": TRAINING})
    spec = {
        "exec_name": "scenario-spend-cap",
        "repository_url": repo.as_uri(),
        "repository_name": "capped-repo",
        "repository_ref": "main",
        "data_dir": "data",
        "output_dir": "result",
        "checkpoint_dir": "result/ckpt",
        "data_get_command": "true",
        "exec_command": "python train.py",
        "instance": {"types": ["g5.xlarge"], "volume_gb": 100},
    }
    price = emulator_price()
    spec["limits"] = {"max_cost_usd": round(price * CAP_SECONDS / 3600, 6)}

    # When it runs
    final = emulator.wait(emulator.start_job(spec), timeout=240)

    # Then the execution failed for its cap, after the training was stopped (not before it began)
    assert (final["status"], final.get("error")) == ("FAILED", "SpendCapReached"), final
    bucket = emulator.stack.job_bucket("scenario-spend-cap")
    completed = read_json(emulator, bucket, layout.COMPLETED_KEY)
    assert (completed["reason"], completed["failed_phase"]) == ("spend_cap", "exec"), completed
    # And both snapshots are in the bucket, the one written at SIGTERM included
    keys = {o["Key"] for o in emulator.client("s3").list_objects_v2(Bucket=bucket, Prefix="checkpoints/")["Contents"]}
    assert keys == {"checkpoints/snapshot_iter_1", "checkpoints/snapshot_on_sigterm"}
    # And the estimate reached the cap (within what the grace and final sync cost after stop_at)
    budget = read_json(emulator, bucket, layout.budget_key(1))
    report = read_json(emulator, bucket, layout.REPORT_KEY)
    spent = report["estimated_cost_usd"] + report["ebs_cost_usd"]
    record_property("cap_usd", spec["limits"]["max_cost_usd"])
    record_property("spent_usd", spent)
    print(
        f"\nmeasured: cap ${budget['cap_usd']} at ${budget['usd_per_hour']}/h, report.json spent ${spent:.6f} "
        f"over {report['billable_seconds']} s (stop_at {budget['stop_at']})"
    )
    assert spent >= budget["cap_usd"] * 0.9, (spent, budget)
    # And the email says so: cap, spend, what was kept
    failed = [e for e in job_emails(emulator, "scenario-spend-cap", 2) if "spend cap" in e["subject"]]
    assert failed, [e["subject"] for e in emulator.emails]
    assert f"limits.max_cost_usd = ${spec['limits']['max_cost_usd']:g}" in failed[0]["body"]
    assert f"Kept: s3://{bucket}/checkpoints/" in failed[0]["body"]
    # And nothing is left running
    assert {i["State"]["Name"] for i in job_instances(emulator, "scenario-spend-cap")} == {"terminated"}
    assert_nothing_left_running(emulator)


def emulator_price() -> float:
    """USD/h a g5.xlarge attempt with 100 GiB pays in the emulator: its fixed spot price plus the volume's gp3 rate."""
    return (
        round(on_demand_price("g5.xlarge") * SPOT_FRACTION_OF_ON_DEMAND, 4)
        + 100 * GP3_USD_PER_GB_MONTH / HOURS_PER_MONTH
    )
