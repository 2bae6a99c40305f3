"""SummarizeSweep: once every variant ended, sweep-report.json in the sweep's bucket and one summary email."""

from __future__ import annotations

import json

import boto3
import pytest

from jobstate_support import FakeLambdaContext, PREFIX, STACK, received, subscribe_queue
from jobstate_support import aws, lambda_env, requests_use_tls  # noqa: F401  (fixtures)
from spottrain.contract import layout
from spottrain.functions import summarize_sweep

SWEEP_BUCKET = f"{PREFIX}-lr"


def variant(n: int, overrides: dict) -> dict:
    return {"name": f"lr-{n}", "execution_name": f"lr-{n}-20261130T120000", "overrides": overrides, "spec": {}}


def finished_variant(s3, name: str, metrics: dict | None, cost: float, attempts: int) -> None:
    bucket = f"{PREFIX}-{name}"
    s3.create_bucket(Bucket=bucket)
    if metrics is not None:
        s3.put_object(Bucket=bucket, Key="output/metrics.json", Body=json.dumps(metrics).encode())
    report = {
        "attempts": [{"attempt": n} for n in range(1, attempts + 1)],
        "estimated_cost_usd": cost,
        "billable_seconds": 60 * attempts,
    }
    s3.put_object(Bucket=bucket, Key=layout.REPORT_KEY, Body=json.dumps(report).encode())


def sweep_event(results: list[dict], goal: str = "max") -> dict:
    variants = [variant(1, {"LR": "0.1"}), variant(2, {"LR": "0.01"}), variant(3, {"LR": "1"})]
    state = {
        "exec_name": "lr",
        "metric": "heads/color/accuracy",
        "goal": goal,
        "max_parallel": 2,
        "variants": variants,
        "results": results,
    }
    return {
        "sweep": state,
        "execution": {"id": "arn:aws:states:us-east-1:123456789012:execution:sweep:lr-1", "name": "lr-1"},
    }


def child_failure(status: str) -> dict:
    cause = json.dumps(
        {
            "ExecutionArn": "arn:...",
            "Status": status,
            "Error": "TrainingFailed",
            "Cause": "exit 1",
            "StartDate": "2026-11-30T12:00:00+00:00",
            "StopDate": "2026-11-30T12:00:30+00:00",
        }
    )
    return {"error": "States.TaskFailed", "cause": cause}


def test_given_two_successes_and_a_failure_when_summarized_then_the_report_holds_every_variant_and_the_best(
    lambda_env, requests_use_tls
):
    # Given variants 1 and 2 trained (2 was interrupted once), and 3 failed before writing anything
    s3 = boto3.client("s3")
    inbox = subscribe_queue(lambda_env)
    finished_variant(s3, "lr-1", {"heads": {"color": {"accuracy": 0.7}}}, cost=0.01, attempts=1)
    finished_variant(s3, "lr-2", {"heads": {"color": {"accuracy": 0.9}}}, cost=0.02, attempts=2)
    ran = {"status": "SUCCEEDED", "started": "2026-11-30T12:00:00+00:00", "stopped": "2026-11-30T12:01:00+00:00"}
    in_millis = {
        "status": "SUCCEEDED",
        "started": 1796040000000,
        "stopped": 1796040120000,
    }  # as AWS's .sync:2 gives them
    event = sweep_event([ran, in_millis, child_failure("FAILED")])

    # When the sweep's last state summarizes it
    answer = summarize_sweep.handler(event, FakeLambdaContext())

    # Then the report names each variant's parameters, end, metric, cost and attempts, and the best one
    assert answer == {
        "variants": 3,
        "succeeded": 2,
        "failed": 1,
        "best": "lr-2",
        "bucket": SWEEP_BUCKET,
        "key": "sweep-report.json",
    }
    report = json.loads(s3.get_object(Bucket=SWEEP_BUCKET, Key="sweep-report.json")["Body"].read())
    rows = {row["name"]: row for row in report["variants"]}
    assert report["best"] == "lr-2" and report["metric"] == "heads/color/accuracy"
    assert rows["lr-2"]["parameters"] == {"LR": "0.01"} and rows["lr-2"]["metric"] == 0.9
    assert (rows["lr-2"]["attempts"], rows["lr-2"]["cost_usd"]) == (2, 0.02)
    assert rows["lr-3"]["status"] == "FAILED" and rows["lr-3"]["metric"] is None and rows["lr-3"]["attempts"] == 0
    # And each child's own time (from its .sync answer, or its failure's cause) adds up against the sweep's
    assert [row["seconds"] for row in report["variants"]] == [60, 120, 30] and report["variant_seconds"] == 210
    # And the sweep's bucket is a job bucket like any other: tagged with the stack and the sweep's name
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=SWEEP_BUCKET)["TagSet"]}
    assert tags[layout.TAG_STACK] == STACK and tags[layout.TAG_JOB] == "lr"
    # And one summary email names the best variant and lists all three
    (email,) = received(inbox)
    assert email["Subject"] == "spottrain sweep lr: 2/3 succeeded; best lr-2"
    assert all(name in email["Message"] for name in ("lr-1", "lr-2", "lr-3 ")) and "LR=0.01" in email["Message"]


