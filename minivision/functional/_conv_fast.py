"""The fast path of conv2d and conv_transpose2d: the reference's im2col + matrix multiply
(``minivision.reference.conv``), in pieces of a bounded workspace on worker threads, with
shortcuts where a layer allows one.

Three array kernels do all the work; each op's forward and backward are two of them:

- ``correlate``: out = W * x, a convolution (cross-correlation) as PyTorch defines it;
- ``correlate_adjoint``: its adjoint W^T * g, the input gradient: col2im of W^T g, or for
  stride 1 a correlation of g with the flipped kernel (no col2im at all);
- ``weight_gradient``: dL/dW = g @ im2col(x)^T, summed over the batch by the product.

The first and the last read the same columns of x; one loop
(``_correlate_and_weight_gradient``) computes either or both, so a transposed
convolution's backward, which needs both of the gradient's columns, builds them once.

The column matrices hold the batch in their columns, (C * kh * kw, N * out_h * out_w),
and are built a piece at a time (``im2col.chunks``: whole samples, or bands of output rows
of one sample), each piece one matrix multiply per group. The shortcuts:

- a 3x3, stride-1 correlation of NumPy arrays takes Winograd's F(2x2, 3x3) (``_winograd``:
  2.25x fewer multiplies); ``set_winograd_enabled(False)`` in ``conv`` turns it off;
- a strided kernel that is a whole number of strides runs as a stride-1 correlation over
  the input's phases (``_space_to_depth``);
- a 1x1 convolution with stride 1 and no padding skips im2col: its columns are the input,
  reordered;
- on the GPU, im2col and col2im are CUDA kernels (``_im2col_cuda``, through ``im2col``).
"""

# FAST PATH FILE conv
from __future__ import annotations

import numpy as np

from minivision import threads
from minivision.backend import get_array_module
from minivision.functional import _space_to_depth as phases
from minivision.functional import _winograd as winograd
from minivision.functional._geometry import Windows
from minivision.functional.im2col import chunks, col2im_add, get_workspace_budget, im2col
from minivision.reference.conv import output_hw, transposed_output_hw


def takes(x) -> bool:
    """Whether this path computes ``x``: a float32 or float64 array, NumPy or CuPy (the
    reference computes the rest, float16)."""
    return x.dtype in (np.float32, np.float64)


def conv2d(x, weight, bias, stride, padding, dilation, groups):
    """x (N, C, H, W), weight (O, C/G, kh, kw) -> (N, O, out_h, out_w), as ``reference.conv2d``."""
    win = Windows(tuple(weight.shape[2:]), stride, padding, dilation)
    return _add_bias(correlate(x, weight, groups, win, output_hw(x.shape[2:], *win)), bias)


def conv2d_backward(grad, x, weight, stride, padding, dilation, groups, needs=(True, True, True)):
    """``reference.conv.conv2d_backward``: grad (N, O, out_h, out_w) -> (dL/dx, dL/dW, dL/db)."""
    win = Windows(tuple(weight.shape[2:]), stride, padding, dilation)
    grad_x = correlate_adjoint(grad, weight, groups, win, x.shape) if needs[0] else None
    grad_w = weight_gradient(x, grad, groups, win, weight.shape) if needs[1] else None
    return grad_x, grad_w, grad.sum(axis=(0, 2, 3)) if needs[2] else None


def conv_transpose2d(x, weight, bias, stride, padding, output_padding, dilation, groups):
    """x (N, C_in, H, W), weight (C_in, C_out/G, kh, kw) -> (N, C_out, out_h, out_w):
    ``reference.conv.conv_transpose2d``, the adjoint of ``correlate`` with the weight read as a
    conv weight."""
    win = Windows(tuple(weight.shape[2:]), stride, padding, dilation)
    out_hw = transposed_output_hw(
        x.shape[2:], win.kernel, stride, padding, output_padding, dilation
    )
    out_shape = (x.shape[0], weight.shape[1] * groups) + out_hw
    return _add_bias(correlate_adjoint(x, weight, groups, win, out_shape), bias)


def conv_transpose2d_backward(
    grad, x, weight, stride, padding, dilation, groups, needs=(True, True, True)
):
    """``reference.conv.conv_transpose2d_backward``: both gradients read the columns of grad,
    built once for the two."""
    win = Windows(tuple(weight.shape[2:]), stride, padding, dilation)
    weight_or_none, x_or_none = (weight if needs[0] else None), (x if needs[1] else None)
    grad_x, grad_w = _correlate_and_weight_gradient(
        grad, weight_or_none, x_or_none, groups, win, x.shape[2:], weight.shape
    )
    return grad_x, grad_w, grad.sum(axis=(0, 2, 3)) if needs[2] else None


