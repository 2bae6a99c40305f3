"""Sweeps from the user's side: list the variants, start the sweep state machine, follow it, show its report.

A sweep is one execution of the stack's sweep state machine (named `<exec_name>-<time>`, like a job's)
whose Map state runs each variant as an execution of the job state machine named `<variant>-<time>`,
so every variant is also an ordinary job for `spottrain status|logs|cancel <variant>`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any, Callable

from spottrain import jobs
from spottrain.contract import sweep
from spottrain.functions.shared import runs

PENDING = "PENDING"  # a variant the Map state has not started yet (max_parallel)
NOT_STARTED = "not started"  # a PENDING variant of a sweep that has ended: it never will
PLOT_NAME = "sweep-comparison.png"


@dataclasses.dataclass(frozen=True)
class VariantState:
    name: str
    overrides: dict[str, str]
    status: str  # PENDING, or the child execution's status


def variant_lines(spec: dict) -> list[str]:
    """`spottrain validate`'s listing: each variant's name and its env overrides."""
    return [
        f"{child.name}: " + (sweep.describe_overrides(child.overrides) or "(no overrides)")
        for child in sweep.variants(spec)
    ]


def _require_sweeps(stack: jobs.Stack) -> str:
    if not stack.sweep_state_machine_arn:
        raise jobs.JobNotFound(
            "this stack has no sweep state machine (deployed before sweeps existed): redeploy it with `npx cdk deploy`"
        )
    return stack.sweep_state_machine_arn


def start(sfn: Any, stack: jobs.Stack, spec: dict, now: dt.datetime | None = None) -> str:
    """Start the sweep; each variant's execution name ends with the sweep's own time stamp."""
    name = jobs.execution_name(spec["exec_name"], now)
    suffix = name[len(spec["exec_name"]) + 1 :]
    refuse_if_running(sfn, stack, spec["exec_name"], {child.name for child in sweep.variants(spec)})
    response = sfn.start_execution(
        stateMachineArn=_require_sweeps(stack),
        name=name,
        input=json.dumps(sweep.map_input(spec, suffix, stack.max_sweep_parallel)),
    )
    return response["executionArn"]


def refuse_if_running(sfn: Any, stack: jobs.Stack, exec_name: str, variant_names: set[str]) -> None:
    """Before anything starts: neither this sweep nor a job of any variant's name may be running.

    One listing of the job state machine's running executions serves every variant (not one per variant).
    """
    running_sweep = current(sfn, stack, exec_name)
    if running_sweep and running_sweep["status"] == "RUNNING":
        raise jobs.JobAlreadyRunning(
            f"sweep {exec_name!r} is already running as {running_sweep['name']}; wait for it "
            f"to end (spottrain status {exec_name}) or stop it (spottrain cancel {exec_name})."
        )
    pages = sfn.get_paginator("list_executions").paginate(
        stateMachineArn=stack.state_machine_arn, statusFilter="RUNNING"
    )
    for execution in (item for page in pages for item in page["executions"]):
        job = runs.job_of_input(sfn.describe_execution(executionArn=execution["executionArn"]).get("input"))
        if job in variant_names:
            raise jobs.JobAlreadyRunning(
                f"job {job!r}, a variant of sweep {exec_name!r}, is already running as {execution['name']}: the variant "
                f"would share its bucket and instances. Wait for it to end, or stop it with `spottrain cancel {job}`."
            )


def current(sfn: Any, stack: jobs.Stack, exec_name: str) -> dict | None:
    """The running execution of the sweep `exec_name`, else its newest one; None when no sweep has that name."""
    if not stack.sweep_state_machine_arn:
        return None
    found = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=stack.sweep_state_machine_arn):
        found += [e for e in page["executions"] if jobs.job_of(e["name"]) == exec_name]
    found.sort(key=lambda e: (e["status"] != "RUNNING", -e["startDate"].timestamp()))
    return found[0] if found else None


def _child_arn(stack: jobs.Stack, execution_name: str) -> str:
    return stack.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{execution_name}"


def variant_states(sfn: Any, stack: jobs.Stack, sweep_arn: str) -> list[VariantState]:
    """Each variant of the sweep and where its child execution stands."""
    state = json.loads(sfn.describe_execution(executionArn=sweep_arn)["input"])
    rows = []
    for item in state["variants"]:
        try:
            status = sfn.describe_execution(executionArn=_child_arn(stack, item["execution_name"]))["status"]
        except sfn.exceptions.ExecutionDoesNotExist:
            status = PENDING
        rows.append(VariantState(item["name"], item["overrides"], status))
    return rows


def final_states(rows: list[VariantState]) -> list[VariantState]:
    """The variants of an ended sweep: one still PENDING was never started (the sweep stopped first)."""
    return [dataclasses.replace(row, status=NOT_STARTED) if row.status == PENDING else row for row in rows]


def settled_states(
    sfn: Any, stack: jobs.Stack, sweep_arn: str, timeout: float = 60.0, interval: float = 1.0
) -> list[VariantState]:
    """The variants of an ended sweep once none still runs: stopping a sweep stops its `.sync` children
    asynchronously, so right after the sweep ends a child can still read RUNNING. After `timeout`
    seconds, the states as they are."""
    deadline = time.monotonic() + timeout
    while True:
        rows = variant_states(sfn, stack, sweep_arn)
        if all(row.status != "RUNNING" for row in rows) or time.monotonic() > deadline:
            return final_states(rows)
        time.sleep(interval)


def wait(
    sfn: Any,
    stack: jobs.Stack,
    sweep_arn: str,
    timeout: float,
    on_change: Callable[[list[VariantState]], None] | None = None,
    interval: float = 1.0,
) -> dict:
    """Follow the sweep to its end; `on_change` sees the variants whenever one of them moved."""
    deadline, last = time.monotonic() + timeout, None
    while True:
        execution = sfn.describe_execution(executionArn=sweep_arn)
        rows = variant_states(sfn, stack, sweep_arn)
        if on_change and rows != last:
            on_change(rows)
        last = rows
        if execution["status"] in jobs.TERMINAL:
            return execution
        if time.monotonic() > deadline:
            raise TimeoutError(f"{execution['name']} still {execution['status']} after {timeout:.0f}s")
        time.sleep(interval)


def cancel(sfn: Any, lambda_: Any, stack: jobs.Stack, exec_name: str) -> list[str]:
    """Stop the sweep (which stops its running children), then terminate what every variant launched."""
    execution = current(sfn, stack, exec_name)
    if execution is None:
        raise jobs.JobNotFound(f"no sweep named {exec_name!r}")
    stopped = []
    if execution["status"] == "RUNNING":
        sfn.stop_execution(executionArn=execution["executionArn"], error="Cancelled", cause="spottrain cancel")
        jobs._until_stopped(sfn, execution["executionArn"])
        stopped.append(execution["name"])
    for row in variant_states(sfn, stack, execution["executionArn"]):
        if row.status != PENDING:
            stopped += jobs.cancel(sfn, lambda_, stack, row.name)
    return stopped


def download_report(s3: Any, stack: jobs.Stack, exec_name: str, destination: Path) -> dict:
    """sweep-report.json from the sweep's bucket into `destination`, with the comparison plot beside it.

    An earlier run's report and plot there are removed first, so whatever is left afterwards is this
    run's (a sweep stopped before its summary leaves none). Raises botocore's ClientError when the
    sweep's bucket or report does not exist.
    """
    for stale in (destination / sweep.REPORT_KEY, destination / PLOT_NAME):
        stale.unlink(missing_ok=True)
    bucket = sweep.sweep_bucket(stack.job_bucket_prefix, exec_name)
    report = json.loads(s3.get_object(Bucket=bucket, Key=sweep.REPORT_KEY)["Body"].read())
    destination.mkdir(parents=True, exist_ok=True)
    (destination / sweep.REPORT_KEY).write_text(json.dumps(report, indent=2, sort_keys=True))
    if any(row["metric"] is not None for row in report["variants"]):
        plot(report, destination / PLOT_NAME)
    return report


def plot(report: dict, path: Path) -> Path:
    """A bar per variant: its metric (none for a variant that did not report it), the best one highlighted."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    from matplotlib import pyplot

    rows = report["variants"]
    figure, axes = pyplot.subplots(figsize=(max(4.0, 0.7 * len(rows) + 2), 3.5))
    values = [row["metric"] if row["metric"] is not None else 0.0 for row in rows]
    colours = ["tab:green" if row["name"] == report["best"] else "tab:blue" for row in rows]
    axes.bar([row["name"] for row in rows], values, color=colours)
    axes.set_ylabel(f"{report['metric']} ({report['goal']} is best)")
    axes.set_title(f"sweep {report['sweep']}: best {report['best'] or '-'}")
    axes.tick_params(axis="x", labelrotation=45)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
    return path


def report_table(report: dict) -> Any:
    """The comparison table (rich): one row per variant, the best one marked."""
    from rich.table import Table

    table = Table(
        title=f"sweep {report['sweep']}" + (f" — {report['metric']} ({report['goal']})" if report["metric"] else "")
    )
    for column in ("variant", "parameters", "status", "metric", "attempts", "cost", "reason"):
        table.add_column(column, justify="right" if column in ("metric", "attempts", "cost") else "left")
    for row in report["variants"]:
        best = " ★" if row["name"] == report["best"] else ""
        table.add_row(
            row["name"] + best,
            sweep.describe_overrides(row["parameters"]),
            row["status"],
            "-" if row["metric"] is None else f"{row['metric']:.4g}",
            str(row["attempts"]),
            "-" if row["cost_usd"] is None else f"${row['cost_usd']:.4f}",
            row.get("reason") or "",
        )
    return table


def status_table(exec_name: str, rows: list[VariantState]) -> Any:
    from rich.table import Table

    table = Table(title=f"sweep {exec_name}")
    for column in ("variant", "parameters", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.name, sweep.describe_overrides(row.overrides), row.status)
    return table
