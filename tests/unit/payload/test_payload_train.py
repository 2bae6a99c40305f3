"""train.py end to end on generated data: learning, outputs, kill -9 / SIGTERM and resume."""

import json
import logging
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import chainer
import numpy as np
import pytest

from training_payload import train
from training_payload.model import ConvBase, MultiHeadNet, build_heads
from training_payload.resume import snapshot_iterations

REPO = Path(__file__).resolve().parents[3]
TRAIN_SCRIPT = REPO / "training_payload" / "train.py"
ITERATIONS_PER_EPOCH = 10  # small_data: 160 images at batch 16
SNAPSHOT_INTERVAL = 3  # never on an epoch boundary before iteration 30: resumes are mid-epoch


def args_for(data, out, epochs, *extra):
    return [
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--batch-size",
        "16",
        "--snapshot-interval",
        str(SNAPSHOT_INTERVAL),
        *extra,
    ]


def read_metrics(out):
    return json.loads((Path(out) / "metrics.json").read_text())


def model_arrays(out):
    with np.load(str(Path(out) / "model.npz")) as npz:
        return {key: npz[key] for key in npz.files}


def start_script(argv):
    return subprocess.Popen(
        [sys.executable, str(TRAIN_SCRIPT), *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_snapshot(folder, at_least, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(i >= at_least for i in snapshot_iterations(str(folder))):
            return
        assert process.poll() is None, f"training ended early:\n{process.stdout.read()}"
        time.sleep(0.01)
    pytest.fail(f"no snapshot at iteration >= {at_least} within {timeout}s")


@pytest.fixture(scope="module")
def uninterrupted(small_data, tmp_path_factory):
    """Reference runs, one per epoch count, trained without interruption."""
    runs = {}

    def run(epochs):
        if epochs not in runs:
            out = tmp_path_factory.mktemp(f"reference_{epochs}_epochs")
            assert train.main(args_for(small_data, out, epochs)) == 0
            runs[epochs] = out
        return runs[epochs]

    return run


def test_given_generated_data_when_training_then_easy_heads_beat_chance_and_outputs_exist(learnable_data, tmp_path):
    assert (
        train.main(["--data", str(learnable_data), "--out", str(tmp_path), "--epochs", "3", "--batch-size", "16"]) == 0
    )

    metrics = read_metrics(tmp_path)
    heads = metrics["heads"]
    assert heads["colour"]["accuracy"] > 0.7, heads  # chance: 1/3
    assert heads["position"]["accuracy"] > 0.7, heads  # chance: 1/4
    assert heads["colour"]["classes"] == ["blue", "green", "red"]
    assert metrics["iterations"] == 90 and metrics["epochs"] == 3
    assert metrics["resumed_from_iteration"] is None
    assert metrics["images_per_second"] > 0 and metrics["device"] == "cpu"
    for head in heads:
        assert (tmp_path / f"curves_{head}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = json.loads((tmp_path / "log.json").read_text())
    assert [entry["epoch"] for entry in log] == [1, 2, 3]
    assert all("validation/shape/accuracy" in entry and "size/loss" in entry for entry in log)
    model = MultiHeadNet(ConvBase(32), build_heads({h: len(m["classes"]) for h, m in heads.items()}))
    chainer.serializers.load_npz(str(tmp_path / "model.npz"), model)


@pytest.mark.parametrize(
    "epochs, kill_after",
    [
        (1, 3),  # killed and finished within the first epoch: weights, optimizers, iterator position
        (3, 13),  # killed in epoch 2, then epoch 3 reshuffles: needs the saved shuffle RNG too
    ],
)
def test_given_kill_9_mid_epoch_when_rerun_then_final_weights_equal_an_uninterrupted_run(
    small_data, tmp_path, uninterrupted, epochs, kill_after
):
    argv = args_for(small_data, tmp_path, epochs)
    process = start_script(argv)
    wait_for_snapshot(tmp_path, kill_after, process)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL

    assert train.main(argv) == 0

    resumed = read_metrics(tmp_path)["resumed_from_iteration"]
    assert resumed >= kill_after and resumed % ITERATIONS_PER_EPOCH != 0
    assert resumed < epochs * ITERATIONS_PER_EPOCH
    expected = model_arrays(uninterrupted(epochs))
    actual = model_arrays(tmp_path)
    assert expected.keys() == actual.keys()
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def test_given_sigterm_when_training_then_snapshot_at_next_iteration_exit_143_and_resume_there(
    small_data, tmp_path, uninterrupted, caplog
):
    out, checkpoints = tmp_path / "out", tmp_path / "checkpoints"
    argv = args_for(small_data, out, 3, "--checkpoint-dir", str(checkpoints))
    process = start_script(argv)
    wait_for_snapshot(checkpoints, 3, process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0]

    assert process.returncode == 143, output
    stopped_at = max(snapshot_iterations(str(checkpoints)))
    assert f"stopped by SIGTERM at iteration {stopped_at}" in output
    assert "\x1b" not in output and "iteration 2/30" in output  # plain lines off a terminal
    assert not snapshot_iterations(str(out))  # snapshots only in the checkpoint dir

    with caplog.at_level(logging.INFO):
        assert train.main(argv) == 0

    assert f"resumed from iteration {stopped_at}" in caplog.text
    assert read_metrics(out)["resumed_from_iteration"] == stopped_at
    expected = model_arrays(uninterrupted(3))
    for key, value in model_arrays(out).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)


def test_given_a_finished_run_when_rerun_then_nothing_is_retrained(small_data, tmp_path):
    argv = args_for(small_data, tmp_path, 1)
    assert train.main(argv) == 0
    first = model_arrays(tmp_path)

    assert train.main(argv) == 0

    metrics = read_metrics(tmp_path)
    assert metrics["resumed_from_iteration"] == metrics["iterations"] == ITERATIONS_PER_EPOCH
    assert metrics["images_per_second"] is None
    for key, value in model_arrays(tmp_path).items():
        np.testing.assert_array_equal(value, first[key])


def another_models_snapshot(source, target):
    """`source` as if the data had one more colour: the colour head and its Adam state grow a row.

    Loading it fails at the colour head, after the iterator, the base and the shape head loaded.
    """
    with np.load(str(source)) as npz:
        arrays = {key: npz[key] for key in npz.files}
    for key, value in arrays.items():
        if "colour/" in key and value.ndim:
            arrays[key] = np.concatenate([value, value[:1]])
    with open(target, "wb") as f:
        np.savez_compressed(f, **arrays)


def test_given_unusable_files_newer_than_a_good_snapshot_when_rerun_then_resumes_from_the_good_one(
    small_data, tmp_path, uninterrupted, caplog
):
    reference, checkpoints = uninterrupted(1), tmp_path / "checkpoints"
    checkpoints.mkdir()
    shutil.copy(reference / "snapshot_iter_9", checkpoints)
    cut = (reference / "snapshot_iter_10").read_bytes()
    (checkpoints / "snapshot_iter_10").write_bytes(cut[: len(cut) // 2])  # killed mid-copy
    another_models_snapshot(reference / "snapshot_iter_10", checkpoints / "snapshot_iter_20")
    (checkpoints / "snapshot_iter_30").write_bytes(b"")
    (checkpoints / "snapshot_iter_40").mkdir()
    out = tmp_path / "out"

    with caplog.at_level(logging.INFO):
        assert train.main(args_for(small_data, out, 1, "--checkpoint-dir", str(checkpoints))) == 0

    for name, why in (
        ("snapshot_iter_40", "not a file"),
        ("snapshot_iter_30", "empty file"),
        ("snapshot_iter_20", "'updater/model:colour/"),  # W or b: a set's order
        ("snapshot_iter_10", "not a complete npz archive"),
    ):
        assert f"skipped {checkpoints / name}: {why}" in caplog.text
    assert re.search(
        r"colour/[Wb]' has shape \(4(, 64)?,?\) there, \(3(, 64)?,?\) in this model: "
        r"a snapshot of a different model",
        caplog.text,
    )
    assert read_metrics(out)["resumed_from_iteration"] == 9
    for key, value in model_arrays(out).items():
        np.testing.assert_array_equal(value, model_arrays(reference)[key], err_msg=key)


def test_given_only_unusable_snapshots_when_run_then_trains_from_the_start_as_if_none_were_there(
    small_data, tmp_path, uninterrupted, caplog
):
    """Another model's snapshot fails half-way through loading: none of it may leak into the run."""
    reference, checkpoints = uninterrupted(1), tmp_path / "checkpoints"
    checkpoints.mkdir()
    another_models_snapshot(reference / "snapshot_iter_10", checkpoints / "snapshot_iter_20")
    (checkpoints / "snapshot_iter_30").write_bytes(b"PK\x03\x04")
    out = tmp_path / "out"

    with caplog.at_level(logging.INFO):
        assert train.main(args_for(small_data, out, 1, "--checkpoint-dir", str(checkpoints))) == 0

    assert f"no snapshot in {checkpoints} loads; training from the start" in caplog.text
    assert read_metrics(out)["resumed_from_iteration"] is None
    for key, value in model_arrays(out).items():
        np.testing.assert_array_equal(value, model_arrays(reference)[key], err_msg=key)


def test_given_a_snapshot_written_on_a_terminal_when_rerun_off_one_then_it_resumes(small_data, tmp_path, monkeypatch):
    """A terminal run has other progress extensions; their trigger state is not needed."""
    argv = args_for(small_data, tmp_path, 1)
    with monkeypatch.context() as patch:
        terminal = train.progress_extensions
        patch.setattr(train, "progress_extensions", lambda heads, on_tty, *rest: terminal(heads, True, *rest))
        assert train.main(argv) == 0

    assert train.main(argv) == 0

    assert read_metrics(tmp_path)["resumed_from_iteration"] == ITERATIONS_PER_EPOCH


@pytest.mark.parametrize(
    "weights, message",
    [
        ("shape=1,flavour=2", "--loss-weights: unknown head 'flavour'"),
        ("shape=heavy", "--loss-weights: 'shape=heavy' is not head=number"),
        ("shape=-1", "--loss-weights: shape=-1 is negative"),
    ],
)
def test_given_bad_loss_weights_when_starting_then_exit_2_naming_the_flag(
    small_data, tmp_path, caplog, weights, message
):
    assert train.main(args_for(small_data, tmp_path, 1, "--loss-weights", weights)) == 2
    assert message in caplog.text


def test_given_validation_labels_unknown_to_training_when_starting_then_exit_2_naming_the_line(
    small_data, tmp_path, caplog
):
    data = tmp_path / "data"
    data.mkdir()
    (data / "images").symlink_to(small_data / "images")
    lines = (small_data / "train.tsv").read_text().splitlines()
    (data / "train.tsv").write_text("\n".join(lines) + "\n")
    bad = lines[1].split("\t")
    bad[2] = "magenta"
    (data / "val.tsv").write_text("\n".join([lines[0], lines[2], "\t".join(bad)]) + "\n")

    assert train.main(args_for(data, tmp_path / "out", 1)) == 2
    assert "val.tsv line 3: unknown label 'magenta' for head 'colour'" in caplog.text


# ----- a sweep varies the payload through its environment ---------------------------------------


def test_given_learning_rate_and_loss_weights_in_the_environment_when_parsed_then_they_are_the_defaults():
    args = train.parse_args(["--data", "d", "--out", "o"], env={"LEARNING_RATE": "0.01", "LOSS_WEIGHTS": "shape=2"})
    assert (args.learning_rate, args.loss_weights) == (0.01, "shape=2")


def test_given_flags_and_the_environment_when_parsed_then_the_flags_win():
    args = train.parse_args(
        ["--data", "d", "--out", "o", "--learning-rate", "0.5", "--loss-weights", "shape=1"],
        env={"LEARNING_RATE": "0.01", "LOSS_WEIGHTS": "shape=2"},
    )
    assert (args.learning_rate, args.loss_weights) == (0.5, "shape=1")


def test_given_no_environment_when_parsed_then_the_documented_defaults_hold():
    args = train.parse_args(["--data", "d", "--out", "o"], env={})
    assert (args.learning_rate, args.loss_weights) == (0.002, "")


@pytest.mark.parametrize("value", ["fast", "0", "-1", "inf"])
def test_given_a_learning_rate_that_is_no_positive_number_when_parsed_then_the_variable_and_fix_are_named(
    value, capsys
):
    with pytest.raises(SystemExit):
        train.parse_args(["--data", "d", "--out", "o"], env={"LEARNING_RATE": value})
    assert "LEARNING_RATE" in capsys.readouterr().err
