"""SSD: the SSD300 network's source maps and default boxes, the tiny form's wiring (head
order against the default boxes, loss and predict), the map-size rule, bad input."""

import numpy as np
import pytest

import minivision as mv
from minivision import nn
from minivision.models import MODELS, SSD
from minivision.models.multibox import BOX_CODER
from minivision.models.ssd import map_size
from minivision.nn.l2norm import L2Norm


def _source_sides(model):
    sides, layers = [], []
    for stage in model.stages:
        layers += list(stage)
        sides.append(map_size(layers, model.config["image_size"]))
    return sides


def test_registered_for_the_command():
    assert MODELS["ssd"] is SSD and SSD.task == "detection"


def test_ssd300_has_the_papers_source_maps_heads_and_8732_default_boxes():
    model = SSD("ssd300", num_classes=20)
    assert _source_sides(model) == [38, 19, 10, 5, 3, 1]
    assert (
        len(model.default_boxes)
        == 8732
        == 38 * 38 * 4 + 19 * 19 * 6 + 10 * 10 * 6 + 5 * 5 * 6 + 3 * 3 * 4 + 4
    )
    heads = [
        (loc.in_channels, loc.out_channels, conf.out_channels)
        for loc, conf in zip(model.loc, model.conf)
    ]
    assert heads == [
        (512, 16, 84),
        (1024, 24, 126),
        (512, 24, 126),
        (256, 24, 126),
        (256, 16, 84),
        (256, 16, 84),
    ]
    assert isinstance(model.l2norm, L2Norm) and float(model.l2norm.weight.data[0]) == 20.0
    fc6 = [m for m in model.stages[1] if isinstance(m, nn.Conv2d) and m.out_channels == 1024][0]
    assert fc6.dilation == (6, 6) and fc6.padding == (6, 6) and fc6.kernel_size == (3, 3)
    convs = [
        m
        for m in model.stages
        if isinstance(m, nn.Sequential)
        for m in m
        if isinstance(m, nn.Conv2d)
    ]
    assert len(convs) == 13 + 2 + 8  # VGG16's 13, fc6 and fc7, the 8 extra layers


@pytest.mark.slow
def test_ssd300_forward_gives_one_row_per_default_box():
    loc, conf = SSD("ssd300", num_classes=20)(mv.zeros((1, 3, 300, 300)))
    assert loc.shape == (1, 8732, 4) and conf.shape == (1, 8732, 21)


@pytest.mark.parametrize(
    "layer, size, expected",
    [
        (nn.MaxPool2d(2, ceil_mode=True), 75, 38),  # conv3 -> conv4 in SSD300
        (nn.MaxPool2d(2), 75, 37),
        (nn.MaxPool2d(3, stride=1, padding=1), 19, 19),  # pool5
        (nn.Conv2d(1, 1, 3, padding=6, dilation=6), 19, 19),  # fc6
        (nn.Conv2d(1, 1, 3), 3, 1),  # conv11_2
        (nn.Conv2d(1, 1, 3, stride=2, padding=1), 19, 10),  # conv8_2
        (
            nn.MaxPool2d(2, stride=2, padding=1, ceil_mode=True),
            4,
            3,
        ),  # the last window would start in the padding
    ],
)
def test_map_size_follows_pytorchs_rule(layer, size, expected):
    assert map_size([layer], size) == expected


def test_tiny_maps_and_default_boxes_follow_the_image_size():
    model = SSD.tiny(3, 96)
    assert _source_sides(model) == [24, 12, 6, 3]
    assert len(model.default_boxes) == 4 * (24 * 24 + 12 * 12 + 6 * 6 + 3 * 3)
    first = model.default_boxes[
        0
    ]  # cell (0, 0) of the stride-4 map: centre (2, 2), the 8-pixel square
    np.testing.assert_allclose(first, [-2, -2, 6, 6])
    assert _source_sides(SSD.tiny(3, 64)) == [16, 8, 4, 2]


