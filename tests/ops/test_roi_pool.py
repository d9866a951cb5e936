"""roi_pool: hand cases, the argmax's gradient, bit-equality with the NumPy restatement of
torchvision's kernel (and with torchvision where installed), gradcheck, the CUDA twins under
the emulator, bad input.

The graded tests of part ``roi`` live here: this module imports no fast-path module (a
student copy without ``roi`` lacks them), only the tests of the CUDA twins do."""

import numpy as np
import pytest
from hypothesis import given, settings

import minivision as mv
from minivision.ops.roi_pool import roi_pool, roi_pool_with_argmax
from tests import cuda_emulation
from tests.ops.roi_reference import (
    FLT_MAX,
    roi_cases,
    roi_pool_backward_reference,
    roi_pool_reference,
)

SETTINGS = settings(max_examples=60, deadline=None)

X = np.array([[1, 2, 0, 0], [0, 9, 3, 0], [0, 0, 0, 5], [4, 0, 0, 0]], dtype=np.float64).reshape(
    1, 1, 4, 4
)


def _pool_with_grad(x, rois, output_size, scale, upstream):
    """(output, argmax, input gradient) of roi_pool for upstream gradient ``upstream``."""
    t = mv.tensor(x, requires_grad=True)
    out, argmax = roi_pool_with_argmax(t, rois, output_size, scale)
    assert not argmax.requires_grad
    out.backward(mv.tensor(upstream))
    return out.numpy(), argmax.numpy(), t.grad.numpy()


def test_overlapping_bins_add_their_gradients_at_a_shared_switch():
    # RoI 0: corners (0, 0)-(2, 2) -> 3x3 cells, bins of 1.5: rows/cols [0, 2) and [1, 3);
    # the 9 at (1, 1) = flat 5 lies in all four bins. RoI 1 lies right of the map: every bin is empty.
    rois = np.array([[0, 0, 0, 2, 2], [0, 10, 0, 12, 2]], dtype=np.float64)
    upstream = np.array([[[[1, 2], [3, 4]]], [[[5, 6], [7, 8]]]], dtype=np.float64)
    out, switches, grad = _pool_with_grad(X, rois, 2, 1.0, upstream)
    np.testing.assert_array_equal(out, [[[[9, 9], [9, 9]]], [[[0, 0], [0, 0]]]])
    np.testing.assert_array_equal(switches, [[[[5, 5], [5, 5]]], [[[-1, -1], [-1, -1]]]])
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, 1, 1] = 1 + 2 + 3 + 4  # RoI 1's gradient goes nowhere
    np.testing.assert_array_equal(grad, expected)


def test_two_rois_sharing_a_maximum_accumulate_and_ties_keep_the_first():
    # RoI 0: rows 2-3, cols 2-3 (2x2 cells, one bin): the 5 at (2, 3) = flat 11.
    # RoI 1: rows 2-3, cols 3-3, same maximum. RoI 2: row 0, cols 2-3 hold 0, 0: the first, flat 2.
    rois = np.array([[0, 2, 2, 3, 3], [0, 3, 2, 3, 3], [0, 2, 0, 3, 0]], dtype=np.float64)
    out, switches, grad = _pool_with_grad(
        X, rois, 1, 1.0, np.array([0.5, 0.25, 2.0]).reshape(3, 1, 1, 1)
    )
    np.testing.assert_array_equal(out.ravel(), [5, 5, 0])
    np.testing.assert_array_equal(switches.ravel(), [11, 11, 2])
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, 2, 3], expected[0, 0, 0, 2] = 0.75, 2.0
    np.testing.assert_array_equal(grad, expected)


@pytest.mark.parametrize(
    "corner, spatial_scale, cell", [(2.5, 1.0, 3), (0.5, 1.0, 1), (40.0, 1 / 16, 3), (1.49, 1.0, 1)]
)
def test_corners_round_halves_away_from_zero(corner, spatial_scale, cell):
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 1, 6)
    rois = np.array([[0, corner, 0, corner, 0]], dtype=np.float32)
    assert roi_pool(x, rois, 1, spatial_scale).numpy().item() == cell


def test_nan_never_wins_and_a_bin_of_minus_inf_gives_minus_flt_max():
    x = np.array([np.nan, 1, -np.inf, -np.inf], dtype=np.float64).reshape(1, 1, 2, 2)
    rois = np.array([[0, 0, 0, 1, 0], [0, 0, 1, 1, 1]], dtype=np.float64)  # row 0, then row 1
    out, switches, grad = _pool_with_grad(x, rois, 1, 1.0, np.array([3.0, 4.0]).reshape(2, 1, 1, 1))
    np.testing.assert_array_equal(out.ravel(), [1, -FLT_MAX])
    np.testing.assert_array_equal(switches.ravel(), [1, -1])
    np.testing.assert_array_equal(grad.ravel(), [0, 3, 0, 0])


