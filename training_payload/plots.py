"""Per-head loss and accuracy curves (training and validation), one PNG per head.

Drawn from the LogReport's entries (which snapshots carry, so a resumed run plots its whole
history). A figure costs about as much as several training iterations on a CPU, so during
training they are refreshed at most every `min_seconds`; the end of training always draws them.
"""

import os
import time

import matplotlib

matplotlib.use("Agg")  # no display on a spot instance

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from chainer import training  # noqa: E402

METRICS = ("loss", "accuracy")


def plot_path(out_dir: str, head: str) -> str:
    return os.path.join(out_dir, f"curves_{head}.png")


def write_head_plots(entries: list, heads: list, out_dir: str) -> list:
    """Write `curves_<head>.png` for every head; return the paths."""
    os.makedirs(out_dir, exist_ok=True)
    return [write_head_plot(entries, head, plot_path(out_dir, head)) for head in heads]


def write_head_plot(entries: list, head: str, path: str) -> str:
    figure, axes = plt.subplots(1, len(METRICS), figsize=(8, 3), dpi=80)
    for axis, metric in zip(axes, METRICS):
        for prefix, label in (("", "training"), ("validation/", "validation")):
            key = f"{prefix}{head}/{metric}"
            points = [(entry["epoch"], entry[key]) for entry in entries if key in entry]
            if points:
                axis.plot(*zip(*points), marker="o", label=label)
        axis.set_title(f"{head} {metric}")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        axis.legend()
    # Fixed margins: tight_layout costs more than drawing the figure.
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.9, wspace=0.25)
    # Write then rename: the agent may upload the file at any moment.
    partial = path + ".partial.png"
    figure.savefig(partial)
    plt.close(figure)
    os.replace(partial, path)
    return path


class HeadPlots(training.Extension):
    """Refresh the per-head plots at epoch ends, at most every `min_seconds`."""

    trigger = 1, "epoch"
    priority = training.PRIORITY_READER  # after LogReport has written this epoch's entry
    default_name = "head_plots"

    def __init__(self, heads: list, min_seconds: float = 30.0, log_report: str = "LogReport"):
        self.heads = heads
        self.min_seconds = min_seconds
        self.log_report = log_report
        self._last_written = time.monotonic()

    def __call__(self, trainer):
        if time.monotonic() - self._last_written >= self.min_seconds:
            self.write(trainer)

    def write(self, trainer) -> list:
        self._last_written = time.monotonic()
        entries = trainer.get_extension(self.log_report).log
        return write_head_plots(entries, self.heads, trainer.out)
