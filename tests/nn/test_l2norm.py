"""L2Norm: a NumPy formula and a hand example, a PyTorch transcription of the released layer
(forward and both gradients), float64 gradcheck, the gradient at an all-zero position, the
parameter's start and name, and bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minivision as mv
from minivision import nn
from minivision.nn.l2norm import l2_norm
from tests.helpers import DEVICES, assert_close, check_parity, torch_or_skip


def _numpy_l2norm(x, weight, eps=1e-10):
    """weight[c] * x / (sqrt(sum over channels of x^2) + eps), per (n, h, w)."""
    norm = np.sqrt((x**2).sum(axis=1, keepdims=True))
    return weight[None, :, None, None] * x / (norm + eps)


def _float64_layer(channels, rng):
    layer = nn.L2Norm(channels)
    layer.weight.data = rng.uniform(0.5, 30, channels)  # float64, away from the all-equal start
    return layer


def test_forward_matches_the_formula(rng):
    x = rng.standard_normal((2, 5, 3, 4))
    layer = _float64_layer(5, rng)
    out = layer(mv.Tensor(x))
    assert out.shape == (2, 5, 3, 4) and out.dtype == np.float64
    np.testing.assert_allclose(out.numpy(), _numpy_l2norm(x, layer.weight.numpy()), rtol=1e-14)
    # each position's channel vector has length weight (all weights equal) up to eps
    unit = nn.L2Norm(5, scale=3.0)(mv.Tensor(x)).numpy()
    np.testing.assert_allclose(np.sqrt((unit.astype(np.float64) ** 2).sum(axis=1)), 3.0, rtol=1e-6)


def test_a_position_by_hand():
    """Channels (3, 4) have norm 5: the output is 20 * (3, 4) / 5 = (12, 16), less 1e-10 relative."""
    x = np.array([3.0, 4.0]).reshape(1, 2, 1, 1)
    out = nn.L2Norm(2)(mv.Tensor(x)).numpy().ravel()
    np.testing.assert_allclose(out, [12.0, 16.0], rtol=1e-9)
    assert out.dtype == np.float64  # float64 input, float32 weight


def test_float32_in_float32_out(rng):
    x = rng.standard_normal((1, 4, 2, 2)).astype(np.float32)
    out = nn.L2Norm(4)(mv.Tensor(x))
    assert out.dtype == np.float32
    np.testing.assert_allclose(
        out.numpy(), _numpy_l2norm(x.astype(np.float64), np.full(4, 20.0)), rtol=1e-6
    )


def _torch_l2norm(x, weight, eps=1e-10):
    """The PyTorch port's layer: the channel norm plus eps, divide, scale by the weight."""
    norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps
    return weight.view(1, -1, 1, 1) * (x / norm)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=30, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 4), st.integers(1, 4)),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_the_pytorch_layer(device, shape, seed):
    torch_or_skip()
    rng = np.random.default_rng(seed)
    x, weight = rng.standard_normal(shape), rng.uniform(0.5, 30, shape[1])
    check_parity(l2_norm, _torch_l2norm, [x, weight], rng, rtol=1e-10, atol=1e-12, device=device)


def test_gradcheck_input_and_weight(rng):
    x = mv.Tensor(rng.standard_normal((2, 3, 3, 2)), requires_grad=True)
    weight = mv.Tensor(rng.uniform(0.5, 30, 3), requires_grad=True)
    mv.gradcheck(l2_norm, [x, weight])


def test_gradcheck_through_the_module(rng):
    layer = _float64_layer(4, rng)
    x = mv.Tensor(rng.standard_normal((1, 4, 2, 3)), requires_grad=True)
    mv.gradcheck(lambda x, w: layer(x), [x, layer.weight])


def test_an_all_zero_position_has_a_finite_gradient(rng):
    """At x = 0, y = x / (||x|| + eps) has derivative I / eps (the x x^T term vanishes), so the
    input gradient there is weight[c] * g[c] / eps; a ReLU before the layer then zeroes it."""
    x = rng.standard_normal((1, 3, 2, 2))
    x[0, :, 1, 0] = 0.0
    weight = rng.uniform(0.5, 30, 3)
    upstream = rng.standard_normal(x.shape)
    xt, wt = mv.Tensor(x, requires_grad=True), mv.Tensor(weight, requires_grad=True)
    l2_norm(xt, wt).backward(mv.Tensor(upstream))
    grad = xt.grad.numpy()
    assert np.all(np.isfinite(grad)) and np.all(np.isfinite(wt.grad.numpy()))
    np.testing.assert_allclose(grad[0, :, 1, 0], weight * upstream[0, :, 1, 0] / 1e-10, rtol=1e-12)
    # elsewhere, the same as with that position left out
    others = mv.Tensor(x, requires_grad=True)
    masked = upstream.copy()
    masked[0, :, 1, 0] = 0.0
    l2_norm(others, mv.Tensor(weight)).backward(mv.Tensor(masked))
    keep = np.ones(x.shape, bool)
    keep[0, :, 1, 0] = False
    np.testing.assert_array_equal(grad[keep], others.grad.numpy()[keep])
    # after a ReLU whose inputs there are <= 0, nothing reaches the inputs from that position
    pre = -np.abs(rng.standard_normal(x.shape))
    pre[:, :, 0, :] = np.abs(pre[:, :, 0, :])
    pre_t = mv.Tensor(pre, requires_grad=True)
    l2_norm(mv.functional.relu(pre_t), mv.Tensor(weight)).backward(mv.Tensor(upstream))
    assert np.all(np.isfinite(pre_t.grad.numpy())) and np.all(pre_t.grad.numpy()[:, :, 1, :] == 0)


