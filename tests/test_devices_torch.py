"""On the GPU, minivision's CUDA path against PyTorch CUDA in float64 (no TF32 question):
outputs, input gradients under a random upstream gradient, switches, and NMS against
torchvision's CUDA NMS. Every case is a "cuda" case: ``pytest -m gpu`` runs them."""

import numpy as np
import pytest

import minivision as mv
import minivision.functional as F
from minivision.backend import to_numpy
from tests.helpers import torch_or_skip

CASES = {  # name: (op written for minivision's F and torch.nn.functional alike, input shapes)
    "conv2d 3x3 pad 1": (lambda f, x, w: f.conv2d(x, w, padding=1), [(2, 3, 9, 8), (4, 3, 3, 3)]),
    "conv2d 4x4/2 pad 1": (
        lambda f, x, w: f.conv2d(x, w, stride=2, padding=1),
        [(2, 3, 9, 8), (4, 3, 4, 4)],
    ),
    "conv2d 3x3/2 dilated": (
        lambda f, x, w: f.conv2d(x, w, stride=2, padding=2, dilation=2),
        [(2, 3, 9, 8), (4, 3, 3, 3)],
    ),
    "conv2d 1x1 grouped": (lambda f, x, w: f.conv2d(x, w, groups=2), [(2, 4, 5, 5), (6, 2, 1, 1)]),
    "conv_transpose2d 4x4/2": (
        lambda f, x, w: f.conv_transpose2d(x, w, stride=2, padding=1),
        [(2, 4, 5, 6), (4, 3, 4, 4)],
    ),
    "conv_transpose2d 3x3/2 output_padding": (
        lambda f, x, w: f.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1),
        [(2, 4, 5, 6), (4, 3, 3, 3)],
    ),
    "max_pool2d 3x3/2 ceil": (
        lambda f, x: f.max_pool2d(x, 3, 2, padding=1, ceil_mode=True),
        [(2, 3, 9, 8)],
    ),
    "max_pool2d 2x2": (lambda f, x: f.max_pool2d(x, 2), [(2, 3, 9, 8)]),
    "avg_pool2d 3x3/2": (lambda f, x: f.avg_pool2d(x, 3, 2, padding=1), [(2, 3, 9, 8)]),
    "interpolate bilinear": (
        lambda f, x: f.interpolate(x, scale_factor=2, mode="bilinear"),
        [(2, 3, 5, 4)],
    ),
    "interpolate nearest": (lambda f, x: f.interpolate(x, scale_factor=2), [(2, 3, 5, 4)]),
}


@pytest.fixture
def torch_cuda(gpu):
    torch = torch_or_skip()
    if not torch.cuda.is_available():
        pytest.skip("needs PyTorch built with CUDA")
    return torch


@pytest.mark.parametrize("name", list(CASES))
def test_values_and_gradients_match_pytorch_cuda(name, torch_cuda, rng):
    torch = torch_cuda
    fn, shapes = CASES[name]
    arrays = [rng.standard_normal(s) for s in shapes]
    mv_in = [mv.tensor(a, device="cuda", requires_grad=True) for a in arrays]
    th_in = [torch.tensor(a, device="cuda", requires_grad=True) for a in arrays]
    out, expected = fn(F, *mv_in), fn(torch.nn.functional, *th_in)
    upstream = rng.standard_normal(tuple(expected.shape))
    out.backward(mv.tensor(upstream, device="cuda"))
    expected.backward(torch.tensor(upstream, device="cuda"))
    np.testing.assert_allclose(
        out.numpy(), expected.detach().cpu().numpy(), rtol=1e-10, atol=1e-12, err_msg="output"
    )
    for k, (m, t) in enumerate(zip(mv_in, th_in)):
        np.testing.assert_allclose(
            m.grad.numpy(), t.grad.cpu().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"grad {k}"
        )


def test_switches_and_unpooling_match_pytorch_cuda(torch_cuda, rng):
    torch = torch_cuda
    x = rng.integers(-3, 4, (2, 3, 9, 8)).astype(
        np.float32
    )  # many ties: the first maximum must win
    values, switches = F.max_pool2d(
        mv.tensor(x, device="cuda"), 3, 2, padding=1, return_indices=True
    )
    th_values, th_switches = torch.nn.functional.max_pool2d(
        torch.tensor(x, device="cuda"), 3, 2, padding=1, return_indices=True
    )
    np.testing.assert_array_equal(switches.numpy(), th_switches.cpu().numpy())
    v, s = F.max_pool2d(mv.tensor(x, device="cuda"), 2, return_indices=True)
    th_v, th_s = torch.nn.functional.max_pool2d(
        torch.tensor(x, device="cuda"), 2, return_indices=True
    )
    np.testing.assert_array_equal(
        F.max_unpool2d(v, s, 2, output_size=(9, 8)).numpy(),
        torch.nn.functional.max_unpool2d(th_v, th_s, 2, output_size=(9, 8)).cpu().numpy(),
    )


@pytest.mark.parametrize("n", [100, 3000])
def test_nms_keeps_what_torchvision_cuda_keeps(n, torch_cuda, rng):
    torchvision = pytest.importorskip("torchvision")
    corner = rng.uniform(0, 200, (n, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(4, 40, (n, 2))], axis=1).astype(np.float32)
    scores = ((rng.permutation(n) + 0.5) / n).astype(
        np.float32
    )  # distinct: torchvision's sort is not stable
    xp = mv.backend.xp_for_device("cuda")
    kept = mv.ops.nms(xp.asarray(boxes), xp.asarray(scores), 0.5)
    expected = torchvision.ops.nms(
        torch_cuda.tensor(boxes, device="cuda"), torch_cuda.tensor(scores, device="cuda"), 0.5
    )
    np.testing.assert_array_equal(to_numpy(kept), expected.cpu().numpy())
