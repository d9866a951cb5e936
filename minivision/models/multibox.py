"""SSD's training targets, MultiBox loss and detection decoding (Liu et al., "SSD", 2016).

    default boxes (P, 4) + ground truth -> match -> labels (P,), matched ground truth (P,)
                                        -> encode_targets -> box targets (P, 4)
    loc (N, P, 4), conf (N, P, C + 1), labels, targets -> multibox_loss -> scalar
    loc (P, 4), conf (P, C + 1), default boxes -> decode -> boxes, labels, scores

Class 0 is the background; object classes are 1..C. Boxes are xyxy in image pixels. The
layers that produce ``loc`` and ``conf`` live in ``minivision.models.ssd``; this file holds
the parts of SSD that are not layers. Labelling runs on the host in NumPy; the loss runs on
the device of its Tensors.
"""

from __future__ import annotations

import numbers

import numpy as np

from minivision import functional as F
from minivision.backend import get_array_module
from minivision.models.roi_heads import _boxes, _fraction, _host, _image_hw, _positive_int
from minivision.ops import BoxCoder, batched_nms, box_iou
from minivision.tensor import Tensor, no_grad

# SSD divides the centre offsets by 0.1 and the log size ratios by 0.2 (the "variances"
# (0.1, 0.1, 0.2, 0.2) of the released code): BoxCoder's weights are their reciprocals.
BOX_CODER = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))


