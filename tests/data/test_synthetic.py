"""Shapes and DigitsOnCanvas: determinism, target format, boxes tight around masks."""

import hashlib
import math
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minivision.data import DigitsOnCanvas, Shapes
from minivision.data.shapes import SHAPE_CLASSES
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
    assert not any(
        np.array_equal(train.glyphs[i], test.glyphs[0]) for i in range(len(train.glyphs))
    )


def test_index_errors_follow_the_sequence_protocol():
    data = Shapes(3)
    with pytest.raises(IndexError, match="index 3 is out of range for a dataset of length 3"):
        data[3]
    with pytest.raises(TypeError, match="index must be an integer, got str"):
        data["0"]
    assert len(list(iter(data))) == 3  # the legacy iteration protocol stops at IndexError


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_size": 8}, "image_size must be an integer >= 16, got 8"),
        ({"min_objects": 3, "max_objects": 1}, "0 <= min_objects <= max_objects, got 3 and 1"),
        ({"classes": ("circle", "hexagon")}, "classes must be distinct names from"),
        ({"noise": 2.0}, r"noise must be in \[0, 1\], got 2.0"),
        ({"seed": -1}, "seed must be a non-negative integer, got -1"),
    ],
)
def test_shapes_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Shapes(2, **kwargs)


# Samples as Shapes draws them with the default object sizes (0.15-0.45 of the side, uniform):
# (constructor kwargs, index, labels, boxes, sha256 of the packed masks (first 16 hex digits),
# image sum). Drawing with the default must keep reproducing these, seed for seed.
DEFAULT_DRAWS = [
    (
        {},
        0,
        [2, 3, 3],
        [[38, 33, 61, 51], [37, 53, 62, 63], [11, 46, 35, 60]],
        "5d865bc4e461e5d5",
        4843.678691607798,
    ),
    ({}, 1, [3, 3], [[32, 35, 48, 53], [35, 27, 53, 37]], "532add281d712791", 7315.316690519627),
    (
        {},
        5,
        [2, 3, 1],
        [[6, 5, 22, 27], [2, 20, 26, 41], [25, 2, 38, 14]],
        "ab0e8562183bb80c",
        5639.74767103442,
    ),
    (
        {"image_size": 96, "max_objects": 5, "seed": 7},
        0,
        [2, 3, 2, 3, 3],
        [[32, 49, 72, 69], [22, 2, 54, 26], [33, 23, 73, 52], [1, 63, 27, 81], [20, 41, 60, 65]],
        "3e5f32c753f00f40",
        14987.905615477095,
    ),
    (
        {"image_size": 96, "max_objects": 5, "seed": 7},
        3,
        [3, 1, 2, 3],
        [[53, 37, 91, 53], [7, 36, 40, 63], [3, 23, 37, 49], [50, 6, 84, 34]],
        "8e83711d626b7ab5",
        13224.024774970228,
    ),
]


@pytest.mark.parametrize("kwargs, index, labels, boxes, masks_sha, image_sum", DEFAULT_DRAWS)
def test_default_object_sizes_draw_the_same_samples(
    kwargs, index, labels, boxes, masks_sha, image_sum
):
    image, target = Shapes(8, **kwargs)[index]
    assert target["labels"].tolist() == labels
    np.testing.assert_array_equal(target["boxes"], np.array(boxes, np.float32))
    assert hashlib.sha256(np.packbits(target["masks"]).tobytes()).hexdigest()[:16] == masks_sha
    assert image.astype(np.float64).sum() == pytest.approx(image_sum, rel=1e-6)
    _assert_same((image, target), Shapes(8, **kwargs, object_sizes=None)[index])


def test_object_sizes_are_log_uniform():
    """Each octave of [8, 48] gets its share of ln(octave) / ln(6): 8-16 and 16-32 px
    ln 2 / ln 6 = 0.387 each, 32-48 px ln 1.5 / ln 6 = 0.226 (so small sides are common)."""
    data = Shapes(1, image_size=96, object_sizes=(8, 48))
    sides = data._sides(np.random.default_rng(0), 20000)
    assert sides.min() >= 8 and sides.max() <= 48
    shares = np.histogram(sides, bins=[8, 16, 32, 48])[0] / sides.size
    np.testing.assert_allclose(
        shares, [math.log(2) / math.log(6)] * 2 + [math.log(1.5) / math.log(6)], atol=0.02
    )


