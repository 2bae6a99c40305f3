"""Train the multi-head classifier; rerun the same command to resume from the newest snapshot.

    python training_payload/train.py --data DIR --out DIR [--checkpoint-dir DIR] [--epochs 3]
        [--batch-size 32] [--gpu -1] [--loss-weights shape=1,colour=1] [--snapshot-interval 20]

Writes to --out: log.json, curves_<head>.png (loss and accuracy), model.npz, labels.json,
metrics.json. Snapshots go to --checkpoint-dir (default --out). SIGTERM snapshots at the next
iteration boundary and exits 143, so a reclaimed spot instance loses no finished iteration.
A rerun resumes from the newest snapshot that loads; whatever else that folder holds is skipped,
each with a log line saying why.
"""

import argparse
import json
import logging
import os
import sys
import time
from typing import NamedTuple

import chainer
import numpy as np
from chainer import training
from chainer.training import extensions

if __package__ in (None, ""):  # run as a script: make `training_payload.*` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training_payload.dataset import DatasetError, MultiHeadImageDataset  # noqa: E402
from training_payload.model import ConvBase, MultiHeadNet, build_heads  # noqa: E402
from training_payload.plots import HeadPlots  # noqa: E402
from training_payload.progress import progress_extensions  # noqa: E402
from training_payload.resume import (  # noqa: E402
    Checkpointer,
    ResumableSerialIterator,
    SnapshotError,
    StopOnSignal,
    TrainingInterrupted,
    load_snapshot,
    snapshot_candidates,
)
from training_payload.updater import MultiHeadEvaluator, MultiHeadUpdater  # noqa: E402

logger = logging.getLogger("training_payload.train")

EXIT_BAD_INPUT = 2
EXIT_SIGTERM = 128 + 15  # what a shell reports for a SIGTERM'd process


class UsageError(ValueError):
    """A bad command-line value; the message names the flag, the rule and the fix."""


# A sweep varies a job through its environment (`sweep.grid` overrides `env`), so the two settings a
# sweep over this payload varies are read from there too; a command-line flag still wins.
LEARNING_RATE_ENV = "LEARNING_RATE"
LOSS_WEIGHTS_ENV = "LOSS_WEIGHTS"


def _env_learning_rate(parser, env) -> float:
    text = env.get(LEARNING_RATE_ENV, "")
    if not text:
        return 0.002
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        parser.error(f"{LEARNING_RATE_ENV}={text!r} must be a number above 0, e.g. 0.002")
    return value


