"""roi_align: hand cases, bit-equality with the NumPy restatement of torchvision's kernel
(and agreement with torchvision where installed) for every flag, gradcheck, the CUDA twins
under the emulator, bad input."""

import importlib

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minivision as mv
from minivision.ops.roi_align import roi_align
from tests import cuda_emulation
from tests.ops.roi_reference import roi_align_backward_reference, roi_align_reference, roi_cases
from tests.test_cuda_kernels import _route_to_gpu_kernels

roi_align_module = importlib.import_module(
    "minivision.ops.roi_align"
)  # the package exports a function of that name

SETTINGS = settings(max_examples=60, deadline=None)
FLAGS = st.tuples(st.sampled_from([-1, 0, 1, 2, 3]), st.booleans())  # sampling_ratio, aligned


def _align_with_grad(x, rois, output_size, scale, sampling_ratio, aligned, upstream):
    """(output, input gradient) of roi_align for upstream gradient ``upstream``."""
    t = mv.tensor(x, requires_grad=True)
    out = roi_align(t, rois, output_size, scale, sampling_ratio, aligned)
    out.backward(mv.tensor(upstream))
    return out.numpy(), t.grad.numpy()


def test_a_linear_map_is_sampled_exactly():
    """On x[h, w] = 10 h + w, bilinear reads are exact: each bin outputs its samples' mean."""
    x = (10 * np.arange(5)[:, None] + np.arange(6)[None, :]).astype(np.float64).reshape(1, 1, 5, 6)
    # aligned: box (1, 1)-(4, 3) starts at (0.5, 0.5), bins 1.5 wide and 1 high, 2x1 samples at
    # x = 0.875, 1.625 | 2.375, 3.125 and y = 1.0 | 2.0, so bin means x 1.25 | 2.75, y 1 | 2.
    out = roi_align(x, np.array([[0, 1, 1, 4, 3]]), 2, 1.0, -1, True).numpy()
    np.testing.assert_allclose(
        out.reshape(2, 2), [[11.25, 12.75], [21.25, 22.75]], rtol=0, atol=1e-12
    )


def test_samples_past_the_border():
    """x in [-1, 0] reads column 0; x beyond the last column reads it; x < -1 reads nothing."""
    x = np.array([[3.0, 5.0]]).reshape(1, 1, 1, 2)
    # one sample per bin (sampling_ratio=1) at the bin centre; box (-3, 0)-(3, 0.5), not aligned:
    # width 6, three bins of 2 with samples at x = -2 (off the map: 0), 0 (column 0: 3), 2 (past the end: 5)
    out = roi_align(x, np.array([[0, -3, 0, 3, 0.5]]), (1, 3), 1.0, 1, False).numpy()
    np.testing.assert_array_equal(out.ravel(), [0.0, 3.0, 5.0])
    _, grad = _align_with_grad(
        x,
        np.array([[0, -3, 0, 3, 0.5]]),
        (1, 3),
        1.0,
        1,
        False,
        np.array([7.0, 11.0, 13.0]).reshape(1, 1, 1, 3),
    )
    np.testing.assert_array_equal(grad.ravel(), [11.0, 13.0])  # the off-map sample's 7 goes nowhere


def test_an_empty_aligned_region_outputs_zero_and_passes_no_gradient():
    x = np.arange(12, dtype=np.float64).reshape(1, 1, 3, 4)
    out, grad = _align_with_grad(
        x, np.array([[0, 2, 1, 2, 1]]), 2, 1.0, -1, True, np.ones((1, 1, 2, 2))
    )
    np.testing.assert_array_equal(out, 0)
    np.testing.assert_array_equal(grad, 0)


@SETTINGS
@given(case=roi_cases(), flags=FLAGS)
def test_equals_the_reference_to_the_bit(case, flags):
    x, rois, scale, (out_h, out_w) = case
    sampling_ratio, aligned = flags
    upstream = (
        np.random.default_rng(1)
        .standard_normal((len(rois), x.shape[1], out_h, out_w))
        .astype(x.dtype)
    )
    out, grad = _align_with_grad(x, rois, (out_h, out_w), scale, sampling_ratio, aligned, upstream)
    assert out.dtype == grad.dtype == x.dtype
    np.testing.assert_array_equal(
        out, roi_align_reference(x, rois, out_h, out_w, scale, sampling_ratio, aligned)
    )
    np.testing.assert_array_equal(
        grad, roi_align_backward_reference(upstream, rois, x.shape, scale, sampling_ratio, aligned)
    )


@pytest.mark.parametrize("sampling_ratio, aligned", [(-1, False), (2, False), (0, True), (3, True)])
def test_gradcheck(sampling_ratio, aligned, rng):
    x = rng.standard_normal((2, 3, 9, 11))
    rois = np.array(
        [[0, 1.3, 1.1, 9.6, 7.2], [1, -2.5, 3, 4, 12.7], [1, 6, 6, 3, 2], [0, 0.2, 0.1, 21, 17.3]]
    )
    mv.gradcheck(
        lambda t: roi_align(t, rois, (3, 2), 0.5, sampling_ratio, aligned),
        [mv.tensor(x, requires_grad=True)],
    )


