"""Snapshots in their own folder, the newest usable one tried first, shuffling that resumes."""

import logging
import os

import chainer
import numpy as np
import pytest

from training_payload.resume import (
    Checkpointer,
    ResumableSerialIterator,
    ResumableShuffle,
    SnapshotError,
    load_snapshot,
    snapshot_candidates,
    snapshot_iterations,
)


class FakeTrainer:
    """Just enough of a Trainer for the Checkpointer: an iteration and something to serialize."""

    def __init__(self, iteration, value=0.0, size=1):
        self.updater = self
        self.iteration = iteration
        self.value = np.full(size, value, dtype=np.float32)

    def serialize(self, serializer):
        self.iteration = serializer("iteration", self.iteration)
        serializer("value", self.value)


def test_given_snapshots_when_saving_more_than_keep_then_only_the_newest_remain(tmp_path):
    checkpointer = Checkpointer(str(tmp_path / "ckpt"), keep=2)

    for iteration in (3, 6, 9, 12):
        checkpointer.save(FakeTrainer(iteration))

    assert snapshot_iterations(str(tmp_path / "ckpt")) == [9, 12]


def test_given_older_mtime_on_the_newest_snapshot_when_resuming_then_the_highest_iteration_wins(tmp_path):
    """A sync from S3 may not keep mtimes; the iteration in the name decides."""
    checkpointer = Checkpointer(str(tmp_path), keep=5)
    checkpointer.save(FakeTrainer(20, value=2.0))
    checkpointer.save(FakeTrainer(10, value=1.0))
    os.utime(tmp_path / "snapshot_iter_20", (1_000_000, 1_000_000))

    candidates = snapshot_candidates(str(tmp_path))
    trainer = FakeTrainer(0)

    assert candidates == [str(tmp_path / "snapshot_iter_20"), str(tmp_path / "snapshot_iter_10")]
    assert load_snapshot(candidates[0], trainer) == 20 and trainer.value[0] == 2.0


def test_given_no_checkpoint_folder_when_resuming_then_nothing_to_try(tmp_path):
    assert snapshot_candidates(str(tmp_path / "absent")) == []


def test_given_whatever_the_folder_holds_when_listing_then_snapshot_files_tried_the_rest_logged(tmp_path, caplog):
    Checkpointer(str(tmp_path)).save(FakeTrainer(10))
    (tmp_path / "snapshot_iter_30.partial").write_bytes(b"killed mid-write")  # our own leftover
    (tmp_path / "snapshot_iter_40").mkdir()
    (tmp_path / "snapshot_iter_41.partial").mkdir()
    (tmp_path / "snapshot_iter_50.tmp").write_bytes(b"someone else's temporary file")
    (tmp_path / "snapshot_iter_60").symlink_to(tmp_path / "gone")
    (tmp_path / "snapshot_iter_70").write_bytes(b"")
    for name in ("notes.txt", "model.npz", "log.json"):
        (tmp_path / name).write_text("mine")

    with caplog.at_level(logging.INFO):
        candidates = snapshot_candidates(str(tmp_path))

    assert candidates == [str(tmp_path / "snapshot_iter_70"), str(tmp_path / "snapshot_iter_10")]
    assert not (tmp_path / "snapshot_iter_30.partial").exists()
    assert f"removed {tmp_path / 'snapshot_iter_30.partial'}, left by a save" in caplog.text
    for name, why in (
        ("snapshot_iter_40", "not a file"),
        ("snapshot_iter_41.partial", "not named"),
        ("snapshot_iter_50.tmp", "not named"),
        ("snapshot_iter_60", "not a file"),
    ):
        assert f"skipped {tmp_path / name}: {why}" in caplog.text
    assert "ignored what is not a snapshot (snapshot_iter_<N>) in " in caplog.text
    assert "log.json, model.npz, notes.txt" in caplog.text
    left_alone = ["snapshot_iter_40", "snapshot_iter_41.partial", "snapshot_iter_50.tmp", "notes.txt"]
    assert all((tmp_path / name).exists() for name in left_alone)


def first_half(path):
    return path.read_bytes()[: path.stat().st_size // 2]


def flip_middle_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize(
    "damage, reason",
    [
        pytest.param(lambda good: b"", r"empty file \(0 bytes\), left by a save that was killed", id="zero bytes"),
        pytest.param(first_half, r"not a complete npz archive: cut short", id="truncated"),
        pytest.param(lambda good: b"PK\x03\x04 not really", r"not a complete npz archive", id="zip magic only"),
        pytest.param(lambda good: b"\x93NUMPY" + bytes(100), r"not a complete npz archive", id="an npy, not an npz"),
        pytest.param(flip_middle_byte, r"unreadable \((BadZipFile|error|ValueError)", id="corrupt byte"),
    ],
)
def test_given_a_damaged_snapshot_when_loading_then_error_says_why_and_the_trainer_is_untouched(
    tmp_path, damage, reason
):
    Checkpointer(str(tmp_path)).save(FakeTrainer(10, value=1.0, size=4096))
    good = tmp_path / "snapshot_iter_10"
    damaged = tmp_path / "snapshot_iter_20"
    damaged.write_bytes(damage(good))
    trainer = FakeTrainer(0, value=5.0, size=4096)

    with pytest.raises(SnapshotError, match=reason):
        load_snapshot(str(damaged), trainer)

    assert trainer.iteration == 0 and (trainer.value == 5.0).all()


@pytest.mark.parametrize(
    "saved, reason",
    [
        (
            FakeTrainer(10, size=3),
            r"'value' has shape \(3,\) there, \(1,\) in this model: a snapshot "
            r"of a different model",
        ),
        (chainer.links.Linear(2, 2), r"it has no 'iteration': written by another model or trainer"),
    ],
)
def test_given_another_models_snapshot_when_loading_then_error_names_the_entry(tmp_path, saved, reason):
    chainer.serializers.save_npz(str(tmp_path / "snapshot_iter_10"), saved)

    with pytest.raises(SnapshotError, match=reason):
        load_snapshot(str(tmp_path / "snapshot_iter_10"), FakeTrainer(0))


def test_given_a_directory_named_like_the_next_snapshot_when_saving_then_skipped_and_logged(tmp_path, caplog):
    checkpointer = Checkpointer(str(tmp_path), keep=2)
    checkpointer.save(FakeTrainer(3))
    (tmp_path / "snapshot_iter_6").mkdir()
    (tmp_path / "snapshot_iter_9.partial").mkdir()

    with caplog.at_level(logging.WARNING):
        assert checkpointer.save(FakeTrainer(6)) is None
        assert checkpointer.save(FakeTrainer(9)) is None
    checkpointer.save(FakeTrainer(12))

    for name in ("snapshot_iter_6", "snapshot_iter_9.partial"):
        assert f"not saved: {tmp_path / name} is taken by a directory" in caplog.text
        assert (tmp_path / name).is_dir()
    assert snapshot_iterations(str(tmp_path)) == [3, 12]


def test_given_an_unusable_snapshot_ahead_of_training_when_saving_then_the_good_ones_are_kept(tmp_path):
    """Resumed from 10 past a broken snapshot_iter_90: rotation must not count it as the newest."""
    (tmp_path / "snapshot_iter_90").write_bytes(b"")
    checkpointer = Checkpointer(str(tmp_path), keep=1)

    for iteration in (10, 20):
        checkpointer.save(FakeTrainer(iteration))

    assert snapshot_iterations(str(tmp_path)) == [20, 90]


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
