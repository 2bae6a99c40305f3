"""Everything that lets a reclaimed spot instance's training continue where it stopped.

- `Checkpointer`: trainer snapshots in a folder of their own (the agent syncs it to S3 and back),
  written atomically, newest few kept.
- `snapshot_candidates` and `load_snapshot`: what a restart may resume from, newest first, and
  loading one of them; whatever else the folder holds (a killed save, an empty or truncated file,
  a directory, another model's snapshot, unrelated files) is skipped with a log line saying why.
- `ResumableShuffle`: the iterator's shuffle RNG, saved in the snapshot so later epochs see the
  same order as an uninterrupted run.
- `StopOnSignal`: SIGTERM sets a flag; the next iteration boundary snapshots and stops.
"""

import logging
import os
import re
import signal
import zipfile

import numpy as np
from chainer import serializer as serializer_module
from chainer import serializers, training
from chainer.iterators import SerialIterator, ShuffleOrderSampler
from chainer.serializers import NpzDeserializer

logger = logging.getLogger("training_payload.resume")

SNAPSHOT_PREFIX = "snapshot_iter_"
SNAPSHOT_PATTERN = re.compile(rf"^{SNAPSHOT_PREFIX}(\d+)$")
TEMP_SUFFIX = ".partial"
LEFTOVER_PATTERN = re.compile(rf"^{SNAPSHOT_PREFIX}\d+{re.escape(TEMP_SUFFIX)}$")


class SnapshotError(Exception):
    """Why a file in the checkpoint folder cannot be resumed from."""


class MissingEntry(KeyError):
    """A KeyError, as Chainer expects: its triggers then rebuild their state from the updater."""


def snapshot_name(iteration: int) -> str:
    return f"{SNAPSHOT_PREFIX}{iteration}"


def snapshot_iterations(directory: str) -> list:
    """Iterations that have a snapshot file in `directory`, ascending."""
    if not os.path.isdir(directory):
        return []
    found = (
        SNAPSHOT_PATTERN.match(name) for name in os.listdir(directory) if os.path.isfile(os.path.join(directory, name))
    )
    return sorted(int(match.group(1)) for match in found if match)


def snapshot_candidates(directory: str) -> list:
    """Paths of the snapshots to try, highest iteration first.

    Our own killed saves (`*.partial`) are removed; every other entry is left alone and logged.
    The iteration in the name decides, not mtime: a sync from S3 may not keep mtimes.
    """
    if not os.path.isdir(directory):
        return []
    unrelated = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if LEFTOVER_PATTERN.match(name) and os.path.isfile(path):
            remove_leftover(path)
        elif not name.startswith(SNAPSHOT_PREFIX):
            unrelated.append(name)
        elif not SNAPSHOT_PATTERN.match(name):
            logger.warning("resume: skipped %s: not named %s<N> (a temporary or renamed copy?)", path, SNAPSHOT_PREFIX)
        elif not os.path.isfile(path):
            logger.warning("resume: skipped %s: not a file (a directory or a broken link)", path)
    if unrelated:
        more = len(unrelated) - 5
        shown = ", ".join(unrelated[:5]) + (f" and {more} more" if more > 0 else "")
        logger.info("resume: ignored what is not a snapshot (%s<N>) in %s: %s", SNAPSHOT_PREFIX, directory, shown)
    return [os.path.join(directory, snapshot_name(i)) for i in reversed(snapshot_iterations(directory))]


def remove_leftover(path: str) -> None:
    try:
        os.remove(path)
        logger.info("resume: removed %s, left by a save that was killed", path)
    except OSError as error:
        logger.warning("resume: skipped %s, left by a killed save, and could not remove it: %s", path, error)


def load_snapshot(path: str, trainer) -> int:
    """Load the snapshot at `path` into `trainer`; return its iteration or raise `SnapshotError`.

    The whole archive is read before the trainer is touched, so a truncated file changes nothing.
    Another model's snapshot fails part-way through and may leave the trainer half-loaded:
    callers try each snapshot in a newly built trainer.
    """
    arrays = read_snapshot(path)
    try:
        NamingDeserializer(arrays).load(trainer)
    except SnapshotError:
        raise
    except MissingEntry as error:
        raise SnapshotError(error.args[0]) from error
    except Exception as error:  # whatever a foreign archive makes Chainer raise: not resumable
        raise SnapshotError(f"does not load into this trainer ({type(error).__name__}: {error})") from error
    return trainer.updater.iteration


def read_snapshot(path: str) -> dict:
    """Every array in the npz at `path`, read (and CRC-checked) in full, or `SnapshotError`."""
    try:
        size = os.path.getsize(path)
        if size and zipfile.is_zipfile(path):
            with np.load(path, allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
    except Exception as error:  # any failure to read it makes it unusable, whatever the cause
        raise SnapshotError(f"unreadable ({type(error).__name__}: {error})") from error
    if not size:
        raise SnapshotError("empty file (0 bytes), left by a save that was killed")
    raise SnapshotError("not a complete npz archive: cut short by a killed save or copy, or not a snapshot at all")


class NamingDeserializer(NpzDeserializer):
    """Chainer's npz loader, its errors naming the entry ("could not broadcast" helps nobody)."""

    def __getitem__(self, key):
        return NamingDeserializer(self.npz, self.path + key.strip("/") + "/")

    def __call__(self, key, value):
        name = self.path + key.lstrip("/")
        if name not in self.npz:
            raise MissingEntry(f"it has no {name!r}: written by another model or trainer set-up")
        stored = self.npz[name]
        if hasattr(value, "shape") and tuple(value.shape) != stored.shape:
            raise SnapshotError(
                f"{name!r} has shape {stored.shape} there, {tuple(value.shape)} "
                f"in this model: a snapshot of a different model"
            )
        return super().__call__(key, value)


class Checkpointer(training.Extension):
    """Snapshot the whole trainer (models, optimizers, iterators, RNG, extension state)."""

    priority = -100  # after the log, plots and evaluation have taken this iteration
    default_name = "checkpointer"

    def __init__(self, directory: str, keep: int = 2):
        self.directory = directory
        self.keep = keep
        self.last_saved_iteration = None

    def __call__(self, trainer):
        self.save(trainer)

    def save(self, trainer):
        """Write this iteration's snapshot; return its path (None if the name is taken)."""
        os.makedirs(self.directory, exist_ok=True)
        iteration = trainer.updater.iteration
        path = os.path.join(self.directory, snapshot_name(iteration))
        for taken in (path, path + TEMP_SUFFIX):
            if os.path.lexists(taken) and not os.path.isfile(taken):
                logger.warning(
                    "checkpoint: not saved: %s is taken by a directory or link. Fix: "
                    "move it out of the checkpoint folder.",
                    taken,
                )
                return None
        # A kill during the write leaves only a .partial file, never a truncated snapshot.
        serializers.save_npz(path + TEMP_SUFFIX, trainer)
        os.replace(path + TEMP_SUFFIX, path)
        self.last_saved_iteration = iteration
        self._remove_old(iteration)
        return path

    def _remove_old(self, saved_iteration: int):
        # Snapshots past this one were skipped as unusable when resuming (training overwrites
        # them on reaching them); counting them as the newest would delete the good ones.
        kept = [i for i in snapshot_iterations(self.directory) if i <= saved_iteration]
        for iteration in kept[: -self.keep]:
            os.remove(os.path.join(self.directory, snapshot_name(iteration)))


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
