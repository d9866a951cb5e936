"""2-D convolution and transposed convolution.

A convolution (a cross-correlation, as PyTorch defines it) of x (N, C, H, W) with a weight W
(O, C/G, kh, kw) in G groups slides a window over x_pad, x with the padding's zeros around it:

    out[n, o, i, j] = b[o] + sum_{c, p, q} W[o, c, p, q] x_pad[n, gC + c, i sh + p dh, j sw + q dw]

(gC the first input channel of output channel o's group). im2col copies every window into a
column of cols (C kh kw, N out_h out_w), so that out = W cols + b is one matrix multiply per
group; with g = dL/dout the backward is dL/dW = g cols^T, dL/dx = col2im(W^T g) (col2im adds
each column back onto its window, the adjoint of im2col) and dL/db = g summed over n, i, j.

A transposed convolution is the adjoint of a convolution, with its weight (C_in, C_out/G, kh, kw)
read as a convolution's from C_out channels to C_in: its forward is that convolution's input
gradient, col2im(W^T x) + b, and its input gradient is that convolution.

``minivision.reference.conv`` writes these out. The ops run it when the reference switch is
on (``minivision.dispatch``) and for float16; otherwise ``_conv_fast`` does the same work in
pieces of a bounded workspace (``set_workspace_budget``) on worker threads, with Winograd for
3x3 stride-1 layers (``set_winograd_enabled``), phases for strided kernels that are a whole
number of strides, a matrix multiply for 1x1 layers, and CUDA im2col on the GPU.
"""

from __future__ import annotations

from minivision.functional._geometry import accepts_unbatched, check_nchw, output_hw, pair
from minivision.functional.shape import pad
from minivision.reference import conv as reference
from minivision.tensor import Function, Tensor

# isort: split
# BEGIN FAST PATH conv
from minivision.dispatch import fast_paths_enabled
from minivision.functional import _conv_fast as fast

# the fast path's settings, re-exported here
from minivision.functional._winograd import set_enabled as set_winograd_enabled  # noqa: F401
from minivision.functional.im2col import get_workspace_budget, set_workspace_budget  # noqa: F401

# END FAST PATH conv


def _implementation(array):
    """The module that computes a conv of ``array``: the fast path, or the reference."""
    # BEGIN FAST PATH conv
    if fast_paths_enabled() and fast.takes(array):
        return fast
    # END FAST PATH conv
    return reference


class _Conv2d(Function):
    """out = conv2d(x, W) + b; x and W are kept for the weight and the input gradients."""

    def forward(self, x, weight, bias, **geometry):
        self.x, self.weight, self.geometry = x, weight, geometry
        return _implementation(x).conv2d(x, weight, bias, **geometry)

    def backward(self, grad):
        return _implementation(grad).conv2d_backward(
            grad, self.x, self.weight, **self.geometry, needs=self.needs_grad
        )


class _ConvTranspose2d(Function):
    """out = conv_transpose2d(x, W) + b, the adjoint of conv2d with the same weight read as
    (C_in, C_out/G, kh, kw); x and W are kept for the weight and the input gradients."""

    def forward(self, x, weight, bias, output_padding, **geometry):
        self.x, self.weight, self.geometry = x, weight, geometry
        return _implementation(x).conv_transpose2d(
            x, weight, bias, output_padding=output_padding, **geometry
        )

    def backward(self, grad):
        implementation = _implementation(grad)
        return implementation.conv_transpose2d_backward(
            grad, self.x, self.weight, **self.geometry, needs=self.needs_grad
        )


def _check_operands(op: str, input, weight, bias, groups, transposed: bool) -> None:
    """Shapes, dtypes and groups of a conv's operands, with PyTorch-like messages."""
    check_nchw(input, op)
    check_nchw(weight, op, "weight")
    if weight.dtype != input.dtype:
        raise TypeError(
            f"{op}: weight has dtype {weight.dtype} but input has dtype {input.dtype}; they must match"
        )
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
            raise ValueError(
                f"{op}: bias must have shape ({out_channels},), got {tuple(bias.shape)}"
            )
        if bias.dtype != input.dtype:
            raise TypeError(
                f"{op}: bias has dtype {bias.dtype} but input has dtype {input.dtype}; they must match"
            )


def _same_padding(input, kernel, dilation, stride):
    """padding='same': (input, padding) with half the kernel's reach as padding on each side
    and an odd extra appended to the input as zeros on the right/bottom (where PyTorch puts
    it), so that the output keeps the input's size."""
    if stride != (1, 1):
        raise ValueError(f"conv2d: padding='same' needs stride 1, got stride={stride}")
    reach = tuple(d * (k - 1) for k, d in zip(kernel, dilation))
    if reach[0] % 2 or reach[1] % 2:
        input = pad(input, (0, reach[1] % 2, 0, reach[0] % 2))
    return input, (reach[0] // 2, reach[1] // 2)


@accepts_unbatched
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """input (N, C_in, H, W), weight (C_out, C_in/groups, kh, kw), bias (C_out,)
    -> (N, C_out, out_h, out_w) with out = (H + 2 * padding - dilation * (kh - 1) - 1) // stride + 1.
    ``padding`` may also be 'valid' (none) or 'same' (output as large as the input, stride 1)."""
    _check_operands("conv2d", input, weight, bias, groups, transposed=False)
    kernel, stride, dilation = (
        tuple(weight.shape[2:]),
        pair(stride, "stride", 1),
        pair(dilation, "dilation", 1),
    )
    if padding == "valid":
        padding = 0
    if padding == "same":
        input, padding = _same_padding(input, kernel, dilation, stride)
    padding = pair(padding, "padding")
    output_hw("conv2d", input.shape, kernel, stride, padding, dilation)  # raises when none fits
    return _Conv2d.apply(
        input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups
    )


@accepts_unbatched
def conv_transpose2d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
) -> Tensor:
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
    out_hw = reference.transposed_output_hw(
        input.shape[2:], kernel, stride, padding, output_padding, dilation
    )
    if min(out_hw) < 1:
        raise ValueError(
            f"conv_transpose2d: the output would be {out_hw[0]}x{out_hw[1]} for input {tuple(input.shape)}, "
            f"kernel {kernel}, stride {stride}, padding {padding}; reduce padding"
        )
    return _ConvTranspose2d.apply(
        input,
        weight,
        bias,
        output_padding=output_padding,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )
