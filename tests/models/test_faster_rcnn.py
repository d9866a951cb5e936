"""Faster R-CNN: the tiny model's outputs, joint training, predict's format, the paper's VGG16
arithmetic and bad input. (Gradients to every parameter and overfitting one batch:
test_every_model.py.)"""

import numpy as np
import pytest

import minivision as mv
from minivision import nn, optim
from minivision.models import MODELS, FasterRCNN
from tests.models.common import shapes_batch


@pytest.fixture
def tiny():
    mv.manual_seed(0)
    return FasterRCNN.tiny(3, 64)


def test_registered_as_a_detector():
    assert MODELS["faster_rcnn"] is FasterRCNN and FasterRCNN.task == "detection"


def test_tiny_output_shapes_train_and_eval(tiny):
    images, _ = shapes_batch(3, 64, seed=1, max_objects=3)
    for training, most in ((True, 100), (False, 50)):  # the tiny variant's post-NMS proposal counts
        tiny.train(training)
        with mv.no_grad():
            proposals, class_logits, box_deltas = tiny(images)
        assert len(proposals) == 3
        counts = [len(p) for p in proposals]
        assert all(0 < k <= most for k in counts), counts
        for boxes in proposals:
            assert boxes.shape[1] == 4
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
            assert boxes.min() >= 0 and boxes.max() <= 64
        assert tuple(class_logits.shape) == (sum(counts), 4)  # 3 classes + background
        assert tuple(box_deltas.shape) == (sum(counts), 16)


def test_config_rebuilds_the_model(tiny):
    again = FasterRCNN(**tiny.config)
    assert [(n, p.shape) for n, p in again.named_parameters()] == [
        (n, p.shape) for n, p in tiny.named_parameters()
    ]


def test_head_loss_trains_the_backbone_but_not_the_rpn(tiny):
    # approximate joint training: the proposals are inputs of the head, not functions of the RPN
    images, targets = shapes_batch(2, 64, seed=3, max_objects=3)
    losses = tiny.losses(images, targets)
    assert sorted(losses) == ["loss_fast_rcnn", "loss_objectness", "loss_rpn_box_reg"]
    losses["loss_fast_rcnn"].backward()
    assert np.abs(tiny.backbone[0].weight.grad.numpy()).max() > 0
    for name, parameter in tiny.rpn.named_parameters():
        assert parameter.grad is None or not np.abs(parameter.grad.numpy()).any(), name


def test_overfits_one_batch_term_by_term(tiny):
    # The RPN's objectness falls fastest; the head's box regression slowest, since RoIs and their
    # targets are drawn afresh each step (50 steps on this batch: 2.30 -> 0.83 in all).
    images, targets = shapes_batch(2, 64, seed=3, max_objects=3)
    opt = optim.Adam(tiny.parameters(), lr=3e-3)
    history = []
    for _ in range(30):
        losses = tiny.losses(images, targets)
        history.append({name: float(value.item()) for name, value in losses.items()})
        opt.zero_grad()
        sum(losses.values(), start=losses["loss_fast_rcnn"] * 0).backward()
        opt.step()
    first, last = history[0], history[-1]
    assert last["loss_objectness"] < first["loss_objectness"] / 10, (first, last)
    assert sum(last.values()) < sum(first.values()) / 1.6, (first, last)


def test_predict_format(tiny):
    images, _ = shapes_batch(2, 64, seed=2, max_objects=3)
    tiny.eval()
    results = tiny.predict(images, score_thresh=0.0)
    assert len(results) == 2
    for result in results:
        assert sorted(result) == ["boxes", "labels", "scores"]
        boxes, labels, scores = result["boxes"], result["labels"], result["scores"]
        assert (
            isinstance(boxes, np.ndarray)
            and boxes.dtype == np.float32
            and boxes.shape == (len(scores), 4)
        )
        assert (
            labels.dtype == np.int64 and scores.dtype == np.float32 and labels.shape == scores.shape
        )
        assert len(scores) > 0  # an untrained head scores each class near 1/4, above 0
        assert set(labels.tolist()) <= {1, 2, 3}
        assert (np.diff(scores) <= 0).all() and scores.min() >= 0 and scores.max() <= 1
        assert boxes.min() >= 0 and boxes.max() <= 64


@pytest.fixture(scope="module")
def vgg16():
    return FasterRCNN("vgg16", num_classes=20, image_size=(600, 1000))


