"""The fast path of NMS on the GPU: blocked bitmask NMS, as in torchvision's CUDA NMS.

The boxes, sorted by score, are cut into blocks of 64. One thread block compares a row
block with a column block: thread i loads box i of the row block and sets bit j of a
uint64 when it suppresses box j of the column block (IoU > threshold, same group, j later
in score order). IoUs come from ``_cuda_kernels.PAIR_IOU_SOURCE``, equal to the CPU's bit
for bit. The ``(N, ceil(N / 64))`` mask then goes to the host for the short serial pass
(``keep_from_mask``, a Numba loop).
"""

# FAST PATH FILE iou, nms
from __future__ import annotations

import numpy as np

from minivision import _cuda
from minivision._numba import njit
from minivision.backend import get_array_module, to_numpy
from minivision.ops._cuda_kernels import PAIR_IOU_SOURCE

BLOCK = 64

_SOURCE = (
    PAIR_IOU_SOURCE
    + r"""
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
            if (groups[i] == col_groups[j]
                && pair_iou(boxes + i * 4, col_boxes + j * 4) > threshold) bits |= 1ULL << j;
        }
        mask[(long long)i * gridDim.x + col_block] = bits;
    }
}
"""
)


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
        (blocks, blocks),
        (BLOCK,),
        (np.int32(n), np.float64(iou_threshold), sorted_boxes, sorted_groups, mask),
    )
    kept_positions = keep_from_mask(to_numpy(mask), n)
    return score_order[xp.asarray(kept_positions)]


@njit(cache=True)
def keep_from_mask(mask, n):
    """The serial pass of bitmask NMS, on the host: walk boxes in score order, keep a box
    unless a kept box's mask has its bit set. ``mask`` is ``(n, ceil(n / 64))`` uint64,
    bit ``j % 64`` of ``mask[i, j // 64]`` set when box i suppresses box j.
    Returns positions in the score order (int64)."""
    removed = np.zeros(mask.shape[1], np.uint64)
    keep = np.empty(n, np.int64)
    kept = 0
    one = np.uint64(1)
    for i in range(n):
        block, bit = i // 64, np.uint64(i % 64)
        if removed[block] & (one << bit):
            continue
        keep[kept] = i
        kept += 1
        for j in range(block, mask.shape[1]):
            removed[j] |= mask[i, j]
    return keep[:kept]