def _add_bias(out, bias):
    """out (N, O, out_h, out_w) += bias (O,) in place, when there is one."""
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out


def _columns(x, win: Windows, samples: slice, rows: slice, out_w: int, groups: int):
    """The column matrix of x[samples] for output ``rows``, split by group:
    (G, C/G * kh * kw, nb * rows * out_w). A pointwise conv's columns are x itself, reordered
    (unless the output reaches past x, as a transposed conv's output_padding can make it)."""
    xp = get_array_module(x)
    pointwise = win.kernel == (1, 1) and win.stride == (1, 1) and win.padding == (0, 0)
    if pointwise and rows.stop <= x.shape[2] and out_w <= x.shape[3]:
        pixels = x[samples, :, rows, :out_w].transpose(1, 0, 2, 3)  # output (i, j) reads x (i, j)
        col = xp.ascontiguousarray(pixels).reshape(x.shape[1], -1)
        return col.reshape(groups, -1, col.shape[-1])
    col = im2col(x[samples], win, rows, out_w)
    return col.reshape(groups, -1, col.shape[-1])


def _row_bytes(in_shape, itemsize: int, win: Windows, out_w: int) -> int:
    """Bytes of column matrix per output row of one sample: C * kh * kw values per output pixel."""
    return in_shape[1] * win.kernel[0] * win.kernel[1] * out_w * itemsize


