"""The TSV image dataset and the demo data generator."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from training_payload.dataset import DatasetError, LabelVocabulary, MultiHeadImageDataset
from training_payload.make_data import LABELS, make_dataset


def write_tsv(folder, text):
    path = folder / "data.tsv"
    path.write_text(text)
    return str(path)


def save_image(folder, name, mode, colour, size=(10, 6)):
    Image.new(mode, size, colour).save(folder / name)
    return name


def test_given_generated_data_when_read_then_chw_float_images_and_one_int32_label_per_head(
        small_data):
    dataset = MultiHeadImageDataset(str(small_data / "train.tsv"), image_size=24)

    image, *labels = dataset[0]

    assert dataset.heads == list(LABELS)
    assert image.dtype == np.float32 and image.shape == (3, 24, 24)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert [label.dtype for label in labels] == [np.int32] * len(LABELS)
    assert len(dataset) == 160


def test_given_labels_when_vocabulary_built_then_sorted_and_saved_order_survives_reload(
        small_data, tmp_path):
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


def test_given_an_unreadable_image_when_its_example_is_read_then_error_names_file_and_line(
        tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    tsv = write_tsv(tmp_path, "filename\tkind\nbroken.png\tx\n")
    dataset = MultiHeadImageDataset(tsv)  # images are decoded lazily, so this still succeeds

    with pytest.raises(DatasetError, match=r"data\.tsv line 2: cannot read image .*broken\.png"):
        dataset[0]


def test_given_a_row_with_a_missing_column_when_loading_then_error_names_line_and_counts(
        tmp_path):
    save_image(tmp_path, "a.png", "RGB", (0, 0, 0))
    tsv = write_tsv(tmp_path, "filename\tshape\tcolour\na.png\tcircle\tred\na.png\tcircle\n")

    with pytest.raises(DatasetError, match=r"line 3: 2 tab-separated columns, expected 3"):
        MultiHeadImageDataset(tsv)


@pytest.mark.parametrize("text", ["", "\n\n", "filename\tshape\n"])
def test_given_an_empty_tsv_when_loading_then_error_says_what_to_write(tmp_path, text):
    tsv = write_tsv(tmp_path, text)

    with pytest.raises(DatasetError, match=r"data\.tsv: the TSV (is empty|has a header but no rows)"):
        MultiHeadImageDataset(tsv)


def test_given_a_header_without_filename_column_when_loading_then_error_shows_the_format(
        tmp_path):
    tsv = write_tsv(tmp_path, "path\tshape\na.png\tcircle\n")

    with pytest.raises(DatasetError, match=r"line 1: header must be 'filename'"):
        MultiHeadImageDataset(tsv)


def test_given_a_validation_label_unseen_in_training_when_loading_then_error_names_line_and_known(
        tmp_path):
    save_image(tmp_path, "a.png", "RGB", (0, 0, 0))
    train = MultiHeadImageDataset(write_tsv(tmp_path, "filename\tcolour\na.png\tred\na.png\tblue\n"))
    (tmp_path / "val.tsv").write_text("filename\tcolour\na.png\tred\na.png\tpurple\n")

    with pytest.raises(DatasetError, match=r"val\.tsv line 3: unknown label 'purple' for head "
                                           r"'colour'; the training data only has \[blue, red\]"):
        MultiHeadImageDataset(str(tmp_path / "val.tsv"), vocabulary=train.vocabulary)


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