@pytest.mark.slow  # builds 137M weights
def test_vgg16_is_the_papers_network(vgg16):
    model = vgg16
    convs = [m for m in model.backbone if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and sum(isinstance(m, nn.MaxPool2d) for m in model.backbone) == 4
    assert [c.weight.shape[0] for c in convs] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6
    assert all(tuple(c.weight.shape[2:]) == (3, 3) for c in convs)
    assert isinstance(model.backbone[-1], nn.ReLU)  # conv5_3's ReLU, no pool5
    assert model.stride == 16
    assert tuple(model.rpn.conv.weight.shape) == (512, 512, 3, 3)
    assert (
        tuple(model.rpn.cls_logits.weight.shape)[0] == 9
        and tuple(model.rpn.bbox_pred.weight.shape)[0] == 36
    )
    assert model.rpn.anchor_generator.sizes == ((128.0, 256.0, 512.0),)
    assert model.rpn.anchor_generator.aspect_ratios == ((0.5, 1.0, 2.0),)
    head = model.roi_head
    assert (
        head.config["output_size"] == 7
        and head.config["spatial_scale"] == 1 / 16
        and head.config["dropout"] == 0.5
    )
    assert tuple(head.fc6.weight.shape) in ((4096, 512 * 7 * 7), (512 * 7 * 7, 4096))
    assert tuple(head.fc7.weight.shape) == (4096, 4096)
    assert {tuple(head.cls_score.weight.shape), tuple(head.bbox_pred.weight.shape)} <= {
        (21, 4096),
        (4096, 21),
        (84, 4096),
        (4096, 84),
    }
    # 600 x 1000 with four 2x2 pools rounding down: 600/16 = 37.5 -> 37, 1000/16 = 62.5 -> 62
    assert model.feature_size(600, 1000) == (37, 62)
    assert (
        model.rpn.anchor_generator((600, 1000), [(37, 62)]).shape == (37 * 62 * 9, 4) == (20646, 4)
    )


@pytest.mark.slow
def test_vgg16_backbone_rounds_down(vgg16):
    # a small odd-sized image through the real layers: 50 -> 25 -> 12 -> 6 -> 3, 70 -> 35 -> 17 -> 8 -> 4
    # (pools rounding up would give 4 x 5)
    with mv.no_grad():
        features = vgg16.backbone(mv.randn(1, 3, 50, 70))
    assert tuple(features.shape) == (1, 512, 3, 4) == (1, 512) + vgg16.feature_size(50, 70)


def test_bad_construction():
    with pytest.raises(
        ValueError, match=r"variant must be one of \['tiny', 'vgg16'\], got 'resnet'"
    ):
        FasterRCNN("resnet")
    with pytest.raises(ValueError, match=r"num_classes must be an int >= 1 .*got 0"):
        FasterRCNN("tiny", num_classes=0, image_size=64)
    with pytest.raises(
        ValueError, match=r"image_size must be an int or \(height, width\), ints > 0, got \(64,\)"
    ):
        FasterRCNN("tiny", num_classes=3, image_size=(64,))
    with pytest.raises(
        ValueError, match=r"downsamples by 4: image_size must be at least 4 on each side, got 3"
    ):
        FasterRCNN("tiny", num_classes=3, image_size=3)


def test_bad_images(tiny):
    images, targets = shapes_batch(2, 32)
    with pytest.raises(
        ValueError, match=r"takes images of shape \(N, 3, 64, 64\) .*got \(2, 3, 32, 32\)"
    ):
        tiny.loss(images, targets)
    with pytest.raises(
        ValueError, match=r"takes images of shape \(N, 3, 64, 64\) .*got \(3, 32, 32\)"
    ):
        tiny.predict(images[0])


def test_bad_targets(tiny):
    images, targets = shapes_batch(2, 64, seed=4)
    box, label = targets[0]["boxes"], targets[0]["labels"]
    with pytest.raises(
        ValueError,
        match=r"targets must be a list of 2 dicts with 'boxes' and 'labels', .*got 1 items",
    ):
        tiny.loss(images, targets[:1])
    with pytest.raises(
        ValueError, match=r"targets\[1\] must be a dict with 'boxes' and 'labels', got \['boxes'\]"
    ):
        tiny.loss(images, [targets[0], {"boxes": box}])
    with pytest.raises(
        ValueError, match=r"targets\[0\]\['boxes'\] must have shape \(G, 4\) .*got shape \(4,\)"
    ):
        tiny.loss(images, [{"boxes": box[0], "labels": label}, targets[1]])
    with pytest.raises(
        ValueError,
        match=r"targets\[0\]\['labels'\] must be 1 integers, .*got shape \(1,\) and dtype "
        r"float64",
    ):
        tiny.loss(images, [{"boxes": box[:1], "labels": np.ones(1)}, targets[1]])
    for bad in (0, 4):
        with pytest.raises(
            ValueError, match=rf"targets\[1\]\['labels'\] must be in 1..3 .*got {bad}"
        ):
            tiny.loss(images, [targets[0], {"boxes": box[:1], "labels": np.array([bad])}])
