"""box_convert: hand-checked conversions, round trips, bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from minivision.ops import box_convert
from minivision.tensor import Tensor

FORMATS = ["xyxy", "xywh", "cxcywh"]

# One box, x from 1 to 4 and y from 2 to 8, written in each format.
ONE_BOX = {
    "xyxy": [[1.0, 2.0, 4.0, 8.0]],
    "xywh": [[1.0, 2.0, 3.0, 6.0]],
    "cxcywh": [[2.5, 5.0, 3.0, 6.0]],
}


@pytest.mark.parametrize("in_fmt", FORMATS)
@pytest.mark.parametrize("out_fmt", FORMATS)
def test_hand_checked_conversions(in_fmt, out_fmt):
    out = box_convert(np.array(ONE_BOX[in_fmt], np.float32), in_fmt, out_fmt)
    assert out.dtype == np.float32 and out.shape == (1, 4)
    np.testing.assert_array_equal(out, ONE_BOX[out_fmt])


@settings(max_examples=50, deadline=None)
@given(
    xy=arrays(np.float64, st.tuples(st.integers(0, 10), st.just(2)), elements=st.floats(-1e3, 1e3)),
    wh_seed=st.integers(0, 2**32 - 1),
    via=st.sampled_from(["xywh", "cxcywh"]),
)
def test_round_trip(xy, wh_seed, via):
    wh = np.random.default_rng(wh_seed).uniform(0, 100, xy.shape)
    boxes = np.concatenate([xy, xy + wh], axis=1)
    back = box_convert(box_convert(boxes, "xyxy", via), via, "xyxy")
    np.testing.assert_allclose(back, boxes, rtol=0, atol=1e-9)


def test_empty_and_tensor():
    empty = box_convert(np.zeros((0, 4), np.float64), "xyxy", "cxcywh")
    assert empty.shape == (0, 4) and empty.dtype == np.float64
    out = box_convert(Tensor(np.array(ONE_BOX["xywh"], np.float32)), "xywh", "xyxy")
    assert isinstance(out, Tensor)
    np.testing.assert_array_equal(out.data, ONE_BOX["xyxy"])


def test_same_format_returns_a_copy():
    boxes = np.array(ONE_BOX["xyxy"])
    out = box_convert(boxes, "xyxy", "xyxy")
    out[0, 0] = 99
    assert boxes[0, 0] == 1.0


@pytest.mark.parametrize(
    "args, error, match",
    [
        (
            (np.zeros((1, 4)), "xyxz", "xywh"),
            ValueError,
            r"in_fmt must be one of \('xyxy', 'xywh', 'cxcywh'\), got 'xyxz'",
        ),
        ((np.zeros((1, 4)), "xyxy", "yolo"), ValueError, r"out_fmt must be one of .* got 'yolo'"),
        (
            (np.zeros((2, 3)), "xywh", "xyxy"),
            ValueError,
            r"boxes must have shape \(N, 4\) in format 'xywh', got shape \(2, 3\)",
        ),
        (
            (np.array([[0.0, 0.0, -1.0, 2.0]]), "xywh", "xyxy"),
            ValueError,
            r"x2 >= x1 and y2 >= y1.*row 0",
        ),
        (
            (np.array([[np.nan, 0.0, 1.0, 2.0]]), "cxcywh", "xyxy"),
            ValueError,
            r"boxes must be finite",
        ),
    ],
)
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        box_convert(*args)
