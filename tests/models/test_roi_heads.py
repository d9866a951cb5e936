"""Fast R-CNN's head: RoI sampling on hand-worked boxes, the head's shapes and loss, detections."""

import math

import numpy as np
import pytest

import minivision as mv
from minivision.gradcheck import gradcheck
from minivision.models.roi_heads import (
    FastRCNNHead,
    fast_rcnn_loss,
    postprocess_detections,
    sample_proposals,
)

GT = np.array([[0.0, 0.0, 10.0, 10.0]])  # area 100
# IoU with GT, by hand: the proposal lies inside GT, so IoU = its area / 100.
BANDS = np.array(
    [
        [0.0, 0.0, 10.0, 8.0],  # 80 / 100 = 0.8: foreground
        [0.0, 0.0, 10.0, 5.0],  # 50 / 100 = 0.5: foreground (fg_iou is inclusive)
        [0.0, 0.0, 10.0, 4.0],  # 0.4: background for bg_iou_high 0.5, ignored for 0.4 (exclusive)
        [0.0, 0.0, 10.0, 1.0],  # 0.1: background for bg_iou_low 0.1 (inclusive), ignored for 0.2
        [20.0, 20.0, 30.0, 30.0],  # 0: background only while bg_iou_low is 0
    ]
)


def rows(boxes):
    return sorted(map(tuple, np.asarray(boxes).tolist()))


def sampled(labels_wanted, boxes, labels):
    """The sampled boxes whose label satisfies ``labels_wanted``, as sorted tuples."""
    return rows(boxes[labels_wanted(labels)])


# --------------------------------------------------------------------------- sampling
def test_bands_with_the_defaults_and_gt_added():
    # batch 100, cap 25: nothing is left out, so the sample is every non-ignored box.
    boxes, labels, targets = sample_proposals(BANDS, GT, np.array([3]), batch_size_per_image=100)
    # foreground: rows 0, 1 and the ground-truth box itself, label 3
    assert sampled(lambda label: label == 3, boxes, labels) == rows([BANDS[0], BANDS[1], GT[0]])
    # background: rows 2, 3, 4 (IoU 0.4, 0.1, 0 are in [0, 0.5))
    assert sampled(lambda label: label == 0, boxes, labels) == rows(BANDS[2:])
    assert len(labels) == 6 and labels.dtype == np.int64
    assert (labels[:3] == 3).all() and (labels[3:] == 0).all()  # foreground first
    assert (targets[3:] == 0).all()  # background regresses nothing


def test_narrower_bands_ignore_boxes_between_them():
    boxes, labels, _ = sample_proposals(
        BANDS, GT, np.array([3]), batch_size_per_image=100, bg_iou_high=0.4, bg_iou_low=0.1
    )
    # 0.4 is not < 0.4 (ignored); 0.1 >= 0.1 (background); 0 < 0.1 (ignored)
    assert sampled(lambda label: label == 0, boxes, labels) == rows([BANDS[3]])
    assert sampled(lambda label: label > 0, boxes, labels) == rows([BANDS[0], BANDS[1], GT[0]])
    boxes, labels, _ = sample_proposals(
        BANDS, GT, np.array([3]), batch_size_per_image=100, bg_iou_low=0.2
    )
    # 0.1 and 0 fall below 0.2: only the 0.4 box is background
    assert sampled(lambda label: label == 0, boxes, labels) == rows([BANDS[2]])


def test_fg_iou_above_the_background_band_ignores_the_gap():
    boxes, labels, _ = sample_proposals(
        BANDS, GT, np.array([3]), batch_size_per_image=100, fg_iou=0.7
    )
    # 0.8 and the gt (1.0) are foreground; 0.5 is neither >= 0.7 nor < 0.5
    assert sampled(lambda label: label > 0, boxes, labels) == rows([BANDS[0], GT[0]])
    assert tuple(BANDS[1]) not in rows(boxes)
    assert len(boxes) == 5  # 2 foreground + 3 background


