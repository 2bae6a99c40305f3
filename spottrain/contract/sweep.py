"""A sweep: one job spec with a `sweep` block, expanded into its variants (one ordinary job each).

The CLI expands a spec to list the variants (`spottrain validate`) and to start the sweep state
machine, whose Map state runs each variant as a child execution of the job state machine; the
rules that bound a sweep live in `jobspec._sweep_problems`. Stdlib only (the Lambdas import it).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
from typing import Any, cast

from spottrain.contract import names
from spottrain.contract.defaults import STACK_DEFAULTS

GOALS = ("min", "max")
DEFAULT_GOAL = "min"
DEFAULT_PARALLEL = cast(int, STACK_DEFAULTS["maxSweepParallel"])  # a stack's maxSweepParallel unless set
REPORT_KEY = "sweep-report.json"  # in the sweep's own bucket, `<prefix>-<exec_name>`
METRICS_KEY = "output/metrics.json"  # in each variant's bucket: what its training wrote to output_dir


@dataclasses.dataclass(frozen=True)
class Variant:
    """One child job: `name` is its exec_name (`<exec_name>-<n>`, n from 1), `overrides` its env additions."""

    name: str
    overrides: dict[str, str]
    spec: dict[str, Any]


def is_sweep(spec: Any) -> bool:
    return isinstance(spec, dict) and isinstance(spec.get("sweep"), dict)


def variant_name(exec_name: str, number: int) -> str:
    """The n-th variant's exec_name (n from 1): its bucket is `<prefix>-<exec_name>-<n>`."""
    return f"{exec_name}-{number}"


def overrides(sweep: dict) -> list[dict[str, str]]:
    """Every variant's env overrides: the grid's product (in the grid's key order), then `variants` as listed.

    Tolerant of malformed blocks (the schema reports those): a non-list grid axis or a non-object
    variant contributes nothing.
    """
    grid = sweep.get("grid")
    axes = (
        [(name, values) for name, values in grid.items() if isinstance(values, list)] if isinstance(grid, dict) else []
    )
    combined = (
        [dict(zip([name for name, _ in axes], values)) for values in itertools.product(*(values for _, values in axes))]
        if axes
        else []
    )
    listed = sweep.get("variants")
    explicit = [dict(item) for item in listed if isinstance(item, dict)] if isinstance(listed, list) else []
    return combined + explicit


def variants(spec: dict) -> list[Variant]:
    """The child jobs of a sweep spec: the spec without `sweep`, its exec_name numbered, env overridden."""
    base = {key: value for key, value in spec.items() if key != "sweep"}
    children = []
    for number, extra in enumerate(overrides(spec["sweep"]), start=1):
        child = copy.deepcopy(base)
        child["exec_name"] = variant_name(spec["exec_name"], number)
        child["env"] = {**(base.get("env") or {}), **extra}
        if spec["sweep"].get("emails") == "summary":
            child["emails"] = False  # the sweep's summary email speaks for every variant
        children.append(Variant(name=child["exec_name"], overrides=extra, spec=child))
    return children


def describe_overrides(overrides: dict[str, Any]) -> str:
    """`NAME=value ...` on one line: a value with a newline or other unprintable character is shown
    JSON-escaped and quoted, so a listing or table row stays one row."""
    return " ".join(f"{name}={_shown(value)}" for name, value in overrides.items())


def _shown(value: Any) -> str:
    text = str(value)
    return text if text.isprintable() else json.dumps(text)


def sweep_bucket(prefix: str, exec_name: str) -> str:
    """The sweep's own bucket (its report): the job bucket naming rule on the sweep's exec_name."""
    return names.bucket_name(prefix, exec_name)


def parallelism(block: dict, count: int, cap: int = DEFAULT_PARALLEL) -> int:
    """How many variants the Map state runs at once: `max_parallel`, else the stack's cap (maxSweepParallel);
    never more than the cap or than there are variants, and at least 1 (MaxConcurrency 0 means
    unlimited: https://docs.aws.amazon.com/step-functions/latest/dg/state-map-inline.html)."""
    requested = block.get("max_parallel")
    wanted = int(requested) if isinstance(requested, (int, float)) and not isinstance(requested, bool) else cap
    return max(1, min(wanted, cap, count))


def metric_value(metrics: Any, metric: str | None) -> float | None:
    """`metric` in a metrics.json: a top-level key (Chainer's "validation/main/loss"), else a '/' path
    into nested objects ("heads/color/accuracy"); None when absent, not a number, NaN or infinite."""
    if not metric or not isinstance(metrics, dict):
        return None
    value: Any = metrics.get(metric)
    if value is None:
        value = metrics
        for part in metric.split("/"):
            value = value.get(part) if isinstance(value, dict) else None
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if number else None  # a NaN or infinite loss ranks nowhere


def best_variant(rows: list[dict], goal: str) -> dict | None:
    """The row with the smallest (goal "min") or largest ("max") numeric `metric`; None when none has one."""
    scored = [row for row in rows if isinstance(row.get("metric"), (int, float))]
    if not scored:
        return None
    pick = min if goal == "min" else max
    return pick(scored, key=lambda row: row["metric"])


def map_input(spec: dict, run_suffix: str, cap: int = DEFAULT_PARALLEL) -> dict:
    """The sweep state machine's execution input: what its Map state iterates, and how.

    `run_suffix` ends every child's execution name (`<variant>-<suffix>`, as a job's own run is named
    `<exec_name>-<suffix>`), so `spottrain status <variant>` finds a child like any job. `cap` is the
    deployed stack's maxSweepParallel.
    """
    block = spec["sweep"]
    children = variants(spec)
    return {
        "exec_name": spec["exec_name"],
        "max_parallel": parallelism(block, len(children), cap),
        "metric": block.get("metric"),
        "goal": block.get("goal", DEFAULT_GOAL),
        "variants": [
            {
                "name": child.name,
                "execution_name": f"{child.name}-{run_suffix}",
                "overrides": child.overrides,
                "spec": child.spec,
            }
            for child in children
        ],
    }
