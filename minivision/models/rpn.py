"""Region Proposal Network (Faster R-CNN, Ren et al. 2015), laid out as torchvision's ``rpn``.

    features (N, C, H, W) -> 3x3 conv (same padding) + ReLU -> 1x1 conv: objectness (N, A, H, W)
                                                             -> 1x1 conv: deltas     (N, 4A, H, W)

At every feature-map position, A anchors (``minivision.ops.AnchorGenerator``); each gets one
objectness logit (the sigmoid form, as torchvision uses, rather than the paper's 2-way softmax)
and four box offsets (``BoxCoder`` with weights (1, 1, 1, 1)). Anchors, logits and deltas are
flattened in one order: position (row-major), then anchor.

Training (the paper's section 3.1.2): an anchor is positive at IoU >= 0.7 with some ground
truth, or when it is a ground truth's best anchor; negative when its best IoU is < 0.3; ignored
otherwise. Each image contributes at most 256 sampled anchors, at most half positive. The loss
is the binary cross-entropy of the sampled anchors' logits plus the smooth L1 loss of the
positive anchors' deltas, the latter summed and divided by the number of sampled anchors.
"""

from __future__ import annotations

import numbers

import numpy as np

import minivision as mv
from minivision import functional as F
from minivision import nn
from minivision.backend import get_array_module, random_generator, to_numpy
from minivision.models.roi_heads import _fraction
from minivision.nn import init
from minivision.ops import AnchorGenerator, BoxCoder, box_iou, nms
from minivision.ops._arrays import check_boxes, unwrap

# torchvision's smooth L1 transition point for the RPN's box regression.
BOX_LOSS_BETA = 1.0 / 9


def _check_count(value, name: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


def _check_image_size(image_size) -> tuple:
    """``image_size`` as ``(height, width)`` ints > 0."""
    items = tuple(image_size) if isinstance(image_size, (tuple, list)) else ()
    if len(items) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in items
    ):
        raise ValueError(f"image_size must be (height, width), two ints > 0, got {image_size!r}")
    return int(items[0]), int(items[1])


# --------------------------------------------------------------------------- labelling and sampling
def label_anchors(
    anchors, gt_boxes, fg_iou: float = 0.7, bg_iou: float = 0.3, allow_low_quality: bool = True
):
    """Label each anchor against one image's ground truth (the paper's rule, torchvision's ``Matcher``).

    Args:
        anchors: ``(A, 4)`` xyxy boxes.
        gt_boxes: ``(G, 4)`` xyxy ground-truth boxes; ``G`` may be 0.
        fg_iou: best IoU at or above this: positive.
        bg_iou: best IoU below this: negative; in ``[bg_iou, fg_iou)``: ignored.
        allow_low_quality: also make positive, for each ground truth, every anchor whose IoU
            with it equals its largest IoU over all anchors (ties included), when that is > 0,
            so a ground truth no anchor covers at ``fg_iou`` still gets one.
    Returns:
        ``labels`` ``(A,)`` int8 (1 positive, 0 negative, -1 ignored) and ``matched`` ``(A,)``
        int64, the ground truth each anchor overlaps most (the regression target of a positive;
        first index on ties); all anchors negative and ``matched`` all -1 when ``G`` is 0.
    """
    raw_anchors = check_boxes(unwrap(anchors)[0], "anchors")
    raw_gt = check_boxes(unwrap(gt_boxes)[0], "gt_boxes")
    xp = get_array_module(raw_anchors, raw_gt)
    fg_iou, bg_iou = _fraction(fg_iou, "fg_iou"), _fraction(bg_iou, "bg_iou")
    if bg_iou > fg_iou:
        raise ValueError(f"bg_iou must not exceed fg_iou, got bg_iou={bg_iou} and fg_iou={fg_iou}")
    count = raw_anchors.shape[0]
    if raw_gt.shape[0] == 0:
        return xp.zeros(count, xp.int8), xp.full(count, -1, xp.int64)
    iou = box_iou(raw_gt, raw_anchors)  # (G, A)
    best = iou.max(axis=0)
    matched = iou.argmax(axis=0).astype(xp.int64)
    labels = xp.full(count, -1, xp.int8)
    labels[best < bg_iou] = 0
    labels[best >= fg_iou] = 1
    if allow_low_quality:
        gt_best = iou.max(axis=1, keepdims=True)  # (G, 1)
        labels[((iou == gt_best) & (gt_best > 0)).any(axis=0)] = 1
    return labels, matched


