"""Small generated datasets shared by the payload tests (session-scoped: PNG writing is the cost)."""

import pytest

from training_payload.make_data import make_dataset


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """160 train / 64 val 32x32 images: 10 iterations per epoch at batch 16."""
    path = tmp_path_factory.mktemp("small_data")
    make_dataset(str(path), seed=0, n_train=160, n_val=64, size=32)
    return path


@pytest.fixture(scope="session")
def learnable_data(tmp_path_factory):
    """Enough images for the easy heads (colour, position) to be learned in a few seconds."""
    path = tmp_path_factory.mktemp("learnable_data")
    make_dataset(str(path), seed=1, n_train=480, n_val=96, size=32)
    return path
