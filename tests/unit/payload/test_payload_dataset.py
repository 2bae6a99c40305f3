"""The TSV image dataset and the demo data generator."""

import csv
import hashlib
import warnings

import numpy as np
import pytest
from PIL import Image

from training_payload.dataset import DatasetError, LabelVocabulary, MultiHeadImageDataset, load_image, to_rgb
from training_payload.make_data import LABELS, make_dataset


def write_tsv(folder, text):
    path = folder / "data.tsv"
    path.write_text(text)
    return str(path)


def save_image(folder, name, mode, colour, size=(10, 6)):
    Image.new(mode, size, colour).save(folder / name)
    return name


def test_given_generated_data_when_read_then_chw_float_images_and_one_int32_label_per_head(small_data):
    dataset = MultiHeadImageDataset(str(small_data / "train.tsv"), image_size=24)

    image, *labels = dataset[0]

    assert dataset.heads == list(LABELS)
    assert image.dtype == np.float32 and image.shape == (3, 24, 24)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert [label.dtype for label in labels] == [np.int32] * len(LABELS)
    assert len(dataset) == 160


def test_given_labels_when_vocabulary_built_then_sorted_and_saved_order_survives_reload(small_data, tmp_path):
    dataset = MultiHeadImageDataset(str(small_data / "train.tsv"))
    dataset.vocabulary.save(str(tmp_path / "labels.json"))

    reloaded = LabelVocabulary.load(str(tmp_path / "labels.json"))

    assert reloaded.classes == dataset.vocabulary.classes
    assert reloaded.classes["colour"] == ["blue", "green", "red"]
    row = dataset.rows[0]
    _, *ids = dataset[0]
    for head, label, class_id in zip(dataset.heads, row.labels, ids):
        assert reloaded.classes[head][class_id] == label


def test_given_grayscale_and_rgba_images_when_read_then_rgb_resized_and_alpha_on_white(tmp_path):
    save_image(tmp_path, "grey.png", "L", 128)
    save_image(tmp_path, "clear.png", "RGBA", (255, 0, 0, 0))
    tsv = write_tsv(tmp_path, "filename\tkind\ngrey.png\ta\nclear.png\tb\n")
    dataset = MultiHeadImageDataset(tsv, image_size=8)

    grey, _ = dataset[0]
    transparent, _ = dataset[1]

    assert grey.shape == transparent.shape == (3, 8, 8)
    np.testing.assert_allclose(grey, 128 / 255, rtol=1e-6)
    np.testing.assert_allclose(transparent, 1.0)  # fully transparent red composited on white


def test_given_a_missing_image_when_loading_then_error_names_file_and_line(tmp_path):
    save_image(tmp_path, "a.png", "RGB", (0, 0, 0))
    tsv = write_tsv(tmp_path, "filename\tkind\na.png\tx\nmissing.png\ty\n")

    with pytest.raises(DatasetError, match=r"data\.tsv line 3: image file 'missing\.png' not found"):
        MultiHeadImageDataset(tsv)


