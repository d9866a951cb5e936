"""Box ops on boxes of every finite size: areas that underflow to 0 or overflow to inf in
their dtype, zero-area boxes, coordinates from 1e-30 to 1e30 (float32) and 1e-300 to 1e300
(float64). IoU is checked against exact rational arithmetic, NMS against its greedy
invariants, and the CUDA twins (emulated on the CPU) against the Numba kernels, to the bit.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivision.ops import batched_nms, box_iou, matched_box_iou, nms
from tests import cuda_emulation
from tests.ops.box_reference import check_greedy_invariants, exact_iou, reference_nms

SETTINGS = settings(max_examples=60, deadline=None)
DTYPES = [np.float32, np.float64]
# Powers of ten that coordinates and sides are drawn from, per dtype.
EXPONENTS = {np.float32: (-30, 30), np.float64: (-300, 300)}
THRESHOLDS = st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, 1))


def _signed_or_zero(exponents):
    """0, or ``m * 10**e`` of either sign, m in [1, 10), e drawn from ``exponents``."""
    magnitude = st.builds(
        lambda mantissa, power: mantissa * 10.0**power, st.floats(1, 9.99), exponents
    )
    return st.one_of(st.just(0.0), magnitude, magnitude.map(lambda value: -value))


@st.composite
def extreme_boxes(draw, dtype, max_rows=8):
    """``(N, 4)`` boxes of ``dtype`` whose coordinates and sides span its exponent range:
    zero sides, boxes at one scale (tiny boxes near 0, huge ones far out), copies of
    earlier boxes (identical boxes) and copies with a side redrawn (nested boxes of very
    different sizes) are common."""
    low, high = EXPONENTS[dtype]
    # Exponents near the ends are drawn often: two such sides make an area the dtype lacks.
    exponent = st.one_of(
        st.integers(low, high), st.integers(low, low + 3), st.integers(high - 3, high)
    )
    rows = []
    for _ in range(draw(st.integers(1, max_rows))):
        if draw(st.booleans()):  # every coordinate and side within 10**3 of one scale
            scale = draw(exponent)
            value = _signed_or_zero(st.integers(max(low, scale - 3), min(high, scale + 3)))
        else:
            value = _signed_or_zero(exponent)
        side = value.map(abs)
        if rows and draw(st.booleans()):
            x1, y1, x2, y2 = draw(st.sampled_from(rows))
            if draw(st.booleans()):
                x2 = x1 + draw(side)
            if draw(st.booleans()):
                y2 = y1 + draw(side)
        else:
            x1, y1 = draw(value), draw(value)
            x2, y2 = x1 + draw(side), y1 + draw(side)
        rows.append((x1, y1, x2, y2))
    return np.array(rows).astype(dtype)  # rounding keeps x1 <= x2 and y1 <= y2


def positive_size(boxes):
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


# ----------------------------------------------------------------- the cases of issue 15
@pytest.mark.parametrize(
    "dtype, side", [(np.float32, 1e-23), (np.float64, 1e-170), (np.float32, 1e20)]
)
def test_identical_boxes_whose_area_underflows_or_overflows(dtype, side):
    """Areas of 1e-46 (float32), 1e-340 (float64) and 1e40 (float32) are not numbers of
    their dtype; the IoU of two copies is still 1 and NMS keeps one of them."""
    boxes = np.array([[0, 0, side, side]] * 2, dtype)
    scores = np.array([0.4, 0.9], dtype)
    iou = box_iou(boxes, boxes)
    assert iou.dtype == dtype
    np.testing.assert_array_equal(iou, np.ones((2, 2)))
    np.testing.assert_array_equal(matched_box_iou(boxes, boxes[::-1]), [1, 1])
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [1])
    np.testing.assert_array_equal(batched_nms(boxes, scores, np.array([3, 3]), 0.5), [1])
    np.testing.assert_array_equal(batched_nms(boxes, scores, np.array([3, 4]), 0.5), [1, 0])


@pytest.mark.parametrize(
    "dtype, side",
    [
        (np.float32, 2.0**-80),
        (np.float64, 2.0**-570),
        (np.float32, 2.0**70),
        (np.float64, 2.0**520),
    ],
)
def test_nested_and_disjoint_boxes_whose_areas_do_not_fit(dtype, side):
    """A box and its lower-left quarter (IoU 1/4), and two boxes side by side (IoU 0); sides
    are powers of two, so every value is exact."""
    boxes = np.array(
        [[0, 0, side, side], [0, 0, side / 2, side / 2], [side, 0, 2 * side, side]], dtype
    )
    np.testing.assert_array_equal(box_iou(boxes, boxes), [[1, 0.25, 0], [0.25, 1, 0], [0, 0, 1]])


def test_boxes_spanning_the_whole_float_range():
    """Sides of 2 * 3e38 (float32) and 2 * 1.7e308 (float64) overflow even as differences."""
    for dtype in DTYPES:
        big = np.finfo(dtype).max
        boxes = np.array([[-big, -big, big, big], [0, 0, big, big]], dtype)
        iou = box_iou(boxes, boxes)
        np.testing.assert_array_equal(np.diag(iou), [1, 1])
        np.testing.assert_allclose(iou, [[1, 0.25], [0.25, 1]], rtol=0, atol=np.finfo(dtype).eps)
        np.testing.assert_array_equal(nms(boxes, np.array([0.9, 0.8], dtype), 0.2), [0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_area_boxes_have_iou_zero_with_every_box_themselves_included(dtype):
    """A point or a segment has no area: IoU 0 with everything (torchvision gives NaN with
    itself), so NMS never suppresses it nor with it, whatever its size."""
    big = 1e30 if dtype == np.float32 else 1e300
    boxes = np.array([[1, 1, 1, 1], [0, 0, 0, big], [0, 0, big, 0], [0, 0, big, big]], dtype)
    iou = box_iou(boxes, boxes)
    np.testing.assert_array_equal(iou, np.diag([0, 0, 0, 1]))
    np.testing.assert_array_equal(matched_box_iou(boxes, boxes), [0, 0, 0, 1])
    np.testing.assert_array_equal(
        nms(np.concatenate([boxes, boxes]), np.arange(8, dtype=dtype), 0.0), [7, 6, 5, 4, 2, 1, 0]
    )


# ----------------------------------------------------------------- properties over every magnitude
@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=st.data())
def test_iou_is_exact_to_a_few_ulps_symmetric_and_one_on_identical_boxes(dtype, data):
    a = data.draw(extreme_boxes(dtype))
    b = data.draw(extreme_boxes(dtype))
    for first, second in ((a, b), (a, a)):  # a with itself: identical and nested pairs
        iou = box_iou(first, second)  # no ZeroDivisionError
        assert iou.dtype == dtype and np.isfinite(iou).all()
        assert ((iou >= 0) & (iou <= 1)).all()
        np.testing.assert_array_equal(box_iou(second, first), iou.T)
        exact = np.array([[float(exact_iou(p, q)) for q in second] for p in first])
        # At most 16 roundings of eps / 2 each (sides, areas, union, quotient) on a value in [0, 1].
        np.testing.assert_allclose(iou, exact, rtol=0, atol=8 * np.finfo(dtype).eps)
    np.testing.assert_array_equal(np.diag(iou), positive_size(a).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=st.data())
def test_matched_iou_is_the_diagonal_of_the_iou_matrix(dtype, data):
    boxes = data.draw(extreme_boxes(dtype, max_rows=12))
    a, b = boxes, boxes[data.draw(st.permutations(range(len(boxes))))]
    matched = matched_box_iou(a, b)
    np.testing.assert_array_equal(matched, np.diag(box_iou(a, b)))
    np.testing.assert_array_equal(matched_box_iou(b, a), matched)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=st.data(), threshold=THRESHOLDS)
def test_nms_invariants(dtype, data, threshold):
    boxes = data.draw(extreme_boxes(dtype, max_rows=12))
    n = len(boxes)
    scores = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype)
    groups = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), np.int64)
    iou = box_iou(boxes, boxes)
    for keep, by_group in (
        (nms(boxes, scores, threshold), np.zeros(n, np.int64)),
        (batched_nms(boxes, scores, groups, threshold), groups),
    ):
        check_greedy_invariants(boxes, scores, by_group, threshold, keep, iou_matrix=iou)
        np.testing.assert_array_equal(
            keep, reference_nms(boxes, scores, threshold, by_group, iou_matrix=iou)
        )


# ----------------------------------------------------------------- CUDA twins (emulated)
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=15, deadline=None)
@given(data=st.data(), threshold=THRESHOLDS)
def test_cuda_twins_equal_the_cpu_kernels_to_the_bit(dtype, data, threshold):
    with pytest.MonkeyPatch.context() as patch:
        cuda_emulation.emulate(patch)
        check_cuda_twins(
            data.draw(extreme_boxes(dtype, max_rows=12)),
            data.draw(extreme_boxes(dtype, max_rows=12)),
            data,
            threshold,
        )


def check_cuda_twins(a, b, data, threshold):
    """IoU matrix, matched IoU and NMS kept indices of the CUDA kernels equal the Numba kernels'."""
    from minivision.ops import _cpu_kernels, _cuda_kernels, _nms_cuda  # not in student copies

    np.testing.assert_array_equal(_cuda_kernels.iou_matrix(a, b), _cpu_kernels.iou_matrix(a, b))
    pairs = min(len(a), len(b))
    np.testing.assert_array_equal(
        _cuda_kernels.matched_iou(a[:pairs], b[:pairs]),
        _cpu_kernels.matched_iou(a[:pairs], b[:pairs]),
    )
    scores = np.array(
        data.draw(st.lists(st.integers(0, 3), min_size=len(a), max_size=len(a))), a.dtype
    )
    order = np.argsort(-scores, kind="stable")
    np.testing.assert_array_equal(
        _nms_cuda.nms(a, order, np.zeros(len(a), np.int64), threshold), nms(a, scores, threshold)
    )


def test_the_twins_rescale_a_subnormal_intersection_in_float64(monkeypatch):
    """Float32 boxes 1e-14 x 1e-19 and 1e-19 x 1e-13 meet in 1e-38, a subnormal: both
    kernels measure the pair again in float64, and round once to float32."""
    from minivision.ops import _cpu_kernels, _cuda_kernels  # not in student copies

    cuda_emulation.emulate(monkeypatch)
    a, b = (
        np.array([[0, 0, 1e-14, 1e-19]], np.float32),
        np.array([[0, 0, 1e-19, 1e-13]], np.float32),
    )
    exact = np.float32(float(exact_iou(a[0], b[0])))
    np.testing.assert_array_equal(_cpu_kernels.iou_matrix(a, b), [[exact]])
    np.testing.assert_array_equal(_cuda_kernels.iou_matrix(a, b), [[exact]])
