"""2-D convolution and transposed convolution (im2col + one matrix multiply per chunk).

Three array kernels do all the work; each op's forward and backward are two of them:

- ``_correlate``: out = W * x, a convolution (cross-correlation) as PyTorch defines it;
- ``_correlate_adjoint``: its adjoint W^T * g, the input gradient: col2im of W^T g, or for
  stride 1 a correlation of g with the flipped kernel (no col2im at all);
- ``_weight_gradient``: dL/dW = g @ im2col(x)^T, summed over the batch by the product.

The first and the last read the same columns of x; one loop
(``_correlate_and_weight_gradient``) computes either or both, so a transposed
convolution's backward, which needs both of the gradient's columns, builds them once.

A 3x3, stride-1 correlation of NumPy arrays takes Winograd's F(2x2, 3x3) instead of im2col
(``_winograd.py``: 2.25x fewer multiplies); ``set_winograd_enabled(False)`` turns it off.

``conv_transpose2d`` is the adjoint of ``conv2d``, so its forward is ``_correlate_adjoint``
with the transposed-conv weight (in, out/groups, kh, kw) read as a conv weight from the
output space back to the input space, and its backward uses the other two kernels.
The Winograd and pointwise shortcuts are FAST PATH regions: a student copy of the ``conv``
assignment part drops them, so its im2col does every convolution.
The column matrices hold the batch in their columns, (C * kh * kw, N * out_h * out_w),
so each chunk is one matrix multiply per group (few, large BLAS calls). A 1x1 convolution
with stride 1 and no padding skips im2col: its columns are the input, reordered.
"""
from __future__ import annotations

import numpy as np

from minivision import threads
from minivision.backend import get_array_module
from minivision.functional import _space_to_depth as phases
from minivision.functional import _winograd as winograd
from minivision.functional._winograd import set_enabled as set_winograd_enabled  # noqa: F401  (re-exported)
from minivision.functional._geometry import Windows, accepts_unbatched, check_nchw, output_hw, pair
from minivision.functional.im2col import (  # noqa: F401  (budget setters re-exported here)
    chunks,
    col2im_add,
    get_workspace_budget,
    im2col,
    set_workspace_budget,
)
from minivision.tensor import Function, Tensor


