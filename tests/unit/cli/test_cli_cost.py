"""`spottrain cost <job>`: the per-attempt table a user reads to see what spot saved, from the downloaded
report or the job's bucket."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from spottrain import cli, cost

REPORT = {
    "job": "multihead-demo",
    "status": "SUCCEEDED",
    "attempts": [
        {
            "attempt": 1,
            "instance_type": "g5.xlarge",
            "lifecycle": "spot",
            "az": "us-east-1a",
            "subnet_id": "subnet-a",
            "outcome": "INTERRUPTED",
            "launched_at": "2026-01-01T00:00:00+00:00",
            "ended_at": "2026-01-01T01:00:00+00:00",
            "price_per_hour": 0.35,
            "on_demand_price_per_hour": 1.0,
            "redone_minutes": 2.5,
            "last_checkpoint_at": "2026-01-01T00:57:30+00:00",
        },
        {
            "attempt": 2,
            "instance_type": "g6.xlarge",
            "lifecycle": "spot",
            "az": "us-east-1b",
            "subnet_id": "subnet-b",
            "outcome": "SUCCEEDED",
            "launched_at": "2026-01-01T01:05:00+00:00",
            "ended_at": "2026-01-01T01:35:00+00:00",
            "price_per_hour": 0.3,
            "on_demand_price_per_hour": 0.8,
        },
    ],
    "capacity_waits": [
        {
            "attempt": 2,
            "started_at": "2026-01-01T01:00:00+00:00",
            "ended_at": "2026-01-01T01:05:00+00:00",
            "waits": 3,
            "outcome": "FOUND",
            "pools_refused": ["g5.xlarge/subnet-a", "g5.xlarge/subnet-b"],
        }
    ],
}


@pytest.fixture
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich would wrap the table's cells at 80 columns


def test_given_a_downloaded_report_when_cost_runs_then_each_attempt_and_the_total_show_with_savings(
    tmp_path, capsys, wide_terminal
):
    # Given the demo's results downloaded under runs/
    (tmp_path / "multihead-demo").mkdir()
    (tmp_path / "multihead-demo" / "report.json").write_text(json.dumps(REPORT))

    # When the user asks what it cost
    code = cli.main(["cost", "multihead-demo", "--runs", str(tmp_path)])
    out = capsys.readouterr().out

    # Then one row per attempt (1 h at $0.35 vs $1.00; 30 min at $0.30 vs $0.80) and the total with its saving
    assert code == 0
    rows = [line for line in out.splitlines() if "INTERRUPTED" in line or "SUCCEEDED" in line and "g6" in line]
    assert "$0.3500" in rows[0] and "$1.0000" in rows[0] and "$0.6500" in rows[0] and "3600s" in rows[0]
    assert "2.5 min" in rows[0]  # training the interruption destroyed, redone by attempt 2
    assert cost._minutes(0.02) == "1s"  # seconds, not "0.0 min", when little was lost
    assert "$0.1500" in rows[1] and "$0.4000" in rows[1] and "$0.2500" in rows[1] and "1800s" in rows[1]
    total = next(line for line in out.splitlines() if "total" in line)
    assert "5400s" in total and "$0.5000" in total and "$1.4000" in total and "$0.9000 (64%)" in total
    # And the capacity wait before attempt 2 is listed
    assert "attempt 2 waited 300s for spot capacity (3 waits, 2 pools refused): FOUND" in out
    # And where the on-demand prices came from (an old report has no source: the bundled table priced it)
    assert "on-demand prices: bundled table; spot cost from: launch-price" in out


def test_given_no_downloaded_report_then_the_jobs_bucket_is_read(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="spottrain-1-multihead-demo")
        s3.put_object(Bucket="spottrain-1-multihead-demo", Key="report.json", Body=json.dumps(REPORT).encode())

        assert cost.bucket_report(s3, "spottrain-1-multihead-demo")["attempts"] == REPORT["attempts"]
        s3.create_bucket(Bucket="spottrain-1-other")
        with pytest.raises(cost.ReportNotFound, match="has not launched an instance yet"):
            cost.bucket_report(s3, "spottrain-1-other")
        with pytest.raises(cost.ReportNotFound, match="check the job name and --stack-name"):
            cost.bucket_report(s3, "spottrain-1-nothing")


@pytest.mark.parametrize(
    "body,says",
    [
        ("{", "is not JSON"),
        ("", "is not JSON"),
        ('{"attempts": "x"}', 'attempts is "x", not a list of objects'),
        ("[1]", "a JSON list, not an object"),
        (
            '{"attempts": [{"attempt": 1, "price_per_hour": "x", "launched_at": "2026-01-01T00:00:00+00:00"}]}',
            "ValueError",
        ),
    ],
)
def test_given_a_malformed_downloaded_report_when_cost_runs_then_one_line_names_the_file(tmp_path, capsys, body, says):
    # Given a report.json truncated or edited by hand
    (tmp_path / "multihead-demo").mkdir()
    (tmp_path / "multihead-demo" / "report.json").write_text(body)

    # When the user asks what it cost
    code = cli.main(["cost", "multihead-demo", "--runs", str(tmp_path)])

    # Then one line (no traceback) names the file and what is wrong with it
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert str(tmp_path / "multihead-demo" / "report.json") in err and says in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err


def test_given_neither_a_downloaded_report_nor_a_region_then_the_error_says_both(tmp_path, capsys, monkeypatch):
    # Given no runs/<job>/report.json and no AWS region anywhere
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))

    # When the user asks what it cost
    code = cli.main(["cost", "multihead-demo", "--runs", str(tmp_path)])

    # Then the one line says the downloaded report is missing and why the bucket could not be asked
    err = capsys.readouterr().err
    assert code == 2
    assert f"no {tmp_path / 'multihead-demo' / 'report.json'}" in err and "no AWS region configured" in err, err


def test_given_output_piped_when_cost_runs_then_the_table_is_printed_whole(tmp_path, capsys, monkeypatch):
    # Given a narrow terminal setting and stdout a pipe (capsys: not a TTY), as in `spottrain cost job | cat`
    monkeypatch.setenv("COLUMNS", "60")
    (tmp_path / "multihead-demo").mkdir()
    (tmp_path / "multihead-demo" / "report.json").write_text(json.dumps(REPORT))

    # When the table prints
    assert cli.main(["cost", "multihead-demo", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out

    # Then no cell is cut or wrapped: every figure is whole on its row
    assert "…" not in out
    total = next(line for line in out.splitlines() if "total" in line)
    assert "$0.5000" in total and "$1.4000" in total and "$0.9000 (64%)" in total
