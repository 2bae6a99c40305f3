"""A multi-label image dataset read from a TSV: `filename` then one column per label (head).

Rows are parsed and checked up front (a bad row fails before the first iteration, not an hour
in); images are decoded lazily in `get_example`, so memory stays flat whatever the dataset size.

A TSV is read as spreadsheets, pandas and Python's `csv` write one: UTF-8 with or without a BOM,
or UTF-16 with one; any line ends; quoted fields; padded cells; blank lines; pandas' index column.
An image in any Pillow mode becomes 8-bit RGB with the values it means (alpha on white); a mode
or value range with no faithful conversion is refused, naming the file, line and mode.
"""

import codecs
import csv
import io
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
# Modes Pillow converts to RGB by itself, with the right values (colour spaces, palettes, alpha).
EIGHT_BIT_MODES = {"1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "LA", "La", "PA"}
UNPREMULTIPLIED = {"La": "LA", "RGBa": "RGBA"}
GREY_16_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}  # Pillow opens 16-bit PGMs as "I"
LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the line ends `csv` counts in `line_num`


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
        self._ids = {head: {name: i for i, name in enumerate(names)} for head, names in self.classes.items()}

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
                    f"of {label!r} to the training TSV."
                )
            ids.append(np.int32(class_id))
        return tuple(ids)


def read_tsv(tsv_path: str):
    """Parse and check every row; image paths are relative to the TSV's folder."""
    if not os.path.isfile(tsv_path):
        raise DatasetError(
            f"{tsv_path}: TSV file not found. Fix: pass the folder holding "
            f"train.tsv and val.tsv (as written by make_data.py)."
        )
    records = list(tsv_records(tsv_path, read_text(tsv_path)))
    if not records:
        raise DatasetError(
            f"{tsv_path}: the TSV is empty. Fix: write a header row "
            f"'{FILENAME_COLUMN}<TAB><head>...' followed by one row per image."
        )
    first = parse_header(tsv_path, *records[0])
    heads = records[0][1][first + 1 :]
    rows = [parse_row(tsv_path, line, fields[first:], heads) for line, fields in records[1:]]
    if not rows:
        raise DatasetError(
            f"{tsv_path}: the TSV has a header but no rows. Fix: add one row per "
            f"image: filename then one label per head ({', '.join(heads)})."
        )
    return heads, rows


def read_text(tsv_path: str) -> str:
    """UTF-8 (with or without BOM), or UTF-16 with a BOM (Excel's "Unicode Text")."""
    with open(tsv_path, "rb") as f:
        raw = f.read()
    utf16 = raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    encoding = "utf-16" if utf16 else "utf-8-sig"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = line_number(raw[: error.start].decode(encoding, errors="replace"))
        raise DatasetError(
            f"{tsv_path} line {line}: not valid {'UTF-16' if utf16 else 'UTF-8'} ({error.reason} "
            f"at byte {error.start}). Fix: save the file as UTF-8 (Excel: 'Unicode Text' is read "
            f"too; pandas: to_csv(..., encoding='utf-8'))."
        ) from None
    nul = text.find("\0")
    if nul >= 0:  # UTF-16 without a BOM "decodes" as UTF-8 with a NUL in every other byte
        raise DatasetError(
            f"{tsv_path} line {line_number(text[:nul])}: NUL character; is it "
            f"UTF-16 without a byte-order mark? Fix: save the file as UTF-8."
        )
    return text


def line_number(text_before: str) -> int:
    return len(LINE_BREAK.findall(text_before)) + 1


def tsv_records(tsv_path: str, text: str):
    """`(line, fields)` per non-blank record, quoting as Excel, pandas and `csv` write it.

    Fields are stripped and trailing empty ones dropped: exports pad short rows with tabs, and a
    stray space would otherwise make `red ` a class of its own.
    """
    reader = csv.reader(io.StringIO(text, newline=""), dialect="excel-tab", strict=True)
    start = 1
    try:
        for fields in reader:
            fields = [field.strip() for field in fields]
            while fields and not fields[-1]:
                fields.pop()
            if fields:
                yield start, fields
            start = reader.line_num + 1
    except csv.Error as error:
        raise DatasetError(
            f"{tsv_path} line {start}: bad quoting ({error}). Fix: a field that starts with '\"' "
            f"must end with '\"' before the next tab, with '\"\"' for a quote inside it."
        ) from None


def parse_header(tsv_path: str, line: int, columns: list) -> int:
    """Check the header; return the index of its filename column (1 after a pandas index)."""
    # pandas' to_csv writes its row index first, under an empty name: no head can be unnamed.
    first = 1 if columns[:2] == ["", FILENAME_COLUMN] else 0
    if columns[first] != FILENAME_COLUMN or len(columns) < first + 2:
        raise DatasetError(
            f"{tsv_path} line {line}: header must be '{FILENAME_COLUMN}' then one column per head, "
            f"tab-separated; got {columns!r}{missing_header_hint(tsv_path, columns[0])}. "
            f"Fix: write e.g. 'filename<TAB>shape<TAB>colour'."
        )
    heads = columns[first + 1 :]
    for head in heads:
        if not HEAD_NAME_PATTERN.match(head) or head in RESERVED_HEAD_NAMES or heads.count(head) > 1:
            raise DatasetError(
                f"{tsv_path} line {line}: head name {head!r} must be unique, start with a letter, use "
                f"only letters, digits or '_', and not be one of "
                f"{sorted(RESERVED_HEAD_NAMES)}. Fix: rename the column."
            )
    return first


