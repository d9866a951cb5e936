"""SSD's matching, MultiBox loss and decoding: hand-worked cases, PyTorch parity, gradcheck, bad input."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minivision as mv
from minivision.gradcheck import gradcheck
from minivision.models.multibox import (
    BOX_CODER,
    decode,
    encode_targets,
    match,
    multibox_loss,
    multibox_loss_terms,
)
from minivision.ops import box_iou


def tensor(values):
    return mv.Tensor(np.asarray(values, np.float64), requires_grad=True)


# --------------------------------------------------------------------------- matching
# Unit-height strips; IoUs worked out by hand from the overlap widths.
DEFAULTS = np.array(
    [
        [0.0, 0.0, 10.0, 10.0],  # IoU 1 with GT[0]
        [5.0, 0.0, 15.0, 10.0],  # 50 / 150 = 1/3 with GT[0]: below 0.5
        [20.0, 0.0, 30.0, 10.0],  # 80 / (100 + 200 - 80) = 0.364 with GT[1]: its best, below 0.5
        [40.0, 0.0, 50.0, 10.0],  # 20 / (100 + 200 - 20) = 1/14 with GT[1]
        [100.0, 100.0, 110.0, 110.0],  # overlaps nothing
    ]
)
GT = np.array([[0.0, 0.0, 10.0, 10.0], [22.0, 0.0, 42.0, 10.0]])


def test_match_threshold_and_forced_best_box_below_it():
    labels, matched = match(DEFAULTS, GT, np.array([3, 7]))
    # default 0: IoU 1 >= 0.5; default 2: GT[1]'s best box, forced though 0.364 < 0.5
    np.testing.assert_array_equal(labels, [3, 0, 7, 0, 0])
    np.testing.assert_array_equal(matched, [0, -1, 1, -1, -1])
    assert labels.dtype == np.int64 and matched.dtype == np.int64
    # at threshold 0.3, default 2 passes on its own and 1/3 passes too
    labels, matched = match(DEFAULTS, GT, np.array([3, 7]), iou_threshold=0.3)
    np.testing.assert_array_equal(labels, [3, 3, 7, 0, 0])
    np.testing.assert_array_equal(matched, [0, 0, 1, -1, -1])


def test_match_threshold_is_inclusive():
    # IoU of [0, 0, 20, 10] with [0, 0, 10, 10] is 100 / 200 = 0.5 exactly
    defaults = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 20.0, 10.0]])
    labels, _ = match(defaults, np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([1]))
    np.testing.assert_array_equal(labels, [1, 1])


def test_two_ground_truths_competing_for_one_box_the_later_wins():
    defaults = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 20.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    # A: IoU 1 with default 0, 100/200 = 0.5 with default 1.
    # B: IoU 90/100 = 0.9 with default 0, 90/200 = 0.45 with default 1.
    a, b = [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 9.0, 10.0]
    # Both prefer default 0. By IoU, default 0 -> A (1 > 0.9), default 1 -> A (0.5 >= 0.5).
    # Forcing in order: A takes default 0, then B takes it over.
    labels, matched = match(defaults, np.array([a, b]), np.array([1, 2]))
    np.testing.assert_array_equal(matched, [1, 0, -1])
    np.testing.assert_array_equal(labels, [2, 1, 0])
    # Swapped order: B forces default 0 first, A (now index 1) takes it back.
    labels, matched = match(defaults, np.array([b, a]), np.array([2, 1]))
    np.testing.assert_array_equal(matched, [1, 1, -1])
    np.testing.assert_array_equal(labels, [1, 1, 0])
    # Without default 1, the earlier ground truth is left with no default box at all.
    labels, matched = match(defaults[[0, 2]], np.array([a, b]), np.array([1, 2]))
    np.testing.assert_array_equal(matched, [1, -1])


def test_no_ground_truth_is_all_background():
    labels, matched = match(DEFAULTS, np.zeros((0, 4)), np.zeros(0, np.int64))
    np.testing.assert_array_equal(labels, np.zeros(5))
    np.testing.assert_array_equal(matched, -np.ones(5))


def test_ground_truth_overlapping_no_default_box_forces_nothing():
    labels, matched = match(DEFAULTS[:2], np.array([[200.0, 200.0, 210.0, 210.0]]), np.array([1]))
    np.testing.assert_array_equal(labels, [0, 0])
    np.testing.assert_array_equal(matched, [-1, -1])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_defaults=st.integers(1, 30),
    num_gt=st.integers(1, 5),
    threshold=st.sampled_from([0.3, 0.5, 0.7]),
)
def test_match_parity_with_torchvision_ssd_matcher(seed, num_defaults, num_gt, threshold):
    torch = pytest.importorskip("torch")
    utils = pytest.importorskip("torchvision.models.detection._utils")
    rng = np.random.default_rng(seed)

    def boxes(count):
        corner = rng.uniform(0, 40, (count, 2))
        return np.concatenate([corner, corner + rng.uniform(2, 20, (count, 2))], axis=1)

    defaults, gt = boxes(num_defaults), boxes(num_gt)
    iou = box_iou(gt, defaults)
    # torchvision's forced assignment writes a shared box in an unspecified order and forces
    # ground truths that overlap nothing; those cases are the hand-worked tests' business.
    assume(len(set(iou.argmax(axis=1))) == num_gt and (iou.max(axis=1) > 0).all())
    expected = utils.SSDMatcher(threshold)(torch.from_numpy(iou)).numpy()
    _, matched = match(defaults, gt, np.arange(1, num_gt + 1), iou_threshold=threshold)
    np.testing.assert_array_equal(matched, np.where(expected < 0, -1, expected))


# --------------------------------------------------------------------------- targets
def test_encode_targets_by_hand_and_zero_for_background():
    defaults = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 4.0, 4.0]])
    gt = np.array([[2.0, 0.0, 12.0, 20.0]])  # centre (7, 10), size 10 x 20
    targets = encode_targets(defaults, gt, np.array([0, -1]))
    # ((7 - 5) / 10 / 0.1, (10 - 5) / 10 / 0.1, log(10 / 10) / 0.2, log(20 / 10) / 0.2)
    np.testing.assert_allclose(targets[0], [2.0, 5.0, 0.0, math.log(2.0) / 0.2], rtol=1e-12)
    np.testing.assert_array_equal(targets[1], [0.0, 0.0, 0.0, 0.0])


def test_variances_are_the_reciprocal_weights():
    assert BOX_CODER.weights == (1 / 0.1, 1 / 0.1, 1 / 0.2, 1 / 0.2)


def test_encode_then_decode_gives_the_ground_truth_back():
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 100, (50, 2))
    defaults = np.concatenate([corner, corner + rng.uniform(5, 40, (50, 2))], axis=1)
    gt = np.array([[10.0, 10.0, 50.0, 60.0], [60.0, 20.0, 90.0, 40.0], [5.0, 70.0, 30.0, 120.0]])
    labels, matched = match(defaults, gt, np.array([1, 2, 3]))
    targets = encode_targets(defaults, gt, matched)
    positive = matched >= 0
    np.testing.assert_allclose(
        BOX_CODER.decode(targets[positive], defaults[positive]),
        gt[matched[positive]],
        rtol=1e-12,
        atol=1e-12,
    )
    # through decode: certain logits for each positive's class, its own targets as offsets
    conf = np.full((50, 4), -50.0)
    conf[np.arange(50), labels] = 50.0
    found = decode(targets, conf, defaults, (200, 200), nms_thresh=1.0)
    assert sorted(map(tuple, found["boxes"].round(3).tolist())) == sorted(
        map(tuple, gt[matched[positive]].astype(np.float32).round(3).tolist())
    )
    assert sorted(found["labels"].tolist()) == sorted(labels[positive].tolist())


# --------------------------------------------------------------------------- the loss
def softplus(a):
    return math.log(1.0 + math.exp(a))


def test_loss_by_hand_mines_the_three_hardest_negatives():
    # Two classes (background, 1). Box 0 is the positive, logits (0, 0): CE log 2.
    # Negatives have logits (0, a): CE log(1 + e^a), a = -1, 2, 0, 1 -> boxes 2, 4, 3 mined.
    conf = tensor([[[0.0, 0.0], [0.0, -1.0], [0.0, 2.0], [0.0, 0.0], [0.0, 1.0]]])
    loc = tensor([[[0.5, -2.0, 0.0, 0.0]] + [[100.0, 100.0, 100.0, 100.0]] * 4])
    labels = np.array([[1, 0, 0, 0, 0]])
    targets = np.zeros((1, 5, 4))
    # smooth L1: 0.5 * 0.5^2 + (2 - 0.5) = 1.625; one positive divides
    conf_value = math.log(2) + softplus(2.0) + softplus(0.0) + softplus(1.0)
    loc_loss, conf_loss = multibox_loss_terms(loc, conf, labels, targets)
    assert loc_loss.item() == pytest.approx(1.625, rel=1e-14)
    assert conf_loss.item() == pytest.approx(conf_value, rel=1e-14)
    loss = multibox_loss(loc, conf, labels, targets)
    assert loss.item() == pytest.approx(1.625 + conf_value, rel=1e-14)
    loss.backward()
    # box 1, not mined, and the negatives' offsets get no gradient
    np.testing.assert_array_equal(conf.grad.numpy()[0, 1], [0.0, 0.0])
    assert (conf.grad.numpy()[0, [0, 2, 3, 4]] != 0).all()
    np.testing.assert_array_equal(loc.grad.numpy()[0, 1:], np.zeros((4, 4)))
    np.testing.assert_array_equal(loc.grad.numpy()[0, 0], [0.5, -1.0, 0.0, 0.0])


def test_fewer_negatives_than_the_ratio_counts_each_box_once():
    # 2 positives want 6 negatives; only 2 exist, so every box counts exactly once.
    conf = tensor([[[0.0, 1.0], [0.0, 0.0], [0.0, 3.0], [0.0, -2.0]]])
    labels = np.array([[1, 1, 0, 0]])
    loc = tensor(np.zeros((1, 4, 4)))
    # positives: CE -log softmax = log(1 + e^{-1}) and log 2; negatives: log(1 + e^3), log(1 + e^-2)
    expected = (softplus(-1.0) + math.log(2) + softplus(3.0) + softplus(-2.0)) / 2
    loss = multibox_loss(loc, conf, labels, np.zeros((1, 4, 4)))
    assert loss.item() == pytest.approx(expected, rel=1e-14)


def test_positives_never_take_the_negatives_places():
    # The positives have the largest losses (log(1 + e^3), log(1 + e^2)); ratio 1 still mines
    # two negatives, the two hardest: log(1 + e^1) and log(1 + e^0.5), not log(1 + e^-1).
    conf = tensor([[[3.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.0, 0.5]]])
    labels = np.array([[1, 1, 0, 0, 0]])
    expected = (softplus(3.0) + softplus(2.0) + softplus(1.0) + softplus(0.5)) / 2
    loss = multibox_loss(
        tensor(np.zeros((1, 5, 4))), conf, labels, np.zeros((1, 5, 4)), neg_pos_ratio=1
    )
    assert loss.item() == pytest.approx(expected, rel=1e-14)


def test_equal_losses_mine_the_lower_box_index():
    conf = tensor(np.zeros((1, 6, 3)))  # every box has CE log 3
    labels = np.array([[0, 0, 2, 0, 0, 0]])
    loss = multibox_loss(
        tensor(np.zeros((1, 6, 4))), conf, labels, np.zeros((1, 6, 4)), neg_pos_ratio=2
    )
    assert loss.item() == pytest.approx(3 * math.log(3), rel=1e-14)
    loss.backward()
    used = (conf.grad.numpy()[0] != 0).any(axis=1)
    np.testing.assert_array_equal(used, [True, True, True, False, False, False])


def test_image_without_objects_adds_nothing():
    rng = np.random.default_rng(1)
    conf, loc = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 4))
    labels = np.array([[2, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
    targets = rng.normal(size=(2, 5, 4))
    conf_t = tensor(conf)
    both = multibox_loss(tensor(loc), conf_t, labels, targets)
    alone = multibox_loss(tensor(loc[:1]), tensor(conf[:1]), labels[:1], targets[:1])
    assert math.isfinite(both.item()) and both.item() == pytest.approx(alone.item(), rel=1e-14)
    both.backward()
    np.testing.assert_array_equal(conf_t.grad.numpy()[1], np.zeros((5, 3)))


def test_batch_without_positives_is_exactly_zero_with_zero_gradients():
    loc, conf = tensor(np.ones((2, 3, 4))), tensor(np.ones((2, 3, 5)))
    loss = multibox_loss(loc, conf, np.zeros((2, 3), np.int64), np.zeros((2, 3, 4)))
    assert loss.item() == 0.0
    loss.backward()
    np.testing.assert_array_equal(loc.grad.numpy(), np.zeros((2, 3, 4)))
    np.testing.assert_array_equal(conf.grad.numpy(), np.zeros((2, 3, 5)))


def torch_multibox_loss(torch, loc, conf, labels, targets, ratio):
    """The loss written out per image, ranking only the negatives."""
    functional = torch.nn.functional
    total = int((labels > 0).sum())
    if total == 0:
        return loc.sum() * 0.0 + conf.sum() * 0.0
    loss = 0.0
    for k in range(loc.shape[0]):
        positive = labels[k] > 0
        losses = functional.cross_entropy(conf[k], labels[k], reduction="none")
        negatives = torch.nonzero(~positive).flatten()
        count = min(math.floor(ratio * int(positive.sum())), len(negatives))
        hardest = torch.sort(losses[negatives].detach(), descending=True, stable=True).indices[
            :count
        ]
        loss = loss + losses[positive].sum() + losses[negatives[hardest]].sum()
        loss = loss + functional.smooth_l1_loss(
            loc[k][positive], targets[k][positive], reduction="sum", beta=1.0
        )
    return loss / total


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 3),
    count=st.integers(1, 12),
    classes=st.integers(2, 4),
    background=st.floats(0.0, 1.0),
    ratio=st.sampled_from([0, 1, 2, 3, 2.5]),
)
def test_loss_parity_with_pytorch(seed, n, count, classes, background, ratio):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    loc, conf = rng.normal(0, 2, (n, count, 4)), rng.normal(0, 2, (n, count, classes))
    labels = np.where(rng.random((n, count)) < background, 0, rng.integers(1, classes, (n, count)))
    targets = rng.normal(0, 2, (n, count, 4))
    loc_t, conf_t = tensor(loc), tensor(conf)
    ours = multibox_loss(loc_t, conf_t, labels, targets, neg_pos_ratio=ratio)
    ours.backward()
    ref_loc = torch.tensor(loc, requires_grad=True)
    ref_conf = torch.tensor(conf, requires_grad=True)
    theirs = torch_multibox_loss(
        torch, ref_loc, ref_conf, torch.from_numpy(labels), torch.from_numpy(targets), ratio
    )
    theirs.backward()
    np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-10, atol=0)
    np.testing.assert_allclose(loc_t.grad.numpy(), ref_loc.grad.numpy(), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(conf_t.grad.numpy(), ref_conf.grad.numpy(), rtol=1e-10, atol=1e-300)


def test_loss_gradcheck_float64():
    rng = np.random.default_rng(3)
    loc, conf = tensor(rng.normal(size=(2, 7, 4))), tensor(rng.normal(size=(2, 7, 4)))
    labels = np.array([[0, 3, 0, 0, 1, 0, 0], [0, 0, 2, 0, 0, 0, 0]])
    targets = rng.normal(size=(2, 7, 4))
    gradcheck(lambda loc_, conf_: multibox_loss(loc_, conf_, labels, targets), [loc, conf])
    gradcheck(lambda loc_, conf_: multibox_loss_terms(loc_, conf_, labels, targets), [loc, conf])


# --------------------------------------------------------------------------- decoding
def hand_outputs():
    """Three default boxes, two classes, softmax scores by hand (each row's exps sum to 10)."""
    defaults = np.array(
        [
            [0.0, 0.0, 10.0, 10.0],  # IoU 90 / 110 = 0.82 with the next
            [1.0, 0.0, 11.0, 10.0],
            [20.0, 20.0, 30.0, 30.0],
        ]
    )
    conf = np.log(
        [
            [1.0, 8.0, 1.0],  # scores: class 1 0.8, class 2 0.1
            [1.0, 6.0, 3.0],  # 0.6, 0.3
            [5.0, 1.0, 4.0],
        ]
    )  # 0.1, 0.4
    return np.zeros((3, 4)), conf, defaults


def test_decode_by_hand():
    loc, conf, defaults = hand_outputs()
    found = decode(loc, conf, defaults, (25, 40))
    # class 1: 0.8 keeps, 0.6 overlaps it at 0.82 > 0.45 and goes, 0.1 stays;
    # class 2: 0.4 keeps, 0.3 keeps (no overlap), 0.1 overlaps 0.3 at 0.82 and goes.
    np.testing.assert_allclose(found["scores"], [0.8, 0.4, 0.3, 0.1], rtol=1e-6)
    np.testing.assert_array_equal(found["labels"], [1, 2, 2, 1])
    clipped = [20.0, 20.0, 30.0, 25.0]  # the image is 25 high
    np.testing.assert_array_equal(found["boxes"], [defaults[0], clipped, defaults[1], clipped])
    assert found["boxes"].dtype == np.float32 and found["scores"].dtype == np.float32
    assert found["labels"].dtype == np.int64


def test_decode_limits():
    loc, conf, defaults = hand_outputs()
    np.testing.assert_allclose(
        decode(loc, conf, defaults, 100, top_k=3)["scores"], [0.8, 0.4, 0.3], rtol=1e-6
    )
    np.testing.assert_allclose(
        decode(loc, conf, defaults, 100, score_thresh=0.2)["scores"], [0.8, 0.4, 0.3], rtol=1e-6
    )
    # one candidate per class enters NMS: 0.8 for class 1, 0.4 for class 2
    np.testing.assert_allclose(
        decode(loc, conf, defaults, 100, pre_nms_top_k=1)["scores"], [0.8, 0.4], rtol=1e-6
    )


def test_decode_drops_boxes_outside_the_image():
    loc, conf, defaults = hand_outputs()
    found = decode(loc, conf, defaults, (15, 15))  # default 2 lies wholly below and right of it
    # left: class 1 at 0.8 (default 0) and class 2 at 0.3 (default 1), as in test_decode_by_hand
    np.testing.assert_array_equal(found["labels"], [1, 2])
    np.testing.assert_allclose(found["scores"], [0.8, 0.3], rtol=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(1, 200),
    classes=st.integers(2, 6),
    top_k=st.integers(1, 50),
    nms_thresh=st.sampled_from([0.3, 0.45, 0.7]),
)
def test_decode_properties(seed, count, classes, top_k, nms_thresh):
    rng = np.random.default_rng(seed)
    corner = rng.uniform(-10, 90, (count, 2))
    defaults = np.concatenate([corner, corner + rng.uniform(2, 30, (count, 2))], axis=1)
    found = decode(
        rng.normal(0, 1, (count, 4)),
        rng.normal(0, 2, (count, classes)),
        defaults,
        (80, 100),
        top_k=top_k,
        nms_thresh=nms_thresh,
    )
    boxes, labels, scores = found["boxes"], found["labels"], found["scores"]
    assert len(scores) <= top_k and len(boxes) == len(labels) == len(scores)
    assert (np.diff(scores) <= 0).all() and (scores > 0.01).all()
    assert ((labels >= 1) & (labels < classes)).all()
    assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= 100).all()
    assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= 80).all()
    for label in np.unique(labels):
        same = boxes[labels == label].astype(np.float64)
        iou = box_iou(same, same) - np.eye(len(same))
        assert (iou <= nms_thresh + 1e-6).all()