def _columns(x, win: Windows, samples: slice, rows: slice, out_w: int, groups: int):
    """The column matrix of x[samples] for output ``rows``, split by group:
    (G, C/G * kh * kw, nb * rows * out_w). A pointwise conv's columns are x itself, reordered."""
    xp = get_array_module(x)
    # BEGIN FAST PATH conv
    if win.is_pointwise():  # output pixel (i, j) reads input pixel (i, j) alone
        col = xp.ascontiguousarray(x[samples, :, rows, :out_w].transpose(1, 0, 2, 3)).reshape(x.shape[1], -1)
        return col.reshape(groups, -1, col.shape[-1])
    # END FAST PATH conv
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
        return work(share, chunks(share.stop - share.start, out_hw[0], row_bytes, shares,
                                  on_gpu=not isinstance(array, np.ndarray)))

    return threads.over_batch(array, run, max_parts=max(1, get_workspace_budget() // row_bytes))


def _group_matmul(a, b):
    """a @ b for each group: (G, m, k) @ (G, k, n) -> (G, m, n). One group (the usual case) is
    a 2-D product: CuPy's batched product first copies a transposed operand (the weight
    gradient's grad^T) into a new array, its 2-D product passes the transpose to cuBLAS."""
    xp = get_array_module(a, b)
    return xp.matmul(a[0], b[0])[None] if a.shape[0] == 1 else xp.matmul(a, b)


def _batch_in_columns(a, samples: slice, rows: slice, groups: int):
    """a[samples, :, rows] (nb, O, r, w) as (G, O/G, nb * r * w), the layout of a product with columns."""
    xp = get_array_module(a)
    part = xp.ascontiguousarray(a[samples, :, rows].transpose(1, 0, 2, 3))
    return part.reshape(groups, part.shape[0] // groups, -1)


def _correlate_and_weight_gradient(x, weight, grad, groups: int, win: Windows, out_hw, weight_shape):
    """(x correlated with ``weight``, dL/dW of that correlation given ``grad``): x (N, C, H, W),
    weight (O, C/G, kh, kw) = ``weight_shape``, grad (N, O, out_h, out_w) -> ((N, O, out_h, out_w),
    ``weight_shape``), a half None when its operand is None. Both halves read the same
    columns of x, built once when both are asked for (a transposed convolution's backward)."""
    if phases.applies(win):
        phased = None if weight is None else phases.phase_weight(weight, win)
        out, grad_w = _correlate_and_weight_gradient(phases.space_to_depth(x, win, out_hw), phased, grad, groups,
                                                     phases.stride_one(win), out_hw,
                                                     phases.phase_weight_shape(weight_shape, win))
        return out, None if grad is None else phases.phase_weight_adjoint(grad_w, win, weight_shape)
    # BEGIN FAST PATH conv
    if winograd.applies(x, weight_shape[0], groups, win):
        return (None if weight is None else winograd.correlate(x, weight, win.padding, out_hw),
                None if grad is None else winograd.weight_gradient(x, grad, win.padding))
    # END FAST PATH conv
    xp = get_array_module(x, weight if grad is None else grad)
    out_c = weight_shape[0]
    w = None if weight is None else weight.reshape(groups, out_c // groups, -1)
    out = None if weight is None else xp.empty((x.shape[0], out_c) + tuple(out_hw), dtype=x.dtype)

    def work(share, pieces):  # for the weight gradient each worker sums its share; the sums are added after
        x_share = x[share]
        grad_w_t = None if grad is None else xp.zeros(
            (groups, x.shape[1] // groups * win.kernel[0] * win.kernel[1], out_c // groups), dtype=x.dtype)
        for samples, rows in pieces:
            col = _columns(x_share, win, samples, rows, out_hw[1], groups)
            if w is not None:
                product = _group_matmul(w, col)  # (G, O/G, nb * r * w)
                out[share][samples, :, rows] = product.reshape(out_c, -1, rows.stop - rows.start,
                                                               out_hw[1]).transpose(1, 0, 2, 3)
            if grad is not None:
                # (col @ g^T)^T rather than g @ col^T: same product, but OpenBLAS runs the latter (a long
                # reduction into a short, wide result) many times slower when the cores are shared
                grad_w_t += _group_matmul(col, _batch_in_columns(grad[share], samples, rows, groups).swapaxes(1, 2))
        return grad_w_t

    sums = _over_shares(x, x.shape, win, out_hw, work)
    return out, None if grad is None else sum(sums).swapaxes(1, 2).reshape(weight_shape)


def _correlate(x, weight, groups: int, win: Windows, out_hw):
    """x (N, C, H, W), weight (O, C/G, kh, kw) -> (N, O, out_h, out_w)."""
    return _correlate_and_weight_gradient(x, weight, None, groups, win, out_hw, weight.shape)[0]


def _flipped_weight(weight, groups: int):
    """(O, C/G, kh, kw) -> (C, O/G, kh, kw): each group's channels swapped, the kernel rotated 180°."""
    out_c, in_per_group, kh, kw = weight.shape
    w = weight.reshape(groups, out_c // groups, in_per_group, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return w.reshape(groups * in_per_group, out_c // groups, kh, kw)


def _correlate_adjoint(grad, weight, groups: int, win: Windows, in_shape):
    """The adjoint of ``_correlate``: grad (N, O, out_h, out_w) -> (N, C, H, W) = ``in_shape``."""
    xp = get_array_module(grad, weight)
    n, out_c, out_h, out_w = grad.shape
    if phases.applies(win):
        grad_phases = _correlate_adjoint(grad, phases.phase_weight(weight, win), groups, phases.stride_one(win),
                                         phases.phases_shape(in_shape, win, (out_h, out_w)))
        return phases.space_to_depth_adjoint(grad_phases, win, in_shape)
    if win.stride == (1, 1):
        # stride 1: the adjoint is itself a correlation, of grad with the flipped kernel and
        # padding reach - padding (negative means crop), cheaper than col2im's kh * kw adds
        reach = tuple(d * (k - 1) for k, d in zip(win.kernel, win.dilation))
        flipped = Windows(win.kernel, (1, 1), tuple(r - p for r, p in zip(reach, win.padding)), win.dilation)
        return _correlate(grad, _flipped_weight(weight, groups), groups, flipped, in_shape[2:])
    w_t = weight.reshape(groups, out_c // groups, -1).swapaxes(1, 2)  # (G, C/G * kh * kw, O/G)
    grad_x = xp.zeros(in_shape, dtype=grad.dtype)

    def work(share, pieces):  # row bands of one sample overlap in grad_x: a share is whole samples
        grad_share, grad_x_share = grad[share], grad_x[share]
        for samples, rows in pieces:
            col = _group_matmul(w_t, _batch_in_columns(grad_share, samples, rows, groups))  # (G, C/G * kh * kw, nb * r * w)
            windows = col.reshape(in_shape[1], *win.kernel, -1, rows.stop - rows.start, out_w)
            col2im_add(grad_x_share[samples], windows.transpose(3, 0, 1, 2, 4, 5), win, rows)

    _over_shares(grad, in_shape, win, (out_h, out_w), work)
    return grad_x


def _weight_gradient(x, grad, groups: int, win: Windows, weight_shape):
    """dL/dW for ``_correlate``: x (N, C, H, W), grad (N, O, out_h, out_w) -> ``weight_shape``."""
    return _correlate_and_weight_gradient(x, None, grad, groups, win, grad.shape[2:], weight_shape)[1]


class _ConvFunction(Function):
    """Bookkeeping shared by both conv ops: each operand is kept only if the other's gradient needs it."""

    def save(self, x, weight, groups, win):
        self.groups, self.win = groups, win
        self.x = x if self.needs_grad[1] else None  # for the weight gradient
        self.weight = weight if self.needs_grad[0] else None  # for the input gradient
        self.x_shape, self.w_shape = x.shape, weight.shape

    @staticmethod
    def add_bias(out, bias):
        if bias is not None:
            out += bias.reshape(1, -1, 1, 1)
        return out

    def bias_gradient(self, grad):
        return grad.sum(axis=(0, 2, 3)) if self.needs_grad[2] else None


class _Conv2d(_ConvFunction):
    def forward(self, x, weight, bias, groups=1, win=None, out_hw=None):
        self.save(x, weight, groups, win)
        return self.add_bias(_correlate(x, weight, groups, win, out_hw), bias)

    def backward(self, grad):
        grad_x = _correlate_adjoint(grad, self.weight, self.groups, self.win, self.x_shape) if self.needs_grad[0] else None
        grad_w = _weight_gradient(self.x, grad, self.groups, self.win, self.w_shape) if self.needs_grad[1] else None
        return grad_x, grad_w, self.bias_gradient(grad)


class _ConvTranspose2d(_ConvFunction):
    """The adjoint of conv2d with the same weight, read as (C_in, C_out/G, kh, kw)."""

    def forward(self, x, weight, bias, groups=1, win=None, out_hw=None):
        self.save(x, weight, groups, win)
        out_shape = (x.shape[0], weight.shape[1] * groups) + tuple(out_hw)
        return self.add_bias(_correlate_adjoint(x, weight, groups, win, out_shape), bias)

    def backward(self, grad):
        # both gradients read the columns of grad: built once for the two (self.weight and
        # self.x are None where their gradient is not needed)
        grad_x, grad_w = _correlate_and_weight_gradient(grad, self.weight, self.x, self.groups, self.win,
                                                        self.x_shape[2:], self.w_shape)
        return grad_x, grad_w, self.bias_gradient(grad)


def _check_operands(op: str, input, weight, bias, groups, transposed: bool) -> None:
    """Shapes, dtypes and groups of a conv's operands, with PyTorch-like messages."""
    check_nchw(input, op)
    check_nchw(weight, op, "weight")
    if weight.dtype != input.dtype:
        raise TypeError(f"{op}: weight has dtype {weight.dtype} but input has dtype {input.dtype}; they must match")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    if weight.shape[0] % groups:
        raise ValueError(
            f"{op}: groups={groups} must divide weight dimension 0, got weight of shape {tuple(weight.shape)}"
        )
    in_channels = weight.shape[0] if transposed else weight.shape[1] * groups
    if input.shape[1] != in_channels:
        raise ValueError(
            f"{op}: given groups={groups} and weight of shape {tuple(weight.shape)}, expected input of shape "
            f"{tuple(input.shape)} to have {in_channels} channels, but got {input.shape[1]} channels instead"
        )
    out_channels = weight.shape[1] * groups if transposed else weight.shape[0]
    if bias is not None:
        if tuple(bias.shape) != (out_channels,):
            raise ValueError(f"{op}: bias must have shape ({out_channels},), got {tuple(bias.shape)}")
        if bias.dtype != input.dtype:
            raise TypeError(f"{op}: bias has dtype {bias.dtype} but input has dtype {input.dtype}; they must match")


def _same_padding(kernel, dilation, stride) -> tuple:
    """padding='same': half the kernel's reach on each side (the odd extra on the right/bottom,
    read as zeros because the output keeps the input's size)."""
    if stride != (1, 1):
        raise ValueError(f"conv2d: padding='same' needs stride 1, got stride={stride}")
    return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))


@accepts_unbatched
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """input (N, C_in, H, W), weight (C_out, C_in/groups, kh, kw), bias (C_out,)
    -> (N, C_out, out_h, out_w) with out = (H + 2 * padding - dilation * (kh - 1) - 1) // stride + 1.
    ``padding`` may also be 'valid' (none) or 'same' (output as large as the input, stride 1)."""
    _check_operands("conv2d", input, weight, bias, groups, transposed=False)
    kernel, stride, dilation = tuple(weight.shape[2:]), pair(stride, "stride", 1), pair(dilation, "dilation", 1)
    if padding == "valid":
        padding = 0
    if padding == "same":
        padding = _same_padding(kernel, dilation, stride)
        win = Windows(kernel, stride, padding, dilation)
        out_hw = tuple(input.shape[2:])
    else:
        win = Windows(kernel, stride, pair(padding, "padding"), dilation)
        out_hw = output_hw("conv2d", input.shape, *win)
    return _Conv2d.apply(input, weight, bias, groups=groups, win=win, out_hw=out_hw)


@accepts_unbatched
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1) -> Tensor:
    """input (N, C_in, H, W), weight (C_in, C_out/groups, kh, kw), bias (C_out,) -> (N, C_out, out_h, out_w)
    with out = (H - 1) * stride - 2 * padding + dilation * (kh - 1) + output_padding + 1.
    The adjoint (gradient with respect to the input) of ``conv2d`` with the same weight."""
    _check_operands("conv_transpose2d", input, weight, bias, groups, transposed=True)
    kernel, stride = tuple(weight.shape[2:]), pair(stride, "stride", 1)
    padding, dilation = pair(padding, "padding"), pair(dilation, "dilation", 1)
    output_padding = pair(output_padding, "output_padding")
    if any(op >= s and op >= d for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(
            f"conv_transpose2d: output_padding must be smaller than either stride or dilation, "
            f"got output_padding={output_padding}, stride={stride}, dilation={dilation}"
        )
    out_hw = tuple(
        (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        for n, s, p, d, k, op in zip(input.shape[2:], stride, padding, dilation, kernel, output_padding)
    )
    if min(out_hw) < 1:
        raise ValueError(
            f"conv_transpose2d: the output would be {out_hw[0]}x{out_hw[1]} for input {tuple(input.shape)}, "
            f"kernel {kernel}, stride {stride}, padding {padding}; reduce padding"
        )
    win = Windows(kernel, stride, padding, dilation)
    return _ConvTranspose2d.apply(input, weight, bias, groups=groups, win=win, out_hw=out_hw)
