"""Region Proposal Network: anchor labelling, sampling, proposals, the loss and the module.

The hand examples use boxes of height 1 on the strip 0 <= y <= 1, so an IoU is the overlap of
two x intervals divided by their union, easy to work out in the comments.
"""

import math

import numpy as np
import pytest

import minivision as mv
from minivision.gradcheck import gradcheck
from minivision.models.rpn import (
    RegionProposalNetwork,
    label_anchors,
    propose,
    rpn_loss,
    sample_anchors,
)
from minivision.ops import AnchorGenerator


def strip(x1, x2):
    return [x1, 0.0, x2, 1.0]


GT = np.array([strip(0, 10), strip(20, 30)])
ANCHORS = np.array(
    [
        strip(0, 8),  # 0: IoU 8/10 = 0.8 with gt 0                  -> positive (>= 0.7)
        strip(0, 7),  # 1: IoU 7/10 = 0.7 with gt 0, the threshold   -> positive
        strip(0, 3),  # 2: IoU 3/10 = 0.3 with gt 0, the lower bound -> ignored (not < 0.3)
        strip(0, 2),  # 3: IoU 2/10 = 0.2 with gt 0                  -> negative
        strip(
            20, 25
        ),  # 4: IoU 5/10 = 0.5 with gt 1, its best, tied  -> positive by the low-quality rule
        strip(
            25, 30
        ),  # 5: IoU 5/10 = 0.5 with gt 1, tied with 4     -> positive by the low-quality rule
        strip(22, 24),  # 6: IoU 2/10 = 0.2 with gt 1                  -> negative
        strip(50, 60),  # 7: overlaps nothing                          -> negative
    ]
)


# --------------------------------------------------------------------------- label_anchors
def test_labels_by_threshold_ignored_band_and_tied_best_anchors():
    labels, matched = label_anchors(ANCHORS, GT)
    assert labels.dtype == np.int8
    np.testing.assert_array_equal(labels, [1, 1, -1, 0, 1, 1, 0, 0])
    # each anchor's gt of largest IoU; anchor 7 overlaps neither, so the first
    np.testing.assert_array_equal(matched, [0, 0, 0, 0, 1, 1, 1, 0])


def test_without_the_low_quality_rule_best_anchors_under_fg_iou_are_ignored():
    labels, _ = label_anchors(ANCHORS, GT, allow_low_quality=False)
    # anchors 4 and 5 (IoU 0.5) fall in the ignored band [0.3, 0.7)
    np.testing.assert_array_equal(labels, [1, 1, -1, 0, -1, -1, 0, 0])


def test_low_quality_rule_only_adds_the_best_anchors():
    # gt 0's best anchor is anchor 0 (0.8); anchor 1 (0.7) stays positive by threshold only,
    # and a lower fg_iou of 0.75 leaves anchor 1 (0.7) in the ignored band.
    labels, _ = label_anchors(ANCHORS, GT, fg_iou=0.75)
    np.testing.assert_array_equal(labels, [1, -1, -1, 0, 1, 1, 0, 0])


def test_a_ground_truth_no_anchor_touches_makes_no_positive():
    # its largest IoU is 0: the low-quality rule must not turn every anchor positive
    labels, _ = label_anchors(ANCHORS, np.array([strip(100, 110)]))
    np.testing.assert_array_equal(labels, np.zeros(8))


def test_an_image_without_ground_truth_is_all_negative():
    labels, matched = label_anchors(ANCHORS, np.zeros((0, 4)))
    np.testing.assert_array_equal(labels, np.zeros(8))
    np.testing.assert_array_equal(matched, np.full(8, -1))