def missing_header_hint(tsv_path: str, first_column: str) -> str:
    if os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(tsv_path)), first_column)):
        return " (that is an image: the header row is missing)"
    return ""


def parse_row(tsv_path: str, line: int, columns: list, heads: list) -> Row:
    if len(columns) != len(heads) + 1:
        raise DatasetError(
            f"{tsv_path} line {line}: {len(columns)} tab-separated columns, expected "
            f"{len(heads) + 1} ({FILENAME_COLUMN} + {', '.join(heads)}). Fix: give every row a "
            f"filename and one label per head, separated by tabs."
        )
    for name, value in zip([FILENAME_COLUMN, *heads], columns):
        if not value:
            raise DatasetError(f"{tsv_path} line {line}: empty {name!r} column. Fix: fill it in, or drop the row.")
    path = os.path.join(os.path.dirname(os.path.abspath(tsv_path)), columns[0])
    if not os.path.isfile(path):
        raise DatasetError(
            f"{tsv_path} line {line}: image file {columns[0]!r} not found at "
            f"{path}. Fix: paths are relative to the TSV's folder."
        )
    return Row(line=line, path=path, labels=tuple(columns[1:]))


def check_heads_match(tsv_path: str, heads: list, expected: list) -> None:
    if heads != expected:
        raise DatasetError(
            f"{tsv_path} line 1: heads {heads} differ from the training data's "
            f"{expected}. Fix: use the same label columns, in the same order."
        )


def load_image(path: str, size: int, where: str) -> np.ndarray:
    """Decode any PIL mode to RGB (alpha composited on white), resize, scale to [0, 1], CHW."""
    try:
        with Image.open(path) as image:
            image.load()
            rgb = to_rgb(image, f"{where}: image {path}")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise DatasetError(
            f"{where}: cannot read image {path}: {error}. Fix: replace the file with a PNG or JPEG, or drop the row."
        ) from error
    rgb = rgb.resize((size, size), Image.BILINEAR)
    return (np.asarray(rgb, dtype=np.float32) / 255.0).transpose(2, 0, 1)


def to_rgb(image: Image.Image, where: str) -> Image.Image:
    """8-bit RGB with the values the file means; `where` names the image in errors."""
    if image.mode in GREY_16_BIT_MODES:
        return Image.fromarray(grey_16_bit_to_8(image, where)).convert("RGB")
    if image.mode == "F":
        return Image.fromarray(grey_float_to_8(image, where)).convert("RGB")
    if image.mode not in EIGHT_BIT_MODES:
        raise DatasetError(
            f"{where}: PIL mode {image.mode!r} has no faithful conversion to RGB. Fix: save the "
            f"image as 8-bit RGB, RGBA or greyscale (PNG or JPEG), or 16-bit greyscale PNG."
        )
    if not image.has_transparency_data:
        return image.convert("RGB")
    # Pillow converts premultiplied modes to RGBA only through their straight-alpha twin.
    rgba = image.convert(UNPREMULTIPLIED.get(image.mode, "RGBA")).convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def grey_16_bit_to_8(image: Image.Image, where: str) -> np.ndarray:
    """0..65535 onto 0..255 (x / 257, rounded); Pillow's own convert clips, so all turns white."""
    values = np.asarray(image)  # uint16 in the mode's byte order, or int32 for "I"
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > 65535:  # mode "I" is 32-bit: beyond 16 bits there is no known white
        raise DatasetError(
            f"{where}: PIL mode {image.mode!r} with values from {low} to {high}; only 0..65535 "
            f"(16-bit) can be scaled to 8 bits faithfully. Fix: save it as a 16-bit or 8-bit PNG."
        )
    grey = np.rint(values / 257.0).astype(np.uint8)
    transparent = image.info.get("transparency")  # a 16-bit PNG's tRNS names one grey value
    if isinstance(transparent, int):
        grey[values == transparent] = 255
    return grey


def grey_float_to_8(image: Image.Image, where: str) -> np.ndarray:
    """Float images in [0, 1] (as numpy and scientific tools write them) onto 0..255."""
    values = np.asarray(image, dtype=np.float32)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise DatasetError(
            f"{where}: PIL mode 'F' (32-bit float) with values from {np.nanmin(values):g} to "
            f"{np.nanmax(values):g}; only floats in [0, 1] have a known black and white. Fix: "
            f"scale the image to [0, 1], or save it as an 8- or 16-bit PNG."
        )
    return np.rint(values * 255.0).astype(np.uint8)
