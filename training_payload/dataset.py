"""A multi-label image dataset read from a TSV: `filename` then one column per label (head).

Rows are parsed and checked up front (a bad row fails before the first iteration, not an hour
in); images are decoded lazily in `get_example`, so memory stays flat whatever the dataset size.
"""

import json
import os
import re
from dataclasses import dataclass

import chainer
import numpy as np
from PIL import Image, UnidentifiedImageError

FILENAME_COLUMN = "filename"
# Head names become report keys (`<head>/loss`) and optimizer names next to the base's.
HEAD_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RESERVED_HEAD_NAMES = {"base", "main", "validation", "epoch", "iteration", "elapsed_time", "loss"}


class DatasetError(ValueError):
    """Bad input data; the message names the file, the line, the rule and the fix."""


@dataclass(frozen=True)
class Row:
    line: int
    path: str
    labels: tuple


class LabelVocabulary:
    """Label name -> class id per head, in a stable order (sorted) saved next to the model."""

    def __init__(self, classes: dict):
        self.classes = {head: list(names) for head, names in classes.items()}
        self._ids = {head: {name: i for i, name in enumerate(names)}
                     for head, names in self.classes.items()}

    @property
    def heads(self) -> list:
        return list(self.classes)

    def class_counts(self) -> dict:
        return {head: len(names) for head, names in self.classes.items()}

    def class_id(self, head: str, label: str):
        return self._ids[head].get(label)

    @classmethod
    def from_rows(cls, heads: list, rows: list) -> "LabelVocabulary":
        return cls({head: sorted({row.labels[i] for row in rows}) for i, head in enumerate(heads)})

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump({"heads": self.classes}, f, indent=2)

    @classmethod
    def load(cls, path: str) -> "LabelVocabulary":
        with open(path) as f:
            return cls(json.load(f)["heads"])


class MultiHeadImageDataset(chainer.dataset.DatasetMixin):
    """Examples are `(image, label_0, ..., label_K-1)`: float32 CHW in [0, 1], int32 class ids.

    Without a vocabulary (training data) one is built from the labels seen; with one (evaluation
    data) a label the training data never had is an error, since no head can predict it.
    """

    def __init__(self, tsv_path: str, image_size: int = 32, vocabulary: LabelVocabulary = None):
        self.tsv_path = tsv_path
        self.image_size = image_size
        self.heads, self.rows = read_tsv(tsv_path)
        if vocabulary is None:
            vocabulary = LabelVocabulary.from_rows(self.heads, self.rows)
        else:
            check_heads_match(tsv_path, self.heads, vocabulary.heads)
        self.vocabulary = vocabulary
        self._label_ids = [self._row_label_ids(row) for row in self.rows]

    def __len__(self):
        return len(self.rows)

    def get_example(self, i):
        row = self.rows[i]
        image = load_image(row.path, self.image_size, where=f"{self.tsv_path} line {row.line}")
        return (image, *self._label_ids[i])

    def _row_label_ids(self, row: Row) -> tuple:
        ids = []
        for head, label in zip(self.heads, row.labels):
            class_id = self.vocabulary.class_id(head, label)
            if class_id is None:
                known = ", ".join(self.vocabulary.classes[head])
                raise DatasetError(
                    f"{self.tsv_path} line {row.line}: unknown label {label!r} for head {head!r}; "
                    f"the training data only has [{known}]. Fix: relabel the row or add examples "
                    f"of {label!r} to the training TSV.")
            ids.append(np.int32(class_id))
        return tuple(ids)


def read_tsv(tsv_path: str):
    """Parse and check every row; image paths are relative to the TSV's folder."""
    if not os.path.isfile(tsv_path):
        raise DatasetError(f"{tsv_path}: TSV file not found. Fix: pass the folder holding "
                           f"train.tsv and val.tsv (as written by make_data.py).")
    with open(tsv_path, newline="") as f:
        lines = [(n, line.rstrip("\r\n")) for n, line in enumerate(f, start=1) if line.strip()]
    if not lines:
        raise DatasetError(f"{tsv_path}: the TSV is empty. Fix: write a header row "
                           f"'{FILENAME_COLUMN}<TAB><head>...' followed by one row per image.")
    heads = parse_header(tsv_path, lines[0][1])
    rows = [parse_row(tsv_path, n, text, heads) for n, text in lines[1:]]
    if not rows:
        raise DatasetError(f"{tsv_path}: the TSV has a header but no rows. Fix: add one row per "
                           f"image: filename then one label per head ({', '.join(heads)}).")
    return heads, rows


def parse_header(tsv_path: str, text: str) -> list:
    columns = text.split("\t")
    if columns[0] != FILENAME_COLUMN or len(columns) < 2:
        raise DatasetError(
            f"{tsv_path} line 1: header must be '{FILENAME_COLUMN}' then one column per head, "
            f"tab-separated; got {columns!r}. Fix: write e.g. 'filename<TAB>shape<TAB>colour'.")
    heads = columns[1:]
    for head in heads:
        if not HEAD_NAME_PATTERN.match(head) or head in RESERVED_HEAD_NAMES or heads.count(head) > 1:
            raise DatasetError(
                f"{tsv_path} line 1: head name {head!r} must be unique, start with a letter, use "
                f"only letters, digits or '_', and not be one of "
                f"{sorted(RESERVED_HEAD_NAMES)}. Fix: rename the column.")
    return heads


def parse_row(tsv_path: str, line: int, text: str, heads: list) -> Row:
    columns = text.split("\t")
    if len(columns) != len(heads) + 1:
        raise DatasetError(
            f"{tsv_path} line {line}: {len(columns)} tab-separated columns, expected "
            f"{len(heads) + 1} ({FILENAME_COLUMN} + {', '.join(heads)}). Fix: give every row a "
            f"filename and one label per head, separated by tabs.")
    path = os.path.join(os.path.dirname(os.path.abspath(tsv_path)), columns[0])
    if not os.path.isfile(path):
        raise DatasetError(f"{tsv_path} line {line}: image file {columns[0]!r} not found at "
                           f"{path}. Fix: paths are relative to the TSV's folder.")
    return Row(line=line, path=path, labels=tuple(columns[1:]))


def check_heads_match(tsv_path: str, heads: list, expected: list) -> None:
    if heads != expected:
        raise DatasetError(f"{tsv_path} line 1: heads {heads} differ from the training data's "
                           f"{expected}. Fix: use the same label columns, in the same order.")


def load_image(path: str, size: int, where: str) -> np.ndarray:
    """Decode any PIL mode to RGB (alpha composited on white), resize, scale to [0, 1], CHW."""
    try:
        with Image.open(path) as image:
            rgb = to_rgb(image).resize((size, size), Image.BILINEAR)
    except (UnidentifiedImageError, OSError) as error:
        raise DatasetError(f"{where}: cannot read image {path}: {error}. Fix: replace the file "
                           f"with a PNG or JPEG, or drop the row.") from error
    return (np.asarray(rgb, dtype=np.float32) / 255.0).transpose(2, 0, 1)


def to_rgb(image: Image.Image) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