def test_label_anchors_rejects_bad_input():
    with pytest.raises(ValueError, match=r"gt_boxes must have shape \(N, 4\).*got shape \(4,\)"):
        label_anchors(ANCHORS, np.array([0.0, 0, 1, 1]))
    with pytest.raises(ValueError, match=r"anchors must have shape \(N, 4\).*got shape \(8, 3\)"):
        label_anchors(ANCHORS[:, :3], GT)
    with pytest.raises(
        ValueError, match="bg_iou must not exceed fg_iou, got bg_iou=0.8 and fg_iou=0.7"
    ):
        label_anchors(ANCHORS, GT, bg_iou=0.8)
    with pytest.raises(ValueError, match=r"fg_iou must be a number in \[0, 1\], got 1.5"):
        label_anchors(ANCHORS, GT, fg_iou=1.5)


# --------------------------------------------------------------------------- sample_anchors
def labels_of(positives, negatives, ignored):
    """Labels 1 x positives, 0 x negatives, -1 x ignored, shuffled by a fixed permutation."""
    labels = np.array([1] * positives + [0] * negatives + [-1] * ignored, np.int8)
    return labels[np.random.default_rng(1).permutation(labels.size)]


@pytest.mark.parametrize(
    "positives, negatives, batch, fraction, expected",
    [
        (10, 30, 16, 0.5, (8, 8)),  # enough of both: half and half
        (2, 30, 16, 0.5, (2, 14)),  # few positives: negatives fill the batch
        (10, 3, 16, 0.25, (4, 3)),  # fraction cap 16 * 0.25 = 4; only 3 negatives exist
        (10, 30, 14, 0.25, (3, 11)),  # 14 * 0.25 = 3.5 rounds down to 3
        (0, 5, 16, 0.5, (0, 5)),  # an image without ground truth: negatives only
    ],
)
def test_sample_counts_and_sets(positives, negatives, batch, fraction, expected):
    labels = labels_of(positives, negatives, ignored=5)
    mv.manual_seed(0)
    positive, negative = sample_anchors(labels, batch, fraction)
    assert (positive.size, negative.size) == expected
    assert (labels[positive] == 1).all() and (labels[negative] == 0).all()  # ignored never drawn
    assert np.unique(positive).size == positive.size and np.unique(negative).size == negative.size


def test_sampling_is_reproducible_under_manual_seed_and_varies_without_it():
    labels = labels_of(100, 300, ignored=20)
    mv.manual_seed(3)
    first = sample_anchors(labels, 64, 0.5)
    second = sample_anchors(labels, 64, 0.5)
    mv.manual_seed(3)
    again = sample_anchors(labels, 64, 0.5)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], second[1])


def test_sample_anchors_rejects_bad_input():
    with pytest.raises(ValueError, match=r"labels must be a 1-D integer array.*shape \(2, 2\)"):
        sample_anchors(np.zeros((2, 2), np.int8))
    with pytest.raises(ValueError, match="labels must hold only 1, 0 or -1, got 2 at index 1"):
        sample_anchors(np.array([0, 2, 1]))
    with pytest.raises(ValueError, match=r"positive_fraction must be a number in \[0, 1\], got 2"):
        sample_anchors(np.array([0, 1]), positive_fraction=2)
    with pytest.raises(ValueError, match="batch_size_per_image must be an int >= 0, got -1"):
        sample_anchors(np.array([0, 1]), batch_size_per_image=-1)


# --------------------------------------------------------------------------- propose
# A 10 (high) x 20 (wide) image; zero deltas, so each proposal is its anchor, clipped.
IMAGE = (10, 20)
BOXES = np.array(
    [
        [-5, -5, 5, 5],  # 0: score 5, clipped to (0, 0, 5, 5)
        [0, 0, 5, 4],  # 1: score 4, IoU 20/25 = 0.8 with clipped box 0 -> suppressed
        [18, 2, 18.0005, 8],  # 2: score 6, width 0.0005 < 1e-3 -> dropped
        [10, 2, 15, 8],  # 3: score 3, kept
        [10, 2, 15, 7],  # 4: score 2, IoU 25/30 = 0.83 with box 3 -> suppressed
        [16, 0, 25, 9],  # 5: score 1, clipped to (16, 0, 20, 9)
        [30, 0, 40, 5],  # 6: score 7, clipped to zero width at x = 20 -> dropped
    ]
)
LOGITS = np.array([5.0, 4.0, 6.0, 3.0, 2.0, 1.0, 7.0])
ZERO = np.zeros((7, 4))


def sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def test_propose_clips_drops_small_boxes_and_suppresses():
    boxes, scores = propose(BOXES, LOGITS, ZERO, IMAGE, pre_nms_top_n=10, post_nms_top_n=10)
    np.testing.assert_array_equal(boxes, [[0, 0, 5, 5], [10, 2, 15, 8], [16, 0, 20, 9]])
    np.testing.assert_allclose(scores, sigmoid([5.0, 3.0, 1.0]))
    # without clipping, box 1's IoU with box 0 would be 20/100 and box 1 would survive
    boxes, _ = propose(BOXES, LOGITS, ZERO, IMAGE, 10, 10, nms_thresh=0.9)
    np.testing.assert_array_equal(
        boxes, [[0, 0, 5, 5], [0, 0, 5, 4], [10, 2, 15, 8], [10, 2, 15, 7], [16, 0, 20, 9]]
    )


def test_propose_top_n_before_and_after_nms():
    boxes, _ = propose(BOXES, LOGITS, ZERO, IMAGE, pre_nms_top_n=10, post_nms_top_n=2)
    np.testing.assert_array_equal(boxes, [[0, 0, 5, 5], [10, 2, 15, 8]])
    # small boxes go first (the paper's order), so the two best left are boxes 0 and 1, and
    # NMS keeps box 0 only; taking the top 2 first would pick boxes 6 and 2 and leave nothing
    boxes, _ = propose(BOXES, LOGITS, ZERO, IMAGE, pre_nms_top_n=2, post_nms_top_n=10)
    np.testing.assert_array_equal(boxes, [[0, 0, 5, 5]])


def test_propose_min_size():
    # min_size 6: every clipped box is at most 5 wide (box 5: 4 x 9), so none is left
    boxes, _ = propose(BOXES, LOGITS, ZERO, IMAGE, 10, 10, min_size=6)
    assert boxes.shape == (0, 4)
    # min_size 4.5: boxes 1 (4 high) and 5 (4 wide) go; boxes 0 and 3 (5 wide, >= 5 high) stay
    boxes, _ = propose(BOXES, LOGITS, ZERO, IMAGE, 10, 10, min_size=4.5)
    np.testing.assert_array_equal(boxes, [[0, 0, 5, 5], [10, 2, 15, 8]])


def test_propose_decodes_deltas():
    # anchor (0, 0, 4, 4): dx = 0.5 moves the centre by half the width (2 -> 4), dw = log 2
    # doubles the width (4 -> 8): (0, 0, 8, 4)
    boxes, _ = propose(
        np.array([[0.0, 0, 4, 4]]),
        np.array([0.0]),
        np.array([[0.5, 0, math.log(2), 0]]),
        IMAGE,
        1,
        1,
    )
    np.testing.assert_allclose(boxes, [[0, 0, 8, 4]], atol=1e-12)


def test_propose_rejects_bad_input():
    with pytest.raises(
        ValueError, match=r"image_size must be \(height, width\), two ints > 0, got \(10,\)"
    ):
        propose(BOXES, LOGITS, ZERO, (10,), 10, 10)
    with pytest.raises(ValueError, match=r"image_size must be .*got \(10, 0\)"):
        propose(BOXES, LOGITS, ZERO, (10, 0), 10, 10)
    with pytest.raises(
        ValueError,
        match=r"objectness must have shape \(7,\), one logit per anchor, got shape \(6,\)",
    ):
        propose(BOXES, LOGITS[:6], ZERO, IMAGE, 10, 10)
    with pytest.raises(ValueError, match=r"deltas must have shape \(N, 4\)"):
        propose(BOXES, LOGITS, ZERO[:, :3], IMAGE, 10, 10)
    with pytest.raises(ValueError, match="pre_nms_top_n must be an int >= 0, got 1.5"):
        propose(BOXES, LOGITS, ZERO, IMAGE, 1.5, 10)


