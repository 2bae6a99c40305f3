"""`spottrain cost <job>`: what each attempt of a job cost, against the same hours on-demand.

Reads the job's `report.json`: `runs/<job>/report.json` when the results were downloaded (the demo
does), else the job's bucket of the deployed stack. The figures are the report's estimates: each
attempt's running time (launch to end) at the spot price it launched at, the minutes of training an
interruption destroyed (`redone`, see spottrain/functions/shared/redone.py), and at the on-demand price
of its type (the Price List API's, or the bundled table's: the last line says which); capacity
waits cost nothing and are listed.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console as RichConsole
from rich.table import Table

from spottrain.functions.shared.report import attempt_cost, attempt_seconds, parse_time, summarize


PIPE_WIDTH = 1000  # columns for a table that is not on a terminal: wider than any row, so nothing is cut


class ReportNotFound(LookupError):
    """Neither a downloaded report nor the job's bucket has one."""


class ReportUnreadable(ValueError):
    """A report.json that is not a report: one line naming where it is and what is wrong."""


def local_report(runs: Path, job: str) -> dict | None:
    """runs/<job>/report.json parsed; None when absent. Raises ReportUnreadable when it is not a report."""
    path = runs / job / "report.json"
    return parse_report(path.read_bytes(), str(path)) if path.is_file() else None


def parse_report(body: bytes, where: str) -> dict:
    """The report in body, checked for the shapes the table reads (an object; attempts and capacity_waits
    lists of objects). Raises ReportUnreadable naming `where` (a path or an s3:// URL)."""
    try:
        report = json.loads(body)
    except ValueError as exc:  # also an empty file, and bytes that are not UTF-8
        raise ReportUnreadable(
            f"{where} is not JSON ({exc}): download the job's results again or delete it to read the job's bucket"
        ) from None
    problem = _shape_problem(report)
    if problem:
        raise ReportUnreadable(f"{where} is not a spottrain report: {problem}")
    return report


def _shape_problem(report: Any) -> str | None:
    if not isinstance(report, dict):
        return f"a JSON {type(report).__name__}, not an object"
    for key in ("attempts", "capacity_waits"):
        entries = report.get(key, [])
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            return f"{key} is {json.dumps(entries)[:40]}, not a list of objects"
    return None


def bucket_report(s3: Any, bucket: str) -> dict:
    try:
        body = s3.get_object(Bucket=bucket, Key="report.json")["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise ReportNotFound(f"no report.json in s3://{bucket}: the job has not launched an instance yet") from None
    except s3.exceptions.NoSuchBucket:
        raise ReportNotFound(f"no bucket {bucket}: check the job name and --stack-name") from None
    return parse_report(body, f"s3://{bucket}/report.json")


def attempt_rows(report: dict, now: dt.datetime | None = None) -> list[dict]:
    """Per attempt: seconds, spot and on-demand cost in USD (rounded to 4 places)."""
    rows = []
    for entry in report.get("attempts", []):
        seconds = attempt_seconds(entry, now)
        on_demand = float(entry.get("on_demand_price_per_hour") or 0)
        rows.append(
            {
                **entry,
                "seconds": round(seconds),
                "cost_usd": round(attempt_cost(entry, now), 4),
                "on_demand_cost_usd": round(seconds / 3600 * on_demand, 4),
            }
        )
    return rows


def cost_table(report: dict, now: dt.datetime | None = None) -> Table:
    table = Table(title=f"{report.get('job', '?')}: cost per attempt ({report.get('status', 'running')})")
    numbers = ("ran", "redone", "$/h", "cost", "on-demand", "saved")
    for column in ("attempt", "instance", "pool", "outcome") + numbers:
        table.add_column(column, justify="right" if column in numbers else "left")
    for row in attempt_rows(report, now):
        table.add_row(
            str(row["attempt"]),
            f"{row.get('instance_type', '?')} ({row.get('lifecycle', 'spot')})",
            f"{row.get('az', '?')} {row.get('subnet_id', '')}",
            row.get("outcome", "?"),
            f"{row['seconds']}s",
            _minutes(row.get("redone_minutes")),
            _money(row.get("price_per_hour")),
            _money(row["cost_usd"]),
            _money(row["on_demand_cost_usd"]),
            _money(row["on_demand_cost_usd"] - row["cost_usd"]),
        )
    total = summarize(report, now)
    table.add_section()
    redone = sum(float(a.get("redone_minutes") or 0) for a in report.get("attempts", []))
    table.add_row(
        "total",
        "",
        "",
        "",
        f"{total['billable_seconds']}s",
        _minutes(redone),
        "",
        _money(total["estimated_cost_usd"]),
        _money(total["on_demand_cost_usd"]),
        _saving(total),
    )
    return table


def wait_lines(report: dict) -> list[str]:
    lines = []
    for wait in report.get("capacity_waits", []):
        ended = wait.get("ended_at")
        took = f"{(parse_time(ended) - parse_time(wait['started_at'])).total_seconds():.0f}s" if ended else "so far"
        lines.append(
            f"attempt {wait['attempt']} waited {took} for spot capacity ({wait['waits']} waits, "
            f"{len(wait.get('pools_refused', []))} pools refused): {wait['outcome']}"
        )
    return lines


def show(report: dict, where: str, console: RichConsole | None = None) -> None:
    """Prints the table, the capacity waits and the price sources. Raises ReportUnreadable (naming `where`)
    on a value of the wrong type (a price that is not a number, a time that is not ISO 8601)."""
    console = console or _console()
    try:
        table, lines = cost_table(report), wait_lines(report) + source_lines(report)
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportUnreadable(f"{where} is not a spottrain report: {type(exc).__name__}: {exc}") from None
    console.print(table)
    for line in lines:
        console.print(line)


def _console() -> RichConsole:
    # A pipe or a file gets the whole table: rich would otherwise fit it into 80 columns, cutting "$0.0…"
    if sys.stdout.isatty():
        return RichConsole()
    return RichConsole(width=PIPE_WIDTH, markup=False, emoji=False, highlight=False)


def source_lines(report: dict) -> list[str]:
    """Where the on-demand prices came from: the Price List API, or the labelled bundled table."""
    attempts = report.get("attempts", [])
    if not attempts:
        return []
    sources = sorted({a.get("on_demand_price_source") or "bundled table" for a in attempts})
    spot = sorted(
        {a.get("spot_cost_source") or "launch-price" for a in attempts if a.get("lifecycle", "spot") == "spot"}
    )
    ebs = summarize(report).get("ebs_cost_usd", 0)
    return [
        f"on-demand prices: {', '.join(sources)}; spot cost from: {', '.join(spot) or '-'}",
        f"root volumes (gp3, not in the table: the same on-demand): {_money(ebs)}",
    ]


def _minutes(value: Any) -> str:
    if value is None:
        return ""
    return f"{float(value):.1f} min" if float(value) >= 1 else f"{float(value) * 60:.0f}s"


def _money(value: Any) -> str:
    return "-" if value is None else f"${float(value):.4f}"


def _saving(total: dict) -> str:
    on_demand = total["on_demand_cost_usd"]
    saved = total["estimated_savings_usd"]
    return f"{_money(saved)} ({saved / on_demand:.0%})" if on_demand > 0 else _money(saved)