def test_box_formats_agree(rng):
    x = rng.standard_normal((2, 3, 10, 12)).astype(np.float32)
    per_image = [np.array([[0.5, 1, 7, 8.5], [3, 3, 3, 3]]), np.array([[1, 2, 11, 9]])]
    rows = np.array([[0, 0.5, 1, 7, 8.5], [0, 3, 3, 3, 3], [1, 1, 2, 11, 9]], dtype=np.float32)
    expected = roi_align(x, rows, 3, 0.5, 2, True).numpy()
    for boxes in (per_image, [mv.tensor(b) for b in per_image], mv.tensor(rows.astype(np.float64))):
        np.testing.assert_array_equal(
            roi_align(mv.tensor(x), boxes, 3, 0.5, 2, True).numpy(), expected
        )
    assert roi_align(x, np.zeros((0, 5)), (2, 4)).shape == (0, 3, 2, 4)


@SETTINGS
@given(case=roi_cases(), flags=FLAGS)
def test_matches_torchvision(case, flags):
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    x, rois, scale, output_size = case
    sampling_ratio, aligned = flags
    reversed_region = (rois[:, 3] < rois[:, 1]) | (rois[:, 4] < rois[:, 2])
    # torchvision sizes a buffer by the (negative) sample count of a reversed aligned region and
    # raises; the NumPy restatement above covers minivision's 0 for those
    assume(not (aligned and sampling_ratio <= 0 and reversed_region.any()))
    xt = torch.tensor(x, requires_grad=True)
    expected = ops.roi_align(xt, torch.tensor(rois), output_size, scale, *flags)
    upstream = np.random.default_rng(2).standard_normal(tuple(expected.shape)).astype(x.dtype)
    expected.backward(torch.tensor(upstream))
    out, grad = _align_with_grad(x, rois, output_size, scale, *flags, upstream)
    np.testing.assert_array_equal(out, expected.detach().numpy())
    np.testing.assert_array_equal(grad, xt.grad.numpy())


# ----------------------------------------------------------------- the CUDA twins, emulated
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sampling_ratio, aligned", [(-1, False), (2, True)])
def test_cuda_twins_equal_the_cpu_to_the_bit(dtype, sampling_ratio, aligned, monkeypatch, rng):
    x = rng.standard_normal((2, 3, 9, 11)).astype(dtype)
    rois = np.array(
        [
            [0, 1.3, 1.1, 9.6, 7.2],
            [1, -2.5, 3, 4, 12.7],
            [1, 6, 6, 3, 2],
            [0, 0.2, 0.1, 21, 17.3],
            [1, 30, 30, 40, 40],
            [0, -9, -9, -1, -2.5],
            [1, 1.3, 1.1, 9.6, 7.2],
        ],
        dtype=dtype,
    )
    upstream = rng.standard_normal((len(rois), 3, 3, 4)).astype(dtype)
    expected = _align_with_grad(x, rois, (3, 4), 0.5, sampling_ratio, aligned, upstream)
    cuda_emulation.emulate(monkeypatch)
    _route_to_gpu_kernels(monkeypatch, modules=(roi_align_module,))
    for got, want in zip(
        _align_with_grad(x, rois, (3, 4), 0.5, sampling_ratio, aligned, upstream), expected
    ):
        np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------- bad input
X32 = np.zeros((2, 3, 8, 8), np.float32)
GOOD = np.array([[0, 1, 1, 4, 4]], np.float32)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(sampling_ratio=1.5),
            TypeError,
            r"roi_align: sampling_ratio must be an int \(<= 0: adaptive\), got 1.5",
        ),
        (
            dict(output_size=(0, 2)),
            ValueError,
            r"roi_align: output_size must be positive, got \(0, 2\)",
        ),
        (
            dict(spatial_scale=-0.5),
            ValueError,
            "roi_align: spatial_scale must be positive and finite, got -0.5",
        ),
        (
            dict(boxes=np.array([[3, 1, 1, 4, 4]])),
            ValueError,
            r"roi_align: boxes' batch index must be an integer in \[0, 2\)",
        ),
        (
            dict(input=X32.astype(np.float16)),
            TypeError,
            "roi_align: input must be float32 or float64, got dtype float16",
        ),
    ],
)
def test_bad_input_is_refused_with_a_message(kwargs, error, message):
    with pytest.raises(error, match=message):
        roi_align(**{"input": X32, "boxes": GOOD, "output_size": 2, **kwargs})


def test_a_strided_input_gives_what_its_contiguous_copy_gives(rng):
    x = rng.standard_normal((2, 3, 8, 9)).astype(np.float32).transpose(0, 1, 3, 2)
    rois = np.array([[1, 0.5, 1.0, 6.0, 8.0], [0, 2.0, 2.0, 7.5, 3.0]], np.float32)
    np.testing.assert_array_equal(
        roi_align(x, rois, 3, 1.0, 2, True).numpy(),
        roi_align(np.ascontiguousarray(x), rois, 3, 1.0, 2, True).numpy(),
    )


def test_module_is_the_function():
    from minivision.ops.roi_align import RoIAlign

    x = mv.tensor(np.random.default_rng(6).standard_normal((2, 3, 9, 7)))
    rois = np.array([[1, 0.5, 1.0, 6.0, 8.0], [0, 2.0, 2.0, 3.0, 3.0]])
    module = RoIAlign(2, spatial_scale=0.5, sampling_ratio=2, aligned=True)
    np.testing.assert_array_equal(
        module(x, rois).numpy(), roi_align(x, rois, 2, 0.5, 2, True).numpy()
    )
    assert (
        repr(module) == "RoIAlign(output_size=2, spatial_scale=0.5, sampling_ratio=2, aligned=True)"
    )