# --------------------------------------------------------------------------- the loss
def test_loss_on_a_hand_example():
    # anchor 0 equals the gt (IoU 1, positive, target deltas 0), anchor 1 misses it (negative).
    # Both logits 0: BCE log 2 each, mean log 2. Deltas (0.05, 0, 0, 1) against 0, beta 1/9:
    # 0.05 < 1/9 gives 0.5 * 0.05^2 * 9 = 0.01125; 1 gives 1 - 0.5/9; the sum over 2 sampled anchors.
    anchors = np.array([[0.0, 0, 10, 10], [50, 50, 60, 60]])
    deltas = mv.tensor(np.array([[[0.05, 0, 0, 1], [3, 3, 3, 3]]]))
    losses = rpn_loss(mv.tensor(np.zeros((1, 2))), deltas, anchors, [np.array([[0.0, 0, 10, 10]])])
    assert losses["loss_objectness"].item() == pytest.approx(math.log(2))
    assert losses["loss_rpn_box_reg"].item() == pytest.approx((0.01125 + 1 - 0.5 / 9) / 2)


def test_loss_with_nothing_sampled_is_zero_and_still_differentiable():
    objectness = mv.tensor(np.ones((1, 8)), requires_grad=True)
    deltas = mv.tensor(np.ones((1, 8, 4)), requires_grad=True)
    losses = rpn_loss(objectness, deltas, ANCHORS, [GT], batch_size_per_image=0)
    assert losses["loss_objectness"].item() == 0 and losses["loss_rpn_box_reg"].item() == 0
    (losses["loss_objectness"] + losses["loss_rpn_box_reg"]).backward()
    assert not objectness.grad.numpy().any() and not deltas.grad.numpy().any()


def test_loss_gradcheck_float64():
    rng = np.random.default_rng(0)
    anchors = np.concatenate(
        [ANCHORS, [strip(1, 9), strip(21, 29)]]
    )  # 10 anchors, 5 positive for GT
    gt = [GT, GT[:1]]
    objectness = mv.tensor(rng.standard_normal((2, 10)), requires_grad=True)
    deltas = mv.tensor(rng.standard_normal((2, 10, 4)), requires_grad=True)

    def loss(
        objectness, deltas
    ):  # reseeded so every evaluation samples the same 4 anchors per image
        mv.manual_seed(0)
        losses = rpn_loss(objectness, deltas, anchors, gt, batch_size_per_image=4)
        return losses["loss_objectness"] + losses["loss_rpn_box_reg"]

    gradcheck(loss, [objectness, deltas])
    mv.manual_seed(0)
    loss(objectness, deltas).backward()
    # 4 sampled anchors per image: 8 logits get a gradient, and 2 positives per image at most
    assert np.count_nonzero(objectness.grad.numpy()) == 8
    assert 0 < np.count_nonzero(deltas.grad.numpy().any(axis=-1)) <= 4


def test_loss_rejects_bad_input():
    objectness, deltas = mv.tensor(np.zeros((1, 8))), mv.tensor(np.zeros((1, 8, 4)))
    with pytest.raises(
        ValueError, match=r"gt_boxes\[0\] must have shape \(N, 4\).*got shape \(4,\)"
    ):
        rpn_loss(objectness, deltas, ANCHORS, [np.array([0.0, 0, 1, 1])])
    with pytest.raises(ValueError, match="gt_boxes must be a list of 1 .* got 2"):
        rpn_loss(objectness, deltas, ANCHORS, [GT, GT])
    with pytest.raises(ValueError, match=r"deltas must have shape \(1, 8, 4\).*got \(1, 8, 3\)"):
        rpn_loss(objectness, mv.tensor(np.zeros((1, 8, 3))), ANCHORS, [GT])
    with pytest.raises(ValueError, match=r"anchors must have shape \(8, 4\).*got \(7, 4\)"):
        rpn_loss(objectness, deltas, ANCHORS[:7], [GT])


