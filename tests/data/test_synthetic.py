"""Shapes and DigitsOnCanvas: determinism, target format, boxes tight around masks."""
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivision.data import DigitsOnCanvas, Shapes
from tests.data.helpers import tight_box

DATASETS = {
    "shapes": lambda **kw: Shapes(4, **kw),
    "digits": lambda **kw: DigitsOnCanvas(4, **kw),
}


def _assert_same(sample_a, sample_b):
    np.testing.assert_array_equal(sample_a[0], sample_b[0])
    assert sample_a[1].keys() == sample_b[1].keys()
    for key in sample_a[1]:
        np.testing.assert_array_equal(sample_a[1][key], sample_b[1][key])


def check_target(image, target, num_classes, size):
    """The documented format, and image/boxes/masks/semantic agreeing with each other."""
    assert image.shape == (3, size, size) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    boxes, labels, masks, semantic = (target[k] for k in ("boxes", "labels", "masks", "semantic"))
    count = len(labels)
    assert boxes.shape == (count, 4) and boxes.dtype == np.float32
    assert labels.dtype == np.int64 and np.all((labels >= 1) & (labels <= num_classes))
    assert masks.shape == (count, size, size) and masks.dtype == bool
    assert semantic.shape == (size, size) and semantic.dtype == np.int64
    assert np.all(masks.sum(axis=0) <= 1), "instance masks overlap"
    expected_semantic = np.zeros((size, size), np.int64)
    for mask, label, box in zip(masks, labels, boxes):
        assert mask.any()
        np.testing.assert_array_equal(box, tight_box(mask))
        expected_semantic[mask] = label
    np.testing.assert_array_equal(semantic, expected_semantic)


@pytest.mark.parametrize("name", DATASETS)
def test_same_seed_same_sample_in_any_order(name):
    first = DATASETS[name](seed=3)
    second = DATASETS[name](seed=3)
    later_first = [first[i] for i in (3, 0, 2)]
    _assert_same(later_first[0], second[3])
    _assert_same(later_first[1], second[0])
    _assert_same(first[-1], second[3])


@pytest.mark.parametrize("name", DATASETS)
def test_different_seeds_and_indices_differ(name):
    a, b = DATASETS[name](seed=0), DATASETS[name](seed=1)
    assert not np.array_equal(a[0][0], b[0][0])
    assert not np.array_equal(a[0][0], a[1][0])


@given(seed=st.integers(0, 2**31), size=st.integers(16, 80), max_objects=st.integers(0, 5))
def test_shapes_targets_agree_with_masks(seed, size, max_objects):
    data = Shapes(2, image_size=size, min_objects=0, max_objects=max_objects, seed=seed)
    for index in range(len(data)):
        image, target = data[index]
        check_target(image, target, data.num_classes, size)
        assert len(target["labels"]) <= max_objects
        assert target["image_id"] == index


@given(seed=st.integers(0, 2**31), size=st.integers(16, 80))
def test_digits_targets_agree_with_masks(seed, size):
    data = DigitsOnCanvas(2, canvas_size=size, max_objects=4, seed=seed)
    for index in range(len(data)):
        check_target(*data[index], num_classes=10, size=size)


@given(seed=st.integers(0, 2**31))
def test_visible_masks_are_uniformly_painted(seed):
    """Without noise each visible mask has one colour: where a later shape covers an earlier
    one, the earlier mask has been cut back (a covered pixel would show another colour)."""
    image, target = Shapes(1, noise=0.0, min_objects=3, max_objects=5, seed=seed)[0]
    for mask in target["masks"]:
        colours = image[:, mask]
        np.testing.assert_array_equal(colours, np.repeat(colours[:, :1], colours.shape[1], axis=1))


def test_class_subset_and_names():
    data = Shapes(6, classes=("triangle", "circle"), max_objects=4, seed=2)
    assert data.class_names == ("triangle", "circle") and data.num_classes == 2
    labels = np.concatenate([data[i][1]["labels"] for i in range(len(data))])
    assert set(labels.tolist()) <= {1, 2}
    assert DigitsOnCanvas(1).class_names == tuple("0123456789")


def test_digit_splits_use_disjoint_glyphs():
    train, test = DigitsOnCanvas(1, split="train"), DigitsOnCanvas(1, split="test")
    assert len(train.glyphs) + len(test.glyphs) == 1797
    assert not any(np.array_equal(train.glyphs[i], test.glyphs[0]) for i in range(len(train.glyphs)))


def test_index_errors_follow_the_sequence_protocol():
    data = Shapes(3)
    with pytest.raises(IndexError, match="index 3 is out of range for a dataset of length 3"):
        data[3]
    with pytest.raises(TypeError, match="index must be an integer, got str"):
        data["0"]
    assert len(list(iter(data))) == 3  # the legacy iteration protocol stops at IndexError


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": 8}, "image_size must be an integer >= 16, got 8"),
    ({"min_objects": 3, "max_objects": 1}, "0 <= min_objects <= max_objects, got 3 and 1"),
    ({"classes": ("circle", "hexagon")}, "classes must be distinct names from"),
    ({"noise": 2.0}, r"noise must be in \[0, 1\], got 2.0"),
    ({"seed": -1}, "seed must be a non-negative integer, got -1"),
])
def test_shapes_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Shapes(2, **kwargs)


def test_digits_bad_arguments():
    with pytest.raises(ValueError, match=r"glyph_size must be \(low, high\).*got \(2, 10\)"):
        DigitsOnCanvas(1, glyph_size=(2, 10))
    with pytest.raises(ValueError, match="split must be one of .*got 'val'"):
        DigitsOnCanvas(1, split="val")
    with pytest.raises(ValueError, match="canvas_size must be an integer >= 16"):
        DigitsOnCanvas(1, canvas_size=10)


def test_digits_without_scikit_learn_names_the_extra(monkeypatch):
    from minivision.data import digits

    digits._load_glyphs.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"scikit-learn's load_digits.*'sklearn'.*minivision\[data\]"):
        DigitsOnCanvas(1)
    digits._load_glyphs.cache_clear()
