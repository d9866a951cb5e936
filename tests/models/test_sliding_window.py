"""Sliding windows: the fully convolutional rewrite scores every window exactly as cropping does."""

import numpy as np
import pytest

import minivision as mv
from minivision.models.sliding_window import (
    PatchClassifier,
    classify_windows_naive,
    to_fully_convolutional,
    windows,
)


@pytest.mark.parametrize("size", [(18, 18), (30, 26), (33, 41)])
def test_fully_convolutional_equals_cropping(rng, size):
    mv.manual_seed(1)
    model = PatchClassifier(num_classes=4)
    image = rng.random((3,) + size).astype(np.float32)
    with mv.no_grad():
        naive = classify_windows_naive(model, image, model.window, model.stride)
        dense = to_fully_convolutional(model)(mv.tensor(image[None]))[0]
    rows, cols = (size[0] - 18) // 4 + 1, (size[1] - 18) // 4 + 1
    assert naive.shape == dense.shape == (4, rows, cols)
    np.testing.assert_allclose(dense.numpy(), naive.numpy(), atol=1e-5, rtol=0)


def test_one_window_is_the_patch_classifier(rng):
    model = PatchClassifier(num_classes=3)
    patch = rng.random((1, 3, 18, 18)).astype(np.float32)
    with mv.no_grad():
        direct = model(mv.tensor(patch)).numpy()
        dense = to_fully_convolutional(model)(mv.tensor(patch)).numpy()
    assert dense.shape == (1, 3, 1, 1)
    np.testing.assert_allclose(dense[:, :, 0, 0], direct, atol=1e-5, rtol=0)


def test_windows_crops_row_by_row():
    image = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    crops, grid = windows(image, 2, 2)
    assert grid == (2, 2)
    np.testing.assert_array_equal(crops[1], image[:, 0:2, 2:4])  # first row, second window
    np.testing.assert_array_equal(crops[2], image[:, 2:4, 0:2])


def test_bad_inputs():
    with pytest.raises(ValueError, match="smaller than the 18x18 window"):
        classify_windows_naive(PatchClassifier(), np.zeros((3, 10, 30), np.float32), 18, 4)
    with pytest.raises(ValueError, match="window=17"):
        PatchClassifier(window=17)
