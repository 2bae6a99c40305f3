"""The CLI's sweep paths (`validate`, `submit [--local] [--wait]`, `status`, `cancel` of a spec or name with a sweep).

cli.py hands over here when the spec has a `sweep` block or the name is a sweep's; the operations live in
spottrain/sweeps.py, this module only prints.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from spottrain import jobs, sweeps
from spottrain.contract import sweep

RUNS = Path("runs")
LOCAL_TIMEOUT_SECONDS = 1800  # a local sweep of a few variants that takes longer is stuck, not slow
AWS_POLL_SECONDS = 30.0


def print_rich(console: Any, renderable: Any) -> None:
    from rich.console import Console as RichConsole

    RichConsole(file=console.stream, width=120).print(renderable)


def say_variants(console: Any, spec: dict, cap: int | None = None) -> None:
    """The variants and how many run at once (`cap`: the deployed stack's maxSweepParallel, else the default's)."""
    lines = sweeps.variant_lines(spec)
    block = spec["sweep"]
    parallel = sweep.parallelism(block, len(lines), *([cap] if cap else []))
    console.say(f"  sweep of {len(lines)} variants, {parallel} at a time:")
    for line in lines:
        console.say(f"    {line}")


def _on_change(console: Any) -> Any:
    def show(rows: list[sweeps.VariantState]) -> None:
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        console.say("variants: " + ", ".join(f"{count} {status.lower()}" for status, count in sorted(counts.items())))

    return show


def follow(
    console: Any,
    sfn: Any,
    s3: Any,
    stack: jobs.Stack,
    arn: str,
    exec_name: str,
    timeout: float,
    interval: float,
    destination: Path,
) -> int:
    """Wait for the sweep, then download its report and plot and print the comparison table."""
    started = time.monotonic()
    execution = sweeps.wait(sfn, stack, arn, timeout, on_change=_on_change(console), interval=interval)
    console.say(f"sweep {execution['name']} ended {execution['status']} after {time.monotonic() - started:.1f}s")
    try:
        report = sweeps.download_report(s3, stack, exec_name, destination)
    except s3.exceptions.ClientError:  # stopped before its summary: no report to show
        _say_without_report(console, sfn, stack, arn, exec_name, execution["status"], interval)
        return 1
    print_rich(console, sweeps.report_table(report))
    if report.get("wall_seconds") and report.get("variant_seconds"):
        console.say(
            f"sweep wall time {report['wall_seconds']:.0f}s; its variants' own times sum to "
            f"{report['variant_seconds']:.0f}s ({report['variant_seconds'] / report['wall_seconds']:.1f}x)"
        )
    console.say(f"report: {destination / sweep.REPORT_KEY}")
    if (destination / sweeps.PLOT_NAME).exists():
        console.say(f"plot:   {destination / sweeps.PLOT_NAME}")
    return 0 if execution["status"] == "SUCCEEDED" else 1


def _say_without_report(
    console: Any, sfn: Any, stack: jobs.Stack, arn: str, exec_name: str, status: str, interval: float
) -> None:
    how = "was cancelled" if status == "ABORTED" else f"ended {status}"
    console.error(f"sweep {exec_name} {how} before it wrote {sweep.REPORT_KEY}; its variants ended:")
    print_rich(console, sweeps.status_table(exec_name, sweeps.settled_states(sfn, stack, arn, interval=interval)))


def submit(
    console: Any,
    sfn: Any,
    s3: Any,
    stack: jobs.Stack,
    spec: dict,
    wait: bool,
    timeout: float | None,
    interval: float = AWS_POLL_SECONDS,
    runs: Path = RUNS,
) -> int:
    arn = sweeps.start(sfn, stack, spec)
    console.say(f"started sweep {arn}")
    say_variants(console, spec, stack.max_sweep_parallel)
    if not wait:
        console.say(f"follow it with: spottrain status {spec['exec_name']}")
        return 0
    return follow(
        console, sfn, s3, stack, arn, spec["exec_name"], timeout or float("inf"), interval, runs / spec["exec_name"]
    )


def status(console: Any, sfn: Any, stack: jobs.Stack, exec_name: str) -> bool:
    """Print the sweep's variant table; False when `exec_name` names no sweep (then it is a job)."""
    execution = sweeps.current(sfn, stack, exec_name)
    if execution is None:
        return False
    console.say(f"{execution['name']}: {execution['status']}")
    rows = sweeps.variant_states(sfn, stack, execution["executionArn"])
    print_rich(
        console, sweeps.status_table(exec_name, rows if execution["status"] == "RUNNING" else sweeps.final_states(rows))
    )
    return True
