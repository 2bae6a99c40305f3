"""How much do extra heads cost per training step, and what does one summed backward save?

Measured in one run, on the same model (the payload's defaults) and the same batch:
  1. step time with K heads / step time with 1 head   (target: K=4 at most 1.15x)
  2. per-head backwards / one summed backward, K heads (the same gradients; see updater.py)
A step is forward, backward and every optimizer's update. Variants are interleaved and the
median of the repeats is kept, so background load hits all of them alike.

    python benchmarks/multihead_step.py [--heads 4] [--batch-size 32] [--repeats 20] [--gpu -1]
"""

import argparse
import os
import statistics
import sys
import time

import chainer
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training_payload.model import ConvBase, build_heads  # noqa: E402
from training_payload.updater import backward_per_head, head_losses, weighted_total  # noqa: E402


def make_batch(xp, heads: int, classes: int, batch_size: int, image_size: int, rng):
    x = xp.asarray(rng.rand(batch_size, 3, image_size, image_size).astype(np.float32))
    labels = [xp.asarray(rng.randint(0, classes, batch_size).astype(np.int32)) for _ in range(heads)]
    return x, labels


def summed_step(base, heads, optimizers, x, labels, weights):
    for optimizer in optimizers:
        optimizer.target.cleargrads()
    weighted_total(head_losses(base, heads, x, labels), weights).backward()
    for optimizer in optimizers:
        optimizer.update()


def per_head_step(base, heads, optimizers, x, labels, weights):
    for optimizer in optimizers:
        optimizer.target.cleargrads()
    backward_per_head(base, heads, x, labels, weights)
    for optimizer in optimizers:
        optimizer.update()


def timed(step, device, *args) -> float:
    started = time.perf_counter()
    step(*args)
    if device.xp is not np:  # GPU kernels run asynchronously: wait for them
        device.device.synchronize()
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--gpu", type=int, default=-1)
    args = parser.parse_args(argv)

    device = chainer.get_device(f"@cupy:{args.gpu}" if args.gpu >= 0 else "@numpy")
    device.use()
    rng = np.random.RandomState(0)
    np.random.seed(0)
    base = ConvBase(args.image_size)
    heads = build_heads({f"head{i}": args.classes for i in range(args.heads)})
    for link in (base, *heads.values()):
        link.to_device(device)
    optimizers = {name: chainer.optimizers.Adam().setup(link) for name, link in {"base": base, **heads}.items()}
    x, labels = make_batch(device.xp, args.heads, args.classes, args.batch_size, args.image_size, rng)
    weights = dict.fromkeys(heads, 1.0)
    one_head = dict(list(heads.items())[:1])
    all_optimizers = list(optimizers.values())
    one_head_optimizers = [optimizers["base"], optimizers[next(iter(one_head))]]
    variants = {
        "summed, K heads": (summed_step, heads, labels, all_optimizers),
        "summed, 1 head": (summed_step, one_head, labels[:1], one_head_optimizers),
        "per-head backward, K heads": (per_head_step, heads, labels, all_optimizers),
    }
    times = {name: [] for name in variants}
    for repeat in range(args.repeats + 3):  # the first rounds warm caches and allocators
        for name, (step, step_heads, step_labels, step_optimizers) in variants.items():
            seconds = timed(step, device, base, step_heads, step_optimizers, x, step_labels, weights)
            if repeat >= 3:
                times[name].append(seconds)
    median = {name: statistics.median(values) for name, values in times.items()}

    print(
        f"device {device}, batch {args.batch_size}x3x{args.image_size}x{args.image_size}, "
        f"K={args.heads}, median of {args.repeats} steps each"
    )
    for name, seconds in median.items():
        print(f"  {name:28s} {seconds * 1000:8.2f} ms/step")
    heads_ratio = median["summed, K heads"] / median["summed, 1 head"]
    backward_ratio = median["per-head backward, K heads"] / median["summed, K heads"]
    verdict = "ok" if heads_ratio <= 1.15 else "ABOVE TARGET"
    print(f"K={args.heads} heads / 1 head step time: {heads_ratio:.3f}x (target <= 1.15x: {verdict})")
    print(f"per-head backward / summed backward step time: {backward_ratio:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
