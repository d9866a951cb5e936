"""FCN: the reference crop offsets, same-size output for odd sizes, bilinear init, training, bad input."""

import numpy as np
import pytest

import minivision as mv
from minivision.models.fcn import BACKBONES, FCN, crop_offsets


@pytest.mark.parametrize(
    "variant, offsets",
    [
        # the crops of the Caffe reference nets (voc-fcn32s/16s/8s), as in shelhamer/fcn.berkeleyvision.org
        ("32s", {"upscore": 19}),
        ("16s", {"score_pool4": 5, "upscore": 27}),
        ("8s", {"score_pool4": 5, "score_pool3": 9, "upscore": 31}),
    ],
)
def test_reference_crop_offsets(variant, offsets):
    assert crop_offsets(BACKBONES["vgg16"], variant) == offsets


def test_reference_layer_table():
    spec = BACKBONES["vgg16"]
    assert spec.first_padding == 100 and spec.fc6_kernel == 7 and spec.fc_width == 4096
    assert [len(stage) for stage in spec.stages] == [2, 2, 3, 3, 3]
    assert [stage[-1] for stage in spec.stages] == [64, 128, 256, 512, 512]


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_output_has_the_input_size(variant):
    mv.manual_seed(0)
    model = FCN(variant, num_classes=5, backbone="tiny").eval()
    for height, width in [(1, 1), (7, 13), (31, 33), (45, 65)]:
        with mv.no_grad():
            out = model(mv.Tensor(np.zeros((1, 3, height, width), np.float32)))
        assert out.shape == (1, 5, height, width)


def test_upsampling_starts_bilinear_and_skips_start_at_zero():
    model = FCN("8s", num_classes=3, backbone="tiny")
    ramp = np.array([0.25, 0.75, 0.75, 0.25])  # the 4x4 (2x) bilinear filter, worked out by hand
    weight = model.upscore2.weight.numpy()
    assert weight.shape == (3, 3, 4, 4)
    np.testing.assert_allclose(weight[1, 1], np.outer(ramp, ramp))
    assert not weight[0, 1].any()
    assert model.upscore8.weight.shape == (3, 3, 16, 16) and model.upscore8.stride == (8, 8)
    assert not model.score_pool3.weight.numpy().any() and not model.score_pool4.weight.numpy().any()


def test_tiny_configuration():
    model = FCN.tiny(3, 64)
    assert model.task == "segmentation"
    assert model.config == {
        "variant": "8s",
        "num_classes": 4,
        "backbone": "tiny",
        "in_channels": 3,
        "image_size": 64,
    }
    images = mv.Tensor(np.zeros((2, 3, 64, 64), np.float32))
    labels = model.predict(images)
    assert labels.shape == (2, 64, 64) and labels.dtype == np.int64


def test_wrong_channel_count():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got \(1, 1, 32, 32\)"):
        FCN.tiny(3)(mv.Tensor(np.zeros((1, 1, 32, 32), np.float32)))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"variant": "4s"}, "variant must be"), ({"backbone": "resnet"}, "backbone must be")],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FCN(**kwargs)
