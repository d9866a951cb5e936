"""Conv2d, ConvTranspose2d, MaxPool2d, MaxUnpool2d, AvgPool2d, Upsample and bilinear_kernel."""

import math

import numpy as np
import pytest

import minivision as mv
from minivision import nn
from tests.helpers import assert_close, torch_or_skip

torch = None


def setup_module():
    global torch
    torch = torch_or_skip()


def _torch_twin(layer, torch_layer):
    """Copy minivision's weights into the torch layer (float64) so both compute the same map."""
    torch_layer = torch_layer.double()
    with torch.no_grad():
        torch_layer.weight.copy_(torch.tensor(layer.weight.numpy()))
        if layer.bias is not None:
            torch_layer.bias.copy_(torch.tensor(layer.bias.numpy()))
    return torch_layer


@pytest.mark.parametrize(
    "make",
    [
        lambda m: m.Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2),
        lambda m: m.Conv2d(4, 6, 3, padding="same", bias=False),
        lambda m: m.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
    ],
)
def test_conv_layers_match_torch_layers(make, rng):
    layer = make(nn)
    layer.weight.data = layer.weight.data.astype(np.float64)
    if layer.bias is not None:
        layer.bias.data = layer.bias.data.astype(np.float64)
    twin = _torch_twin(layer, make(torch.nn))
    assert layer.weight.shape == tuple(twin.weight.shape)
    x = rng.standard_normal((2, 4, 7, 6))
    assert_close(layer(mv.Tensor(x)), twin(torch.tensor(x)), what="forward")


@pytest.mark.parametrize(
    "layer,fan_in",
    [(nn.Conv2d(6, 8, 3, groups=2), 27), (nn.ConvTranspose2d(6, 8, 3, groups=2), 36)],
)
def test_conv_layers_use_pytorch_default_init(layer, fan_in):
    """kaiming_uniform(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the bias the same bound."""
    bound = 1 / math.sqrt(fan_in)
    for p in (layer.weight, layer.bias):
        assert p.dtype == np.float32
        assert np.abs(p.numpy()).max() <= bound
    assert np.abs(layer.weight.numpy()).max() > 0.8 * bound  # spread over the range, not all zero
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]


def test_conv_layer_rejects_groups_that_do_not_divide():
    with pytest.raises(ValueError, match="groups=3 must divide in_channels=4 and out_channels=6"):
        nn.Conv2d(4, 6, 3, groups=3)


def test_conv_transpose2d_output_size_picks_the_output_padding(rng):
    layer = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    x = mv.Tensor(rng.standard_normal((1, 2, 4, 4)).astype(np.float32))
    assert layer(x).shape == (1, 3, 7, 7)
    assert layer(x, output_size=(8, 7)).shape == (1, 3, 8, 7)
    with pytest.raises(
        ValueError,
        match="requested an output size of \\(9, 7\\), but valid sizes range from 7 to 8",
    ):
        layer(x, output_size=(9, 7))


def test_pool_layers_round_trip(rng):
    pool, unpool = nn.MaxPool2d(2, return_indices=True), nn.MaxUnpool2d(2)
    x = mv.Tensor(rng.standard_normal((2, 3, 5, 5)))
    pooled, switches = pool(x)
    restored = unpool(pooled, switches, output_size=x.shape)
    kept = restored.numpy() != 0
    np.testing.assert_array_equal(restored.numpy()[kept], x.numpy()[kept])
    assert kept.sum() == pooled.numel()
    expected = torch.nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True)(torch.tensor(x.numpy()))
    assert_close(nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True)(x), expected)


@pytest.mark.parametrize(
    "kw", [dict(scale_factor=2), dict(size=(7, 9), mode="bilinear", align_corners=True)]
)
def test_upsample_matches_torch(kw, rng):
    x = rng.standard_normal((1, 2, 4, 5))
    assert_close(nn.Upsample(**kw)(mv.Tensor(x)), torch.nn.Upsample(**kw)(torch.tensor(x)))


def test_bilinear_kernel_is_fcn_upsample_filt():
    weight = nn.init.bilinear_kernel(3, 3, 4).numpy()
    ramp = np.array([0.25, 0.75, 0.75, 0.25])  # FCN's upsample_filt(4): factor 2, centre 1.5
    assert weight.shape == (3, 3, 4, 4) and weight.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(weight[c, c], np.outer(ramp, ramp))
    assert np.count_nonzero(weight[~np.eye(3, dtype=bool)]) == 0
    odd = nn.init.bilinear_kernel(1, 1, 3).numpy()[0, 0]  # factor 2, centre 1
    np.testing.assert_allclose(odd, np.outer([0.5, 1.0, 0.5], [0.5, 1.0, 0.5]))
    with pytest.raises(ValueError, match="in_channels and out_channels must be equal, got 2 and 3"):
        nn.init.bilinear_kernel(2, 3, 4)


def test_bilinear_kernel_upsamples_like_bilinear_interpolation(rng):
    """A stride-2 transposed conv with the 4x4 kernel equals bilinear 2x upsampling away from the border."""
    layer = nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1, bias=False)
    layer.weight.data = nn.init.bilinear_kernel(2, 2, 4).data.astype(np.float64)
    x = rng.standard_normal((1, 2, 5, 5))
    up = layer(mv.Tensor(x)).numpy()
    expected = torch.nn.functional.interpolate(
        torch.tensor(x), scale_factor=2, mode="bilinear"
    ).numpy()
    np.testing.assert_allclose(up[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], rtol=1e-12)


def test_layers_keep_float32_through_forward_and_backward(rng):
    x = mv.Tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32), requires_grad=True)
    net = [
        nn.Conv2d(3, 4, 3, padding=1),
        nn.MaxPool2d(2),
        nn.ConvTranspose2d(4, 2, 2, stride=2),
        nn.AvgPool2d(2),
        nn.Upsample(scale_factor=2, mode="bilinear"),
    ]
    out = x
    for layer in net:
        out = layer(out)
    assert out.shape == (2, 2, 8, 8) and out.dtype == np.float32
    out.backward(rng.standard_normal(out.shape).astype(np.float32))
    grads = [x.grad] + [p.grad for layer in net for p in layer.parameters()]
    assert all(g is not None and g.dtype == np.float32 for g in grads)
