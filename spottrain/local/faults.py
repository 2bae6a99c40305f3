"""Faults a user can inject into the emulator by name, e.g. `interrupt-at=checkpoint`.

Each fault mimics something AWS really does to a spot job, so the workflow's recovery paths can be
watched on a laptop: a pool with no capacity, a short shortage in every pool (capacity-outage), a
reclaimed instance, a Lambda service hiccup. A fault
that was asked for and never happened would make a run look like a pass it is not: each records
when it fires, and `never_fired()` names every one that did not, and why.
"""

from __future__ import annotations

import dataclasses
import math
import pkgutil
import threading
import time
from typing import Collection, Iterable

from spottrain import functions

FORMS = (
    "no-capacity=<type>[,<type>...]",
    "capacity-outage=<seconds>",
    "interrupt-at=checkpoint[:<n>]",
    "interrupt-after=<seconds>[:<count>]",
    "lambda-error=<function>:<count>",
)
FAULT_HELP = "accepted: " + ", ".join(FORMS)


class FaultError(ValueError):
    """A fault spec the emulator cannot understand: one line naming the spec and the accepted forms."""


def lambda_tasks() -> tuple[str, ...]:
    """The workflow's task functions: one module each in `spottrain/functions/` (one Lambda per task)."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(functions.__path__) if not m.ispkg))


def _normalised(name: str) -> str:
    """poll_completion, PollCompletion and pollcompletion all name the same task."""
    return name.replace("_", "").replace("-", "").lower()


@dataclasses.dataclass(frozen=True)
class Interruption:
    """When the spot notice goes out on an interrupted instance."""

    seconds: float | None = None  # interrupt-after: this long after the training command started
    checkpoint: int | None = None  # interrupt-at: once the attempt's n-th checkpoint file is in S3

    def describe(self, count: int = 1) -> str:
        if self.checkpoint is not None:
            return "interrupt-at=checkpoint" + (f":{self.checkpoint}" if self.checkpoint > 1 else "")
        return f"interrupt-after={self.seconds:g}" + (f":{count}" if count > 1 else "")

    def __str__(self) -> str:
        return self.describe()


@dataclasses.dataclass
class Faults:
    no_capacity: frozenset[str] = frozenset()
    capacity_outage: float | None = None  # seconds every pool refuses, from the first launch request on
    interruption: Interruption | None = None
    interrupt_count: int = 1  # instances to interrupt, in boot order; the ones after run undisturbed
    lambda_errors: dict[str, int] = dataclasses.field(default_factory=dict)  # failures still to inject
    _asked_errors: dict[str, int] = dataclasses.field(default_factory=dict, repr=False)
    _refused_types: set[str] = dataclasses.field(default_factory=set, repr=False)
    _outage_started: float | None = dataclasses.field(default=None, repr=False)  # time.monotonic()
    _outage_refusals: int = dataclasses.field(default=0, repr=False)
    _interrupted: dict[str, str | None] = dataclasses.field(default_factory=dict, repr=False)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def parse(cls, specs: Iterable[str], instance_types: Collection[str] | None = None) -> "Faults":
        """Faults from `--inject` values; with `instance_types` (the stack's allow-list), no-capacity is checked."""
        faults = cls()
        for spec in specs:
            name, sep, value = spec.partition("=")
            parser = _PARSERS.get(name.strip())
            if not sep or not value.strip():
                raise FaultError(f"--inject {spec!r}: expected NAME=VALUE; {FAULT_HELP}")
            if parser is None:
                raise FaultError(f"--inject {spec!r}: unknown fault name {name.strip()!r}; {FAULT_HELP}")
            parser(faults, spec, value.strip())
        if instance_types is not None:
            faults.check_instance_types(instance_types)
        return faults

    def check_instance_types(self, allowed: Collection[str]) -> None:
        unknown = sorted(self.no_capacity - set(allowed))
        if unknown:
            raise FaultError(
                f"--inject no-capacity={','.join(unknown)}: not in the stack's allowedInstanceTypes "
                f"({', '.join(sorted(allowed))}), so no job could ask for it; {FAULT_HELP}"
            )

    def describe(self) -> str:
        """The active faults in the syntax `parse` reads ("" when none)."""
        parts = []
        if self.no_capacity:
            parts.append("no-capacity=" + ",".join(sorted(self.no_capacity)))
        if self.capacity_outage is not None:
            parts.append(f"capacity-outage={self.capacity_outage:g}")
        if self.interruption is not None and self.interrupt_count > 0:
            parts.append(self.interruption.describe(self.interrupt_count))
        parts.extend(f"lambda-error={name}:{count}" for name, count in self.lambda_errors.items() if count > 0)
        return " ".join(parts)

    def check_outage(self, window_seconds: float) -> None:
        """Raises FaultError when capacity-outage cannot end inside the job's wait for capacity
        (window_seconds of emulator time): the job would fail with no capacity and the outage would
        never be seen to end, which is what the fault is for."""
        if self.capacity_outage is not None and self.capacity_outage >= window_seconds:
            raise FaultError(
                f"--inject capacity-outage={self.capacity_outage:g}: the job waits for capacity for only "
                f"{window_seconds:g}s in the emulator (capacity_wait_minutes; a minute lasts a second there), "
                f"so the outage could never end inside it. Use less than {window_seconds:g} seconds, or raise "
                "the job's capacity_wait_minutes; to watch a job fail for want of capacity, use no-capacity=<type>."
            )

    def load(self, other: "Faults") -> None:
        """Inject `other`'s faults instead of these, forgetting what fired (the emulator's parts hold this object)."""
        with self._lock:
            for field in dataclasses.fields(self):
                if field.name != "_lock":
                    setattr(self, field.name, getattr(other, field.name))

    # --- the emulator's parts ask, and the answers are recorded ------------------------------

    def refuse_capacity(self, instance_type: str) -> bool:
        """True if a launch of this type must fail for lack of capacity."""
        with self._lock:
            if instance_type in self.no_capacity:
                self._refused_types.add(instance_type)
                return True
            return self._in_outage()

    def _in_outage(self) -> bool:
        if self.capacity_outage is None:
            return False
        now = time.monotonic()
        if self._outage_started is None:
            self._outage_started = now
        if now - self._outage_started < self.capacity_outage:
            self._outage_refusals += 1
            return True
        return False

    def take_interrupt(self, instance_id: str) -> Interruption | None:
        """How to interrupt the instance booting now, if it is one to reclaim; counts it down."""
        with self._lock:
            if self.interruption is None or self.interrupt_count < 1:
                return None
            self.interrupt_count -= 1
            self._interrupted[instance_id] = None
            return self.interruption

    def interrupt_fired(self, instance_id: str) -> None:
        with self._lock:
            self._interrupted[instance_id] = ""

    def interrupt_missed(self, instance_id: str, why: str) -> None:
        with self._lock:
            self._interrupted[instance_id] = why

    def take_lambda_error(self, function_name: str) -> bool:
        """True if this invocation of the function must fail; counts it down (thread-safe)."""
        with self._lock:
            for key, remaining in self.lambda_errors.items():
                if remaining > 0 and _normalised(key) in _normalised(function_name):
                    self.lambda_errors[key] = remaining - 1
                    return True
        return False

    # --- the verdict ---------------------------------------------------------------------------

    def pending(self) -> list[str]:
        """Instances whose interruption is armed and still waiting for its trigger."""
        with self._lock:
            return [instance for instance, outcome in self._interrupted.items() if outcome is None]

    def never_fired(self) -> list[str]:
        """`injected fault <name>=<value> never fired: <why>`, for each fault that did not take effect."""
        with self._lock:
            missed = [
                (f"no-capacity={name}", f"no launch asked for {name}")
                for name in sorted(self.no_capacity - self._refused_types)
            ]
            if self.capacity_outage is not None and self._outage_refusals == 0:
                missed.append((f"capacity-outage={self.capacity_outage:g}", "no launch was requested during it"))
            missed += self._missed_interrupts()
            missed += self._missed_lambda_errors()
        return [f"injected fault {spec} never fired: {why}" for spec, why in missed]

    def _missed_interrupts(self) -> list[tuple[str, str]]:
        if self.interruption is None:
            return []
        armed = len(self._interrupted)
        spec = self.interruption.describe(self.interrupt_count + armed)
        missed = [
            (spec, why or f"{instance} was still waiting for it when the run ended")
            for instance, why in self._interrupted.items()
            if why != ""
        ]
        if self.interrupt_count > 0 and armed == 0:
            missed.append((spec, "no instance was launched"))
        elif self.interrupt_count > 0:
            missed.append(
                (spec, f"only {armed} of the {armed + self.interrupt_count} instances to interrupt were launched")
            )
        return missed

    def _missed_lambda_errors(self) -> list[tuple[str, str]]:
        missed = []
        for name, left in self.lambda_errors.items():
            asked = self._asked_errors.get(name, left)
            if left > 0:
                invoked = asked - left
                why = f"{name} was invoked only {invoked} time(s)" if invoked else f"{name} was never invoked"
                missed.append((f"lambda-error={name}:{asked}", f"{why}, {asked} failure(s) were asked for"))
        return missed


# --- parsing -----------------------------------------------------------------------------------


def _parse_no_capacity(faults: Faults, spec: str, value: str) -> None:
    types = frozenset(t.strip() for t in value.split(",") if t.strip())
    if not types:
        raise FaultError(
            f"--inject {spec!r}: no-capacity needs instance types, e.g. no-capacity=g5.xlarge; {FAULT_HELP}"
        )
    faults.no_capacity = faults.no_capacity | types


def _parse_capacity_outage(faults: Faults, spec: str, value: str) -> None:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise FaultError(
            f"--inject {spec!r}: capacity-outage needs a finite number of seconds > 0, "
            f"e.g. capacity-outage=20; {FAULT_HELP}"
        )
    faults.capacity_outage = seconds


def _parse_interrupt_after(faults: Faults, spec: str, value: str) -> None:
    seconds_text, _, count_text = value.partition(":")
    try:
        seconds, count = float(seconds_text), int(count_text or "1")
    except ValueError:
        seconds, count = math.nan, 0
    if not (math.isfinite(seconds) and seconds >= 0 and count >= 1):
        raise FaultError(
            f"--inject {spec!r}: interrupt-after needs a finite number of seconds >= 0 and an optional count >= 1, "
            f"e.g. interrupt-after=8 or interrupt-after=8:2; {FAULT_HELP}"
        )
    _set_interruption(faults, spec, Interruption(seconds=seconds), count)


def _parse_interrupt_at(faults: Faults, spec: str, value: str) -> None:
    event, _, nth_text = value.partition(":")
    if event != "checkpoint" or not (nth_text or "1").isdigit() or int(nth_text or "1") < 1:
        raise FaultError(
            f"--inject {spec!r}: interrupt-at needs checkpoint[:<n>] with n >= 1, "
            f"e.g. interrupt-at=checkpoint or interrupt-at=checkpoint:3; {FAULT_HELP}"
        )
    _set_interruption(faults, spec, Interruption(checkpoint=int(nth_text or "1")), 1)


def _set_interruption(faults: Faults, spec: str, interruption: Interruption, count: int) -> None:
    if faults.interruption is not None:
        raise FaultError(f"--inject {spec!r}: only one interrupt-at or interrupt-after per run; {FAULT_HELP}")
    faults.interruption, faults.interrupt_count = interruption, count


def _parse_lambda_error(faults: Faults, spec: str, value: str) -> None:
    function, _, count = value.rpartition(":")
    if not function or not count.isdigit() or int(count) < 1:
        raise FaultError(
            f"--inject {spec!r}: lambda-error needs <function>:<count> with count >= 1, "
            f"e.g. lambda-error=PollCompletion:1; {FAULT_HELP}"
        )
    tasks = lambda_tasks()
    if _normalised(function) not in {_normalised(task) for task in tasks}:
        raise FaultError(
            f"--inject {spec!r}: no task function {function!r} (the tasks: {', '.join(tasks)}, "
            f"or their state names, e.g. PollCompletion); {FAULT_HELP}"
        )
    faults.lambda_errors[function] = faults.lambda_errors.get(function, 0) + int(count)
    faults._asked_errors[function] = faults._asked_errors.get(function, 0) + int(count)


_PARSERS = {
    "no-capacity": _parse_no_capacity,
    "capacity-outage": _parse_capacity_outage,
    "interrupt-at": _parse_interrupt_at,
    "interrupt-after": _parse_interrupt_after,
    "lambda-error": _parse_lambda_error,
}