def parse_args(argv=None, env=None):
    """Flags, with --learning-rate and --loss-weights defaulting to $LEARNING_RATE and $LOSS_WEIGHTS."""
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with train.tsv and val.tsv")
    parser.add_argument("--out", required=True, help="folder for the log, plots, model, metrics")
    parser.add_argument("--checkpoint-dir", help="folder for snapshots (default: --out)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--gpu", type=int, default=-1, help="-1: CPU; N >= 0: CUDA device N")
    parser.add_argument(
        "--loss-weights",
        default=env.get(LOSS_WEIGHTS_ENV, ""),
        help=f"per-head loss weights, e.g. shape=2,colour=1 (unnamed heads: 1; default: ${LOSS_WEIGHTS_ENV})",
    )
    parser.add_argument("--snapshot-interval", type=int, default=20, help="in iterations")
    parser.add_argument("--image-size", type=int, default=32, help="images are resized to this")
    parser.add_argument("--width", type=int, default=16, help="channels of the first conv layer")
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=_env_learning_rate(parser, env),
        help=f"Adam's alpha (default: ${LEARNING_RATE_ENV}, else 0.002)",
    )
    parser.add_argument("--seed", type=int, default=0, help="weights init and shuffling")
    args = parser.parse_args(argv)
    for flag in ("epochs", "batch_size", "snapshot_interval", "image_size", "width"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    args.checkpoint_dir = args.checkpoint_dir or args.out
    return args


def parse_loss_weights(text: str, heads: list) -> dict:
    """`"shape=2,colour=0.5"` -> a weight for every head (1.0 where not named)."""
    weights = dict.fromkeys(heads, 1.0)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in weights:
            raise UsageError(
                f"--loss-weights: unknown head {name!r}; the data's heads are "
                f"{heads}. Fix: use e.g. --loss-weights {heads[0]}=1"
            )
        try:
            weights[name] = float(value)
        except ValueError:
            raise UsageError(
                f"--loss-weights: {item!r} is not head=number. Fix: e.g. --loss-weights {name}=0.5"
            ) from None
        if not weights[name] >= 0:
            raise UsageError(f"--loss-weights: {name}={value} is negative; weights must be >= 0")
    return weights


def load_datasets(data_dir: str, image_size: int):
    train = MultiHeadImageDataset(os.path.join(data_dir, "train.tsv"), image_size)
    val = MultiHeadImageDataset(os.path.join(data_dir, "val.tsv"), image_size, train.vocabulary)
    return train, val


def select_device(gpu: int):
    if gpu >= 0 and not chainer.backends.cuda.available:
        raise UsageError(
            f"--gpu {gpu}: CUDA is not available here (CuPy missing or no GPU). "
            f"Fix: install the cupy package for this CUDA version, or pass --gpu -1."
        )
    device = chainer.get_device(f"@cupy:{gpu}" if gpu >= 0 else "@numpy")
    device.use()
    return device


class Training(NamedTuple):
    """The trainer and the parts `main` needs afterwards."""

    trainer: training.Trainer
    model: MultiHeadNet
    evaluator: MultiHeadEvaluator
    checkpointer: Checkpointer


def build_trainer(args, train, val, device) -> Training:
    """A trainer at iteration 0, the same for the same arguments (seeded)."""
    np.random.seed(args.seed)  # Chainer's initializers draw from NumPy's global RNG
    heads = build_heads(train.vocabulary.class_counts())
    model = MultiHeadNet(ConvBase(args.image_size, args.width), heads)
    model.to_device(device)
    links = {"base": model.base, **heads}
    optimizers = {name: chainer.optimizers.Adam(alpha=args.learning_rate).setup(link) for name, link in links.items()}
    weights = parse_loss_weights(args.loss_weights, train.vocabulary.heads)
    train_iter = ResumableSerialIterator(train, args.batch_size, seed=args.seed)
    updater = MultiHeadUpdater(train_iter, model.base, heads, optimizers, weights, device=device)
    trainer = training.Trainer(updater, (args.epochs, "epoch"), out=args.out)
    val_iter = chainer.iterators.SerialIterator(val, args.batch_size, repeat=False, shuffle=False)
    evaluator = MultiHeadEvaluator(val_iter, model.base, heads, device=device)
    checkpointer = Checkpointer(args.checkpoint_dir)
    add_extensions(trainer, args, train, evaluator, checkpointer)
    return Training(trainer, model, evaluator, checkpointer)


def build_resumed(build, checkpoint_dir: str):
    """`build()` loaded from the newest snapshot that loads, and its iteration; else fresh, None.

    Each snapshot is tried in a newly built trainer: one that fails half-way through loading
    (another model's, say) must leave nothing of itself in the run that follows.
    """
    candidates = snapshot_candidates(checkpoint_dir)
    for path in candidates:
        built = build()
        try:
            iteration = load_snapshot(path, built.trainer)
        except SnapshotError as error:
            logger.warning("resume: skipped %s: %s", path, error)
            continue
        built.checkpointer.last_saved_iteration = iteration
        logger.info("resumed from iteration %d (%s)", iteration, path)
        return built, iteration
    if candidates:
        logger.warning("resume: no snapshot in %s loads; training from the start", checkpoint_dir)
    return build(), None


def add_extensions(trainer, args, train, evaluator, checkpointer):
    heads = train.vocabulary.heads
    trainer.extend(evaluator, trigger=(1, "epoch"))
    trainer.extend(extensions.FailOnNonNumber())
    trainer.extend(extensions.LogReport(trigger=(1, "epoch"), filename="log.json"))
    trainer.extend(HeadPlots(heads))
    total_iterations = -(-args.epochs * len(train) // args.batch_size)
    interval = max(1, min(10, total_iterations // 20))
    for extension in progress_extensions(heads, sys.stdout.isatty(), interval, total_iterations, args.batch_size):
        trainer.extend(extension)
    trainer.extend(checkpointer, trigger=(args.snapshot_interval, "iteration"))
    trainer.extend(StopOnSignal(checkpointer), trigger=(1, "iteration"))


def run_training(trainer, checkpointer, epochs: int) -> dict:
    """Train to `epochs` from wherever `trainer` is, snapshot the end; return run facts."""
    start_iteration = trainer.updater.iteration
    started = time.perf_counter()
    # A finished run restarted (or one asked for fewer epochs) has nothing left to train.
    if trainer.updater.epoch_detail < epochs:
        trainer.run(show_loop_exception_msg=False)
    seconds = time.perf_counter() - started
    if checkpointer.last_saved_iteration != trainer.updater.iteration:
        checkpointer.save(trainer)  # a rerun of a finished job then trains nothing again
    trained = trainer.updater.iteration - start_iteration
    return {"trained_iterations": trained, "seconds": seconds}


def write_outputs(args, trainer, model, train, evaluator, facts: dict) -> dict:
    os.makedirs(args.out, exist_ok=True)
    trainer.get_extension(HeadPlots.default_name).write(trainer)
    chainer.serializers.save_npz(os.path.join(args.out, "model.npz"), model)
    train.vocabulary.save(os.path.join(args.out, "labels.json"))
    validation = evaluator()
    heads = {
        head: {
            "accuracy": float(validation[f"validation/{head}/accuracy"]),
            "loss": float(validation[f"validation/{head}/loss"]),
            "classes": classes,
        }
        for head, classes in train.vocabulary.classes.items()
    }
    images = facts["trained_iterations"] * args.batch_size
    metrics = {
        "iterations": int(facts["iterations"]),
        "epochs": int(facts["epochs"]),
        "resumed_from_iteration": facts["resumed_from_iteration"],
        "heads": heads,
        "images_per_second": round(images / facts["seconds"], 1) if images else None,
        "device": "cpu" if args.gpu < 0 else f"gpu:{args.gpu}",
        "batch_size": args.batch_size,
        "loss_weights": trainer.updater.loss_weights,
        "train_examples": len(train),
    }
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    return metrics


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    args = parse_args(argv)
    try:
        device = select_device(args.gpu)
        train, val = load_datasets(args.data, args.image_size)
        built, resumed_from = build_resumed(lambda: build_trainer(args, train, val, device), args.checkpoint_dir)
    except (DatasetError, UsageError) as error:
        logger.error("error: %s", error)
        return EXIT_BAD_INPUT
    trainer = built.trainer
    try:
        facts = run_training(trainer, built.checkpointer, args.epochs)
    except TrainingInterrupted as stop:
        logger.info("%s; snapshot saved in %s", stop, args.checkpoint_dir)
        return EXIT_SIGTERM
    except DatasetError as error:  # images are decoded lazily, so a bad one surfaces here
        logger.error("error: %s", error)
        return EXIT_BAD_INPUT
    facts.update(
        iterations=trainer.updater.iteration, epochs=trainer.updater.epoch, resumed_from_iteration=resumed_from
    )
    metrics = write_outputs(args, trainer, built.model, train, built.evaluator, facts)
    summary = " ".join(f"{h}={m['accuracy']:.3f}" for h, m in metrics["heads"].items())
    logger.info("done: %d iterations, validation accuracy %s; outputs in %s", metrics["iterations"], summary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
