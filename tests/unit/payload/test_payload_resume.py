"""Snapshots in their own folder, the newest one found by iteration, shuffling that resumes."""

import os

import chainer
import numpy as np

from training_payload.resume import (
    Checkpointer, ResumableSerialIterator, ResumableShuffle, snapshot_iterations)


class FakeTrainer:
    """Just enough of a Trainer for the Checkpointer: an iteration and something to serialize."""

    def __init__(self, iteration, value=0.0):
        self.updater = self
        self.iteration = iteration
        self.value = np.array([value], dtype=np.float32)

    def serialize(self, serializer):
        self.iteration = serializer("iteration", self.iteration)
        serializer("value", self.value)


def test_given_snapshots_when_saving_more_than_keep_then_only_the_newest_remain(tmp_path):
    checkpointer = Checkpointer(str(tmp_path / "ckpt"), keep=2)

    for iteration in (3, 6, 9, 12):
        checkpointer.save(FakeTrainer(iteration))

    assert snapshot_iterations(str(tmp_path / "ckpt")) == [9, 12]


def test_given_older_mtime_on_the_newest_snapshot_when_loading_then_the_highest_iteration_wins(
        tmp_path):
    """A sync from S3 may not keep mtimes; the iteration in the name decides."""
    checkpointer = Checkpointer(str(tmp_path), keep=5)
    checkpointer.save(FakeTrainer(20, value=2.0))
    checkpointer.save(FakeTrainer(10, value=1.0))
    os.utime(tmp_path / "snapshot_iter_20", (1_000_000, 1_000_000))
    (tmp_path / "snapshot_iter_30.partial").write_bytes(b"killed mid-write")

    trainer = FakeTrainer(0)
    resumed = checkpointer.load_latest(trainer)

    assert resumed == 20 and trainer.value[0] == 2.0
    assert not (tmp_path / "snapshot_iter_30.partial").exists()


def test_given_no_snapshot_when_loading_then_none_and_the_trainer_is_untouched(tmp_path):
    trainer = FakeTrainer(0, value=5.0)

    assert Checkpointer(str(tmp_path / "absent")).load_latest(trainer) is None
    assert trainer.iteration == 0 and trainer.value[0] == 5.0


def epoch_orders(iterator, epochs):
    orders = []
    for _ in range(epochs):
        batch = iterator.next()
        orders.append([int(x) for x in batch])
    return orders


def test_given_a_restored_iterator_then_later_epochs_shuffle_exactly_like_the_original(tmp_path):
    original = ResumableSerialIterator(np.arange(20), batch_size=20, seed=7)
    epoch_orders(original, 2)
    chainer.serializers.save_npz(str(tmp_path / "iterator.npz"), original)
    expected = epoch_orders(original, 3)

    restored = ResumableSerialIterator(np.arange(20), batch_size=20, seed=999)
    chainer.serializers.load_npz(str(tmp_path / "iterator.npz"), restored)

    assert epoch_orders(restored, 3) == expected
    assert len(set(map(tuple, expected))) == 3  # really reshuffled every epoch


def test_given_the_same_seed_then_shuffle_samplers_agree_and_another_seed_differs():
    indices = np.arange(50)

    same = [ResumableShuffle(1)(indices, 0) for _ in range(2)]
    other = ResumableShuffle(2)(indices, 0)

    assert list(same[0]) == list(same[1]) and list(same[0]) != list(other)