def test_weight_starts_at_scale_and_is_saved_as_weight():
    layer = nn.L2Norm(512)
    assert isinstance(layer.weight, nn.Parameter) and layer.weight.requires_grad
    assert layer.weight.shape == (512,) and layer.weight.dtype == np.float32
    np.testing.assert_array_equal(layer.weight.numpy(), 20.0)
    assert list(layer.state_dict()) == ["weight"]
    np.testing.assert_array_equal(nn.L2Norm(3, scale=10.0).weight.numpy(), [10.0, 10.0, 10.0])
    other = nn.L2Norm(512)
    other.load_state_dict({"weight": np.arange(512.0)})
    np.testing.assert_array_equal(other.weight.numpy(), np.arange(512.0, dtype=np.float32))
    assert repr(nn.L2Norm(512)) == "L2Norm(512, scale=20, eps=1e-10)"


@pytest.mark.parametrize(
    "shape,message",
    [
        ((2, 4, 3, 3), r"L2Norm\(3\) expects input \(N, 3, H, W\), got shape \(2, 4, 3, 3\)"),
        ((3, 3, 3), r"L2Norm\(3\) expects input \(N, 3, H, W\), got shape \(3, 3, 3\)"),
    ],
)
def test_bad_input_shape_is_named(shape, message):
    with pytest.raises(ValueError, match=message):
        nn.L2Norm(3)(mv.Tensor(np.zeros(shape)))


@pytest.mark.parametrize(
    "args,kwargs,message",
    [
        ((0,), {}, r"n_channels must be an int >= 1, got 0"),
        ((2.5,), {}, r"n_channels must be an int >= 1, got 2.5"),
        ((3,), {"scale": float("nan")}, r"scale must be a finite number, got nan"),
        ((3,), {"eps": 0.0}, r"eps must be > 0 .*, got 0.0"),
        ((3,), {"eps": "small"}, r"eps must be a finite number, got 'small'"),
    ],
)
def test_bad_arguments_are_named(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        nn.L2Norm(*args, **kwargs)


def test_functional_bad_input_is_named():
    with pytest.raises(
        ValueError, match=r"input must have shape \(N, C, H, W\), got shape \(2, 3\)"
    ):
        l2_norm(mv.Tensor(np.zeros((2, 3))), np.ones(3))
    with pytest.raises(
        ValueError,
        match=r"weight must have shape \(3,\), one entry per channel .* got shape \(4,\)",
    ):
        l2_norm(mv.Tensor(np.zeros((1, 3, 2, 2))), np.ones(4))
    with pytest.raises(
        TypeError, match=r"input must be a Tensor or array \(N, C, H, W\), got list"
    ):
        l2_norm([[1.0]], np.ones(1))


def test_module_and_function_agree(rng):
    x = rng.standard_normal((2, 3, 2, 2))
    layer = _float64_layer(3, rng)
    assert_close(layer(mv.Tensor(x)), l2_norm(mv.Tensor(x), layer.weight), rtol=0, atol=0)


def test_gpu_matches_cpu(gpu, rng):
    x, weight, upstream = (
        rng.standard_normal((2, 3, 2, 2)),
        rng.uniform(0.5, 30, 3),
        rng.standard_normal((2, 3, 2, 2)),
    )
    x[1, :, 0, 1] = 0.0  # an all-zero position too
    grads = []
    for device in ("cpu", gpu):
        xt = mv.tensor(x, device=device, requires_grad=True)
        wt = mv.tensor(weight, device=device, requires_grad=True)
        out = l2_norm(xt, wt)
        out.backward(mv.tensor(upstream, device=device))
        grads.append([t.numpy() for t in (out, xt.grad, wt.grad)])
    for cpu, on_gpu in zip(*grads):
        np.testing.assert_allclose(on_gpu, cpu, rtol=1e-12, atol=1e-12)
