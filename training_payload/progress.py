"""Progress for whoever watches: a progress bar on a terminal, plain lines in a log file.

Chainer's ProgressBar and PrintReport redraw with terminal escape codes, which turn a log file
(what the spot instance's agent streams to S3) into noise, so they are only used on a TTY.
"""

import logging
import time

from chainer import reporter, training
from chainer.training import extensions

logger = logging.getLogger("training_payload.progress")


class PlainProgress(training.Extension):
    """One plain line every `interval` iterations and one with validation results per epoch."""

    trigger = 1, "iteration"
    priority = training.PRIORITY_READER  # after the evaluator has reported this iteration
    default_name = "plain_progress"

    def __init__(self, heads: list, interval: int, total_iterations: int, batch_size: int):
        self.heads = heads
        self.interval = interval
        self.total_iterations = total_iterations
        self.batch_size = batch_size
        self._reset()

    def _reset(self):
        self._summary = reporter.DictSummary()
        self._since = time.perf_counter()
        self._iterations = 0

    def __call__(self, trainer):
        self._summary.add(
            {key: value for key, value in trainer.observation.items() if not key.startswith("validation/")}
        )
        self._iterations += 1
        updater = trainer.updater
        if updater.iteration % self.interval == 0 or updater.is_new_epoch:
            logger.info(self._training_line(updater))
            self._reset()
        if any(key.startswith("validation/") for key in trainer.observation):
            logger.info(self._validation_line(updater, trainer.observation))

    def _training_line(self, updater) -> str:
        means = self._summary.compute_mean()
        speed = self._iterations * self.batch_size / max(time.perf_counter() - self._since, 1e-9)
        accuracies = " ".join(
            f"{head}={float(means[f'{head}/accuracy']):.3f}" for head in self.heads if f"{head}/accuracy" in means
        )
        return (
            f"epoch {updater.epoch_detail:.2f} iteration {updater.iteration}/"
            f"{self.total_iterations} loss {float(means.get('loss', float('nan'))):.4f} "
            f"accuracy {accuracies} ({speed:.0f} images/s)"
        )

    def _validation_line(self, updater, observation: dict) -> str:
        accuracies = " ".join(f"{head}={float(observation[f'validation/{head}/accuracy']):.3f}" for head in self.heads)
        return f"epoch {updater.epoch} validation accuracy {accuracies}"


def progress_extensions(heads: list, on_tty: bool, interval: int, total_iterations: int, batch_size: int) -> list:
    """The extensions that show progress: terminal widgets on a TTY, plain lines otherwise."""
    if not on_tty:
        return [PlainProgress(heads, interval, total_iterations, batch_size)]
    columns = ["epoch", "iteration", "loss", *(f"validation/{head}/accuracy" for head in heads), "elapsed_time"]
    return [extensions.PrintReport(columns), extensions.ProgressBar(update_interval=interval)]
