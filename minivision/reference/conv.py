"""Convolution and transposed convolution, built from im2col and one matrix multiply.

A convolution (a cross-correlation, as PyTorch defines it) slides a window over the input,
x_pad being x with ph zero rows above and below and pw zero columns on either side:

    out[n, o, i, j] = b[o] + sum_{c, p, q} W[o, c, p, q] x_pad[n, c, i sh + p dh, j sw + q dw]

for x (N, C, H, W) and W (O, C, kh, kw); out_h = (H + 2 ph - dh (kh - 1) - 1) // sh + 1, and
likewise out_w. With G groups, W is (O, C/G, kh, kw) and output channel o reads only the C/G
input channels of its group. ``im2col`` copies the window of every output pixel into a column,

    cols[(c, p, q), (n, i, j)] = x_pad[n, c, i * sh + p * dh, j * sw + q * dw],

so the convolution is a matrix multiply per group: out = W cols + b, with W as a matrix
(O/G, C/G * kh * kw) and the group's rows of cols. Its backward follows from the product,
given g = dL/dout: dL/dW = g cols^T and dL/dcols = W^T g, which ``col2im``, the adjoint of
``im2col``, adds back onto the input pixels each column was read from.

A transposed convolution is the adjoint of a convolution: its weight (C_in, C_out/G, kh, kw)
is read as a convolution's from C_out channels to C_in, its forward is that convolution's
input gradient col2im(W^T x) (each input value stamps the kernel into the output, and
overlapping stamps add), and its input gradient is that convolution.

Every size argument here is a pair (h, w) of ints.
"""

from __future__ import annotations

from minivision.backend import get_array_module


def output_hw(in_hw, kernel, stride, padding, dilation) -> tuple[int, int]:
    """(H, W) -> (out_h, out_w) of a convolution: (H + 2 ph - dh (kh - 1) - 1) // sh + 1 per axis,
    the number of windows that fit in the padded input."""
    return tuple(
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(in_hw, kernel, stride, padding, dilation)
    )


def transposed_output_hw(in_hw, kernel, stride, padding, output_padding, dilation) -> tuple:
    """(H, W) -> (out_h, out_w) of a transposed convolution: (H - 1) sh - 2 ph + dh (kh - 1)
    + output_padding + 1 per axis, the input size of the convolution it is the adjoint of
    (``output_padding`` picks one where that convolution's floor division leaves several)."""
    sizes = zip(in_hw, kernel, stride, padding, output_padding, dilation)
    return tuple((n - 1) * s - 2 * p + d * (k - 1) + extra + 1 for n, k, s, p, extra, d in sizes)