# --------------------------------------------------------------------------- the module
def small_rpn(**kwargs):
    # 9 anchors per position: sizes 4, 8, 16 x ratios 0.5, 1, 2
    return RegionProposalNetwork(8, AnchorGenerator(((4, 8, 16),), ((0.5, 1.0, 2.0),)), **kwargs)


def test_module_output_shapes_and_anchor_order():
    mv.manual_seed(0)
    rpn = small_rpn(post_nms_top_n_train=5, post_nms_top_n_test=7)
    features = mv.randn(2, 8, 5, 7)
    objectness, deltas = rpn.head(features)
    assert objectness.shape == (2, 5 * 7 * 9) and deltas.shape == (2, 5 * 7 * 9, 4)
    # entry (i * W + j) * A + a is anchor a at position (i, j), as AnchorGenerator orders anchors
    hidden = mv.functional.relu(rpn.conv(features))
    logits, boxes = rpn.cls_logits(hidden).numpy(), rpn.bbox_pred(hidden).numpy()
    i, j, a = 3, 4, 6
    assert objectness.numpy()[1, (i * 7 + j) * 9 + a] == logits[1, a, i, j]
    np.testing.assert_array_equal(
        deltas.numpy()[1, (i * 7 + j) * 9 + a], boxes[1, 4 * a : 4 * a + 4, i, j]
    )

    proposals, losses = rpn(features, (40, 56))
    assert losses == {} and len(proposals) == 2
    for boxes in proposals:
        assert boxes.ndim == 2 and boxes.shape[1] == 4 and 1 <= boxes.shape[0] <= 5
        assert (
            (boxes[:, [0, 2]] <= 56).all() and (boxes[:, [1, 3]] <= 40).all() and (boxes >= 0).all()
        )
    rpn.eval()
    assert all(1 <= boxes.shape[0] <= 7 for boxes in rpn(features, (40, 56))[0])
    assert any(boxes.shape[0] > 5 for boxes in rpn(features, (40, 56))[0])


def test_every_parameter_receives_a_gradient():
    mv.manual_seed(0)
    rpn = small_rpn()
    targets = [
        {"boxes": np.array([[4.0, 4, 20, 20]], np.float32)},
        {"boxes": np.zeros((0, 4), np.float32)},
    ]
    _, losses = rpn(mv.randn(2, 8, 5, 7), (40, 56), targets)
    assert sorted(losses) == ["loss_objectness", "loss_rpn_box_reg"]
    (losses["loss_objectness"] + losses["loss_rpn_box_reg"]).backward()
    for name, parameter in rpn.named_parameters():
        assert parameter.grad is not None, name
        assert (
            np.isfinite(parameter.grad.numpy()).all() and np.abs(parameter.grad.numpy()).max() > 0
        ), name


def test_module_rejects_bad_input():
    rpn, features = small_rpn(), mv.randn(2, 8, 5, 7)
    with pytest.raises(
        ValueError, match=r"features must have shape \(N, 8, H, W\), got \(2, 3, 5, 7\)"
    ):
        rpn(mv.randn(2, 3, 5, 7), (40, 56))
    with pytest.raises(
        ValueError, match=r"image_size must be \(height, width\), two ints > 0, got 40"
    ):
        rpn(features, 40)
    with pytest.raises(
        ValueError, match="targets must be a list of 2 dicts with 'boxes', one per image, got 1"
    ):
        rpn(features, (40, 56), [{"boxes": np.zeros((0, 4))}])
    with pytest.raises(
        ValueError, match=r"gt_boxes\[1\] must have shape \(N, 4\).*got shape \(3,\)"
    ):
        rpn(features, (40, 56), [{"boxes": np.zeros((0, 4))}, {"boxes": np.zeros(3)}])
    with pytest.raises(ValueError, match="anchor_generator must have one feature-map level, got 2"):
        RegionProposalNetwork(8, AnchorGenerator((4, 8), (0.5, 1.0, 2.0)))