def _over_shares(array, in_shape, win: Windows, out_hw, work) -> list:
    """[work(share, pieces)] for each worker's share of the batch (``array``'s first axis),
    ``pieces`` the (samples, rows) chunks of that share (samples counted from its start),
    each piece's column matrix within the worker's share of the workspace budget. As many
    workers as each can still hold one output row's columns within its share."""
    row_bytes = _row_bytes(in_shape, array.itemsize, win, out_hw[1])

    def run(share, shares):
        return work(
            share,
            chunks(
                share.stop - share.start,
                out_hw[0],
                row_bytes,
                shares,
                on_gpu=not isinstance(array, np.ndarray),
            ),
        )

    return threads.over_batch(array, run, max_parts=max(1, get_workspace_budget() // row_bytes))


def _group_matmul(a, b):
    """a @ b for each group: (G, m, k) @ (G, k, n) -> (G, m, n). One group (the usual case) is
    a 2-D product: CuPy's batched product first copies a transposed operand (the weight
    gradient's grad^T) into a new array, its 2-D product passes the transpose to cuBLAS."""
    xp = get_array_module(a, b)
    return xp.matmul(a[0], b[0])[None] if a.shape[0] == 1 else xp.matmul(a, b)


def _batch_in_columns(a, samples: slice, rows: slice, groups: int):
    """a[samples, :, rows] (nb, O, r, w) as (G, O/G, nb * r * w), laid out like a product with
    columns."""
    xp = get_array_module(a)
    part = xp.ascontiguousarray(a[samples, :, rows].transpose(1, 0, 2, 3))
    return part.reshape(groups, part.shape[0] // groups, -1)


def _correlate_and_weight_gradient(
    x, weight, grad, groups: int, win: Windows, out_hw, weight_shape
):
    """(x correlated with ``weight``, dL/dW of that correlation given ``grad``): x (N, C, H, W),
    weight (O, C/G, kh, kw) = ``weight_shape``, grad (N, O, out_h, out_w) -> ((N, O, out_h, out_w),
    ``weight_shape``), a half None when its operand is None. Both halves read the same
    columns of x, built once when both are asked for (a transposed convolution's backward)."""
    if phases.applies(win):
        phased = None if weight is None else phases.phase_weight(weight, win)
        out, grad_w = _correlate_and_weight_gradient(
            phases.space_to_depth(x, win, out_hw),
            phased,
            grad,
            groups,
            phases.stride_one(win),
            out_hw,
            phases.phase_weight_shape(weight_shape, win),
        )
        return out, None if grad is None else phases.phase_weight_adjoint(grad_w, win, weight_shape)
    if winograd.applies(x, weight_shape[0], groups, win):
        return (
            None if weight is None else winograd.correlate(x, weight, win.padding, out_hw),
            None if grad is None else winograd.weight_gradient(x, grad, win.padding),
        )
    xp = get_array_module(x, weight if grad is None else grad)
    out_c = weight_shape[0]
    w = None if weight is None else weight.reshape(groups, out_c // groups, -1)
    out = None if weight is None else xp.empty((x.shape[0], out_c) + tuple(out_hw), dtype=x.dtype)

    rows_per_group = x.shape[1] // groups * win.kernel[0] * win.kernel[1]

    def work(share, pieces):  # each worker sums its share's weight gradient; the sums add up after
        x_share = x[share]
        grad_w_t = (
            None
            if grad is None
            else xp.zeros((groups, rows_per_group, out_c // groups), dtype=x.dtype)
        )
        for samples, rows in pieces:
            col = _columns(x_share, win, samples, rows, out_hw[1], groups)
            if w is not None:
                product = _group_matmul(w, col)  # (G, O/G, nb * r * w)
                out[share][samples, :, rows] = product.reshape(
                    out_c, -1, rows.stop - rows.start, out_hw[1]
                ).transpose(1, 0, 2, 3)
            if grad is not None:
                # (col @ g^T)^T rather than g @ col^T: same product, but OpenBLAS runs the latter
                # (a long reduction into a short, wide result) many times slower when the cores
                # are shared
                grad_t = _batch_in_columns(grad[share], samples, rows, groups).swapaxes(1, 2)
                grad_w_t += _group_matmul(col, grad_t)
        return grad_w_t

    sums = _over_shares(x, x.shape, win, out_hw, work)
    return out, None if grad is None else sum(sums).swapaxes(1, 2).reshape(weight_shape)


def correlate(x, weight, groups: int, win: Windows, out_hw):
    """x (N, C, H, W), weight (O, C/G, kh, kw) -> (N, O, out_h, out_w)."""
    return _correlate_and_weight_gradient(x, weight, None, groups, win, out_hw, weight.shape)[0]


def _flipped_weight(weight, groups: int):
    """(O, C/G, kh, kw) -> (C, O/G, kh, kw): each group's channels swapped, the kernel rotated
    180°."""
    out_c, in_per_group, kh, kw = weight.shape
    w = weight.reshape(groups, out_c // groups, in_per_group, kh, kw).transpose(0, 2, 1, 3, 4)
    w = w[..., ::-1, ::-1]
    return w.reshape(groups * in_per_group, out_c // groups, kh, kw)


def correlate_adjoint(grad, weight, groups: int, win: Windows, in_shape):
    """The adjoint of ``correlate``: grad (N, O, out_h, out_w) -> (N, C, H, W) = ``in_shape``."""
    xp = get_array_module(grad, weight)
    n, out_c, out_h, out_w = grad.shape
    if phases.applies(win):
        phases_shape = phases.phases_shape(in_shape, win, (out_h, out_w))
        grad_phases = correlate_adjoint(
            grad, phases.phase_weight(weight, win), groups, phases.stride_one(win), phases_shape
        )
        return phases.space_to_depth_adjoint(grad_phases, win, in_shape)
    if win.stride == (1, 1):
        # stride 1: the adjoint is itself a correlation, of grad with the flipped kernel and
        # padding reach - padding (negative means crop), cheaper than col2im's kh * kw adds
        reach = tuple(d * (k - 1) for k, d in zip(win.kernel, win.dilation))
        padding = tuple(r - p for r, p in zip(reach, win.padding))
        flipped = Windows(win.kernel, (1, 1), padding, win.dilation)
        return correlate(grad, _flipped_weight(weight, groups), groups, flipped, in_shape[2:])
    w_t = weight.reshape(groups, out_c // groups, -1).swapaxes(1, 2)  # (G, C/G * kh * kw, O/G)
    grad_x = xp.zeros(in_shape, dtype=grad.dtype)

    def work(share, pieces):  # row bands of one sample overlap in grad_x: a share is whole samples
        grad_share, grad_x_share = grad[share], grad_x[share]
        for samples, rows in pieces:
            # (G, C/G * kh * kw, nb * r * w)
            col = _group_matmul(w_t, _batch_in_columns(grad_share, samples, rows, groups))
            windows = col.reshape(in_shape[1], *win.kernel, -1, rows.stop - rows.start, out_w)
            col2im_add(grad_x_share[samples], windows.transpose(3, 0, 1, 2, 4, 5), win, rows)

    _over_shares(grad, in_shape, win, (out_h, out_w), work)
    return grad_x


def weight_gradient(x, grad, groups: int, win: Windows, weight_shape):
    """dL/dW for ``correlate``: x (N, C, H, W), grad (N, O, out_h, out_w) -> ``weight_shape``."""
    return _correlate_and_weight_gradient(x, None, grad, groups, win, grad.shape[2:], weight_shape)[
        1
    ]
