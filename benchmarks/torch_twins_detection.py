"""PyTorch twins of minivision's SSD300 and tiny Faster R-CNN, for ``bench_models.py``.

- ``torch_ssd``: the same SSD300 network, layer for layer, with its parameters in the order of
  minivision's (so ``copy_parameters`` can give it minivision's weights); ``torch_multibox_loss``
  is ``minivision.models.multibox.multibox_loss`` written with torch ops, on the labels and box
  targets that minivision's ``match`` / ``encode_targets`` computed once on the host.
- ``torch_faster_rcnn``: torchvision's ``FasterRCNN`` assembled from the same pieces as
  minivision's tiny one (backbone, anchors, RPN head, 4x4 RoI max pooling, two fc layers,
  sampling sizes and thresholds); it draws its own anchor and RoI samples.
"""

from __future__ import annotations

import numpy as np

from minivision.backend import to_numpy
from minivision.models.faster_rcnn import ASPECT_RATIOS
from minivision.models.faster_rcnn import VARIANTS as FASTER_RCNN_VARIANTS
from minivision.models.ssd import SSD300_EXTRAS, VGG16_CONV4_3, VGG16_CONV5_3

# SSD300's default boxes per position of its six source maps (conv4_3, fc7, conv8_2 .. conv11_2).
SSD300_BOXES = (4, 6, 6, 6, 4, 4)


def torch_conv_block(tnn, cin, cout, kernel=3, padding=1, batch_norm=True):
    """Conv (no bias under batch norm), batch norm when asked, ReLU."""
    layers = [tnn.Conv2d(cin, cout, kernel, padding=padding, bias=not batch_norm)]
    layers += [tnn.BatchNorm2d(cout)] if batch_norm else []
    return tnn.Sequential(*layers, tnn.ReLU())


def copy_parameters(model, net) -> None:
    """Give the torch module ``net`` the minivision ``model``'s parameter values, in order.

    Both must register the same parameters in the same order (shapes are checked; values in
    the wrong place show up as a loss mismatch). Buffers are left alone: batch norm's running
    statistics start equal and training mode does not read them."""
    import torch

    ours, theirs = list(model.parameters()), list(net.parameters())
    if len(ours) != len(theirs):
        raise ValueError(f"the twin has {len(theirs)} parameters, minivision's model {len(ours)}")
    with torch.no_grad():
        for k, (mine, twin) in enumerate(zip(ours, theirs)):
            value = torch.from_numpy(np.ascontiguousarray(to_numpy(mine.data)))
            if tuple(value.shape) != tuple(twin.shape):
                raise ValueError(
                    f"parameter {k}: minivision's has shape {tuple(value.shape)}, "
                    f"the twin's {tuple(twin.shape)}"
                )
            twin.copy_(value)


# --------------------------------------------------------------------------- SSD300
def torch_ssd(model):
    """SSD300 in PyTorch: VGG16 to conv4_3 (pool3 rounding up), L2Norm (weight 20, norm + 1e-10),
    pool4, conv5, pool5 3x3/1, fc6 (dilation 6), fc7, the four extra stages, and 3x3 loc/conf
    heads on the six source maps. ``forward`` gives (loc (N, P, 4), conf (N, P, C + 1))."""
    import torch
    from torch import nn as tnn

    classes = model.config["num_classes"] + 1

    def vgg(spec, channels):
        layers = []
        for item in spec:
            if item in ("M", "C"):
                layers.append(tnn.MaxPool2d(2, ceil_mode=item == "C"))
            else:
                layers += [tnn.Conv2d(channels, item, 3, padding=1), tnn.ReLU()]
                channels = item
        return layers, channels

    conv4, channels = vgg(VGG16_CONV4_3, model.config["in_channels"])
    conv5, channels = vgg(VGG16_CONV5_3, channels)
    fc = [
        tnn.MaxPool2d(3, stride=1, padding=1),
        tnn.Conv2d(channels, 1024, 3, padding=6, dilation=6),
        tnn.ReLU(),
        tnn.Conv2d(1024, 1024, 1),
        tnn.ReLU(),
    ]
    stages, sources, channels = (
        [tnn.Sequential(*conv4), tnn.Sequential(*conv5, *fc)],
        [512, 1024],
        1024,
    )
    for extra in SSD300_EXTRAS:
        layers = []
        for kernel, filters, stride, padding in extra:
            layers += [
                tnn.Conv2d(channels, filters, kernel, stride=stride, padding=padding),
                tnn.ReLU(),
            ]
            channels = filters
        stages.append(tnn.Sequential(*layers))
        sources.append(channels)

    class L2Norm(tnn.Module):
        def __init__(self, channels):
            super().__init__()
            self.weight = tnn.Parameter(torch.full((channels,), 20.0))

        def forward(self, x):
            return (
                x
                / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
                * self.weight.view(1, -1, 1, 1)
            )

    class TorchSSD(tnn.Module):
        def __init__(self):
            super().__init__()
            self.stages = tnn.Sequential(*stages)
            self.l2norm = L2Norm(sources[0])
            self.loc = tnn.ModuleList(
                tnn.Conv2d(c, 4 * a, 3, padding=1) for c, a in zip(sources, SSD300_BOXES)
            )
            self.conf = tnn.ModuleList(
                tnn.Conv2d(c, classes * a, 3, padding=1) for c, a in zip(sources, SSD300_BOXES)
            )

        def forward(self, images):
            n, x, locs, confs = images.shape[0], images, [], []
            for i, (stage, loc, conf) in enumerate(zip(self.stages, self.loc, self.conf)):
                x = stage(x)
                source = self.l2norm(x) if i == 0 else x
                locs.append(loc(source).permute(0, 2, 3, 1).reshape(n, -1, 4))
                confs.append(conf(source).permute(0, 2, 3, 1).reshape(n, -1, classes))
            return torch.cat(locs, dim=1), torch.cat(confs, dim=1)

    return TorchSSD()