def im2col(x, kernel, stride, padding, dilation):
    """x (N, C, H, W) -> cols (C * kh * kw, N * out_h * out_w): the window of each output pixel
    as a column, cols[(c, p, q), (n, i, j)] = x_pad[n, c, i * sh + p * dh, j * sw + q * dw].

    Row (c, p, q) holds kernel offset (p, q) of channel c for every window: one strided
    slice of the padded input, so kh * kw slices fill the matrix. The batch sits in the
    columns, so one matrix multiply covers it.
    Lecture: sliding windows (a classifier run over every window is a convolution).
    """
    # BEGIN SOLUTION conv: write im2col, the (C*kh*kw, N*out_h*out_w) column matrix of the windows
    xp = get_array_module(x)
    n, c = x.shape[:2]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    out_h, out_w = output_hw(x.shape[2:], kernel, stride, padding, dilation)
    x_pad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = xp.empty((c, kh, kw, n, out_h, out_w), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            offset = x_pad[
                :, :, p * dh : p * dh + sh * out_h : sh, q * dw : q * dw + sw * out_w : sw
            ]
            cols[:, p, q] = offset.transpose(1, 0, 2, 3)  # (C, N, out_h, out_w)
    return cols.reshape(c * kh * kw, n * out_h * out_w)
    # END SOLUTION conv


def col2im(cols, x_shape, kernel, stride, padding, dilation):
    """cols (C * kh * kw, N * out_h * out_w) -> (N, C, H, W) = ``x_shape``: the adjoint of
    ``im2col``, <im2col(x), cols> = <x, col2im(cols)>. Each column's values go back to the
    pixels of its window, and where windows overlap they add up:

        dx_pad[n, c, i * sh + p * dh, j * sw + q * dw] += cols[(c, p, q), (n, i, j)]

    One strided add per kernel offset (p, q), onto a padded grid whose border is then cut off.
    Lecture: transposed convolution (each value stamped into the output; overlaps combine).
    """
    # BEGIN SOLUTION conv: write col2im, the adjoint of im2col: add each column back onto its window
    xp = get_array_module(cols)
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    out_h, out_w = output_hw((h, w), kernel, stride, padding, dilation)
    windows = cols.reshape(c, kh, kw, n, out_h, out_w)
    x_pad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for p in range(kh):
        for q in range(kw):
            offset = x_pad[
                :, :, p * dh : p * dh + sh * out_h : sh, q * dw : q * dw + sw * out_w : sw
            ]
            offset += windows[:, p, q].transpose(1, 0, 2, 3)  # (N, C, out_h, out_w)
    return x_pad[:, :, ph : ph + h, pw : pw + w]
    # END SOLUTION conv


def _per_group(weight, groups: int):
    """(O, C/G, kh, kw) -> (G, O/G, C/G * kh * kw): each group's weight as a matrix."""
    return weight.reshape(groups, weight.shape[0] // groups, -1)


def _grad_per_group(grad, groups: int):
    """(N, O, out_h, out_w) -> (G, O/G, N * out_h * out_w): the layout of W @ cols."""
    return grad.transpose(1, 0, 2, 3).reshape(groups, grad.shape[1] // groups, -1)


def _add_bias(out, bias):
    """out (N, O, out_h, out_w) + bias (O,) on every pixel; out itself when there is no bias."""
    return out if bias is None else out + bias.reshape(1, -1, 1, 1)


def conv2d(x, weight, bias, stride, padding, dilation, groups):
    """x (N, C, H, W), weight (O, C/G, kh, kw), bias (O,) or None -> (N, O, out_h, out_w):
    out = W cols + b, one matrix multiply (O/G, C/G * kh * kw) @ (C/G * kh * kw, N * out_h * out_w)
    per group, cols = im2col(x) with each group's rows together (channels vary slowest).
    Lecture: sliding windows (the fully connected classifier run as a convolution)."""
    xp = get_array_module(x, weight)
    out_h, out_w = output_hw(x.shape[2:], weight.shape[2:], stride, padding, dilation)
    cols = im2col(x, weight.shape[2:], stride, padding, dilation)
    out = xp.matmul(_per_group(weight, groups), cols.reshape(groups, -1, cols.shape[1]))
    out = out.reshape(weight.shape[0], x.shape[0], out_h, out_w).transpose(1, 0, 2, 3)
    return _add_bias(out, bias)


def _input_gradient(grad, weight, x_shape, stride, padding, dilation, groups):
    """grad (N, O, out_h, out_w), weight (O, C/G, kh, kw) -> dL/dx (N, C, H, W) = ``x_shape``
    of a convolution: col2im(W^T g), W^T g (C * kh * kw, N * out_h * out_w) per group."""
    xp = get_array_module(grad, weight)
    cols = xp.matmul(_per_group(weight, groups).swapaxes(1, 2), _grad_per_group(grad, groups))
    kernel = weight.shape[2:]
    return col2im(cols.reshape(-1, cols.shape[2]), x_shape, kernel, stride, padding, dilation)


def _weight_gradient(x, grad, weight_shape, stride, padding, dilation, groups):
    """x (N, C, H, W), grad (N, O, out_h, out_w) -> dL/dW (O, C/G, kh, kw) = ``weight_shape``
    of a convolution: g cols^T per group, (O/G, N out_h out_w) @ (N out_h out_w, C/G kh kw),
    summing over the batch and every window."""
    xp = get_array_module(x, grad)
    cols = im2col(x, weight_shape[2:], stride, padding, dilation)
    cols_t = cols.reshape(groups, -1, cols.shape[1]).swapaxes(1, 2)  # (G, N out_h out_w, C/G kh kw)
    return xp.matmul(_grad_per_group(grad, groups), cols_t).reshape(weight_shape)


def conv2d_backward(grad, x, weight, stride, padding, dilation, groups, needs=(True, True, True)):
    """grad (N, O, out_h, out_w) = dL/dout of ``conv2d`` -> (dL/dx (N, C, H, W),
    dL/dW (O, C/G, kh, kw), dL/db (O,)), each None where ``needs`` says it is not wanted:
    dL/dx = col2im(W^T g), dL/dW = g im2col(x)^T, dL/db = sum of g over n, i and j.
    Lecture: sliding windows (overlapping windows add their gradients at a shared pixel)."""
    grad_x = grad_w = None
    if needs[0]:
        grad_x = _input_gradient(grad, weight, x.shape, stride, padding, dilation, groups)
    if needs[1]:
        grad_w = _weight_gradient(x, grad, weight.shape, stride, padding, dilation, groups)
    return grad_x, grad_w, grad.sum(axis=(0, 2, 3)) if needs[2] else None


def conv_transpose2d(x, weight, bias, stride, padding, output_padding, dilation, groups):
    """x (N, C_in, H, W), weight (C_in, C_out/G, kh, kw), bias (C_out,) or None
    -> (N, C_out, out_h, out_w), out_h = (H - 1) sh - 2 ph + dh (kh - 1) + output_padding + 1:
    the adjoint of ``conv2d`` with the weight read as a convolution from C_out channels to C_in,
    so out = col2im(W^T x) + b, the input gradient of that convolution.
    Lecture: transposed convolution ("fractional stride" upsampling)."""
    kernel = weight.shape[2:]
    out_hw = transposed_output_hw(x.shape[2:], kernel, stride, padding, output_padding, dilation)
    out_shape = (x.shape[0], weight.shape[1] * groups) + out_hw
    windows = _pad_to_windows(x, out_hw, kernel, stride, padding, dilation)
    out = _input_gradient(windows, weight, out_shape, stride, padding, dilation, groups)
    return _add_bias(out, bias)


def _pad_to_windows(x, out_hw, kernel, stride, padding, dilation):
    """x (N, C_in, H, W) with zero rows and columns appended up to the number of windows of a
    convolution over an (out_h, out_w) image: H + output_padding // sh rows, more than H only
    when output_padding reaches a whole stride (which a dilation above the stride allows)."""
    xp = get_array_module(x)
    windows = output_hw(out_hw, kernel, stride, padding, dilation)
    return xp.pad(x, ((0, 0), (0, 0)) + tuple((0, m - n) for m, n in zip(windows, x.shape[2:])))


def conv_transpose2d_backward(
    grad, x, weight, stride, padding, dilation, groups, needs=(True, True, True)
):
    """grad (N, C_out, out_h, out_w) = dL/dout of ``conv_transpose2d`` -> (dL/dx (N, C_in, H, W),
    dL/dW (C_in, C_out/G, kh, kw), dL/db (C_out,)), each None where ``needs`` says so. The adjoint
    of the adjoint is the convolution: dL/dx = conv2d(g, W), and dL/dW is that convolution's
    weight gradient with g as its input and x as its output's gradient, x im2col(g)^T.
    Lecture: transposed convolution."""
    h, w = x.shape[2:]
    grad_x = grad_w = None
    if needs[0]:
        grad_x = conv2d(grad, weight, None, stride, padding, dilation, groups)[:, :, :h, :w]
    if needs[1]:
        windows = _pad_to_windows(x, grad.shape[2:], weight.shape[2:], stride, padding, dilation)
        grad_w = _weight_gradient(grad, windows, weight.shape, stride, padding, dilation, groups)
    return grad_x, grad_w, grad.sum(axis=(0, 2, 3)) if needs[2] else None
