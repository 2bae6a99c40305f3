"""Faults a user can inject into the emulator by name, e.g. `interrupt-after=4`.

Each fault mimics something AWS really does to a spot job, so the workflow's recovery paths can be
watched on a laptop: a pool with no capacity, a reclaimed instance, a Lambda service hiccup.
"""
from __future__ import annotations

import dataclasses
import threading

FAULT_HELP = (
    "no-capacity=<type>[,<type>] (RunInstances fails with InsufficientInstanceCapacity), "
    "interrupt-after=<seconds>[:<count>] (spot notice that long after the training command starts on "
    "each of the first <count> instances, default 1), "
    "lambda-error=<function>:<count> (that function's first <count> invocations fail transiently)"
)


class FaultError(ValueError):
    """A fault spec the emulator cannot understand."""


@dataclasses.dataclass
class Faults:
    no_capacity: frozenset[str] = frozenset()
    interrupt_after: float | None = None
    interrupt_count: int = 1  # instances to interrupt; the ones after them run undisturbed
    lambda_errors: dict[str, int] = dataclasses.field(default_factory=dict)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def parse(cls, specs: list[str] | tuple[str, ...]) -> "Faults":
        faults = cls()
        for spec in specs:
            name, sep, value = spec.partition("=")
            if not sep or not value.strip():
                raise FaultError(f"fault {spec!r}: expected NAME=VALUE; known faults: {FAULT_HELP}")
            parser = _PARSERS.get(name.strip())
            if parser is None:
                raise FaultError(f"fault {spec!r}: unknown name {name!r}; known faults: {FAULT_HELP}")
            parser(faults, spec, value.strip())
        return faults

    def describe(self) -> str:
        """The active faults in the syntax `parse` reads ("" when none)."""
        parts = []
        if self.no_capacity:
            parts.append("no-capacity=" + ",".join(sorted(self.no_capacity)))
        if self.interrupt_after is not None and self.interrupt_count > 0:
            parts.append(f"interrupt-after={self.interrupt_after:g}:{self.interrupt_count}")
        parts.extend(f"lambda-error={name}:{count}" for name, count in self.lambda_errors.items() if count > 0)
        return " ".join(parts)

    def take_interrupt(self) -> bool:
        """True if the instance booting now is one to reclaim; counts it down (thread-safe)."""
        with self._lock:
            if self.interrupt_after is None or self.interrupt_count < 1:
                return False
            self.interrupt_count -= 1
            return True

    def take_lambda_error(self, function_name: str) -> bool:
        """True if this invocation of the function must fail; counts it down (thread-safe)."""
        with self._lock:
            for key, remaining in self.lambda_errors.items():
                if remaining > 0 and _names_function(key, function_name):
                    self.lambda_errors[key] = remaining - 1
                    return True
        return False


def _names_function(key: str, function_name: str) -> bool:
    """CDK names functions `<Stack>-<ConstructId><hash>`; a fault names the construct or task."""
    wanted = key.replace("_", "").lower()
    return wanted in function_name.replace("_", "").lower()


def _parse_no_capacity(faults: Faults, spec: str, value: str) -> None:
    types = frozenset(t.strip() for t in value.split(",") if t.strip())
    if not types:
        raise FaultError(f"fault {spec!r}: no-capacity needs instance types, e.g. no-capacity=g5.xlarge")
    faults.no_capacity = faults.no_capacity | types


def _parse_interrupt_after(faults: Faults, spec: str, value: str) -> None:
    seconds_text, _, count_text = value.partition(":")
    try:
        seconds, count = float(seconds_text), int(count_text or "1")
    except ValueError:
        seconds, count = -1.0, 0
    if seconds < 0 or count < 1:
        raise FaultError(
            f"fault {spec!r}: interrupt-after needs seconds >= 0 and an optional count >= 1, "
            "e.g. interrupt-after=8 or interrupt-after=8:2"
        )
    faults.interrupt_after, faults.interrupt_count = seconds, count


def _parse_lambda_error(faults: Faults, spec: str, value: str) -> None:
    function, _, count = value.rpartition(":")
    if not function or not count.isdigit() or int(count) < 1:
        raise FaultError(
            f"fault {spec!r}: lambda-error needs <function>:<count> with count >= 1, "
            "e.g. lambda-error=PollCompletion:1"
        )
    faults.lambda_errors[function] = faults.lambda_errors.get(function, 0) + int(count)


_PARSERS = {
    "no-capacity": _parse_no_capacity,
    "interrupt-after": _parse_interrupt_after,
    "lambda-error": _parse_lambda_error,
}
