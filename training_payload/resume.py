"""Everything that lets a reclaimed spot instance's training continue where it stopped.

- `Checkpointer`: trainer snapshots in a folder of their own (the agent syncs it to S3 and back),
  written atomically, newest few kept, the newest loaded on start.
- `ResumableShuffle`: the iterator's shuffle RNG, saved in the snapshot so later epochs see the
  same order as an uninterrupted run.
- `StopOnSignal`: SIGTERM sets a flag; the next iteration boundary snapshots and stops.
"""

import os
import re
import signal

import numpy as np
from chainer import serializer as serializer_module
from chainer import serializers, training
from chainer.iterators import SerialIterator, ShuffleOrderSampler

SNAPSHOT_PATTERN = re.compile(r"^snapshot_iter_(\d+)$")
TEMP_SUFFIX = ".partial"


def snapshot_name(iteration: int) -> str:
    return f"snapshot_iter_{iteration}"


def snapshot_iterations(directory: str) -> list:
    """Iterations that have a complete snapshot in `directory`, ascending."""
    if not os.path.isdir(directory):
        return []
    found = (SNAPSHOT_PATTERN.match(name) for name in os.listdir(directory))
    return sorted(int(match.group(1)) for match in found if match)


class Checkpointer(training.Extension):
    """Snapshot the whole trainer (models, optimizers, iterators, RNG, extension state).

    The newest snapshot is chosen by the iteration in its name, not by mtime: a sync from S3 may
    or may not preserve mtimes, the iteration count never lies.
    """

    priority = -100  # after the log, plots and evaluation have taken this iteration
    default_name = "checkpointer"

    def __init__(self, directory: str, keep: int = 2):
        self.directory = directory
        self.keep = keep
        self.last_saved_iteration = None

    def __call__(self, trainer):
        self.save(trainer)

    def save(self, trainer) -> str:
        os.makedirs(self.directory, exist_ok=True)
        iteration = trainer.updater.iteration
        path = os.path.join(self.directory, snapshot_name(iteration))
        # A kill during the write leaves only a .partial file, never a truncated snapshot.
        serializers.save_npz(path + TEMP_SUFFIX, trainer)
        os.replace(path + TEMP_SUFFIX, path)
        self.last_saved_iteration = iteration
        self._remove_old()
        return path

    def load_latest(self, trainer):
        """Load the newest snapshot into `trainer`; return its iteration, or None if none."""
        self._remove_partials()
        iterations = snapshot_iterations(self.directory)
        if not iterations:
            return None
        path = os.path.join(self.directory, snapshot_name(iterations[-1]))
        serializers.load_npz(path, trainer)
        self.last_saved_iteration = trainer.updater.iteration
        return trainer.updater.iteration

    def _remove_old(self):
        for iteration in snapshot_iterations(self.directory)[:-self.keep]:
            os.remove(os.path.join(self.directory, snapshot_name(iteration)))

    def _remove_partials(self):
        if os.path.isdir(self.directory):
            for name in os.listdir(self.directory):
                if name.endswith(TEMP_SUFFIX):
                    os.remove(os.path.join(self.directory, name))


class ResumableShuffle(ShuffleOrderSampler):
    """A shuffle order sampler whose RNG state travels in the iterator's snapshot."""

    def __init__(self, seed: int):
        super().__init__(np.random.RandomState(seed))

    def serialize(self, serializer):
        kind, keys, position, has_gauss, cached_gaussian = self._random.get_state()
        keys = serializer("keys", keys)
        position = serializer("position", int(position))
        has_gauss = serializer("has_gauss", int(has_gauss))
        cached_gaussian = serializer("cached_gaussian", float(cached_gaussian))
        if isinstance(serializer, serializer_module.Deserializer):
            self._random.set_state((kind, keys, position, has_gauss, cached_gaussian))


class ResumableSerialIterator(SerialIterator):
    """A shuffling `SerialIterator` that also snapshots its shuffle RNG."""

    def __init__(self, dataset, batch_size: int, seed: int):
        super().__init__(dataset, batch_size, order_sampler=ResumableShuffle(seed))

    def serialize(self, serializer):
        super().serialize(serializer)
        self.order_sampler.serialize(serializer["order_sampler"])


class TrainingInterrupted(Exception):
    """Raised at an iteration boundary after SIGTERM, once the snapshot is on disk."""

    def __init__(self, iteration: int):
        super().__init__(f"stopped by SIGTERM at iteration {iteration}")
        self.iteration = iteration


class StopOnSignal(training.Extension):
    """Turn SIGTERM into "snapshot at the next iteration boundary, then stop".

    The handler only sets a flag: snapshotting inside a signal handler could catch the model
    half-updated. One iteration is short, so the agent's grace period is enough.
    """

    priority = -101  # last: every other extension, the checkpointer included, saw this iteration
    default_name = "stop_on_signal"

    def __init__(self, checkpointer: Checkpointer, signum=signal.SIGTERM):
        self.checkpointer = checkpointer
        self.signum = signum
        self.requested = False
        self._previous_handler = None

    def initialize(self, trainer):
        self._previous_handler = signal.signal(self.signum, self._request_stop)

    def finalize(self):
        if self._previous_handler is not None:
            signal.signal(self.signum, self._previous_handler)
            self._previous_handler = None

    def _request_stop(self, signum, frame):
        self.requested = True

    def __call__(self, trainer):
        if not self.requested:
            return
        if self.checkpointer.last_saved_iteration != trainer.updater.iteration:
            self.checkpointer.save(trainer)
        raise TrainingInterrupted(trainer.updater.iteration)
