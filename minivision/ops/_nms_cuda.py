"""Blocked bitmask NMS on the GPU (CuPy ``RawKernel``); imported only for CuPy inputs.

The boxes, sorted by score, are cut into blocks of 64. One thread block compares a row
block with a column block: thread i loads box i of the row block and sets bit j of a
uint64 when it suppresses box j of the column block (IoU > threshold, same group, j later
in score order). The ``(N, ceil(N / 64))`` mask then goes to the host for the short serial
pass (``_cpu_kernels.keep_from_mask``), as in torchvision's CUDA NMS.

Not yet run on a GPU: it is checked against the CPU kernel in the GPU issue's tests.
"""
from __future__ import annotations

import functools

import cupy as cp
import numpy as np

from minivision.ops import _cpu_kernels

BLOCK = 64

_SOURCE = r"""
typedef SCALAR T;

__device__ inline double pair_iou(const T* a, const T* b) {
    // Same arithmetic, in the same dtype, as _cpu_kernels._pair_iou.
    T width = min(a[2], b[2]) - max(a[0], b[0]);
    T height = min(a[3], b[3]) - max(a[1], b[1]);
    if (width <= 0 || height <= 0) return 0.0;
    T inter = width * height;
    T area_a = (a[2] - a[0]) * (a[3] - a[1]);
    T area_b = (b[2] - b[0]) * (b[3] - b[1]);
    return inter / (area_a + area_b - inter);
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


@functools.lru_cache(maxsize=None)
def _kernel(dtype_name: str):
    scalar = {"float32": "float", "float64": "double"}[dtype_name]
    return cp.RawKernel(_SOURCE.replace("SCALAR", scalar), "nms_mask")


def nms(boxes, score_order, groups, iou_threshold):
    """Kept indices (int64 CuPy array, score order) of ``(N, 4)`` CuPy boxes.

    ``score_order`` sorts the boxes by decreasing score; ``groups`` ``(N,)`` int64 keeps
    suppression within a group.
    """
    n = boxes.shape[0]
    sorted_boxes = cp.ascontiguousarray(boxes[score_order])
    sorted_groups = cp.ascontiguousarray(groups[score_order])
    blocks = (n + BLOCK - 1) // BLOCK
    mask = cp.zeros((n, blocks), dtype=cp.uint64)
    _kernel(boxes.dtype.name)(
        (blocks, blocks), (BLOCK,),
        (np.int32(n), np.float64(iou_threshold), sorted_boxes, sorted_groups, mask),
    )
    kept_positions = _cpu_kernels.keep_from_mask(mask.get(), n)
    return score_order[cp.asarray(kept_positions)]
