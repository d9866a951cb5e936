"""Winograd's minimal filtering F(2x2, 3x3) for 3x3, stride-1 convolutions on the CPU.

A direct 3x3 convolution spends 9 multiplies per output pixel per channel pair; Winograd's
algorithm (Lavin & Gray, 2016) computes each 2x2 block of outputs from a 4x4 input tile
with 16, a 2.25x saving, by moving the work into cheap additions:

    Y = A^T [(G w G^T) * (B^T d B)] A          (* elementwise, per channel pair, summed over C)

With the tiles of a batch side by side, the 16 elementwise products summed over input
channels become 16 matrix multiplies (O x C) @ (C x tiles): the matrix multiplies
stay large, and the transforms (Numba loops over tiles) are memory-bound passes that
write 4x the input rather than im2col's 9x.

The backward pass is the adjoint of these same steps: the input gradient of a stride-1
correlation is another stride-1 correlation (``_conv_fast`` routes it here again), and the
weight gradient is G^T [sum over tiles (A dY A^T) * (B^T d B)] G.

The batch is split over minivision's worker threads (``minivision.threads``): each worker
walks its share in pieces with buffers of its own, transforms and multiplies on one thread
(forward of a 3x3 conv over N4 C64 128x128 on 2 cores: 54.7 ms with serial transforms and
two OpenBLAS threads, 25.9 ms split over two workers).

``_conv_fast`` uses this path for NumPy arrays when the kernel is 3x3, stride and dilation 1,
groups 1 and padding 0-2 (so the adjoint's padding, 2 - padding, is in range too); every
other convolution, and every CuPy one, goes through im2col.
"""

# FAST PATH FILE conv
from __future__ import annotations

import numpy as np

from minivision import threads
from minivision._numba import njit
from minivision.dispatch import numba_kernels_apply
from minivision.functional._geometry import Windows
from minivision.functional.im2col import get_workspace_budget

# The transform matrices of F(2x2, 3x3) for a correlation y[i] = sum_k d[i + k] w[k].
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])  # kernel, 4x3

# Pieces of a batch hold about this many bytes of transformed tiles (input and output
# side together), small enough to stay near the caches, but at least MIN_PIECE_TILES
# tiles, so that the 16 matrix multiplies stay long enough to run efficiently. Forward and
# weight gradient of seven layers from the tiny models and the benchmarks, one thread:
# 207 ms with 16 MiB and 2,048 tiles, 172 ms with these (C=O=16 at 64x64: 22 -> 10 ms).
PIECE_BYTES = 4 * 2**20
MIN_PIECE_TILES = 128

_enabled = True


def set_enabled(enabled: bool) -> None:
    """Turn the Winograd path on (default) or off; off, every convolution uses im2col."""
    global _enabled
    _enabled = bool(enabled)


def applies(x, out_channels: int, groups: int, win: Windows) -> bool:
    """Whether a correlation of NumPy array x into ``out_channels`` can take the Winograd path:
    a 3x3 stride-1 window, and one sample's tiles (16 values per tile per channel, input
    and output side) within the workspace budget."""
    return (
        _enabled
        and numba_kernels_apply(x)
        and win.kernel == (3, 3)
        and win.stride == (1, 1)
        and win.dilation == (1, 1)
        and groups == 1
        and all(0 <= p <= 2 for p in win.padding)
        and _sample_bytes(x, out_channels, win.padding) <= get_workspace_budget()
    )


def _sample_bytes(x, out_channels: int, padding) -> int:
    """Bytes of one sample's transformed tiles, input (C) and output (O) side together."""
    tiles_h, tiles_w = _tile_grid(x.shape[2:], padding)
    return 16 * (x.shape[1] + out_channels) * tiles_h * tiles_w * x.itemsize