def test_head_rows_are_the_default_boxes_order():
    """loc's rows come position-major (row-major over the map), then box, as ``DefaultBoxes``
    lists them: the first map's head output at (i, j), box b, is row (i * W + j) * A + b."""
    mv.manual_seed(0)
    model = SSD.tiny(2, 32).eval()
    counts = model.priors.num_boxes_per_location()
    x = mv.tensor(np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32))
    with mv.no_grad():
        loc, _ = model(x)
        direct = model.loc[0](model.stages[0](x)).numpy()[0]  # (A * 4, H, W)
    a = counts[0]
    for i, j in ((0, 0), (0, 1), (1, 0)):
        side = direct.shape[2]
        position = i * side + j
        expected = direct[:, i, j].reshape(a, 4)
        np.testing.assert_array_equal(loc.numpy()[0, position * a : (position + 1) * a], expected)


def test_loss_is_finite_and_predict_gives_detections_in_the_image():
    mv.manual_seed(0)
    from minivision.data import Shapes

    data = Shapes(2, 64, 1, 3, object_sizes=(6, 30), seed=2)
    images = mv.tensor(np.stack([data[i][0] for i in range(2)]))
    targets = [data[i][1] for i in range(2)]
    model = SSD.tiny(3, 64)
    loss = model.loss(images, targets)
    assert np.isfinite(loss.item()) and loss.item() > 0
    found = model.eval().predict(images)
    assert len(found) == 2
    for image in found:
        assert len(image["boxes"]) <= 200 and set(np.unique(image["labels"])) <= {1, 2, 3}
        assert (image["boxes"] >= 0).all() and (image["boxes"] <= 64).all()


def test_a_perfect_head_decodes_to_the_objects():
    """Deltas that encode the ground truth at its matched default boxes, and scores that
    favour its class there, decode to the ground truth itself."""
    model = SSD.tiny(3, 64)
    from minivision.models.multibox import decode, encode_targets, match

    boxes, labels = np.array([[10.0, 12.0, 30.0, 40.0]]), np.array([2])
    matched_labels, matched = match(model.default_boxes, boxes, labels)
    deltas = encode_targets(model.default_boxes, boxes, matched)
    logits = np.zeros((len(model.default_boxes), 4))
    logits[:, 0] = 5.0
    logits[matched_labels == 2] = [0.0, 0.0, 9.0, 0.0]
    found = decode(deltas, logits, model.default_boxes, 64, score_thresh=0.5)
    assert found["labels"].tolist() == [2]
    np.testing.assert_allclose(found["boxes"][0], boxes[0], atol=1e-3)
    assert BOX_CODER.weights == (10.0, 10.0, 5.0, 5.0)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(variant="ssd512"),
            ValueError,
            r"variant must be one of \('ssd300', 'tiny'\), got 'ssd512'",
        ),
        (dict(num_classes=0), ValueError, "num_classes must be an int >= 1, got 0"),
        (
            dict(variant="ssd300", image_size=320),
            ValueError,
            r"SSD\('ssd300'\) takes 300 x 300 images .*got image_size=320",
        ),
        (
            dict(variant="tiny", image_size=4),
            ValueError,
            r"SSD\('tiny'\) needs a larger image: image_size 4 leaves "
            r"source maps of \[1, 0, 0, 0\] cells",
        ),
    ],
)
def test_bad_configuration(kwargs, error, message):
    with pytest.raises(error, match=message):
        SSD(**kwargs)


def test_bad_images_and_targets():
    model = SSD.tiny(3, 64)
    with pytest.raises(
        ValueError, match=r"takes images of shape \(N, 3, 64, 64\).*got \(1, 3, 32, 32\)"
    ):
        model(mv.zeros((1, 3, 32, 32)))
    with pytest.raises(ValueError, match="targets must be a list of 2 dicts.*got 1 items"):
        model.loss(
            mv.zeros((2, 3, 64, 64)), [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)}]
        )