@SETTINGS
@given(case=roi_cases(specials=True))
def test_equals_the_reference_to_the_bit(case):
    x, rois, scale, (out_h, out_w) = case
    upstream = (
        np.random.default_rng(1)
        .standard_normal((len(rois), x.shape[1], out_h, out_w))
        .astype(x.dtype)
    )
    out, switches, grad = _pool_with_grad(x, rois, (out_h, out_w), scale, upstream)
    expected, expected_switches = roi_pool_reference(x, rois, out_h, out_w, scale)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(switches, expected_switches)
    np.testing.assert_array_equal(
        grad, roi_pool_backward_reference(upstream, expected_switches, rois, x.shape)
    )


def test_gradcheck(rng):
    x = (
        rng.permutation(2 * 3 * 9 * 11).reshape(2, 3, 9, 11) * 0.1
    )  # distinct values: one maximum per bin
    rois = np.array([[0, 1, 1, 9, 7], [1, -2, 3, 4, 12], [1, 6, 6, 3, 2], [0, 0, 0, 20, 16]])
    mv.gradcheck(lambda t: roi_pool(t, rois, (3, 2), 0.5), [mv.tensor(x, requires_grad=True)])


def test_box_formats_agree(rng):
    """A list of per-image (L, 4) boxes, Tensors, integer and float64 boxes on float32 input."""
    x = rng.standard_normal((2, 3, 10, 12)).astype(np.float32)
    per_image = [np.array([[0.5, 1, 7, 8.5], [3, 3, 3, 3]]), np.array([[1, 2, 11, 9]])]
    rows = np.array([[0, 0.5, 1, 7, 8.5], [0, 3, 3, 3, 3], [1, 1, 2, 11, 9]], dtype=np.float32)
    expected = roi_pool(x, rows, 3).numpy()
    for boxes in (per_image, [mv.tensor(b) for b in per_image], mv.tensor(rows.astype(np.float64))):
        np.testing.assert_array_equal(roi_pool(mv.tensor(x), boxes, 3).numpy(), expected)
    whole = np.array([[1, 0, 2, 7, 9]])
    np.testing.assert_array_equal(
        roi_pool(x, whole, 3).numpy(), roi_pool(x, whole.astype(np.float32), 3).numpy()
    )
    assert roi_pool(x, np.zeros((0, 5), np.float32), 3).shape == (0, 3, 3, 3)
    assert roi_pool(x, [np.zeros((0, 4)), np.zeros((0, 4))], (2, 4)).shape == (0, 3, 2, 4)


@SETTINGS
@given(case=roi_cases())
def test_matches_torchvision(case):
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    x, rois, scale, output_size = case
    xt = torch.tensor(x, requires_grad=True)
    expected = ops.roi_pool(xt, torch.tensor(rois), output_size, scale)
    upstream = np.random.default_rng(2).standard_normal(tuple(expected.shape)).astype(x.dtype)
    expected.backward(torch.tensor(upstream))
    out, _, grad = _pool_with_grad(x, rois, output_size, scale, upstream)
    np.testing.assert_array_equal(out, expected.detach().numpy())
    np.testing.assert_array_equal(grad, xt.grad.numpy())


# ----------------------------------------------------------------- the CUDA twins, emulated
def _route_to_gpu_kernels(monkeypatch):
    """roi_pool's NumPy float arrays through its CUDA kernels (while the fast paths are on),
    run by the emulator."""
    from minivision.dispatch import numba_kernels_apply
    from minivision.ops import _roi_pool_fast

    cuda_emulation.emulate(monkeypatch)
    monkeypatch.setattr(_roi_pool_fast, "cuda_kernels_apply", numba_kernels_apply)


@pytest.fixture
def gpu_kernels(monkeypatch):
    _route_to_gpu_kernels(monkeypatch)
    with mv.use_reference(False):
        yield


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_twins_equal_the_cpu_to_the_bit(dtype, monkeypatch, rng):
    x = rng.integers(-3, 4, (2, 3, 9, 11)).astype(dtype)  # ties
    x.reshape(-1)[::13], x.reshape(-1)[5::17] = np.nan, -np.inf
    rois = np.array(
        [
            [0, 1, 1, 9, 7],
            [1, -2, 3, 4, 12],
            [1, 6, 6, 3, 2],
            [0, 0, 0, 20, 16],
            [1, 30, 30, 40, 40],
            [0, 2.5, 0.5, 2.5, 5.5],
            [1, 1, 1, 9, 7],
        ],
        dtype=dtype,
    )
    upstream = rng.standard_normal((len(rois), 3, 3, 4)).astype(dtype)
    expected = _pool_with_grad(x, rois, (3, 4), 0.5, upstream)
    _route_to_gpu_kernels(monkeypatch)
    with mv.use_reference(False):
        got = _pool_with_grad(x, rois, (3, 4), 0.5, upstream)
    for got_array, expected_array in zip(got, expected):
        np.testing.assert_array_equal(got_array, expected_array)