# --------------------------------------------------------------------------- bad input
def test_match_bad_inputs():
    with pytest.raises(ValueError, match=r"default_boxes must have shape \(N, 4\).*\(5, 3\)"):
        match(DEFAULTS[:, :3], GT, np.array([1, 2]))
    with pytest.raises(ValueError, match=r"gt_boxes must be finite with x2 > x1"):
        match(DEFAULTS, np.array([[0.0, 0.0, 0.0, 5.0]]), np.array([1]))
    with pytest.raises(ValueError, match=r"gt_labels must have shape \(2,\), got shape \(3,\)"):
        match(DEFAULTS, GT, np.array([1, 2, 3]))
    with pytest.raises(TypeError, match="gt_labels must hold integers, got dtype float64"):
        match(DEFAULTS, GT, np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="gt_labels must be object classes >= 1.*got 0"):
        match(DEFAULTS, GT, np.array([0, 2]))
    with pytest.raises(ValueError, match=r"iou_threshold must be a number in \[0, 1\], got 1.5"):
        match(DEFAULTS, GT, np.array([1, 2]), iou_threshold=1.5)


def test_encode_targets_bad_inputs():
    with pytest.raises(ValueError, match=r"matched_gt must have shape \(5,\), got shape \(4,\)"):
        encode_targets(DEFAULTS, GT, np.zeros(4, np.int64))
    with pytest.raises(
        ValueError, match=r"matched_gt must hold ground-truth indices or -1 in \[-1, 1\], got 2"
    ):
        encode_targets(DEFAULTS, GT, np.array([0, 1, 2, -1, -1]))


