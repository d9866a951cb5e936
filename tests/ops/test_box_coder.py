"""BoxCoder: hand-checked offsets, the dw/dh clamp, round trips, bad input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivision.ops import BoxCoder
from minivision.tensor import Tensor

# Reference box: centre (5, 10), 10 wide, 20 high. Box: centre (15, 10), 20 wide, 20 high.
REFERENCE = np.array([[0.0, 0.0, 10.0, 20.0]])
BOX = np.array([[5.0, 0.0, 25.0, 20.0]])


def test_encode_hand_checked():
    # dx = (15 - 5) / 10 = 1, dy = 0, dw = log(20 / 10), dh = log(20 / 20) = 0.
    np.testing.assert_allclose(BoxCoder().encode(BOX, REFERENCE), [[1.0, 0.0, math.log(2), 0.0]])
    # Faster R-CNN's second-stage weights multiply each offset.
    np.testing.assert_allclose(
        BoxCoder(weights=(10, 10, 5, 5)).encode(BOX, REFERENCE), [[10.0, 0.0, 5 * math.log(2), 0.0]]
    )


def test_decode_hand_checked():
    # Shift the centre by half a width right and a quarter height down, double the height.
    deltas = np.array([[0.5, 0.25, 0.0, math.log(2)]])
    # Centre (5 + 5, 10 + 5) = (10, 15); size 10 x 40.
    np.testing.assert_allclose(BoxCoder().decode(deltas, REFERENCE), [[5.0, -5.0, 15.0, 35.0]])


def test_decode_clamps_only_large_dw_dh():
    clip = math.log(1000 / 16)
    coder = BoxCoder()
    assert coder.bbox_xform_clip == pytest.approx(clip)
    out = coder.decode(np.array([[0.0, 0.0, 10.0, -10.0]]), REFERENCE)
    # dw = 10 is clamped to log(62.5): width 10 * 62.5 = 625 around x = 5.
    # dh = -10 is not clamped: height 20 * exp(-10) around y = 10.
    half_h = 10 * math.exp(-10)
    np.testing.assert_allclose(out, [[5 - 312.5, 10 - half_h, 5 + 312.5, 10 + half_h]])
    assert np.isfinite(coder.decode(np.array([[0.0, 0.0, 1e6, 1e6]]), REFERENCE)).all()


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 20),
    weights=st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (0.5, 2.0, 3.0, 0.25)]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_decode_inverts_encode(seed, n, weights, dtype):
    rng = np.random.default_rng(seed)

    def random_boxes():
        xy = rng.uniform(-50, 50, (n, 2))
        return np.concatenate([xy, xy + rng.uniform(1, 60, (n, 2))], axis=1).astype(dtype)

    boxes, reference = random_boxes(), random_boxes()
    coder = BoxCoder(weights)
    deltas = coder.encode(boxes, reference)
    assert deltas.shape == (n, 4) and deltas.dtype == dtype
    decoded = coder.decode(deltas, reference)
    assert decoded.dtype == dtype
    np.testing.assert_allclose(decoded, boxes, rtol=0, atol=1e-3 if dtype == np.float32 else 1e-9)


def test_tensor_in_tensor_out():
    coder = BoxCoder()
    deltas = coder.encode(Tensor(BOX.astype(np.float32)), REFERENCE.astype(np.float32))
    assert isinstance(deltas, Tensor)
    assert isinstance(coder.decode(deltas, Tensor(REFERENCE.astype(np.float32))), Tensor)


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda c: c.encode(np.zeros((2, 4)) + [0, 0, 1, 1], REFERENCE),
            r"reference_boxes must have one row per row of boxes: expected shape \(2, 4\), got \(1, 4\)",
        ),
        (
            lambda c: c.encode(BOX, np.array([[0.0, 0.0, 0.0, 5.0]])),
            r"reference_boxes must have positive width and height .* row 0",
        ),
        (
            lambda c: c.encode(np.array([[1.0, 1.0, 3.0, 1.0]]), REFERENCE),
            r"boxes must have positive width and height",
        ),
        (
            lambda c: c.decode(np.zeros((1, 3)), REFERENCE),
            r"deltas must have shape \(N, 4\).*got shape \(1, 3\)",
        ),
        (
            lambda c: c.decode(np.array([[0.0, np.nan, 0.0, 0.0]]), REFERENCE),
            r"deltas must be finite",
        ),
        (
            lambda c: c.decode(np.zeros((1, 4)), np.array([[0.0, 0.0, np.inf, 1.0]])),
            r"reference_boxes must be finite",
        ),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(BoxCoder())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weights": (1.0, 1.0, 1.0)}, r"weights must be four positive finite numbers"),
        ({"weights": (1.0, 0.0, 1.0, 1.0)}, r"weights must be four positive finite numbers"),
        ({"bbox_xform_clip": float("inf")}, r"bbox_xform_clip must be finite"),
    ],
)
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BoxCoder(**kwargs)
