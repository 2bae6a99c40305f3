"""The embedded AWS emulator: the real stack, deployed to moto on loopback, with simulated instances.

    with Emulator(Path(".spottrain")) as emulator:
        arn = emulator.start_job(spec)
        final = emulator.wait(arn, timeout=600)

See docs/ARCHITECTURE.md for the flow; `bridge.py` lists everything moto cannot do and how it is
bridged. Everything the emulator writes stays under its workdir:

    cdk.out/<key>/              synthesized app, reused while sources and context are unchanged
    cdk.out/jsii-cache/         the CDK's JavaScript packages, unpacked once
    assets/                     zipped file assets, by content hash
    runs/<time>/lambda/         each function's unpacked code and functions.log (their output)
    runs/<time>/instances/<id>/ a simulated instance: user-data.sh, console.log, the agent's work/
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Emulator", "Faults", "FaultError", "DEFAULT_WORKDIR", "STACK_NAME", "capacity_wait_seconds"]

if TYPE_CHECKING:
    from spottrain.local.emulator import (
        DEFAULT_WORKDIR,
        STACK_NAME,
        Emulator,
        FaultError,
        Faults,
        capacity_wait_seconds,
    )


def __getattr__(name: str) -> Any:
    """The emulator's names, imported on first use (PEP 562).

    The emulator pulls in boto3 and every part of the stack (2 s); the modules the simulated instances
    run on their own (`sandbox`, `aws_shim`, `checkpoint_watch`) import only their siblings and must start fast.
    Only the names above: `from spottrain.local import processes` then finds the submodule itself.
    """
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from spottrain.local import emulator

    return getattr(emulator, name)