# --------------------------------------------------------------------------- checks
def _tensor(value, name: str, shape: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a Tensor of shape {shape}, got {type(value).__name__}")
    return value


def _integers(value, name: str, shape: tuple) -> np.ndarray:
    """``value`` as a host int64 array of exactly ``shape``."""
    raw = _host(value)
    if raw.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got shape {tuple(raw.shape)}")
    if raw.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {raw.dtype}")
    return raw.astype(np.int64, copy=False)


def _check_range(values: np.ndarray, name: str, low: int, high: int, meaning: str):
    bad = (values < low) | (values > high)
    if bad.any():
        raise ValueError(
            f"{name} must hold {meaning} in [{low}, {high}], got {int(values[bad][0])}"
        )


# --------------------------------------------------------------------------- training targets
def match(default_boxes, gt_boxes, gt_labels, iou_threshold: float = 0.5):
    """Assign one image's ground truth to its default boxes (the paper's matching strategy).

    Args:
        default_boxes: ``(P, 4)`` xyxy, positive sizes.
        gt_boxes: ``(G, 4)`` xyxy, positive sizes; ``G`` may be 0.
        gt_labels: ``(G,)`` integer classes in 1..C.
        iou_threshold: a default box whose best IoU is at least this is positive.
    Returns:
        ``labels`` ``(P,)`` int64 (0 background, else its ground truth's class) and
        ``matched_gt`` ``(P,)`` int64 (the index of its ground truth, -1 for background), NumPy.

    The rule of ssd.pytorch's ``match`` (and torchvision's ``SSDMatcher``): every default box
    takes the ground truth it overlaps most (the first of equals) when that IoU is >=
    ``iou_threshold``; then each ground truth's best default box (the first of equals) is made
    positive for that ground truth whatever its IoU, ground truths taken in index order, so
    when two share a best default box the later one keeps it and the earlier one may be left
    without a default box. A ground truth that overlaps no default box at all forces nothing
    (as the Caffe release, which only pairs boxes of positive overlap). The Caffe release
    forces by greedy bipartite matching instead (highest-IoU pair first, each default box
    used once), so two ground truths never share a forced box there.
    """
    defaults = _boxes(default_boxes, "default_boxes", positive=True)
    gt = _boxes(gt_boxes, "gt_boxes", positive=True)
    gt_labels = _integers(gt_labels, "gt_labels", (gt.shape[0],))
    if (gt_labels < 1).any():
        raise ValueError(
            f"gt_labels must be object classes >= 1 (0 is the background), "
            f"got {gt_labels[gt_labels < 1][0]}"
        )
    iou_threshold = _fraction(iou_threshold, "iou_threshold")
    count = defaults.shape[0]
    if gt.shape[0] == 0 or count == 0:
        return np.zeros(count, np.int64), np.full(count, -1, np.int64)
    iou = box_iou(gt, defaults)  # (G, P)
    matched = iou.argmax(axis=0)
    positive = iou.max(axis=0) >= iou_threshold
    for g, box in enumerate(
        iou.argmax(axis=1)
    ):  # in ground-truth order: a later ground truth wins a shared box
        if iou[g, box] > 0:
            matched[box], positive[box] = g, True
    matched = np.where(positive, matched, -1).astype(np.int64)
    labels = np.where(positive, gt_labels[np.maximum(matched, 0)], 0).astype(np.int64)
    return labels, matched


def encode_targets(default_boxes, gt_boxes, matched_gt) -> np.ndarray:
    """Box regression targets ``(P, 4)``: ``BOX_CODER.encode`` of each positive default box's
    ground truth against it, zeros where ``matched_gt`` is -1 (NumPy, the boxes' float dtype).

    default_boxes: ``(P, 4)`` xyxy; gt_boxes: ``(G, 4)`` xyxy; matched_gt: ``(P,)`` int in -1..G-1
    (``match``'s second output).
    """
    defaults = _boxes(default_boxes, "default_boxes", positive=True)
    gt = _boxes(gt_boxes, "gt_boxes", positive=True)
    matched = _integers(matched_gt, "matched_gt", (defaults.shape[0],))
    _check_range(matched, "matched_gt", -1, gt.shape[0] - 1, "ground-truth indices or -1")
    targets = np.zeros(defaults.shape, np.result_type(defaults.dtype, gt.dtype))
    positive = np.flatnonzero(matched >= 0)
    if positive.size:
        targets[positive] = BOX_CODER.encode(gt[matched[positive]], defaults[positive])
    return targets


# --------------------------------------------------------------------------- the loss
def _hard_negatives(losses, positive, neg_pos_ratio: float):
    """Which boxes are mined negatives: ``(N, P)`` bool, on the arrays' device.

    losses: ``(N, P)`` cross-entropy of each box against its label; positive: ``(N, P)`` bool.
    Per image, the ``min(floor(neg_pos_ratio * positives), negatives)`` negatives of largest
    loss; equal losses rank by lower box index. Positives rank after every negative and the
    count never exceeds the negatives, so no positive is ever picked.
    """
    xp = get_array_module(losses)
    ranked = xp.where(positive, -xp.inf, losses)
    order = xp.argsort(-ranked, axis=1, kind="stable")
    rank = xp.argsort(order, axis=1)  # each box's place in its image's order
    num_pos = positive.sum(axis=1)
    wanted = xp.floor(neg_pos_ratio * num_pos).astype(np.int64)
    num_neg = xp.minimum(wanted, positive.shape[1] - num_pos)
    return rank < num_neg[:, None]


def multibox_loss_terms(
    loc, conf, labels, loc_targets, neg_pos_ratio: float = 3
) -> tuple[Tensor, Tensor]:
    """The two halves of ``multibox_loss``: ``(loc_loss, conf_loss)``, scalar Tensors, each
    already divided by the batch's number of positives (their sum is ``multibox_loss``)."""
    loc = _tensor(loc, "loc", "(N, P, 4)")
    conf = _tensor(conf, "conf", "(N, P, num_classes + 1)")
    if conf.ndim != 3 or conf.shape[2] < 2:
        raise ValueError(
            f"conf must have shape (N, P, num_classes + 1) with num_classes >= 1, "
            f"got shape {tuple(conf.shape)}"
        )
    n, count, classes = conf.shape
    if tuple(loc.shape) != (n, count, 4):
        raise ValueError(
            f"loc must have shape ({n}, {count}, 4) to match conf {tuple(conf.shape)}, "
            f"got shape {tuple(loc.shape)}"
        )
    labels = _integers(labels, "labels", (n, count))
    _check_range(labels, "labels", 0, classes - 1, "classes (0 background)")
    targets = _host(loc_targets)
    if targets.shape != (n, count, 4):
        raise ValueError(
            f"loc_targets must have shape ({n}, {count}, 4) to match conf {tuple(conf.shape)}, "
            f"got shape {tuple(targets.shape)}"
        )
    if (
        isinstance(neg_pos_ratio, bool)
        or not isinstance(neg_pos_ratio, numbers.Real)
        or not neg_pos_ratio >= 0
    ):
        raise ValueError(f"neg_pos_ratio must be a number >= 0, got {neg_pos_ratio!r}")

    positive = labels > 0
    total = int(positive.sum())
    if total == 0:  # nothing to learn from: zeros that still reach both heads
        zero = loc.sum() * 0.0 + conf.sum() * 0.0
        return zero, zero
    xp = get_array_module(conf.data)  # labels and targets move to the outputs' device
    device_labels = xp.asarray(labels)
    losses = F.cross_entropy(
        conf.reshape(n * count, classes), device_labels.reshape(-1), reduction="none"
    )
    device_positive = device_labels > 0
    chosen = device_positive | _hard_negatives(
        losses.data.reshape(n, count), device_positive, neg_pos_ratio
    )
    conf_loss = losses[xp.flatnonzero(chosen.reshape(-1))].sum()
    rows = np.flatnonzero(positive.reshape(-1))
    box_targets = xp.asarray(targets.reshape(-1, 4)[rows].astype(loc.dtype))
    loc_loss = F.smooth_l1_loss(
        loc.reshape(n * count, 4)[xp.asarray(rows)], box_targets, reduction="sum", beta=1.0
    )
    return loc_loss / total, conf_loss / total


def multibox_loss(loc, conf, labels, loc_targets, neg_pos_ratio: float = 3) -> Tensor:
    """SSD's MultiBox loss over a batch, a scalar Tensor.

    Args:
        loc: ``(N, P, 4)`` Tensor of predicted offsets (``BOX_CODER``'s).
        conf: ``(N, P, C + 1)`` Tensor of class logits, column 0 the background.
        labels: ``(N, P)`` int in 0..C (``match``'s labels, one row per image).
        loc_targets: ``(N, P, 4)`` (``encode_targets``' rows); read only at positives.
        neg_pos_ratio: hard negatives kept per positive (3 in the paper).
    Returns:
        (smooth L1 (beta 1) of the positives' four offsets, summed, plus the softmax
        cross-entropy summed over the positives and the hard negatives) divided by the
        batch's number of positives; 0 (connected to both inputs, zero gradients) when the
        batch has no positive.

    Hard negatives, per image: the ``min(floor(neg_pos_ratio * positives), negatives)``
    negatives of largest cross-entropy, equal losses taken by lower box index; an image
    without objects contributes none. Positives are never ranked with the negatives, so
    none is counted twice.
    """
    loc_loss, conf_loss = multibox_loss_terms(loc, conf, labels, loc_targets, neg_pos_ratio)
    return loc_loss + conf_loss


# --------------------------------------------------------------------------- detections
def decode(
    loc,
    conf,
    default_boxes,
    image_size,
    score_thresh: float = 0.01,
    nms_thresh: float = 0.45,
    top_k: int = 200,
    pre_nms_top_k: int | None = 400,
) -> dict:
    """One image's detections from SSD's outputs, the released code's test-time rule.

    Args:
        loc: ``(P, 4)`` offsets; conf: ``(P, C + 1)`` logits; default_boxes: ``(P, 4)`` xyxy
            with positive sizes. Tensors or arrays (read without gradient).
        image_size: ``(height, width)`` or one number.
        score_thresh: a (box, class) pair is a candidate when its softmax score is above this.
        nms_thresh: per-class NMS threshold.
        top_k: detections kept in all, the best first (``keep_top_k`` 200 of the Caffe release).
        pre_nms_top_k: candidates per class that enter NMS, the best first (the Caffe
            release's ``nms_param.top_k`` 400); None keeps every candidate.
    Returns:
        NumPy ``boxes`` ``(K, 4)`` float32 clipped to the image, ``labels`` ``(K,)`` int64 in
        1..C, ``scores`` ``(K,)`` float32, by decreasing score, K <= ``top_k``. Boxes left
        with no width or height by the clipping (wholly outside the image) are dropped.
    Equal scores rank by lower default box, then lower class.
    """
    deltas, logits = _host(loc).astype(np.float64), _host(conf).astype(np.float64)
    defaults = _boxes(default_boxes, "default_boxes", positive=True)
    count = defaults.shape[0]
    if logits.ndim != 2 or logits.shape[0] != count or logits.shape[1] < 2:
        raise ValueError(
            f"conf must have shape ({count}, num_classes + 1) with num_classes >= 1, one row per "
            f"default box, got shape {logits.shape}"
        )
    if deltas.shape != (count, 4):
        raise ValueError(
            f"loc must have shape ({count}, 4), one row per default box, got shape {deltas.shape}"
        )
    height, width = _image_hw(image_size)
    score_thresh, nms_thresh = (
        _fraction(score_thresh, "score_thresh"),
        _fraction(nms_thresh, "nms_thresh"),
    )
    top_k = _positive_int(top_k, "top_k")
    if pre_nms_top_k is not None:
        pre_nms_top_k = _positive_int(pre_nms_top_k, "pre_nms_top_k")

    with no_grad():
        scores = (
            F.softmax(Tensor(logits), dim=1).data[:, 1:].reshape(-1)
        )  # (P C,): box-major, background dropped
    boxes = np.clip(
        BOX_CODER.decode(deltas, defaults.astype(np.float64)), 0, [width, height, width, height]
    )
    classes = logits.shape[1] - 1
    box_index, labels = np.divmod(np.arange(count * classes), classes)
    labels += 1
    inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # clipping left some area
    keep = (scores > score_thresh) & inside[box_index]
    box_index, labels, scores = box_index[keep], labels[keep], scores[keep]
    if pre_nms_top_k is not None:
        order = np.lexsort((-scores, labels))  # by class, then decreasing score; stable for equals
        first_of_class = np.searchsorted(labels[order], labels[order])
        best = order[np.arange(order.size) - first_of_class < pre_nms_top_k]
        best.sort()  # back to box-major order, so equal scores keep ranking by box
        box_index, labels, scores = box_index[best], labels[best], scores[best]
    kept = batched_nms(boxes[box_index], scores, labels, nms_thresh)[:top_k]
    return {
        "boxes": boxes[box_index[kept]].astype(np.float32),
        "labels": labels[kept].astype(np.int64),
        "scores": scores[kept].astype(np.float32),
    }
