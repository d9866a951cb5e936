"""interpolate (nearest, bilinear with and without align_corners): parity, gradchecks,
hand-worked examples and bad input."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
import minivision.functional as F
from minivision.functional import upsample
from tests.helpers import DEVICES, check_parity, torch_or_skip

torch = None


def setup_module():
    global torch
    torch = torch_or_skip()


MODES = [("nearest", None), ("bilinear", False), ("bilinear", True)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode,align_corners", MODES)
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 6), st.integers(1, 6)),
       size=st.tuples(st.integers(1, 9), st.integers(1, 9)), seed=st.integers(0, 2**16))
def test_interpolate_to_a_size_matches_torch(mode, align_corners, shape, size, seed, device):
    rng = np.random.default_rng(seed)
    kw = dict(size=size, mode=mode, align_corners=align_corners)
    check_parity(lambda a: F.interpolate(a, **kw), lambda a: torch.nn.functional.interpolate(a, **kw),
                 [rng.standard_normal(shape)], rng, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode,align_corners", MODES)
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(2, 6), st.integers(2, 6)),
       scale=st.tuples(st.sampled_from([0.5, 0.75, 1.5, 2.0, 2.5, 3.0]), st.sampled_from([0.6, 1.0, 2.0, 2.2])),
       recompute=st.sampled_from([None, True]), seed=st.integers(0, 2**16))
def test_interpolate_by_a_scale_factor_matches_torch(mode, align_corners, shape, scale, recompute, seed, device):
    rng = np.random.default_rng(seed)
    kw = dict(scale_factor=scale, mode=mode, align_corners=align_corners, recompute_scale_factor=recompute)
    check_parity(lambda a: F.interpolate(a, **kw), lambda a: torch.nn.functional.interpolate(a, **kw),
                 [rng.standard_normal(shape)], rng, device=device)


@pytest.mark.parametrize("mode,align_corners", MODES)
@pytest.mark.parametrize("size", [(7, 3), (2, 5)])
def test_interpolate_gradcheck(mode, align_corners, size, rng):
    x = mv.Tensor(rng.standard_normal((1, 2, 4, 4)), requires_grad=True)
    mv.gradcheck(lambda t: F.interpolate(t, size=size, mode=mode, align_corners=align_corners), [x])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(in_hw=st.tuples(st.integers(1, 7), st.integers(1, 7)), out_hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       align=st.booleans(), seed=st.integers(0, 2**16))
def test_numba_resampling_equals_the_array_path_of_the_gpu(dtype, in_hw, out_hw, align, seed):
    """The CPU kernel against ``_apply_along`` (the CuPy path) run on NumPy, for nearest and
    bilinear matrices, enlarging and shrinking, and for their transposes (the backward)."""
    rng = np.random.default_rng(seed)
    builders = [lambda n, o: upsample._nearest_matrix(n, o, None),
                lambda n, o: upsample._bilinear_matrix(n, o, None, align)]
    for build in builders:
        rows, cols = build(in_hw[0], out_hw[0]), build(in_hw[1], out_hw[1])
        for r, c in ((rows, cols), (rows.T, cols.T)):
            x = rng.standard_normal((2, 3, r.shape[1], c.shape[1])).astype(dtype)
            got = upsample._resample(x, r, c)
            expected = upsample._apply_along(upsample._apply_along(x, c, 3), r, 2)
            assert got.dtype == dtype
            np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_nearest_doubling_by_hand():
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    out = F.interpolate(mv.Tensor(x), scale_factor=2)
    np.testing.assert_array_equal(out.numpy()[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])


def test_bilinear_align_corners_by_hand():
    x = np.array([[0.0, 2.0], [4.0, 6.0]]).reshape(1, 1, 2, 2)
    out = F.interpolate(mv.Tensor(x), size=(3, 3), mode="bilinear", align_corners=True)
    np.testing.assert_allclose(out.numpy()[0, 0], [[0, 1, 2], [2, 3, 4], [4, 5, 6]])
    # without align_corners, pixel centres map: output 0 of 4 sits at input -0.25, clamped to 0
    row = F.interpolate(mv.Tensor(np.array([0.0, 4.0]).reshape(1, 1, 1, 2)), size=(1, 4), mode="bilinear")
    np.testing.assert_allclose(row.numpy()[0, 0, 0], [0, 1, 3, 4])


@pytest.mark.parametrize("kw,error,message", [
    (dict(scale_factor=2, mode="bicubic"), ValueError, "mode must be one of"),
    (dict(scale_factor=2, align_corners=True), ValueError, "align_corners can only be set with mode='bilinear'"),
    (dict(), ValueError, "give exactly one of size and scale_factor"),
    (dict(size=4, scale_factor=2), ValueError, "give exactly one of size and scale_factor"),
    (dict(size=(0, 3)), ValueError, r"size must be a positive number or a pair of them, got \(0, 3\)"),
    (dict(scale_factor=0.1), ValueError, "shrinks input"),
])
def test_interpolate_bad_input(kw, error, message):
    with pytest.raises(error, match=message):
        F.interpolate(mv.Tensor(np.zeros((1, 1, 4, 4))), **kw)


def test_interpolate_needs_nchw():
    with pytest.raises(ValueError, match=r"input must have shape \(N, C, H, W\), got \(1, 4, 4\)"):
        F.interpolate(mv.Tensor(np.zeros((1, 4, 4))), scale_factor=2)