def sample_anchors(labels, batch_size_per_image: int = 256, positive_fraction: float = 0.5):
    """Draw a balanced minibatch of anchors without replacement (torchvision's
    ``BalancedPositiveNegativeSampler``), from minivision's seeded generator.

    Args:
        labels: ``(A,)`` integer labels, 1 positive, 0 negative, -1 ignored (``label_anchors``).
        batch_size_per_image: anchors drawn in all.
        positive_fraction: the largest share of positives; negatives fill the rest.
    Returns:
        ``positive`` and ``negative``: sorted int64 indices into ``labels``, on its device;
        ``min(P, floor(batch * fraction))`` positives and ``min(N, batch - positives drawn)``
        negatives for ``P`` positive and ``N`` negative anchors.
    """
    raw, _ = unwrap(labels)
    if raw.ndim != 1 or raw.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be a 1-D integer array (1, 0 or -1 per anchor), "
            f"got shape {tuple(raw.shape)} and dtype {raw.dtype}"
        )
    host = to_numpy(raw)
    unknown = ~np.isin(host, (-1, 0, 1))
    if unknown.any():
        raise ValueError(
            f"labels must hold only 1, 0 or -1, got {int(host[unknown][0])} at index "
            f"{int(np.argmax(unknown))}"
        )
    batch = _check_count(batch_size_per_image, "batch_size_per_image")
    fraction = _fraction(positive_fraction, "positive_fraction")
    rng = random_generator()
    positive = np.flatnonzero(host == 1)
    positive = rng.choice(positive, size=min(positive.size, int(batch * fraction)), replace=False)
    negative = np.flatnonzero(host == 0)
    negative = rng.choice(negative, size=min(negative.size, batch - positive.size), replace=False)
    xp = get_array_module(raw)
    return xp.asarray(np.sort(positive).astype(np.int64)), xp.asarray(
        np.sort(negative).astype(np.int64)
    )


# --------------------------------------------------------------------------- proposals
def propose(
    anchors,
    objectness,
    deltas,
    image_size,
    pre_nms_top_n: int,
    post_nms_top_n: int,
    nms_thresh: float = 0.7,
    min_size: float = 1e-3,
):
    """One image's proposals from its anchors and the RPN's outputs, no gradient.

    The paper's proposal layer, in its order: decode the deltas, clip the boxes to the image,
    drop boxes narrower or shorter than ``min_size``, keep the ``pre_nms_top_n`` best scores,
    NMS at ``nms_thresh``, keep the ``post_nms_top_n`` best. (torchvision takes the top
    ``pre_nms_top_n`` before dropping small boxes.)

    Args:
        anchors: ``(A, 4)`` xyxy.
        objectness: ``(A,)`` logits.
        deltas: ``(A, 4)`` offsets from the anchors (``BoxCoder`` weights (1, 1, 1, 1)).
        image_size: the image's ``(height, width)``.
    Returns:
        ``boxes`` ``(K, 4)`` and ``scores`` ``(K,)`` (sigmoid of the logits), by decreasing score,
        as NumPy or CuPy arrays on the inputs' device.
    """
    raw_anchors = check_boxes(unwrap(anchors)[0], "anchors")
    logits, raw_deltas = unwrap(objectness)[0], unwrap(deltas)[0]
    if logits.ndim != 1 or logits.shape[0] != raw_anchors.shape[0]:
        raise ValueError(
            f"objectness must have shape ({raw_anchors.shape[0]},), one logit per anchor, "
            f"got shape {tuple(logits.shape)}"
        )
    height, width = _check_image_size(image_size)
    pre_nms_top_n = _check_count(pre_nms_top_n, "pre_nms_top_n")
    post_nms_top_n = _check_count(post_nms_top_n, "post_nms_top_n")
    if not isinstance(min_size, numbers.Real) or isinstance(min_size, bool) or not min_size >= 0:
        raise ValueError(f"min_size must be a number >= 0, got {min_size!r}")
    xp = get_array_module(raw_anchors, logits, raw_deltas)
    boxes = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(raw_deltas, raw_anchors)
    boxes = xp.stack(
        [
            boxes[:, 0].clip(0, width),
            boxes[:, 1].clip(0, height),
            boxes[:, 2].clip(0, width),
            boxes[:, 3].clip(0, height),
        ],
        axis=1,
    )
    large = (boxes[:, 2] - boxes[:, 0] >= min_size) & (boxes[:, 3] - boxes[:, 1] >= min_size)
    boxes, logits = boxes[large], logits[large]
    best = xp.argsort(-logits, kind="stable")[:pre_nms_top_n]
    boxes, logits = boxes[best], logits[best]
    keep = nms(boxes, logits, nms_thresh)[:post_nms_top_n]
    return boxes[keep], 1.0 / (1.0 + xp.exp(-logits[keep]))