def test_loss_bad_inputs():
    loc, conf = tensor(np.zeros((2, 3, 4))), tensor(np.zeros((2, 3, 5)))
    labels, targets = np.zeros((2, 3), np.int64), np.zeros((2, 3, 4))
    with pytest.raises(
        ValueError,
        match=r"loc must have shape \(2, 3, 4\) to match conf \(2, 3, 5\), "
        r"got shape \(2, 4, 4\)",
    ):
        multibox_loss(tensor(np.zeros((2, 4, 4))), conf, labels, targets)
    with pytest.raises(
        ValueError, match=r"conf must have shape \(N, P, num_classes \+ 1\).*\(2, 3\)"
    ):
        multibox_loss(loc, tensor(np.zeros((2, 3))), labels, targets)
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 3\), got shape \(6,\)"):
        multibox_loss(loc, conf, labels.reshape(-1), targets)
    with pytest.raises(TypeError, match="labels must hold integers, got dtype float64"):
        multibox_loss(loc, conf, labels.astype(float), targets)
    with pytest.raises(
        ValueError, match=r"labels must hold classes \(0 background\) in \[0, 4\], got 5"
    ):
        multibox_loss(loc, conf, labels + 5, targets)
    with pytest.raises(
        ValueError, match=r"loc_targets must have shape \(2, 3, 4\).*got shape \(2, 3\)"
    ):
        multibox_loss(loc, conf, labels, targets[..., 0])
    with pytest.raises(
        TypeError, match=r"conf must be a Tensor of shape \(N, P, num_classes \+ 1\), got ndarray"
    ):
        multibox_loss(loc, np.zeros((2, 3, 5)), labels, targets)
    with pytest.raises(ValueError, match="neg_pos_ratio must be a number >= 0, got -1"):
        multibox_loss(loc, conf, labels, targets, neg_pos_ratio=-1)