def test_given_an_unreadable_image_when_its_example_is_read_then_error_names_file_and_line(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    tsv = write_tsv(tmp_path, "filename\tkind\nbroken.png\tx\n")
    dataset = MultiHeadImageDataset(tsv)  # images are decoded lazily, so this still succeeds

    with pytest.raises(DatasetError, match=r"data\.tsv line 2: cannot read image .*broken\.png"):
        dataset[0]


def test_given_a_row_with_a_missing_column_when_loading_then_error_names_line_and_counts(tmp_path):
    save_image(tmp_path, "a.png", "RGB", (0, 0, 0))
    tsv = write_tsv(tmp_path, "filename\tshape\tcolour\na.png\tcircle\tred\na.png\tcircle\n")

    with pytest.raises(DatasetError, match=r"line 3: 2 tab-separated columns, expected 3"):
        MultiHeadImageDataset(tsv)


@pytest.mark.parametrize("text", ["", "\n\n", "filename\tshape\n"])
def test_given_an_empty_tsv_when_loading_then_error_says_what_to_write(tmp_path, text):
    tsv = write_tsv(tmp_path, text)

    with pytest.raises(DatasetError, match=r"data\.tsv: the TSV (is empty|has a header but no rows)"):
        MultiHeadImageDataset(tsv)


def test_given_a_header_without_filename_column_when_loading_then_error_shows_the_format(tmp_path):
    tsv = write_tsv(tmp_path, "path\tshape\na.png\tcircle\n")

    with pytest.raises(DatasetError, match=r"line 1: header must be 'filename'"):
        MultiHeadImageDataset(tsv)


def test_given_a_validation_label_unseen_in_training_when_loading_then_error_names_line_and_known(tmp_path):
    save_image(tmp_path, "a.png", "RGB", (0, 0, 0))
    train = MultiHeadImageDataset(write_tsv(tmp_path, "filename\tcolour\na.png\tred\na.png\tblue\n"))
    (tmp_path / "val.tsv").write_text("filename\tcolour\na.png\tred\na.png\tpurple\n")

    with pytest.raises(
        DatasetError,
        match=r"val\.tsv line 3: unknown label 'purple' for head "
        r"'colour'; the training data only has \[blue, red\]",
    ):
        MultiHeadImageDataset(str(tmp_path / "val.tsv"), vocabulary=train.vocabulary)


# --- TSV files as spreadsheets, pandas and Python's csv module write them ---


def write_bytes(folder, data, name="data.tsv"):
    path = folder / name
    path.write_bytes(data)
    return str(path)


def rows_of(dataset):
    return [(row.line, row.path.rsplit("/", 1)[-1], row.labels) for row in dataset.rows]


def test_given_bom_crlf_padding_and_trailing_blank_lines_when_loading_then_the_same_rows(tmp_path):
    """What Windows tools write: a UTF-8 BOM, CRLF, cells padded with spaces, tabs after short rows."""
    save_image(tmp_path, "a.png", "RGB", (0, 0, 0))
    text = "filename\tshape\tcolour \r\na.png\tcircle \t red\t\t\r\n\r\na.png\tsquare\tred  \r\n\r\n  \t \r\n"
    dataset = MultiHeadImageDataset(write_bytes(tmp_path, b"\xef\xbb\xbf" + text.encode()))

    assert dataset.heads == ["shape", "colour"]
    assert rows_of(dataset) == [(2, "a.png", ("circle", "red")), (4, "a.png", ("square", "red"))]
    assert dataset.vocabulary.classes["colour"] == ["red"]


def test_given_quoted_fields_as_the_csv_module_writes_them_when_loading_then_paths_kept_whole(tmp_path):
    names = ["with space.png", "tab\there.png", 'quote"d.png']
    for name in names:
        save_image(tmp_path, name, "RGB", (0, 0, 0))
    with open(tmp_path / "data.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["filename", "kind"])
        writer.writerows([name, f"label {i}"] for i, name in enumerate(names))
    assert '"tab\there.png"' in (tmp_path / "data.tsv").read_text()  # really quoted

    dataset = MultiHeadImageDataset(str(tmp_path / "data.tsv"))

    assert rows_of(dataset) == [(2 + i, name, (f"label {i}",)) for i, name in enumerate(names)]


def test_given_a_pandas_to_csv_export_with_its_index_column_when_loading_then_the_index_is_ignored(tmp_path):
    """`df.to_csv("data.tsv", sep="\t")`: the index comes first, under an empty header cell."""
    save_image(tmp_path, "a b.png", "RGB", (0, 0, 0))
    text = '\tfilename\tshape\n0\ta b.png\tcircle\n1\t"a b.png"\t"big ""square"""\n'

    dataset = MultiHeadImageDataset(write_tsv(tmp_path, text))

    assert dataset.heads == ["shape"]
    assert rows_of(dataset) == [(2, "a b.png", ("circle",)), (3, "a b.png", ('big "square"',))]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_given_an_excel_unicode_text_export_when_loading_then_read(tmp_path, encoding):
    """Excel's "Unicode Text": UTF-16 with a byte-order mark, CRLF, tabs."""
    save_image(tmp_path, "café.png", "RGB", (0, 0, 0))
    text = "filename\tcolour\r\ncafé.png\tcrème\r\n"
    bom = b"\xff\xfe" if encoding == "utf-16-le" else b"\xfe\xff"

    dataset = MultiHeadImageDataset(write_bytes(tmp_path, bom + text.encode(encoding)))

    assert rows_of(dataset) == [(2, "café.png", ("crème",))]


def test_given_classic_mac_line_endings_when_a_row_is_bad_then_its_line_is_named(tmp_path):
    save_image(tmp_path, "a.png", "RGB", (0, 0, 0))
    tsv = write_tsv(tmp_path, "filename\tkind\ra.png\tx\r\rmissing.png\ty\r")

    with pytest.raises(DatasetError, match=r"data\.tsv line 4: image file 'missing\.png' not found"):
        MultiHeadImageDataset(tsv)


@pytest.mark.parametrize(
    "data, message",
    [
        pytest.param(
            "filename\tkind\na.png\tx\nb\xe9.png\ty\n".encode("cp1252"),
            r"line 3: not valid UTF-8 \(invalid continuation byte at byte \d+\)\. Fix: save "
            r"the file as UTF-8",
            id="Excel 'Text (Tab delimited)' in Windows-1252",
        ),
        pytest.param(
            "filename\tkind\na.png\tx\n".encode("utf-16-le"),
            r"line 1: NUL character; is it UTF-16 without a byte-order mark\? Fix: save",
            id="UTF-16 without BOM",
        ),
        pytest.param(
            b'filename\tkind\na.png\tx\n"b.png\ty\nc.png\tz\n',
            r"line 3: bad quoting \(unexpected end of data\)\. Fix: a field that starts "
            r"with '\"' must end with '\"'",
            id="quote never closed",
        ),
        pytest.param(b'filename\tkind\n"a".png\tx\n', r"line 2: bad quoting", id="text after quote"),
        pytest.param(
            b"filename\tshape\tcolour\na.png\t\tred\n",
            r"line 2: empty 'shape' column\. Fix: fill it in, or drop the row",
            id="empty label",
        ),
        pytest.param(b'filename\tkind\n""\tx\n', r"line 2: empty 'filename' column", id="empty filename"),
        pytest.param(
            b"a.png\tcircle\na.png\tsquare\n",
            r"line 1: header must be 'filename' .* \(that is an image: the header row is "
            r"missing\)\. Fix:",
            id="no header row",
        ),
    ],
)
def test_given_a_tsv_that_cannot_be_read_faithfully_when_loading_then_error_names_file_and_line(
    tmp_path, data, message
):
    save_image(tmp_path, "a.png", "RGB", (0, 0, 0))

    with pytest.raises(DatasetError, match=r"data\.tsv " + message):
        MultiHeadImageDataset(write_bytes(tmp_path, data))


# --- image modes: every mode Pillow can construct, with the pixel values the file means ---

WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (128, 128, 128)


def strip(mode, pixels, palette=None, palette_mode="RGB", **info):
    """A 1-pixel-high image holding `pixels` left to right."""
    image = Image.new(mode, (len(pixels), 1))
    for x, pixel in enumerate(pixels):
        image.putpixel((x, 0), pixel)
    if palette:
        image.putpalette(palette, palette_mode)
    image.info.update(info)
    return image


def on_white(rgb, alpha):
    """Straight alpha composited on white, the reference formula."""
    return tuple(round(c * alpha / 255 + 255 * (1 - alpha / 255)) for c in rgb)


RED_BLUE = [200, 10, 10, 0, 0, 255]
MODE_CASES = [  # (id, image, expected RGB per pixel, tolerance)
    ("1", lambda: strip("1", [0, 1]), [BLACK, WHITE], 0),
    ("L", lambda: strip("L", [0, 128, 255]), [BLACK, GREY, WHITE], 0),
    ("L with tRNS", lambda: strip("L", [7, 9], transparency=7), [WHITE, (9, 9, 9)], 0),
    ("P", lambda: strip("P", [0, 1], RED_BLUE), [(200, 10, 10), (0, 0, 255)], 0),
    ("P with transparent index", lambda: strip("P", [0, 1], RED_BLUE, transparency=0), [WHITE, (0, 0, 255)], 0),
    (
        "P with RGBA palette",
        lambda: strip("P", [0, 1], [200, 10, 10, 128, 0, 0, 255, 255], "RGBA"),
        [on_white((200, 10, 10), 128), (0, 0, 255)],
        1,
    ),
    (
        "PA",
        lambda: strip("PA", [(0, 255), (1, 0), (1, 64)], RED_BLUE),
        [(200, 10, 10), WHITE, on_white((0, 0, 255), 64)],
        1,
    ),
    ("RGB", lambda: strip("RGB", [(1, 2, 3), (250, 128, 0)]), [(1, 2, 3), (250, 128, 0)], 0),
    ("RGB with tRNS", lambda: strip("RGB", [(1, 2, 3), (4, 5, 6)], transparency=(1, 2, 3)), [WHITE, (4, 5, 6)], 0),
    (
        "RGBA",
        lambda: strip("RGBA", [(255, 0, 0, 0), (0, 0, 255, 255), (0, 0, 0, 128)]),
        [WHITE, (0, 0, 255), on_white(BLACK, 128)],
        1,
    ),
    ("RGBa (premultiplied)", lambda: strip("RGBa", [(100, 0, 0, 128)]), [(227, 127, 127)], 1),
    ("RGBX", lambda: strip("RGBX", [(10, 20, 30, 0)]), [(10, 20, 30)], 0),
    ("LA", lambda: strip("LA", [(0, 0), (0, 255), (100, 128)]), [WHITE, BLACK, on_white((100, 100, 100), 128)], 1),
    ("La (premultiplied)", lambda: strip("La", [(50, 128)]), [(177, 177, 177)], 1),
    ("CMYK", lambda: strip("CMYK", [(0, 255, 255, 0), (0, 0, 0, 255), (0, 0, 0, 0)]), [(255, 0, 0), BLACK, WHITE], 0),
    ("YCbCr", lambda: strip("YCbCr", [(255, 128, 128), (0, 128, 128), (76, 85, 255)]), [WHITE, BLACK, (255, 0, 0)], 2),
    # Pillow's LAB: L* scaled to 0..255, a* and b* offset by 128; L* 50 is sRGB grey 119.
    (
        "LAB",
        lambda: strip("LAB", [(255, 128, 128), (0, 128, 128), (128, 128, 128)]),
        [WHITE, BLACK, (119, 119, 119)],
        2,
    ),
    ("HSV", lambda: strip("HSV", [(0, 255, 255), (85, 255, 255), (0, 0, 255)]), [(255, 0, 0), (0, 255, 0), WHITE], 0),
    # 16 bits onto 8: x / 257 rounded, so 65535 -> 255, 32768 -> 128, 257 -> 1
    *(
        (mode, lambda mode=mode: strip(mode, [0, 32768, 65535, 257]), [BLACK, GREY, WHITE, (1, 1, 1)], 0)
        for mode in ("I;16", "I;16B", "I;16L", "I;16N", "I")
    ),
    ("I;16 with tRNS", lambda: strip("I;16", [1000, 0], transparency=1000), [WHITE, BLACK], 0),
    ("F", lambda: strip("F", [0.0, 0.5, 1.0, 0.25]), [BLACK, GREY, WHITE, (64, 64, 64)], 0),
]


def rgb_pixels(image):
    return np.asarray(image, dtype=np.int16).reshape(-1, 3)


@pytest.mark.parametrize("build, expected, tolerance", [pytest.param(*case[1:], id=case[0]) for case in MODE_CASES])
def test_given_any_pil_mode_when_converted_then_8_bit_rgb_with_the_values_the_image_means(build, expected, tolerance):
    rgb = to_rgb(build(), "data.tsv line 2: image x.png")

    assert rgb.mode == "RGB"
    np.testing.assert_allclose(rgb_pixels(rgb), expected, atol=tolerance)


FILE_CASES = [
    ("1", "png"),
    ("L", "png"),
    ("P with transparent index", "png"),
    ("RGB", "png"),
    ("RGBA", "png"),
    ("LA", "png"),
    ("I;16", "png"),
    ("I;16 with tRNS", "png"),
    ("P", "gif"),
    ("L", "bmp"),
    ("CMYK", "tiff"),
    ("CMYK", "jpg"),
    ("LAB", "tiff"),
    ("PA", "tiff"),
    ("I;16B", "tiff"),
    ("I", "tiff"),
    ("F", "tiff"),
]


@pytest.mark.parametrize("case, extension", FILE_CASES, ids=[" ".join(c) for c in FILE_CASES])
def test_given_a_file_in_a_mode_that_format_keeps_when_loaded_then_the_same_values(tmp_path, case, extension):
    _, build, expected, tolerance = next(c for c in MODE_CASES if c[0] == case)
    image = build()
    path = tmp_path / f"image.{extension}"
    image.save(path, **({"quality": 100} if extension == "jpg" else {}), **image.info)
    with Image.open(path) as reopened:
        assert reopened.mode == image.mode  # else this case would test another mode

    # size == width: the bilinear resize leaves a 1-pixel-high strip's columns untouched
    chw = load_image(str(path), size=len(expected), where="data.tsv line 2")

    np.testing.assert_allclose(chw[:, 0, :].T * 255, expected, atol=tolerance + 1e-3)


def test_given_16_bit_pngs_when_read_through_the_dataset_then_not_white_but_scaled(tmp_path):
    """The reported bug: Pillow's own convert clips I;16 at 255, so every pixel came out white."""
    for name, value in (("full.png", 65535), ("half.png", 32768), ("dark.png", 2570)):
        Image.new("I;16", (6, 4), value).save(tmp_path / name)
    tsv = write_tsv(tmp_path, "filename\tkind\nfull.png\ta\nhalf.png\ta\ndark.png\ta\n")
    dataset = MultiHeadImageDataset(tsv, image_size=4)

    values = [dataset[i][0] for i in range(3)]

    np.testing.assert_allclose(values[0], 1.0)
    np.testing.assert_allclose(values[1], 128 / 255, rtol=1e-6)
    np.testing.assert_allclose(values[2], 10 / 255, rtol=1e-6)


@pytest.mark.parametrize("mode", ["BGR;15", "BGR;16", "BGR;24"])
def test_given_a_mode_pillow_cannot_convert_when_converted_then_refused_naming_file_and_mode(mode):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Pillow is retiring these modes
        image = Image.new(mode, (2, 1))

    with pytest.raises(
        DatasetError,
        match=rf"data\.tsv line 4: image x\.bmp: PIL mode "
        rf"'{mode}' has no faithful conversion to RGB\. Fix:",
    ):
        to_rgb(image, "data.tsv line 4: image x.bmp")


@pytest.mark.parametrize(
    "mode, pixels, message",
    [
        pytest.param(
            "I", [0, 70000], r"PIL mode 'I' with values from 0 to 70000; only 0\.\.65535", id="I beyond 16 bits"
        ),
        pytest.param("I", [-5, 100], r"PIL mode 'I' with values from -5 to 100", id="I negative"),
        pytest.param(
            "F",
            [0.0, 255.0],
            r"PIL mode 'F' \(32-bit float\) with values from 0 to 255; "
            r"only floats in \[0, 1\]",
            id="F in 0..255",
        ),
        pytest.param(
            "F",
            [float("nan"), 0.5],
            r"PIL mode 'F' \(32-bit float\) with values from "
            r"0\.5 to 0\.5",
            id="F with NaN",
        ),
    ],
)
def test_given_values_without_a_known_white_when_read_then_refused_naming_file_line_and_mode(
    tmp_path, mode, pixels, message
):
    strip(mode, pixels).save(tmp_path / "scan.tiff")
    tsv = write_tsv(tmp_path, "filename\tkind\nscan.tiff\ta\n")
    dataset = MultiHeadImageDataset(tsv)

    with pytest.raises(DatasetError, match=r"data\.tsv line 2: image .*scan\.tiff: " + message):
        dataset[0]


def tree_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_given_a_seed_when_generating_twice_then_byte_identical_and_another_seed_differs(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_dataset(str(tmp_path / name), seed=seed, n_train=12, n_val=4, size=16)

    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "c")
    assert len((tmp_path / "a" / "train.tsv").read_text().splitlines()) == 1 + 12