def test_no_proposals_gives_the_ground_truth_alone():
    boxes, labels, targets = sample_proposals(np.zeros((0, 4)), GT, np.array([2]))
    np.testing.assert_array_equal(boxes, GT)
    np.testing.assert_array_equal(labels, [2])
    np.testing.assert_array_equal(targets, np.zeros((1, 4)))  # the gt encoded against itself


def test_no_ground_truth_makes_everything_background():
    boxes, labels, targets = sample_proposals(BANDS, np.zeros((0, 4)), np.zeros(0, np.int64))
    assert rows(boxes) == rows(BANDS) and (labels == 0).all() and (targets == 0).all()


def test_label_and_target_come_from_the_best_ground_truth():
    gt = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    proposal = np.array([[21.0, 0.0, 30.0, 10.0]])  # IoU 90/100 = 0.9 with gt 1, 0 with gt 0
    boxes, labels, targets = sample_proposals(proposal, gt, np.array([1, 2]))
    (row,) = np.flatnonzero((boxes == proposal).all(axis=1))
    assert labels[row] == 2
    # proposal: centre (25.5, 5), size 9 x 10; gt 1: centre (25, 5), size 10 x 10; weights (10, 10, 5, 5)
    # dx = 10 * (25 - 25.5) / 9 = -5/9, dy = 0, dw = 5 log(10/9), dh = 5 log(1) = 0
    np.testing.assert_allclose(
        targets[row], [-5 / 9, 0.0, 5 * math.log(10 / 9), 0.0], rtol=1e-12, atol=1e-15
    )


def many_proposals(foreground: int, background: int) -> np.ndarray:
    """Distinct proposals: ``foreground`` (<= 60) copies of GT shifted right by s = 0.05 k,
    k = 1.., so none equals GT and IoU = 10 (10 - s) / (10 (10 + s)) >= 7 / 13 > 0.5 (s <= 3),
    then ``background`` far away (IoU 0)."""
    assert foreground <= 60
    fg = [[0.05 * k, 0.0, 10.0 + 0.05 * k, 10.0] for k in range(1, foreground + 1)]
    bg = [[50.0 + k, 50.0, 60.0 + k, 60.0] for k in range(background)]
    return np.array(fg + bg).reshape(-1, 4)


def test_at_most_a_quarter_foreground():
    mv.manual_seed(0)
    # 8 proposals + the gt are foreground, 30 background; batch 16: 16 * 0.25 = 4 fg, 12 bg
    boxes, labels, _ = sample_proposals(
        many_proposals(8, 30), GT, np.array([1]), batch_size_per_image=16
    )
    assert (labels > 0).sum() == 4 and (labels == 0).sum() == 12
    # only 5 background boxes: 4 fg + 5 bg, the batch is not filled with foreground
    boxes, labels, _ = sample_proposals(
        many_proposals(8, 5), GT, np.array([1]), batch_size_per_image=16
    )
    assert (labels > 0).sum() == 4 and (labels == 0).sum() == 5
    # few foreground boxes: all 3 (2 + gt) taken, background fills the other 13
    boxes, labels, _ = sample_proposals(
        many_proposals(2, 30), GT, np.array([1]), batch_size_per_image=16
    )
    assert (labels > 0).sum() == 3 and (labels == 0).sum() == 13


