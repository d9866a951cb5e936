"""Every op and every tiny model gives the CPU's values and gradients on the GPU.

The CPU (float64 for ops) is the reference; gradchecks run on every device. ``pytest -m gpu``
runs the CUDA cases alone; they skip where CuPy or a GPU is missing.
"""

import numpy as np
import pytest

import minivision as mv
from minivision import functional as F
from minivision.backend import to_numpy
from minivision.models import MODELS
from tests.models.common import shapes_batch

LABELS = np.array(
    [[[0, 2, 1], [1, 1, 0]], [[2, 0, 0], [1, 2, 2]]]
)  # (2, 2, 3) class indices for (2, C, 2, 3) scores

# name: (function of the float inputs, shapes of those inputs)
OPS = {
    "conv2d 3x3 pad 1 (Winograd on the CPU)": (
        lambda x, w, b: F.conv2d(x, w, b, padding=1),
        [(2, 3, 9, 8), (4, 3, 3, 3), (4,)],
    ),
    "conv2d 4x4/2 (phases)": (
        lambda x, w: F.conv2d(x, w, stride=2, padding=1),
        [(2, 3, 9, 8), (4, 3, 4, 4)],
    ),
    "conv2d 3x3/2 dilated": (
        lambda x, w: F.conv2d(x, w, stride=2, padding=2, dilation=(1, 2)),
        [(2, 3, 9, 8), (4, 3, 3, 3)],
    ),
    "conv2d grouped 1x1": (lambda x, w: F.conv2d(x, w, groups=2), [(2, 4, 5, 5), (6, 2, 1, 1)]),
    "conv_transpose2d 4x4/2": (
        lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1),
        [(2, 4, 5, 6), (4, 3, 4, 4)],
    ),
    "conv_transpose2d 3x3/2 output_padding": (
        lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1),
        [(2, 4, 5, 6), (4, 3, 3, 3)],
    ),
    "max_pool2d 3x3/2 ceil": (
        lambda x: F.max_pool2d(x, 3, 2, padding=1, ceil_mode=True),
        [(2, 3, 9, 8)],
    ),
    "avg_pool2d 2x2": (
        lambda x: F.avg_pool2d(x, 2, count_include_pad=False, padding=1),
        [(2, 3, 9, 8)],
    ),
    "interpolate bilinear": (
        lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
        [(2, 3, 5, 4)],
    ),
    "interpolate bilinear aligned": (
        lambda x: F.interpolate(x, size=(7, 9), mode="bilinear", align_corners=True),
        [(2, 3, 5, 4)],
    ),
    "interpolate nearest": (lambda x: F.interpolate(x, scale_factor=3), [(2, 3, 5, 4)]),
    "batch_norm (training)": (
        lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
        [(4, 3, 5, 5), (3,), (3,)],
    ),
    "linear + relu": (lambda x, w, b: F.relu(F.linear(x, w, b)), [(5, 7), (3, 7), (3,)]),
    "sigmoid, tanh, leaky_relu, softplus": (
        lambda x: F.sigmoid(x) + F.tanh(x) * F.leaky_relu(x, 0.1) + F.softplus(x),
        [(4, 6)],
    ),
    "softmax and log_softmax": (lambda x: F.softmax(x, dim=1) * F.log_softmax(x, dim=0), [(4, 6)]),
    "cross_entropy per pixel": (
        lambda x: F.cross_entropy(x, mv.tensor(LABELS, device=x.device)),
        [(2, 3, 2, 3)],
    ),
    "smooth_l1 and mse": (
        lambda a, b: F.smooth_l1_loss(a, b, beta=0.5) + F.mse_loss(a, b),
        [(3, 4), (3, 4)],
    ),
    "reductions and shapes": (
        lambda x: (
            mv.cat([x.max(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
            .permute(1, 0)[1:, ::2]
            .sum()
            + (x @ x.T).sum()
        ),
        [(4, 5)],
    ),
}


def _run(fn, arrays, upstream, device):
    """Output and input gradients of ``fn`` on ``device``, as NumPy float64 arrays."""
    inputs = [mv.tensor(a, device=device, requires_grad=True) for a in arrays]
    out = fn(*inputs)
    out.backward(mv.tensor(upstream, device=device))
    return [to_numpy(out.data)] + [to_numpy(t.grad.data) for t in inputs]


@pytest.mark.parametrize("name", list(OPS))
def test_op_values_and_gradients_match_the_cpu(name, gpu, rng):
    fn, shapes = OPS[name]
    arrays = [rng.standard_normal(s) for s in shapes]
    with mv.no_grad():
        out_shape = fn(*(mv.tensor(a) for a in arrays)).shape
    upstream = rng.standard_normal(out_shape)
    expected = _run(fn, arrays, upstream, "cpu")
    got = _run(fn, arrays, upstream, gpu)
    for k, (g, e) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(
            g, e, rtol=1e-9, atol=1e-10, err_msg=f"{name}: {'output' if k == 0 else f'grad {k}'}"
        )


@pytest.mark.parametrize(
    "name",
    [
        "conv2d 3x3 pad 1 (Winograd on the CPU)",
        "conv_transpose2d 4x4/2",
        "max_pool2d 3x3/2 ceil",
        "interpolate bilinear",
        "batch_norm (training)",
    ],
)
def test_gradcheck_on_each_device(name, device, rng):
    fn, shapes = OPS[name]
    inputs = [mv.tensor(rng.standard_normal(s), device=device, requires_grad=True) for s in shapes]
    mv.gradcheck(fn, inputs, fast=True)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tiny_model_loss_and_gradients_match_the_cpu(name, gpu):
    """Same weights, same batch: the loss and every parameter's gradient agree with the CPU,
    relative to each gradient's largest entry. In float64, because in float32 the devices' sums
    (in other orders) leave rounding noise of about 1e-6 where the gradient is 0 in exact
    arithmetic (a convolution's bias before batch norm), which no relative error can compare."""
    images, targets = shapes_batch(2, image_size=64, max_objects=2)
    results = {}
    for where in ("cpu", gpu):
        mv.manual_seed(0)
        model = MODELS[name].tiny(3, 64).to(where)
        for t in [*model.parameters(), *model.buffers()]:
            if t.dtype.kind == "f":
                t.data = t.data.astype(np.float64)
        batch = images.to(where).double()
        model.loss(batch, targets).backward()
        results[where] = {n: to_numpy(p.grad.data) for n, p in model.named_parameters()}
        results[where]["loss"] = np.array(model.loss(batch, targets).item())
    for key, expected in results["cpu"].items():
        scale = max(np.abs(expected).max(), 1e-6)
        error = np.abs(results[gpu][key] - expected).max() / scale
        assert error < 1e-7, f"{name} {key}: relative error {error:.1e}"