# --------------------------------------------------------------------------- the loss
def rpn_loss(
    objectness,
    deltas,
    anchors,
    gt_boxes,
    fg_iou: float = 0.7,
    bg_iou: float = 0.3,
    batch_size_per_image: int = 256,
    positive_fraction: float = 0.5,
) -> dict:
    """The paper's RPN loss over a batch, torchvision's normalisation.

    Args:
        objectness: ``(N, A)`` Tensor of logits.
        deltas: ``(N, A, 4)`` Tensor of offsets.
        anchors: ``(A, 4)`` xyxy, shared by the N images.
        gt_boxes: N ``(G_k, 4)`` xyxy ground-truth arrays.
    Returns:
        ``{"loss_objectness": ..., "loss_rpn_box_reg": ...}``, scalar Tensors: the mean binary
        cross-entropy over the sampled anchors of all images, and the smooth L1 loss (beta 1/9)
        of the sampled positives' deltas, summed and divided by the number of sampled anchors.
    """
    n, count = objectness.shape[0], objectness.shape[1]
    if tuple(deltas.shape) != (n, count, 4):
        raise ValueError(
            f"deltas must have shape ({n}, {count}, 4) to match objectness {tuple(objectness.shape)}, "
            f"got {tuple(deltas.shape)}"
        )
    if not isinstance(gt_boxes, (tuple, list)) or len(gt_boxes) != n:
        seen = len(gt_boxes) if isinstance(gt_boxes, (tuple, list)) else type(gt_boxes).__name__
        raise ValueError(f"gt_boxes must be a list of {n} (G, 4) arrays, one per image, got {seen}")
    raw_anchors = check_boxes(unwrap(anchors)[0], "anchors")
    if raw_anchors.shape[0] != count:
        raise ValueError(
            f"anchors must have shape ({count}, 4), one per objectness logit, "
            f"got {tuple(raw_anchors.shape)}"
        )
    xp = get_array_module(raw_anchors)
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    positives, negatives, targets = [], [], []
    for k, boxes in enumerate(gt_boxes):
        gt = check_boxes(xp.asarray(unwrap(boxes)[0]), f"gt_boxes[{k}]")
        labels, matched = label_anchors(raw_anchors, gt, fg_iou, bg_iou)
        positive, negative = sample_anchors(labels, batch_size_per_image, positive_fraction)
        positives.append(positive + k * count)
        negatives.append(negative + k * count)
        targets.append(coder.encode(gt[matched[positive]], raw_anchors[positive]))
    positive, negative = xp.concatenate(positives), xp.concatenate(negatives)
    sampled = xp.concatenate([positive, negative])
    if sampled.size == 0:  # nothing to learn from: zero losses that still reach the heads
        zero = objectness.sum() * 0.0 + deltas.sum() * 0.0
        return {"loss_objectness": zero, "loss_rpn_box_reg": zero}
    target = xp.concatenate([xp.ones(positive.size), xp.zeros(negative.size)])
    loss_objectness = F.binary_cross_entropy_with_logits(
        objectness.reshape(-1)[sampled],
        mv.tensor(target, dtype=objectness.dtype, device=objectness.device),
    )
    box_target = mv.tensor(xp.concatenate(targets), dtype=deltas.dtype, device=deltas.device)
    box_loss = F.smooth_l1_loss(
        deltas.reshape(-1, 4)[positive], box_target, reduction="sum", beta=BOX_LOSS_BETA
    )
    return {"loss_objectness": loss_objectness, "loss_rpn_box_reg": box_loss / int(sampled.size)}


