"""Generate the demo dataset: coloured shapes on noise, four heads (shape, colour, size, position).

Seeded and download-free, so every attempt of a job (and every test) sees byte-identical data.
Writes `<out>/images/*.png`, `<out>/train.tsv` and `<out>/val.tsv`.

    python training_payload/make_data.py --out DIR [--seed 0] [--n-train 1000] [--n-val 200] [--size 32]
"""

import argparse
import logging
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

LABELS = {
    "shape": ["circle", "square", "triangle"],
    "colour": ["red", "green", "blue"],
    "size": ["small", "large"],
    "position": ["top-left", "top-right", "bottom-left", "bottom-right"],
}
BASE_COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230)}
RADIUS_FRACTION = {"small": 0.12, "large": 0.22}
CENTRE_FRACTION = {
    "top-left": (0.27, 0.27),
    "top-right": (0.73, 0.27),
    "bottom-left": (0.27, 0.73),
    "bottom-right": (0.73, 0.73),
}

logger = logging.getLogger("training_payload.make_data")


def draw_example(rng: np.random.RandomState, size: int):
    """One image and its labels; jitter in colour, radius and centre keeps the task non-trivial."""
    labels = {head: names[rng.randint(len(names))] for head, names in LABELS.items()}
    pixels = rng.randint(0, 70, size=(size, size, 3)).astype(np.uint8)
    image = Image.fromarray(pixels)
    colour = tuple(int(np.clip(c + rng.randint(-30, 31), 0, 255)) for c in BASE_COLOURS[labels["colour"]])
    radius = size * RADIUS_FRACTION[labels["size"]] * rng.uniform(0.85, 1.15)
    fx, fy = CENTRE_FRACTION[labels["position"]]
    cx, cy = (f * size + rng.uniform(-0.05, 0.05) * size for f in (fx, fy))
    draw_shape(ImageDraw.Draw(image), labels["shape"], cx, cy, radius, colour)
    return image, labels


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, colour):
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    else:
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=colour)


def write_split(out_dir: str, split: str, count: int, size: int, rng: np.random.RandomState):
    heads = list(LABELS)
    lines = ["\t".join(["filename", *heads])]
    for i in range(count):
        image, labels = draw_example(rng, size)
        relative = os.path.join("images", f"{split}_{i:05d}.png")
        image.save(os.path.join(out_dir, relative))
        lines.append("\t".join([relative, *(labels[h] for h in heads)]))
    with open(os.path.join(out_dir, f"{split}.tsv"), "w") as f:
        f.write("\n".join(lines) + "\n")


def make_dataset(out_dir: str, seed: int = 0, n_train: int = 1000, n_val: int = 200, size: int = 32) -> None:
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    # One stream per split: changing --n-train leaves the validation images unchanged.
    write_split(out_dir, "train", n_train, size, np.random.RandomState([seed, 0]))
    write_split(out_dir, "val", n_val, size, np.random.RandomState([seed, 1]))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write images/ and the TSVs into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-val", type=int, default=200)
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    args = parser.parse_args(argv)
    for flag in ("n_train", "n_val", "size"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    return args


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    args = parse_args(argv)
    make_dataset(args.out, args.seed, args.n_train, args.n_val, args.size)
    logger.info(
        "wrote %d train and %d validation images (%dx%d, seed %d) to %s",
        args.n_train,
        args.n_val,
        args.size,
        args.size,
        args.seed,
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
