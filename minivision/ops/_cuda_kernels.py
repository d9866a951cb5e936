"""CUDA kernels behind the box ops on the GPU, twins of ``_cpu_kernels``: the IoU matrix and
blocked bitmask NMS, both on one ``pair_iou`` written as ``_cpu_kernels._pair_iou`` is
(same operations, same dtype, the same rescaled float64 path for areas that under- or
overflow, no FMA contraction), so IoUs and kept indices equal the CPU's.

NMS cuts the boxes, sorted by score, into blocks of 64. One thread block compares a row
block with a column block: thread i loads box i of the row block and sets bit j of a
uint64 when it suppresses box j of the column block (IoU > threshold, same group, j later
in score order). The ``(N, ceil(N / 64))`` mask then goes to the host for the short serial
pass (``_cpu_kernels.keep_from_mask``), as in torchvision's CUDA NMS.
"""
from __future__ import annotations

import numpy as np

from minivision import _cuda
from minivision.backend import get_array_module, to_numpy
from minivision.ops import _cpu_kernels

BLOCK = 64

_SOURCE = r"""
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

extern "C" __global__ void iou_matrix(const long long count, const T* boxes1, const T* boxes2, const int m, T* out) {
    FOR_EACH(k, count) out[k] = pair_iou(boxes1 + k / m * 4, boxes2 + k % m * 4);
}

extern "C" __global__ void matched_iou(const long long count, const T* boxes1, const T* boxes2, T* out) {
    FOR_EACH(k, count) out[k] = pair_iou(boxes1 + k * 4, boxes2 + k * 4);
}

extern "C" __global__ void nms_mask(const int n, const double threshold, const T* boxes,
                                    const long long* groups, unsigned long long* mask) {
    const int row_block = blockIdx.y, col_block = blockIdx.x;
    if (row_block > col_block) return;  // box i only suppresses later boxes
    const int row_size = min(n - row_block * 64, 64);
    const int col_size = min(n - col_block * 64, 64);

    __shared__ T col_boxes[64 * 4];
    __shared__ long long col_groups[64];
    if (threadIdx.x < col_size) {
        const int j = col_block * 64 + threadIdx.x;
        for (int k = 0; k < 4; ++k) col_boxes[threadIdx.x * 4 + k] = boxes[j * 4 + k];
        col_groups[threadIdx.x] = groups[j];
    }
    __syncthreads();

    if (threadIdx.x < row_size) {
        const int i = row_block * 64 + threadIdx.x;
        unsigned long long bits = 0;
        const int start = (row_block == col_block) ? threadIdx.x + 1 : 0;
        for (int j = start; j < col_size; ++j) {
            if (groups[i] == col_groups[j] && pair_iou(boxes + i * 4, col_boxes + j * 4) > threshold)
                bits |= 1ULL << j;
        }
        mask[(long long)i * gridDim.x + col_block] = bits;
    }
}
"""


def iou_matrix(boxes1, boxes2):
    """IoU of every pair: ``(N, 4)``, ``(M, 4)`` CuPy boxes of one dtype -> ``(N, M)``."""
    xp = get_array_module(boxes1, boxes2)
    out = xp.empty((boxes1.shape[0], boxes2.shape[0]), dtype=boxes1.dtype)
    _cuda.launch(_SOURCE, "iou_matrix", out.dtype, out.size, xp.ascontiguousarray(boxes1),
                 xp.ascontiguousarray(boxes2, dtype=boxes1.dtype), np.int32(out.shape[1]), out)
    return out


def matched_iou(boxes1, boxes2):
    """IoU of each box with its partner: ``(N, 4)``, ``(N, 4)`` CuPy boxes of one dtype -> ``(N,)``."""
    xp = get_array_module(boxes1, boxes2)
    out = xp.empty(boxes1.shape[0], dtype=boxes1.dtype)
    _cuda.launch(_SOURCE, "matched_iou", out.dtype, out.size, xp.ascontiguousarray(boxes1),
                 xp.ascontiguousarray(boxes2, dtype=boxes1.dtype), out)
    return out


def nms(boxes, score_order, groups, iou_threshold):
    """Kept indices (int64, score order) of ``(N, 4)`` CuPy boxes.

    ``score_order`` sorts the boxes by decreasing score; ``groups`` ``(N,)`` int64 keeps
    suppression within a group.
    """
    xp = get_array_module(boxes)
    n = boxes.shape[0]
    if n == 0:
        return xp.zeros(0, dtype=np.int64)
    sorted_boxes = xp.ascontiguousarray(boxes[score_order])
    sorted_groups = xp.ascontiguousarray(groups[score_order], dtype=np.int64)
    blocks = (n + BLOCK - 1) // BLOCK
    mask = xp.zeros((n, blocks), dtype=np.uint64)
    _cuda.kernel(_SOURCE, "nms_mask", boxes.dtype)(
        (blocks, blocks), (BLOCK,),
        (np.int32(n), np.float64(iou_threshold), sorted_boxes, sorted_groups, mask),
    )
    kept_positions = _cpu_kernels.keep_from_mask(to_numpy(mask), n)
    return score_order[xp.asarray(kept_positions)]