def test_gradcheck_on_the_cuda_twins(gpu_kernels, rng):
    x = rng.permutation(2 * 2 * 6 * 7).reshape(2, 2, 6, 7) * 0.1
    rois = np.array([[0, 1, 1, 5, 4], [1, 0, 2, 6, 5], [1, 1, 1, 5, 4]])
    mv.gradcheck(lambda t: roi_pool(t, rois, 2), [mv.tensor(x, requires_grad=True)])


# ----------------------------------------------------------------- bad input
X32 = np.zeros((2, 3, 8, 8), np.float32)
GOOD = np.array([[0, 1, 1, 4, 4]], np.float32)


@pytest.mark.parametrize(
    "args, error, message",
    [
        (
            (np.zeros((3, 8, 8), np.float32), GOOD, 2),
            ValueError,
            r"roi_pool: input must have shape \(N, C, H, W\), got \(3, 8, 8\)",
        ),
        (
            (X32.astype(np.float16), GOOD, 2),
            TypeError,
            "roi_pool: input must be float32 or float64, got dtype float16",
        ),
        (
            (np.zeros((1, 1, 0, 4), np.float32), GOOD, 2),
            ValueError,
            r"input must have H, W >= 1, got shape \(1, 1, 0, 4\)",
        ),
        ((X32, GOOD[:, 1:], 2), ValueError, r"boxes must have shape \(K, 5\) .*got shape \(1, 4\)"),
        ((X32, [GOOD], 2), ValueError, r"boxes\[0\] must have shape \(L, 4\) .*got shape \(1, 5\)"),
        ((X32, "boxes", 2), TypeError, "boxes must be a .*got str"),
        (
            (X32, np.array([[2, 1, 1, 4, 4]]), 2),
            ValueError,
            r"batch index must be an integer in \[0, 2\) .*got 2\.0 in row 0",
        ),
        (
            (X32, np.array([[0, 1, 1, 4, 4], [0.5, 1, 1, 4, 4]]), 2),
            ValueError,
            r"batch index .*got 0\.5 in row 1",
        ),
        ((X32, np.array([[-1, 1, 1, 4, 4]]), 2), ValueError, r"batch index .*got -1\.0 in row 0"),
        (
            (X32, np.array([[0, 1, np.nan, 4, 4]]), 2),
            ValueError,
            r"boxes must be finite, got NaN or inf in row 0",
        ),
        ((X32, np.array([[0, 1, 1, np.inf, 4]]), 2), ValueError, r"boxes must be finite"),
        (
            (X32, np.array([[0, 1, 1, 2e9, 4]]), 2),
            ValueError,
            r"boxes times spatial_scale must lie within \+-2\*\*30",
        ),
        (
            (X32, np.array([[0, 1, 1, 4, 4]], dtype=bool), 2),
            TypeError,
            "boxes must hold real numbers, got dtype bool",
        ),
        ((X32, GOOD, 0), ValueError, "roi_pool: output_size must be positive, got 0"),
        ((X32, GOOD, (2, -1)), ValueError, r"output_size must be positive, got \(2, -1\)"),
        (
            (X32, GOOD, (2, 2, 2)),
            TypeError,
            r"output_size must be an int or a pair of ints, got \(2, 2, 2\)",
        ),
        ((X32, GOOD, 2.0), TypeError, "output_size must be an int or a pair of ints, got 2.0"),
        ((X32, GOOD, 2, 0.0), ValueError, "spatial_scale must be positive and finite, got 0.0"),
        (
            (X32, GOOD, 2, float("inf")),
            ValueError,
            "spatial_scale must be positive and finite, got inf",
        ),
        ((X32, GOOD, 2, "1/16"), TypeError, "spatial_scale must be a positive number, got '1/16'"),
    ],
)
def test_bad_input_is_refused_with_a_message(args, error, message):
    with pytest.raises(error, match=message):
        roi_pool(*args)


def test_a_strided_input_gives_what_its_contiguous_copy_gives(rng):
    x = rng.standard_normal((2, 3, 8, 9)).astype(np.float32).transpose(0, 1, 3, 2)
    rois = np.array([[1, 0.5, 1.0, 6.0, 8.0], [0, 2.0, 2.0, 7.5, 3.0]], np.float32)
    np.testing.assert_array_equal(
        roi_pool(x, rois, 3).numpy(), roi_pool(np.ascontiguousarray(x), rois, 3).numpy()
    )


def test_module_is_the_function():
    from minivision.ops.roi_pool import RoIPool

    x = mv.tensor(np.random.default_rng(5).standard_normal((2, 3, 9, 7)))
    rois = np.array([[1, 0.5, 1.0, 6.0, 8.0], [0, 2.0, 2.0, 3.0, 3.0]])
    module = RoIPool((3, 2), spatial_scale=0.5)
    np.testing.assert_array_equal(module(x, rois).numpy(), roi_pool(x, rois, (3, 2), 0.5).numpy())
    assert repr(module) == "RoIPool(output_size=(3, 2), spatial_scale=0.5)"