# --------------------------------------------------------------------------- the module
class RegionProposalNetwork(nn.Module):
    """The RPN on one feature map: heads, anchor labelling, loss and proposals.

    Args:
        in_channels: channels of the feature map (512 for VGG16's conv5_3).
        anchor_generator: a one-level ``AnchorGenerator`` (default: sizes 128, 256, 512 and
            aspect ratios 0.5, 1, 2, the paper's nine anchors).
        fg_iou, bg_iou, batch_size_per_image, positive_fraction: the labelling and sampling rule.
        pre_nms_top_n_train, post_nms_top_n_train, pre_nms_top_n_test, post_nms_top_n_test:
            proposals kept before and after NMS, in training (``self.training``) and evaluation.
        nms_thresh, min_size: as in ``propose``.
    """

    def __init__(
        self,
        in_channels: int,
        anchor_generator: AnchorGenerator | None = None,
        fg_iou: float = 0.7,
        bg_iou: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_top_n_train: int = 2000,
        post_nms_top_n_train: int = 2000,
        pre_nms_top_n_test: int = 1000,
        post_nms_top_n_test: int = 1000,
        nms_thresh: float = 0.7,
        min_size: float = 1e-3,
    ):
        super().__init__()
        self.anchor_generator = (
            anchor_generator if anchor_generator is not None else AnchorGenerator()
        )
        per_location = self.anchor_generator.num_anchors_per_location()
        if len(per_location) != 1:
            raise ValueError(
                f"anchor_generator must have one feature-map level, got {len(per_location)}"
            )
        anchors = per_location[0]
        self.in_channels = _check_count(in_channels, "in_channels")
        self.settings = {
            "fg_iou": fg_iou,
            "bg_iou": bg_iou,
            "batch_size_per_image": batch_size_per_image,
            "positive_fraction": positive_fraction,
        }
        self.top_n = {
            True: (pre_nms_top_n_train, post_nms_top_n_train),
            False: (pre_nms_top_n_test, post_nms_top_n_test),
        }
        self.nms_thresh, self.min_size = nms_thresh, min_size
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, 4 * anchors, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):  # the paper's N(0, 0.01^2) init
            init.normal_(layer.weight, std=0.01)
            init.zeros_(layer.bias)

    def head(self, features) -> tuple:
        """Logits ``(N, H*W*A)`` and deltas ``(N, H*W*A, 4)``, ordered as the anchors."""
        n = features.shape[0]
        hidden = F.relu(self.conv(features))
        objectness = self.cls_logits(hidden).permute(0, 2, 3, 1).reshape(n, -1)
        deltas = self.bbox_pred(hidden).permute(0, 2, 3, 1).reshape(n, -1, 4)  # channel 4a + c
        return objectness, deltas

    def forward(self, features, image_size, targets=None) -> tuple:
        """Proposals for each image, and the losses when ``targets`` are given.

        Args:
            features: ``(N, in_channels, H, W)`` Tensor.
            image_size: the images' ``(height, width)`` in pixels.
            targets: optional N dicts with ``boxes`` ``(G, 4)`` xyxy pixels (``minivision.data`` format).
        Returns:
            ``proposals``: N ``(K, 4)`` xyxy arrays (no gradient), at most the mode's post-NMS
            count; ``losses``: ``rpn_loss``'s dict, empty without targets.
        """
        if len(features.shape) != 4 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"features must have shape (N, {self.in_channels}, H, W), got {tuple(features.shape)}"
            )
        image_size = _check_image_size(image_size)
        objectness, deltas = self.head(features)
        anchors = self.anchor_generator(image_size, [features]).data
        pre_n, post_n = self.top_n[bool(self.training)]
        proposals = [
            propose(
                anchors,
                objectness.data[k],
                deltas.data[k],
                image_size,
                pre_n,
                post_n,
                self.nms_thresh,
                self.min_size,
            )[0]
            for k in range(features.shape[0])
        ]
        if targets is None:
            return proposals, {}
        if not isinstance(targets, (tuple, list)) or len(targets) != features.shape[0]:
            seen = len(targets) if isinstance(targets, (tuple, list)) else type(targets).__name__
            raise ValueError(
                f"targets must be a list of {features.shape[0]} dicts with 'boxes', one per image, "
                f"got {seen}"
            )
        gt_boxes = [unwrap(target["boxes"])[0] for target in targets]
        return proposals, rpn_loss(objectness, deltas, anchors, gt_boxes, **self.settings)
