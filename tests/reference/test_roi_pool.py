"""minivision.reference.roi_pool: the NumPy restatement of torchvision's kernel
(tests/ops/roi_reference.py) to the bit, PyTorch's adaptive max pooling where a region is the
whole map, torchvision itself where installed, a hand-checked case, float64 gradcheck, and
the fast path (Numba loops) equal to the reference bit for bit, forward and backward.

Tests of part ``roi`` call the reference, so they fail in a student copy without it; no
module imported here is a fast path.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
from minivision.ops.roi_pool import roi_pool_with_argmax
from minivision.reference.roi_pool import roi_pool, roi_pool_backward
from tests.ops.roi_reference import (
    FLT_MAX,
    roi_cases,
    roi_pool_backward_reference,
    roi_pool_reference,
)


@given(case=roi_cases(specials=True), seed=st.integers(0, 2**16))
def test_equals_the_restatement_of_torchvision_to_the_bit(case, seed):
    x, rois, scale, (out_h, out_w) = case
    out, argmax = roi_pool(x, rois, (out_h, out_w), scale)
    expected, expected_argmax = roi_pool_reference(x, rois, out_h, out_w, scale)
    assert out.dtype == x.dtype and argmax.dtype == np.int64
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(argmax, expected_argmax)
    grad = np.random.default_rng(seed).standard_normal(out.shape).astype(x.dtype)
    np.testing.assert_array_equal(
        roi_pool_backward(grad, argmax, rois, x.shape),
        roi_pool_backward_reference(grad, expected_argmax, rois, x.shape),
    )


@given(data=st.data())
def test_a_region_over_the_whole_map_is_adaptive_max_pooling(data):
    """Where a region covers the map and the grid divides it, its bins are PyTorch's adaptive
    max pooling's; with distinct values both pick one maximum."""
    torch = pytest.importorskip("torch")
    out_h, out_w = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    n, channels = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))
    height, width = out_h * data.draw(st.integers(1, 3)), out_w * data.draw(st.integers(1, 3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.permutation(n * channels * height * width).reshape(n, channels, height, width) * 1.0
    image = data.draw(st.integers(0, n - 1))
    whole_map = np.array([[image, 0, 0, width - 1, height - 1]], np.float64)
    out, argmax = roi_pool(x, whole_map, (out_h, out_w), 1.0)
    expected, indices = torch.nn.functional.adaptive_max_pool2d(
        torch.from_numpy(x[image : image + 1]), (out_h, out_w), return_indices=True
    )
    np.testing.assert_array_equal(out, expected.numpy())
    np.testing.assert_array_equal(argmax, indices.numpy())


def test_hand_checked_case():
    x = np.array(
        [[1, 2, 0, 0], [0, 9, 3, 0], [0, 0, np.nan, 5], [4, 0, 0, -np.inf]], np.float32
    ).reshape(1, 1, 4, 4)
    rois = np.array(
        [
            [0, 0, 0, 2, 2],  # cells (0, 0)-(2, 2), bins of 1.5: rows and columns [0, 2) and [1, 3)
            [
                0,
                1.5,
                2,
                2.5,
                3,
            ],  # x 1.5 and 2.5 round to 2 and 3: rows and columns 2-3; NaN never wins
            [0, 3, 3, 3, 3],  # the -inf alone: -FLT_MAX, argmax -1
            [0, 9, 0, 9, 1],  # right of the map: empty bins give 0, argmax -1
        ],
        np.float32,
    )
    out, argmax = roi_pool(x, rois[:1], (2, 2), 1.0)
    # The 9 at (1, 1), flat 5, is in all four bins.
    np.testing.assert_array_equal(out, [[[[9, 9], [9, 9]]]])
    np.testing.assert_array_equal(argmax, [[[[5, 5], [5, 5]]]])
    out, argmax = roi_pool(x, rois[1:], (1, 1), 1.0)
    np.testing.assert_array_equal(out.ravel(), [5, -FLT_MAX, 0])
    np.testing.assert_array_equal(argmax.ravel(), [11, -1, -1])
    grad = np.array([2.0, 3.0, 4.0], np.float32).reshape(3, 1, 1, 1)
    expected = np.zeros((1, 1, 4, 4), np.float32)
    expected[0, 0, 2, 3] = 2  # only the first region's bin has a maximum to send its gradient to
    np.testing.assert_array_equal(roi_pool_backward(grad, argmax, rois[1:], x.shape), expected)


def test_gradcheck(rng):
    x = rng.permutation(2 * 3 * 7 * 9).reshape(2, 3, 7, 9) * 0.1  # distinct: one maximum a bin
    rois = np.array([[0, 1, 1, 8, 6], [1, -2, 3, 4, 12], [1, 6, 6, 3, 2], [0, 2, 2, 6, 5]], float)
    with mv.use_reference(True):
        mv.gradcheck(
            lambda t: roi_pool_with_argmax(t, rois, (3, 2), 0.5)[0],
            [mv.tensor(x, requires_grad=True)],
        )


@given(case=roi_cases(specials=True), seed=st.integers(0, 2**16))
def test_fast_path_equals_the_reference_to_the_bit(case, seed):
    x, rois, scale, output_size = case
    grad = None
    results = []
    for reference in (False, True):
        with mv.use_reference(reference):
            t = mv.tensor(x, requires_grad=True)
            out, argmax = roi_pool_with_argmax(t, rois, output_size, scale)
            if grad is None:
                grad = np.random.default_rng(seed).standard_normal(out.shape).astype(x.dtype)
            out.backward(mv.tensor(grad))
            results.append((out.numpy(), argmax.numpy(), t.grad.numpy()))
    for fast, reference in zip(*results):
        assert fast.dtype == reference.dtype
        np.testing.assert_array_equal(fast, reference)