def _tile_grid(in_hw, padding) -> tuple[int, int]:
    """(tiles_h, tiles_w): 2x2 output blocks covering the (H + 2p - 2, W + 2p - 2) output."""
    return tuple((n + 2 * p - 2 + 1) // 2 for n, p in zip(in_hw, padding))


@njit(inline="always")
def _b_transpose(a, b, c, d):
    """B^T applied to four values of a tile's row or column."""
    return a - c, b + c, c - b, b - d


@njit(cache=True, nogil=True)
def _input_transform(padded, tiles_h, tiles_w, v):
    """v[:, c, tile] = B^T d B (16 values, row-major) for each 4x4 tile d of padded (n, C, ., .)
    at rows 2 * ti.., columns 2 * tj..; tile = (sample * tiles_h + ti) * tiles_w + tj."""
    samples, channels = padded.shape[0], padded.shape[1]
    for plane in range(samples * channels):
        n, c = plane // channels, plane % channels
        for ti in range(tiles_h):
            rows = padded[n, c, 2 * ti : 2 * ti + 4]
            r0, r1, r2, r3 = rows[0], rows[1], rows[2], rows[3]
            first = (n * tiles_h + ti) * tiles_w
            for tj in range(tiles_w):
                j, t = 2 * tj, first + tj
                # B^T d, one column of the tile at a time (scalars stay in registers)
                a0, a1, a2, a3 = _b_transpose(r0[j], r1[j], r2[j], r3[j])
                b0, b1, b2, b3 = _b_transpose(r0[j + 1], r1[j + 1], r2[j + 1], r3[j + 1])
                c0, c1, c2, c3 = _b_transpose(r0[j + 2], r1[j + 2], r2[j + 2], r3[j + 2])
                d0, d1, d2, d3 = _b_transpose(r0[j + 3], r1[j + 3], r2[j + 3], r3[j + 3])
                # (B^T d) B: the same combination along each row
                v[0, c, t], v[1, c, t], v[2, c, t], v[3, c, t] = _b_transpose(a0, b0, c0, d0)
                v[4, c, t], v[5, c, t], v[6, c, t], v[7, c, t] = _b_transpose(a1, b1, c1, d1)
                v[8, c, t], v[9, c, t], v[10, c, t], v[11, c, t] = _b_transpose(a2, b2, c2, d2)
                v[12, c, t], v[13, c, t], v[14, c, t], v[15, c, t] = _b_transpose(a3, b3, c3, d3)


@njit(cache=True, nogil=True)
def _output_transform(m, tiles_h, tiles_w, out):
    """out[n, o, 2ti + a, 2tj + b] = (A^T M A)[a, b] for each tile's 16 products M = m[:, o, tile],
    dropping the half-tiles that hang over an odd output size. A^T combines four rows
    (or columns) a, b, c, d into (a + b + c, b - c - d)."""
    samples, channels, out_h, out_w = out.shape
    for plane in range(samples * channels):
        n, o = plane // channels, plane % channels
        for ti in range(tiles_h):
            first = (n * tiles_h + ti) * tiles_w
            for tj in range(tiles_w):
                t = first + tj
                # A^T M, one column at a time: s0x is output row 0, s1x output row 1
                s00 = m[0, o, t] + m[4, o, t] + m[8, o, t]
                s10 = m[4, o, t] - m[8, o, t] - m[12, o, t]
                s01 = m[1, o, t] + m[5, o, t] + m[9, o, t]
                s11 = m[5, o, t] - m[9, o, t] - m[13, o, t]
                s02 = m[2, o, t] + m[6, o, t] + m[10, o, t]
                s12 = m[6, o, t] - m[10, o, t] - m[14, o, t]
                s03 = m[3, o, t] + m[7, o, t] + m[11, o, t]
                s13 = m[7, o, t] - m[11, o, t] - m[15, o, t]
                i, j = 2 * ti, 2 * tj
                out[n, o, i, j] = s00 + s01 + s02
                if j + 1 < out_w:
                    out[n, o, i, j + 1] = s01 - s02 - s03
                if i + 1 < out_h:
                    out[n, o, i + 1, j] = s10 + s11 + s12
                    if j + 1 < out_w:
                        out[n, o, i + 1, j + 1] = s11 - s12 - s13


@njit(cache=True, nogil=True)
def _output_transform_adjoint(grad, tiles_h, tiles_w, dm):
    """The adjoint of ``_output_transform``: dm[:, o, tile] = A dY A^T for each tile's 2x2 block
    dY of grad (n, O, out_h, out_w), zeros where the block hangs over the output. A spreads
    two rows (or columns) a, b over four: (a, a + b, a - b, -b)."""
    samples, channels, out_h, out_w = grad.shape
    zero = grad.dtype.type(0)
    for plane in range(samples * channels):
        n, o = plane // channels, plane % channels
        for ti in range(tiles_h):
            first = (n * tiles_h + ti) * tiles_w
            i = 2 * ti
            for tj in range(tiles_w):
                t, j = first + tj, 2 * tj
                y00 = grad[n, o, i, j]
                y01 = grad[n, o, i, j + 1] if j + 1 < out_w else zero
                y10 = grad[n, o, i + 1, j] if i + 1 < out_h else zero
                y11 = grad[n, o, i + 1, j + 1] if i + 1 < out_h and j + 1 < out_w else zero
                # A dY: four rows from the two, per column
                s00, s10, s20, s30 = y00, y00 + y10, y00 - y10, -y10
                s01, s11, s21, s31 = y01, y01 + y11, y01 - y11, -y11
                # (A dY) A^T: four columns from the two, per row
                dm[0, o, t], dm[1, o, t], dm[2, o, t], dm[3, o, t] = s00, s00 + s01, s00 - s01, -s01
                dm[4, o, t], dm[5, o, t], dm[6, o, t], dm[7, o, t] = s10, s10 + s11, s10 - s11, -s11
                dm[8, o, t], dm[9, o, t], dm[10, o, t], dm[11, o, t] = (
                    s20,
                    s20 + s21,
                    s20 - s21,
                    -s21,
                )
                dm[12, o, t], dm[13, o, t], dm[14, o, t], dm[15, o, t] = (
                    s30,
                    s30 + s31,
                    s30 - s31,
                    -s31,
                )


def _tile_matrices(rows: int, columns: int, dtype):
    """An empty (16, rows, columns) array whose 16 matrices start a little more than a
    matrix apart. The kernels touch all 16 at once for every tile; laid end to end their
    addresses would differ by a large power-of-two multiple and share the same cache sets
    (a 4x slower input transform here), the extra 1 KiB sends each to its own sets."""
    itemsize = np.dtype(dtype).itemsize
    block = rows * columns + 1024 // itemsize
    flat = np.empty(16 * block, dtype=dtype)
    return np.lib.stride_tricks.as_strided(
        flat, (16, rows, columns), (block * itemsize, columns * itemsize, itemsize)
    )


class _Pieces:
    """A share of the batch walked in pieces of about ``PIECE_BYTES`` of transformed tiles,
    with one set of buffers reused by every piece (fresh buffers would each pay for their
    page faults): the zero-padded input, its transform V (16, C, tiles) and the products
    (16, O, tiles). ``budget`` bytes of tiles at most (the workspace budget's share)."""

    def __init__(self, x, out_channels: int, padding, budget: int):
        self.x, self.padding = x, padding
        n, channels, height, width = x.shape
        self.tiles = _tile_grid((height, width), padding)
        self.per_sample = self.tiles[0] * self.tiles[1]
        sample_bytes = _sample_bytes(x, out_channels, padding)
        step = max(PIECE_BYTES // sample_bytes, -(-MIN_PIECE_TILES // self.per_sample))
        self.step = max(1, min(n, step, budget // sample_bytes))
        tiles_h, tiles_w = self.tiles
        self._padded = np.zeros(
            (self.step, channels, 2 * tiles_h + 2, 2 * tiles_w + 2), dtype=x.dtype
        )
        self._v = _tile_matrices(channels, self.step * self.per_sample, x.dtype)
        self._products = _tile_matrices(out_channels, self.step * self.per_sample, x.dtype)

    def __iter__(self):
        """Yield (samples, V, products buffer) for each piece of the share."""
        n, _, height, width = self.x.shape
        ph, pw = self.padding
        for start in range(0, n, self.step):
            samples = slice(start, min(n, start + self.step))
            count = samples.stop - samples.start
            padded = self._padded[:count]
            padded[:, :, ph : ph + height, pw : pw + width] = self.x[
                samples
            ]  # the zero border is never written
            columns = slice(0, count * self.per_sample)
            _input_transform(padded, self.tiles[0], self.tiles[1], self._v[:, :, columns])
            yield samples, self._v[:, :, columns], self._products[:, :, columns]


def _over_shares(x, out_channels: int, padding, work):
    """[work(share, pieces)] for each worker's share of the batch (a slice), on the worker
    threads; the shares together hold at most the workspace budget of tiles."""
    budget = get_workspace_budget()

    def run(share, shares):
        return work(share, _Pieces(x[share], out_channels, padding, budget // shares))

    return threads.over_batch(x, run, max_parts=budget // _sample_bytes(x, out_channels, padding))


def correlate(x, weight, padding, out_hw):
    """x (N, C, H, W), weight (O, C, 3, 3) -> (N, O, out_h, out_w), stride 1 (``applies`` holds)."""
    out_c, channels = weight.shape[:2]
    g = G.astype(x.dtype)
    u = np.tensordot(
        np.tensordot(g, weight, axes=(1, 2)), g, axes=(3, 1)
    )  # G w G^T as (4, O, C, 4)
    u = np.ascontiguousarray(u.transpose(0, 3, 1, 2)).reshape(16, out_c, channels)
    out = np.empty((x.shape[0], out_c) + tuple(out_hw), dtype=x.dtype)

    def work(share, pieces):
        for samples, v, products in pieces:
            np.matmul(u, v, out=products)  # (16, O, tiles of the piece)
            _output_transform(products, pieces.tiles[0], pieces.tiles[1], out[share][samples])

    _over_shares(x, out_c, padding, work)
    return out


def weight_gradient(x, grad, padding):
    """dL/dW (O, C, 3, 3) of ``correlate``: x (N, C, H, W), grad (N, O, out_h, out_w)."""
    channels, out_c = x.shape[1], grad.shape[1]

    def work(share, pieces):
        grad_u = np.zeros((16, channels, out_c), dtype=x.dtype)
        for samples, v, dm in pieces:
            _output_transform_adjoint(grad[share][samples], pieces.tiles[0], pieces.tiles[1], dm)
            # V @ dM^T, (C, O) per tile position: the long reduction over tiles runs in the fast orientation
            grad_u += np.matmul(v, dm.swapaxes(1, 2))
        return grad_u

    grad_u = sum(_over_shares(x, out_c, padding, work))
    g = G.astype(x.dtype)
    grad_w = np.tensordot(
        np.tensordot(g, grad_u.reshape(4, 4, channels, out_c), axes=(0, 0)), g, axes=(1, 0)
    )
    return np.ascontiguousarray(
        grad_w.transpose(2, 1, 0, 3)
    )  # G^T dU G, from (3, C, O, 3) to (O, C, 3, 3)
