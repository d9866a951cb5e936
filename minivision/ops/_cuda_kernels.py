"""The fast path of IoU on the GPU: CUDA kernels for the IoU matrix and matched pairs, twins
of ``_cpu_kernels``.

Every kernel calls one ``pair_iou`` (``PAIR_IOU_SOURCE``, which ``_nms_cuda`` shares) written
as ``_cpu_kernels._pair_iou`` is: same operations, same dtype, the same rescaled float64 path
for areas that under- or overflow, no FMA contraction, so IoUs equal the CPU's bit for bit.
"""

# FAST PATH FILE iou
from __future__ import annotations

import numpy as np

from minivision import _cuda
from minivision.backend import get_array_module

PAIR_IOU_SOURCE = r"""
// Twin of _cpu_kernels._scaled_lengths: one axis of two boxes in double, the coordinates
// scaled by the power of two that brings the largest into [0.5, 1); overlap and lengths.
__device__ inline void scaled_lengths(T a1, T a2, T b1, T b2, double* lengths) {
    int exponent;
    frexp(max(max(fabs((double)a1), fabs((double)a2)), max(fabs((double)b1), fabs((double)b2))), &exponent);
    const double sa1 = ldexp((double)a1, -exponent), sa2 = ldexp((double)a2, -exponent);
    const double sb1 = ldexp((double)b1, -exponent), sb2 = ldexp((double)b2, -exponent);
    lengths[0] = min(sa2, sb2) - max(sa1, sb1);
    lengths[1] = sa2 - sa1;
    lengths[2] = sb2 - sb1;
}

// Twin of _cpu_kernels._rescaled_iou: the IoU of overlapping boxes whose areas under- or
// overflow T.
__device__ inline double rescaled_iou(const T* a, const T* b) {
    double w[3], h[3];
    scaled_lengths(a[0], a[2], b[0], b[2], w);
    scaled_lengths(a[1], a[3], b[1], b[3], h);
    const double inter = w[0] * h[0];
    const double union_area = w[1] * h[1] + w[2] * h[2] - inter;
    return union_area > 0 ? inter / union_area : 0;
}

// Twin of _cpu_kernels._pair_iou: the plain quotient while the intersection is a normal
// number and the union finite, the rescaled IoU (rounded to T) otherwise.
__device__ inline T pair_iou(const T* a, const T* b) {
    // numpy.finfo(T).tiny and .max, as _cpu_kernels._normal_range gives them.
    const T smallest_normal = sizeof(T) == 4 ? 1.17549435082228750797e-38 : 2.22507385850720138309e-308;
    const T largest = sizeof(T) == 4 ? 3.40282346638528859812e+38 : 1.79769313486231570815e+308;
    const T width = min(a[2], b[2]) - max(a[0], b[0]);
    const T height = min(a[3], b[3]) - max(a[1], b[1]);
    if (width <= 0 || height <= 0) return 0;
    const T inter = width * height;
    const T area_a = (a[2] - a[0]) * (a[3] - a[1]);
    const T area_b = (b[2] - b[0]) * (b[3] - b[1]);
    const T union_area = area_a + area_b - inter;
    if (inter >= smallest_normal && union_area <= largest) return inter / union_area;
    return (T)rescaled_iou(a, b);
}
"""

_SOURCE = (
    PAIR_IOU_SOURCE
    + r"""
extern "C" __global__ void iou_matrix(const long long count, const T* boxes1, const T* boxes2, const int m, T* out) {
    FOR_EACH(k, count) out[k] = pair_iou(boxes1 + k / m * 4, boxes2 + k % m * 4);
}

extern "C" __global__ void matched_iou(const long long count, const T* boxes1, const T* boxes2, T* out) {
    FOR_EACH(k, count) out[k] = pair_iou(boxes1 + k * 4, boxes2 + k * 4);
}
"""
)


def iou_matrix(boxes1, boxes2):
    """IoU of every pair: ``(N, 4)``, ``(M, 4)`` CuPy boxes of one dtype -> ``(N, M)``."""
    xp = get_array_module(boxes1, boxes2)
    out = xp.empty((boxes1.shape[0], boxes2.shape[0]), dtype=boxes1.dtype)
    _cuda.launch(
        _SOURCE,
        "iou_matrix",
        out.dtype,
        out.size,
        xp.ascontiguousarray(boxes1),
        xp.ascontiguousarray(boxes2, dtype=boxes1.dtype),
        np.int32(out.shape[1]),
        out,
    )
    return out


def matched_iou(boxes1, boxes2):
    """IoU of each box with its partner: ``(N, 4)``, ``(N, 4)`` CuPy boxes of one dtype -> ``(N,)``."""
    xp = get_array_module(boxes1, boxes2)
    out = xp.empty(boxes1.shape[0], dtype=boxes1.dtype)
    _cuda.launch(
        _SOURCE,
        "matched_iou",
        out.dtype,
        out.size,
        xp.ascontiguousarray(boxes1),
        xp.ascontiguousarray(boxes2, dtype=boxes1.dtype),
        out,
    )
    return out