def test_sampling_is_seeded_and_without_duplicates():
    proposals = many_proposals(40, 60)

    def draw(seed):
        mv.manual_seed(seed)
        return sample_proposals(proposals, GT, np.array([1]), batch_size_per_image=32)

    first, again, other = draw(7), draw(7), draw(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(
        first[0], other[0]
    )  # 8 of 41 foreground and 24 of 60 background drawn anew
    for boxes, _, _ in (first, other):
        assert len(boxes) == 32 and len(rows(boxes)) == len(set(rows(boxes)))


# --------------------------------------------------------------------------- the head and its loss
def test_head_output_shapes_for_both_roi_forms():
    mv.manual_seed(0)
    head = FastRCNNHead(in_channels=4, num_classes=3, hidden=32, output_size=7, spatial_scale=0.25)
    features = mv.tensor(
        np.random.default_rng(0).standard_normal((2, 4, 16, 16)).astype(np.float32)
    )
    rois = np.array([[0, 0, 0, 32, 32], [1, 8, 8, 40, 60], [1, 0, 0, 8, 8]], np.float32)
    scores, deltas = head(features, rois)
    assert scores.shape == (3, 4) and deltas.shape == (3, 16)
    listed_scores, _ = head(features, [rois[:1, 1:], rois[1:, 1:]])
    np.testing.assert_array_equal(listed_scores.numpy(), scores.numpy())
    assert head.fc6.weight.shape == (32, 4 * 7 * 7)


def test_loss_on_a_hand_case():
    # 2 RoIs, 2 object classes: uniform scores give cross-entropy log 3 for each RoI.
    logits = mv.tensor(np.zeros((2, 3)))
    deltas = np.full((2, 12), 50.0)  # every entry but RoI 0's class-2 deltas must be ignored
    deltas[0, 8:] = [0.1, 0.0, 0.0, 0.0]
    labels, targets = np.array([2, 0]), np.zeros((2, 4))
    # beta 1/9: |0.1| < 1/9, so 0.5 * 0.01 / (1/9) = 0.045, summed over the foreground and divided by R = 2
    loss = fast_rcnn_loss(logits, mv.tensor(deltas), labels, targets)
    assert loss.item() == pytest.approx(math.log(3) + 0.045 / 2, rel=1e-12)
    # beta 1 (the paper's): 0.5 * 0.01 = 0.005
    loss = fast_rcnn_loss(logits, mv.tensor(deltas), labels, targets, beta=1.0)
    assert loss.item() == pytest.approx(math.log(3) + 0.005 / 2, rel=1e-12)


def test_head_loss_runs_on_the_outputs_device(device):
    mv.manual_seed(0)
    head = FastRCNNHead(in_channels=2, num_classes=2, hidden=8, output_size=2).to(device)
    features = mv.tensor(
        np.random.default_rng(2).standard_normal((1, 2, 8, 8)), dtype="float32", device=device
    )
    rois = np.array([[0.0, 0.0, 64.0, 64.0], [0.0, 0.0, 32.0, 32.0]], np.float32)
    loss = head.loss(features, [rois], np.array([2, 0]), np.array([[0.5, 0, 0, 0], [0, 0, 0, 0]]))
    loss.backward()
    assert loss.device == device and head.bbox_pred.weight.grad.device == device


def test_loss_gradcheck_float64():
    rng = np.random.default_rng(3)
    logits = mv.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    deltas = mv.tensor(
        0.2 * rng.standard_normal((5, 12)), requires_grad=True
    )  # both sides of beta = 1/9
    labels, targets = np.array([2, 0, 1, 1, 0]), 0.2 * rng.standard_normal((5, 4))
    gradcheck(lambda s, d: fast_rcnn_loss(s, d, labels, targets), [logits, deltas])


def test_every_parameter_gets_a_gradient():
    mv.manual_seed(0)
    head = FastRCNNHead(
        in_channels=3, num_classes=2, hidden=16, output_size=3, spatial_scale=0.5, dropout=0.5
    )
    features = mv.tensor(
        np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    )
    gt = np.array([[2.0, 2.0, 14.0, 14.0], [16.0, 16.0, 30.0, 30.0]])
    boxes, labels, targets = sample_proposals(
        np.zeros((0, 4)), gt, np.array([1, 2]), batch_size_per_image=8
    )
    boxes = np.concatenate([boxes, [[0.0, 0.0, 6.0, 30.0]]])  # one background RoI
    labels, targets = np.append(labels, 0), np.concatenate([targets + 0.3, np.zeros((1, 4))])
    head.loss(features, [boxes], labels, targets).backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None, name
        assert np.abs(parameter.grad.numpy()).max() > 0, name


# --------------------------------------------------------------------------- detections
def test_postprocess_hand_example():
    proposals = np.array(
        [
            [0.0, 0.0, 10.0, 10.0],  # RoI 0
            [1.0, 0.0, 11.0, 10.0],  # RoI 1: IoU with RoI 0 = 90 / 110 > 0.5
            [20.0, 20.0, 40.0, 40.0],
        ]
    )  # RoI 2: past the 32 x 32 image
    # softmax of log-probabilities gives the probabilities back: (background, class 1, class 2)
    logits = np.log([[0.1, 0.6, 0.3], [0.1, 0.5, 0.4], [0.2, 0.02, 0.78]])
    deltas = np.zeros((3, 12))  # every box is its RoI
    out = postprocess_detections(logits, deltas, proposals, (32, 32))
    # class 1: RoI 0 (0.6) suppresses RoI 1 (0.5); RoI 2's 0.02 is below 0.05.
    # class 2: RoI 1 (0.4) suppresses RoI 0 (0.3); RoI 2 (0.78) kept, clipped to the image.
    # RoI 0's class 1 and RoI 1's class 2 overlap but differ in class: both kept.
    np.testing.assert_allclose(out["boxes"], [[20, 20, 32, 32], [0, 0, 10, 10], [1, 0, 11, 10]])
    np.testing.assert_array_equal(out["labels"], [2, 1, 2])
    np.testing.assert_allclose(out["scores"], [0.78, 0.6, 0.4], rtol=1e-6)
    assert out["boxes"].dtype == np.float32 and out["labels"].dtype == np.int64
    top = postprocess_detections(logits, deltas, proposals, 32, detections_per_img=2)
    np.testing.assert_array_equal(top["labels"], [2, 1])


def test_postprocess_decodes_each_class_own_deltas_and_drops_tiny_boxes():
    proposals = np.array([[10.0, 10.0, 20.0, 20.0], [31.999, 0.0, 40.0, 10.0]])
    logits = np.log([[0.1, 0.9, 1e-9], [0.1, 0.9, 1e-9]])
    deltas = np.zeros((2, 12))
    # class 1 of RoI 0: dx = 1 / 10 of the width 10 = 1 pixel right; dw = 5 log 2 / 5: width doubled
    deltas[0, 4:8] = [1.0, 0.0, 5 * math.log(2), 0.0]
    deltas[0, 8:12] = [-40.0, 0.0, 0.0, 0.0]  # class 2's deltas must not move class 1's box
    out = postprocess_detections(logits, deltas, proposals, (32, 32))
    # centre (16, 15), size 20 x 10 -> (6, 10, 26, 20); RoI 1 clipped to width 0.001 < 0.01: gone
    np.testing.assert_allclose(out["boxes"], [[6, 10, 26, 20]], rtol=1e-6)
    np.testing.assert_array_equal(out["labels"], [1])


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(proposals=np.zeros((2, 3))),
            r"proposals must have shape \(N, 4\).*got shape \(2, 3\)",
        ),
        (
            dict(proposals=np.array([[5.0, 0, 1, 1]])),
            r"proposals must be finite with x2 >= x1.*row 0",
        ),
        (
            dict(gt_boxes=np.array([[0.0, 0, 0, 5]])),
            r"gt_boxes must be finite with x2 > x1 and y2 > y1.*row 0",
        ),
        (dict(gt_labels=np.array([1, 2])), r"gt_labels must have shape \(1,\).*got shape \(2,\)"),
        (dict(gt_labels=np.array([0])), r"gt_labels must be >= 1 \(0 is the background\), got 0"),
        (dict(gt_labels=np.array([1.0])), r"gt_labels must hold integer classes.*float64"),
        (dict(batch_size_per_image=0), r"batch_size_per_image must be a positive integer, got 0"),
        (dict(positive_fraction=1.5), r"positive_fraction must be a number in \[0, 1\], got 1.5"),
        (dict(fg_iou=0.0, bg_iou_high=0.0), r"fg_iou must be in \(0, 1\].*got 0"),
        (
            dict(bg_iou_high=0.6),
            r"bg_iou_low <= bg_iou_high <= fg_iou.*bg_iou_high=0.6, fg_iou=0.5",
        ),
        (dict(bg_iou_low=0.7, bg_iou_high=0.5), r"bg_iou_low <= bg_iou_high.*bg_iou_low=0.7"),
    ],
)
def test_sample_proposals_bad_input(kwargs, match):
    args = dict(proposals=BANDS, gt_boxes=GT, gt_labels=np.array([1])) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        sample_proposals(**args)


