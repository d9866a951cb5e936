"""minivision.reference.upsample: nearest and bilinear resizing.

PyTorch parity of the reference's forward and backward over hypothesis-drawn shapes, sizes
and scale factors; float64 gradchecks of ``interpolate`` on both paths; hand-worked cases;
and the Numba fast path equal to the reference (to rounding: it sums in another order).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
import minivision.functional as F
from minivision.reference import upsample as reference
from tests.helpers import assert_close, torch_or_skip

MODES = [("nearest", None), ("bilinear", False), ("bilinear", True)]
PATHS = ["reference", "fast"]


def _forward(x, mode, align_corners, size, scales):
    if mode == "nearest":
        return reference.upsample_nearest2d(x, size, scales)
    return reference.upsample_bilinear2d(x, size, align_corners, scales)


def _backward(grad, mode, align_corners, in_hw, scales):
    if mode == "nearest":
        return reference.upsample_nearest2d_backward(grad, in_hw, scales)
    return reference.upsample_bilinear2d_backward(grad, in_hw, align_corners, scales)


@st.composite
def resize_cases(draw):
    """An input shape, and either a size (scales None) or PyTorch-style scale factors with
    the size they give (out = floor(in * scale)); a seed."""
    side = st.integers(1, 6)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(side), draw(side))
    seed = draw(st.integers(0, 2**16))
    if draw(st.booleans()):
        return shape, (draw(st.integers(1, 9)), draw(st.integers(1, 9))), (None, None), seed
    scales = (
        draw(st.sampled_from([0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0])),
        draw(st.sampled_from([0.6, 1.0, 2.0, 2.2])),
    )
    in_hw = tuple(max(n, int(np.ceil(1 / s))) for n, s in zip(shape[2:], scales))  # out >= 1
    size = tuple(int(np.floor(n * s)) for n, s in zip(in_hw, scales))
    return shape[:2] + in_hw, size, scales, seed


@pytest.mark.parametrize("mode,align_corners", MODES)
@given(case=resize_cases())
def test_matches_torch(mode, align_corners, case):
    torch = torch_or_skip()
    shape, size, scales, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    t = torch.tensor(x, requires_grad=True)
    kw = dict(size=size) if scales[0] is None else dict(scale_factor=scales)
    expected = torch.nn.functional.interpolate(t, mode=mode, align_corners=align_corners, **kw)
    upstream = rng.standard_normal(tuple(expected.shape))
    expected.backward(torch.tensor(upstream))
    assert_close(_forward(x, mode, align_corners, size, scales), expected, what="forward")
    got = _backward(upstream, mode, align_corners, shape[2:], scales)
    assert_close(got, t.grad, what="gradient")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode,align_corners", MODES)
@pytest.mark.parametrize("size", [(7, 3), (2, 5), (4, 8)])
def test_interpolate_gradcheck(size, mode, align_corners, path, rng):
    x = mv.Tensor(rng.standard_normal((1, 2, 4, 4)), requires_grad=True)
    with mv.use_reference(path == "reference"):
        mv.gradcheck(lambda t: F.interpolate(t, size, mode=mode, align_corners=align_corners), [x])


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_the_reference_keeps_the_dtype(dtype, rng):
    x = rng.standard_normal((2, 3, 5, 4))
    for mode, align_corners in MODES:
        out = _forward(x.astype(dtype), mode, align_corners, (7, 9), (None, None))
        grad = _backward(out, mode, align_corners, (5, 4), (None, None))
        assert out.dtype == grad.dtype == dtype
        tolerance = float(np.finfo(dtype).eps) * 16
        expected = _forward(
            x.astype(dtype).astype(np.float64), mode, align_corners, (7, 9), (None, None)
        )
        assert_close(out, expected, rtol=tolerance, atol=tolerance)


# ----------------------------------------------------------------- by hand, on both paths
@pytest.mark.parametrize("path", PATHS)
def test_nearest_doubling_by_hand(path):
    x = mv.Tensor(np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2), requires_grad=True)
    with mv.use_reference(path == "reference"):
        out = F.interpolate(x, scale_factor=2)
        out.backward(mv.Tensor(np.arange(16.0).reshape(1, 1, 4, 4)))
    np.testing.assert_array_equal(
        out.numpy()[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    )
    np.testing.assert_array_equal(
        x.grad.numpy()[0, 0], [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]]
    )


@pytest.mark.parametrize("path", PATHS)
def test_bilinear_by_hand(path):
    """With align_corners the corner centres meet: 2 -> 3 puts output 1 halfway between the
    inputs. Without, output i of 4 sits at input (i + 0.5) / 2 - 0.5: -0.25 (clamped to 0),
    0.25, 0.75, 1.25 (upper index clamped to 1)."""
    x = np.array([[0.0, 2.0], [4.0, 6.0]]).reshape(1, 1, 2, 2)
    row = mv.Tensor(np.array([0.0, 4.0]).reshape(1, 1, 1, 2), requires_grad=True)
    with mv.use_reference(path == "reference"):
        corners = F.interpolate(mv.Tensor(x), size=(3, 3), mode="bilinear", align_corners=True)
        centres = F.interpolate(row, size=(1, 4), mode="bilinear")
        centres.backward(mv.Tensor(np.ones((1, 1, 1, 4))))
    np.testing.assert_allclose(corners.numpy()[0, 0], [[0, 1, 2], [2, 3, 4], [4, 5, 6]])
    np.testing.assert_allclose(centres.numpy()[0, 0, 0], [0, 1, 3, 4])
    np.testing.assert_allclose(row.grad.numpy()[0, 0, 0], [1 + 0.75 + 0.25, 0.25 + 0.75 + 1])


def test_sources_by_hand():
    np.testing.assert_array_equal(reference.nearest_source(3, 5), [0, 0, 1, 1, 2])  # floor(i * 0.6)
    np.testing.assert_array_equal(reference.nearest_source(4, 2), [0, 2])
    lower, upper, frac = reference.bilinear_source(2, 4)  # at -0.25 (to 0), 0.25, 0.75, 1.25
    np.testing.assert_array_equal(lower, [0, 0, 0, 1])
    np.testing.assert_array_equal(upper, [1, 1, 1, 1])  # the last input row has none after it
    np.testing.assert_allclose(frac, [0.0, 0.25, 0.75, 0.25])
    lower, upper, frac = reference.bilinear_source(3, 5, align_corners=True)  # at i * 2 / 4
    np.testing.assert_array_equal(lower, [0, 0, 1, 1, 2])
    np.testing.assert_allclose(frac, [0.0, 0.5, 0.0, 0.5, 0.0])


# ----------------------------------------------------------------- fast path equals the reference
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode,align_corners", MODES)
@given(case=resize_cases())
def test_fast_path_equals_the_reference(mode, align_corners, case, dtype):
    """The Numba kernel applies the reference's weights as matrices, columns first as the
    reference does, so forward and gradient agree to rounding."""
    shape, size, scales, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    upstream = rng.standard_normal(shape[:2] + size).astype(dtype)
    kw = dict(size=size) if scales[0] is None else dict(scale_factor=scales)
    results = []
    for reference_on in (False, True):
        with mv.use_reference(reference_on):
            t = mv.tensor(x, requires_grad=True)
            out = F.interpolate(t, mode=mode, align_corners=align_corners, **kw)
            out.backward(mv.tensor(upstream))
        results.append((out.numpy(), t.grad.numpy()))
    tolerance = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for (got, expected), what in zip(zip(*results), ("forward", "gradient")):
        assert got.dtype == expected.dtype == dtype, what
        np.testing.assert_allclose(got, expected, err_msg=what, **tolerance)
