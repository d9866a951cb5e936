"""SegNet: unpooling at the encoder's switches, sizes, training, bad input."""

import numpy as np
import pytest

import minivision as mv
from minivision.models.segnet import SegNet


def test_unpooling_puts_values_at_the_switches_lecture_example():
    # the lecture's example: the maxima of the 4x4 map's 2x2 windows sit at (1, 1), (0, 2), (3, 0), (3, 3)
    model = SegNet.tiny(3)
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1], x[0, 0, 0, 2], x[0, 0, 3, 0], x[0, 0, 3, 3] = 5, 6, 7, 8
    _, switches = model.pool(mv.Tensor(x))
    values = mv.Tensor(np.array([[[[1, 2], [3, 4]]]], np.float32))
    unpooled = model.unpool(values, switches, output_size=(4, 4)).numpy()[0, 0]
    np.testing.assert_array_equal(
        unpooled, [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]]
    )


def test_decoder_unpools_with_the_encoders_switches():
    """Spy on the pool and unpool layers during a forward pass: each decoder stage places the
    values it gets at the positions its mirror encoder stage took its maxima from."""
    mv.manual_seed(0)
    model = SegNet.tiny(3).eval()
    pooled, unpooled = [], []
    pool_forward, unpool_forward = model.pool.forward, model.unpool.forward

    def spy_pool(x):
        out, switches = pool_forward(x)
        pooled.append((x.numpy(), switches.numpy()))
        return out, switches

    def spy_unpool(x, indices, output_size=None):
        out = unpool_forward(x, indices, output_size)
        unpooled.append((x.numpy(), indices.numpy(), out.numpy()))
        return out

    model.pool.forward, model.unpool.forward = spy_pool, spy_unpool
    with mv.no_grad():
        model(mv.Tensor(np.random.default_rng(0).random((1, 3, 19, 16), dtype=np.float32)))
    assert len(pooled) == len(unpooled) == 4
    for (before, switches), (values, indices, out) in zip(pooled, reversed(unpooled)):
        np.testing.assert_array_equal(indices, switches)
        assert out.shape == before.shape
        n, c, h, w = values.shape
        flat = out.reshape(n, c, -1)
        expected = np.zeros_like(flat)
        np.put_along_axis(expected, switches.reshape(n, c, -1), values.reshape(n, c, -1), axis=2)
        np.testing.assert_array_equal(flat, expected)
        # the switches point at the window maxima of what the encoder pooled
        maxima = np.take_along_axis(
            before.reshape(n, c, -1), switches.reshape(n, c, -1), axis=2
        ).reshape(n, c, h, w)
        windows = before[:, :, : 2 * h, : 2 * w].reshape(n, c, h, 2, w, 2).max(axis=(3, 5))
        np.testing.assert_array_equal(maxima, windows)


@pytest.mark.parametrize("size", [(16, 16), (17, 23), (33, 64)])
def test_basic_keeps_odd_sizes(size):
    model = SegNet.tiny(3).eval()
    with mv.no_grad():
        out = model(mv.Tensor(np.zeros((1, 3) + size, np.float32)))
    assert out.shape == (1, 4) + size


def test_vgg16_layout():
    model = SegNet("vgg16", num_classes=12).eval()
    assert [len(stage) for stage in model.encoder] == [2, 2, 3, 3, 3]
    assert [stage[-1][0].out_channels for stage in model.encoder] == [64, 128, 256, 512, 512]
    assert [stage[-1][0].out_channels for stage in model.decoder] == [512, 256, 128, 64, 64]
    with mv.no_grad():
        out = model(mv.Tensor(np.zeros((1, 3, 32, 48), np.float32)))
    assert out.shape == (1, 12, 32, 48)


def test_tiny_predicts_labels():
    model = SegNet.tiny(3, 64)
    assert model.task == "segmentation" and model.config["num_classes"] == 4
    labels = model.predict(mv.Tensor(np.zeros((2, 3, 64, 64), np.float32)))
    assert labels.shape == (2, 64, 64) and labels.dtype == np.int64


@pytest.mark.parametrize(
    "variant, size, smallest", [("basic", (15, 64), 16), ("vgg16", (31, 40), 32)]
)
def test_too_small_names_the_smallest_size(variant, size, smallest):
    with pytest.raises(
        ValueError, match=f"at least {smallest}x{smallest}, got {size[0]}x{size[1]}"
    ):
        SegNet(variant, 4)(mv.Tensor(np.zeros((1, 3) + size, np.float32)))


def test_wrong_channel_count():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got \(1, 4, 32, 32\)"):
        SegNet.tiny(3)(mv.Tensor(np.zeros((1, 4, 32, 32), np.float32)))