def test_head_and_loss_bad_input():
    head = FastRCNNHead(in_channels=3, num_classes=2, hidden=8, output_size=2)
    with pytest.raises(
        ValueError, match=r"features must have shape \(N, 3, H, W\), got \(1, 4, 8, 8\)"
    ):
        head(mv.zeros((1, 4, 8, 8)), np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match=r"num_classes must be a positive integer, got 0"):
        FastRCNNHead(in_channels=3, num_classes=0)
    with pytest.raises(ValueError, match=r"spatial_scale must be a positive finite number, got -1"):
        FastRCNNHead(in_channels=3, num_classes=2, spatial_scale=-1)
    logits = mv.zeros((2, 3))
    with pytest.raises(
        ValueError, match=r"box_deltas must have shape \(2, 12\).*got shape \(2, 8\)"
    ):
        fast_rcnn_loss(logits, mv.zeros((2, 8)), np.array([0, 1]), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\).*got shape \(3,\)"):
        fast_rcnn_loss(logits, mv.zeros((2, 12)), np.array([0, 1, 1]), np.zeros((2, 4)))
    with pytest.raises(
        ValueError, match=r"regression_targets must have shape \(2, 4\), got shape \(2, 3\)"
    ):
        fast_rcnn_loss(logits, mv.zeros((2, 12)), np.array([0, 1]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"class index 3"):
        fast_rcnn_loss(logits, mv.zeros((2, 12)), np.array([0, 3]), np.zeros((2, 4)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(proposals=np.zeros((3, 4))),
            r"proposals must be finite with x2 > x1 and y2 > y1.*row 0",
        ),
        (
            dict(proposals=np.array([[0.0, 0, 1, 1]])),
            r"proposals must have one row per row of class_logits: expected \(2, 4\)",
        ),
        (
            dict(box_deltas=np.zeros((2, 8))),
            r"box_deltas must have shape \(2, 12\).*got shape \(2, 8\)",
        ),
        (
            dict(class_logits=np.zeros((2, 1))),
            r"class_logits must have shape \(R, num_classes \+ 1\).*\(2, 1\)",
        ),
        (
            dict(image_size=(0, 5)),
            r"image_size must be a positive number or \(height, width\), got \(0, 5\)",
        ),
        (dict(nms_thresh=2), r"nms_thresh must be a number in \[0, 1\], got 2"),
        (dict(score_thresh=-0.1), r"score_thresh must be a number in \[0, 1\], got -0.1"),
        (dict(detections_per_img=0), r"detections_per_img must be a positive integer, got 0"),
    ],
)
def test_postprocess_bad_input(kwargs, match):
    args = (
        dict(
            class_logits=np.zeros((2, 3)),
            box_deltas=np.zeros((2, 12)),
            proposals=np.array([[0.0, 0, 4, 4], [1, 1, 5, 5]]),
            image_size=8,
        )
        | kwargs
    )
    with pytest.raises(ValueError, match=match):
        postprocess_detections(**args)
