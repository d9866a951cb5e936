"""U-Net: the paper's sizes, same padding, overlap-tile prediction, gradients, overfitting, bad input."""

import numpy as np
import pytest

import minivision as mv
from minivision.models.unet import UNet, valid_output_size, valid_sizes
from tests.models.common import shapes_batch


def test_paper_network_maps_572_to_388():
    # the paper's layer list at its real input size; 2 base channels instead of 64 keep it fast
    # (channel widths do not change the spatial arithmetic)
    model = UNet(in_channels=1, num_classes=2, base_channels=2, depth=4, padding="valid")
    with mv.no_grad():
        out = model(mv.Tensor(np.zeros((1, 1, 572, 572), np.float32)))
    assert out.shape == (1, 2, 388, 388)


def test_paper_channel_widths():
    model = UNet()
    assert [level[1][0].out_channels for level in model.down] == [64, 128, 256, 512]
    assert model.bottom[1][0].out_channels == 1024
    assert [up.out_channels for up in model.up] == [512, 256, 128, 64]
    assert model.classifier.kernel_size == (1, 1) and model.classifier.out_channels == 2


def test_valid_size_arithmetic():
    assert valid_output_size(572, 4) == 388
    # smallest input at depth 4: bottom output 4 -> 16 * (4 + 8) - 4 = 188, output 16 * 4 - 60 = 4
    assert valid_sizes(4) == [188, 204, 220]
    assert valid_output_size(188, 4) == 4


def test_same_padding_keeps_the_size():
    model = UNet(in_channels=3, num_classes=4, base_channels=4, depth=3, padding="same")
    with mv.no_grad():
        out = model(mv.Tensor(np.zeros((2, 3, 48, 40), np.float32)))
    assert out.shape == (2, 4, 48, 40)


def test_valid_padding_predicts_every_pixel_by_mirroring():
    model = UNet(in_channels=3, num_classes=3, base_channels=2, depth=2, padding="valid")
    images = mv.Tensor(np.random.default_rng(0).random((2, 3, 30, 25), dtype=np.float32))
    labels = model.predict(images)
    assert labels.shape == (2, 30, 25) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < 3


def test_tiny_configuration():
    model = UNet.tiny(3, 64)
    assert model.task == "segmentation"
    assert model.config["num_classes"] == 4 and model.config["image_size"] == 64
    rebuilt = UNet(**model.config)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]


def test_loss_ignores_void_pixels():
    mv.manual_seed(0)
    model = UNet.tiny(3)
    images, targets = shapes_batch(2)
    void = [dict(t, semantic=np.full_like(t["semantic"], 255)) for t in targets]
    void[0]["semantic"][:4, :4] = targets[0]["semantic"][:4, :4]
    model.eval()
    with mv.no_grad():
        scores = model(images).numpy()[0, :, :4, :4].astype(np.float64)
    log_probs = scores - np.log(np.exp(scores).sum(axis=0))
    picked = np.take_along_axis(log_probs, targets[0]["semantic"][None, :4, :4], axis=0)
    assert float(model.loss(images, void).item()) == pytest.approx(-picked.mean(), rel=1e-4)


def test_wrong_channel_count():
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\), got \(1, 3, 572, 572\)"):
        UNet(base_channels=2)(mv.Tensor(np.zeros((1, 3, 572, 572), np.float32)))


@pytest.mark.parametrize("size", [100, 200])
def test_invalid_valid_size_names_the_smallest(size):
    with pytest.raises(ValueError, match="smallest, 188"):
        UNet(base_channels=2)(mv.Tensor(np.zeros((1, 1, size, size), np.float32)))


def test_same_padding_size_not_divisible():
    with pytest.raises(ValueError, match="divisible by 8.*smallest valid size is 8.*got 50x48"):
        UNet.tiny(3)(mv.Tensor(np.zeros((1, 3, 50, 48), np.float32)))


def test_bad_padding_argument():
    with pytest.raises(ValueError, match="padding must be one of"):
        UNet(padding="full")