def test_decode_bad_inputs():
    loc, conf, defaults = hand_outputs()
    with pytest.raises(
        ValueError, match=r"conf must have shape \(3, num_classes \+ 1\).*got shape \(2, 3\)"
    ):
        decode(loc, conf[:2], defaults, 100)
    with pytest.raises(
        ValueError, match=r"conf must have shape \(3, num_classes \+ 1\).*got shape \(3, 1\)"
    ):
        decode(loc, conf[:, :1], defaults, 100)
    with pytest.raises(
        ValueError,
        match=r"loc must have shape \(3, 4\), one row per default box, got shape \(3, 2\)",
    ):
        decode(loc[:, :2], conf, defaults, 100)
    with pytest.raises(ValueError, match=r"default_boxes must have shape \(N, 4\)"):
        decode(loc, conf, defaults[:, :2], 100)
    with pytest.raises(ValueError, match="image_size must be a positive number or"):
        decode(loc, conf, defaults, (0, 10))
    with pytest.raises(ValueError, match="top_k must be a positive integer, got 0"):
        decode(loc, conf, defaults, 100, top_k=0)
    with pytest.raises(ValueError, match="pre_nms_top_k must be a positive integer, got 0"):
        decode(loc, conf, defaults, 100, pre_nms_top_k=0)