def test_given_goal_min_when_summarized_then_the_smallest_metric_wins_and_a_stopped_child_reads_aborted(
    lambda_env, requests_use_tls
):
    s3 = boto3.client("s3")
    finished_variant(s3, "lr-1", {"heads": {"color": {"accuracy": 0.7}}}, cost=0.01, attempts=1)
    finished_variant(s3, "lr-2", {"heads": {"color": {"accuracy": 0.9}}}, cost=0.02, attempts=1)
    answer = summarize_sweep.handler(
        sweep_event([{"status": "SUCCEEDED"}, {"status": "SUCCEEDED"}, child_failure("ABORTED")], goal="min"),
        FakeLambdaContext(),
    )
    assert answer["best"] == "lr-1"
    report = json.loads(s3.get_object(Bucket=SWEEP_BUCKET, Key="sweep-report.json")["Body"].read())
    assert report["variants"][2]["status"] == "ABORTED"


def test_given_metrics_without_the_metric_when_summarized_then_no_variant_is_called_best(lambda_env, requests_use_tls):
    s3 = boto3.client("s3")
    finished_variant(s3, "lr-1", {"loss": 0.3}, cost=0.01, attempts=1)
    answer = summarize_sweep.handler(
        sweep_event(
            [
                {"status": "SUCCEEDED"},
                child_failure("TIMED_OUT"),
                {"error": "StepFunctions.ExecutionLimitExceededException", "cause": "too many"},
            ]
        ),
        FakeLambdaContext(),
    )
    assert answer["best"] is None and answer["failed"] == 2
    report = json.loads(s3.get_object(Bucket=SWEEP_BUCKET, Key="sweep-report.json")["Body"].read())
    assert [row["status"] for row in report["variants"]] == [
        "SUCCEEDED",
        "TIMED_OUT",
        "StepFunctions.ExecutionLimitExceededException",
    ]


def test_given_variants_that_failed_for_different_reasons_when_summarized_then_each_reason_is_in_report_and_email(
    lambda_env, requests_use_tls
):
    # Given variant 1 hit its runtime limit (the agent's completed.json says so), 2 failed to get capacity,
    # and 3 never started (the Map's own error)
    s3 = boto3.client("s3")
    inbox = subscribe_queue(lambda_env)
    finished_variant(s3, "lr-1", None, cost=0.01, attempts=1)
    s3.put_object(
        Bucket=f"{PREFIX}-lr-1",
        Key=layout.COMPLETED_KEY,
        Body=json.dumps(
            {"exit_code": 124, "failed_phase": "exec", "message": "limits.max_runtime_minutes=10 reached during exec"}
        ).encode(),
    )
    no_capacity = json.dumps(
        {"Status": "FAILED", "Error": "NoSpotCapacity", "Cause": "No candidate pool had spot capacity"}
    )
    event = sweep_event(
        [
            child_failure("FAILED"),
            {"error": "States.TaskFailed", "cause": no_capacity},
            {"error": "StepFunctions.ExecutionLimitExceededException", "cause": "too many"},
        ]
    )

    summarize_sweep.handler(event, FakeLambdaContext())

    # Then sweep-report.json carries each variant's reason, the most specific one known
    report = json.loads(s3.get_object(Bucket=SWEEP_BUCKET, Key="sweep-report.json")["Body"].read())
    assert [row["reason"] for row in report["variants"]] == [
        "limits.max_runtime_minutes=10 reached during exec",
        "NoSpotCapacity: No candidate pool had spot capacity",
        "StepFunctions.ExecutionLimitExceededException: too many",
    ]
    # And the summary email shows them under their variants
    (email,) = received(inbox)
    assert "why: limits.max_runtime_minutes=10 reached during exec" in email["Message"]
    assert "why: NoSpotCapacity: No candidate pool had spot capacity" in email["Message"]


def test_given_a_stopped_child_without_an_error_when_summarized_then_the_reason_says_it_was_aborted(
    lambda_env, requests_use_tls
):
    event = sweep_event(
        [
            {"status": "SUCCEEDED"},
            {"error": "States.TaskFailed", "cause": json.dumps({"Status": "ABORTED"})},
            {"status": "SUCCEEDED"},
        ]
    )
    summarize_sweep.handler(event, FakeLambdaContext())
    report = json.loads(boto3.client("s3").get_object(Bucket=SWEEP_BUCKET, Key="sweep-report.json")["Body"].read())
    assert [row["reason"] for row in report["variants"]] == [None, "execution aborted", None]


def test_given_a_nan_metric_when_summarized_then_sweep_report_json_is_strict_json_with_null(
    lambda_env, requests_use_tls
):
    # Given a variant whose training diverged: its metrics.json holds NaN (Python's json writes it bare)
    s3 = boto3.client("s3")
    finished_variant(s3, "lr-1", {"heads": {"color": {"accuracy": float("nan")}}}, cost=0.01, attempts=1)
    summarize_sweep.handler(sweep_event([{"status": "SUCCEEDED"}] * 3), FakeLambdaContext())
    body = s3.get_object(Bucket=SWEEP_BUCKET, Key="sweep-report.json")["Body"].read().decode()
    # Then a strict parser reads the report, the value is null and no variant is best by it
    report = json.loads(body, parse_constant=lambda name: pytest.fail(f"bare {name} in sweep-report.json"))
    assert (
        report["variants"][0]["metric"] is None
        and report["variants"][0]["metrics"]["heads"]["color"]["accuracy"] is None
    )