def torch_multibox_loss(loc, conf, labels, loc_targets, neg_pos_ratio: float = 3):
    """SSD's MultiBox loss with torch ops, as ``multibox_loss`` computes it.

    loc: (N, P, 4); conf: (N, P, C + 1) logits; labels: (N, P) int64, 0 background;
    loc_targets: (N, P, 4), read at positives. (Smooth L1 (beta 1) of the positives' offsets,
    summed, plus the cross-entropy summed over positives and each image's
    min(floor(ratio * positives), negatives) negatives of largest cross-entropy, the lower box
    first among equals) / all positives."""
    import torch
    from torch.nn import functional as tF

    n, count, classes = conf.shape
    positive = labels > 0
    num_pos = positive.sum(dim=1)
    losses = tF.cross_entropy(
        conf.reshape(-1, classes), labels.reshape(-1), reduction="none"
    ).reshape(n, count)
    ranked = losses.detach().masked_fill(
        positive, -float("inf")
    )  # positives rank after every negative
    order = ranked.argsort(dim=1, descending=True, stable=True)
    rank = order.argsort(dim=1)
    num_neg = torch.minimum((num_pos.double() * neg_pos_ratio).floor().long(), count - num_pos)
    chosen = positive | (rank < num_neg[:, None])
    box_loss = tF.smooth_l1_loss(loc[positive], loc_targets[positive], reduction="sum", beta=1.0)
    return (box_loss + losses[chosen].sum()) / num_pos.sum()


# --------------------------------------------------------------------------- tiny Faster R-CNN
def torch_faster_rcnn(model):
    """torchvision's ``FasterRCNN`` built as minivision's ``model``: the same conv-BN-ReLU
    backbone, one-level anchors (sizes and aspect ratios), RPN head (3x3 conv, 1x1 objectness
    and deltas), pre/post-NMS proposal counts, RoI max pooling (``torchvision.ops.roi_pool``
    at the backbone's scale), two fc layers, class and box outputs, sample sizes and IoU
    thresholds; images go in as they are (no resizing or normalising)."""
    from torch import nn as tnn
    from torchvision.models.detection import FasterRCNN as TorchFasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.image_list import ImageList
    from torchvision.ops import roi_pool

    spec, cfg = FASTER_RCNN_VARIANTS[model.config["variant"]], model.config
    layers, channels = [], cfg["in_channels"]
    for item in spec["layers"]:
        if item == "M":
            layers.append(tnn.MaxPool2d(2))
        else:
            layers.append(torch_conv_block(tnn, channels, item, batch_norm=spec["batch_norm"]))
            channels = item
    backbone = tnn.Sequential(*layers)
    backbone.out_channels = channels
    height, width = model.image_hw
    sizes = tuple(f * min(height, width) for f in spec["anchor_fractions"])
    pool, scale = spec["pool"], 1.0 / model.stride

    class RoIPool(tnn.Module):
        def forward(self, features, proposals, image_sizes):
            return roi_pool(features["0"], proposals, pool, scale)

    class AsGiven(tnn.Module):
        """Batches the images as they are: minivision's model neither resizes nor normalises."""

        def forward(self, images, targets=None):
            return ImageList(images, [tuple(images.shape[-2:])] * images.shape[0]), targets

        def postprocess(self, detections, image_sizes, original_sizes):
            return detections

    (pre_train, pre_test), (post_train, post_test) = spec["pre_nms"], spec["post_nms"]
    net = TorchFasterRCNN(
        backbone,
        rpn_anchor_generator=AnchorGenerator((sizes,), (ASPECT_RATIOS,)),
        rpn_pre_nms_top_n_train=pre_train,
        rpn_pre_nms_top_n_test=pre_test,
        rpn_post_nms_top_n_train=post_train,
        rpn_post_nms_top_n_test=post_test,
        box_head=TwoMLPHead(channels * pool * pool, spec["hidden"]),
        box_predictor=FastRCNNPredictor(spec["hidden"], cfg["num_classes"] + 1),
        box_batch_size_per_image=spec["rois_per_image"],
    )
    # FasterRCNN's constructor accepts only RoIAlign poolers and its own resizing transform
    net.transform, net.roi_heads.box_roi_pool = AsGiven(), RoIPool()
    return net


def faster_rcnn_loss(net, images, targets):
    """The sum of torchvision's four training losses (RPN objectness and boxes, head classes and boxes)."""
    import torch

    torch_targets = [
        {
            "boxes": torch.from_numpy(np.asarray(t["boxes"], np.float32)).to(images.device),
            "labels": torch.from_numpy(np.asarray(t["labels"], np.int64)).to(images.device),
        }
        for t in targets
    ]
    return sum(net(images, torch_targets).values())