def test_equal_object_sizes_give_that_size():
    """A lone rectangle 12 px tall spans the pixel centres in [top, top + 12]: 12 of them
    (13 only when top lands exactly on a centre, which a continuous draw never does)."""
    data = Shapes(20, image_size=32, max_objects=1, classes="rectangle", object_sizes=(12, 12))
    for index in range(len(data)):
        target = data[index][1]
        np.testing.assert_array_equal(target["boxes"][:, 2:] - target["boxes"][:, :2], [[12, 12]])
        assert target["masks"].sum() == 144


@given(seed=st.integers(0, 2**31), size=st.integers(16, 80), data=st.data())
def test_shapes_with_object_sizes_targets_agree_with_masks(seed, size, data):
    low = data.draw(st.floats(4, size), label="low")
    high = data.draw(st.floats(low, size), label="high")
    shapes = Shapes(2, image_size=size, max_objects=4, object_sizes=(low, high), seed=seed)
    for index in range(len(shapes)):
        check_target(*shapes[index], num_classes=3, size=size)


def _drawn_masks(data, index, monkeypatch):
    """Sample ``index`` and each object's mask as drawn, before later objects covered it."""
    drawn, sample = [], data._sample_object

    def record(rng):
        mask, label = sample(rng)
        drawn.append(mask)
        return mask, label

    monkeypatch.setattr(data, "_sample_object", record)  # load() passes this on to the canvas
    image, target = data[index]
    monkeypatch.undo()
    # Walk the objects top-down: an object's drawn mask is the latest draw (rejected draws
    # come in between) whose pixels not covered by the objects above are its visible mask.
    full, covered, last = [], np.zeros(image.shape[1:], bool), len(drawn)
    for visible in target["masks"][::-1]:
        last = next(
            j for j in range(last - 1, -1, -1) if np.array_equal(drawn[j] & ~covered, visible)
        )
        full.append(drawn[last])
        covered |= drawn[last]
    return target, full[::-1]


def test_small_and_large_objects_stay_visible(monkeypatch):
    """Sizes 8-48 px at 96 px: drawn objects keep their size range, a large object drawn over a
    small one still leaves it 40% visible, and both ends of the range appear in the targets."""
    low, high = 8, 48
    data = Shapes(200, image_size=96, max_objects=4, object_sizes=(low, high), seed=0)
    drawn_sides, box_sides = [], []
    for index in range(len(data)):
        target, full = _drawn_masks(data, index, monkeypatch)
        for visible, drawn in zip(target["masks"], full):
            assert visible.any() and visible.sum() >= 0.4 * drawn.sum()
            x1, y1, x2, y2 = tight_box(drawn)
            drawn_sides += [x2 - x1, y2 - y1]
        box_sides += (target["boxes"][:, 2:] - target["boxes"][:, :2]).ravel().tolist()
    assert low - 1 <= min(drawn_sides) and max(drawn_sides) <= high + 1
    assert 0 < min(box_sides) and max(box_sides) <= high + 1
    for sides in (drawn_sides, box_sides):
        assert min(sides) < 14 and max(sides) > 40


@pytest.mark.parametrize(
    "object_sizes, error, message",
    [
        (
            (2, 10),
            ValueError,
            r"object_sizes must be \(low, high\) pixels with 4 <= low <= high <= image_size \(64\), got \(2, 10\)",
        ),
        ((20, 10), ValueError, r"object_sizes .* got \(20, 10\)"),
        ((8, 65), ValueError, r"high <= image_size \(64\), got \(8, 65\)"),
        ((math.nan, 10), ValueError, r"object_sizes .* got \(nan, 10\)"),
        (8, TypeError, r"object_sizes must be \(low, high\) .* got 8"),
        ((8, 16, 32), TypeError, r"object_sizes .* got \(8, 16, 32\)"),
        (("8", "16"), TypeError, r"object_sizes .* got \('8', '16'\)"),
        ((True, 16), TypeError, r"object_sizes .* got \(True, 16\)"),
    ],
)
def test_shapes_bad_object_sizes(object_sizes, error, message):
    with pytest.raises(error, match=message):
        Shapes(2, object_sizes=object_sizes)


def test_object_sizes_is_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        Shapes(2, 64, 1, 3, SHAPE_CLASSES, 0.05, 0, None, (8, 16))
    assert Shapes(2, object_sizes=[4, 64.0]).object_sizes == (4.0, 64.0)


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
    with pytest.raises(
        ImportError, match=r"scikit-learn's load_digits.*'sklearn'.*minivision\[data\]"
    ):
        DigitsOnCanvas(1)
    digits._load_glyphs.cache_clear()
