"""What the segmentation models (FCN, SegNet, U-Net) share: the conv-BN-ReLU block and the
segmentation side of the model protocol (input checks, per-pixel loss, label prediction).
"""

from __future__ import annotations

import numpy as np

import minivision as mv
from minivision import functional as F
from minivision import nn
from minivision.backend import to_numpy

IGNORE_INDEX = 255  # the void label of VOC-style targets: no loss, no score


def conv_block(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    padding=1,
    batch_norm: bool = True,
    relu: bool = True,
) -> nn.Sequential:
    """conv (kernel_size, padding) [-> BatchNorm] [-> ReLU]: (N, in, H, W) -> (N, out, H', W').
    With batch norm the conv has no bias: the norm's shift replaces it."""
    layers = [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=not batch_norm)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SegmentationModel(nn.Module):
    """Base of the segmentation models: subclasses set ``self.config`` (with ``num_classes``
    counting the background and ``in_channels``) and implement ``forward`` (N, C_in, H, W)
    -> scores (N, num_classes, H', W') and ``check_size(height, width)``.

    ``scores(images)`` gives scores aligned with the input, (N, num_classes, H, W); a model
    whose forward pass shrinks the image (valid U-Net) overrides it.
    """

    task = "segmentation"

    def check_images(self, images) -> None:
        """ValueError unless images is (N, in_channels, H, W) with a size the net accepts."""
        channels = self.config["in_channels"]
        if images.ndim != 4 or images.shape[1] != channels:
            raise ValueError(
                f"{type(self).__name__} expects images of shape (N, {channels}, H, W), "
                f"got {tuple(images.shape)}"
            )
        self.check_size(*images.shape[2:])

    def check_size(self, height: int, width: int) -> None:
        """ValueError naming the smallest valid size when the net cannot take height x width."""

    def scores(self, images) -> mv.Tensor:
        """Per-pixel class scores (N, num_classes, H, W) for images (N, in_channels, H, W)."""
        return self(images)

    def loss(self, images, targets) -> mv.Tensor:
        """Mean per-pixel cross-entropy against the targets' ``semantic`` (H, W) labels, void
        pixels (255) left out."""
        scores = self.scores(images)
        labels = np.stack([np.asarray(t["semantic"], dtype=np.int64) for t in targets])
        if labels.shape != (scores.shape[0],) + tuple(scores.shape[2:]):
            raise ValueError(
                f"{type(self).__name__}.loss: semantic targets of shape {labels.shape} do not match "
                f"images of shape {tuple(images.shape)}"
            )
        return F.cross_entropy(
            scores, mv.tensor(labels, device=scores.device), ignore_index=IGNORE_INDEX
        )

    def predict(self, images) -> np.ndarray:
        """(N, H, W) int64 labels, 0 = background, for images (N, in_channels, H, W)."""
        with mv.no_grad():
            scores = self.scores(images)
        return to_numpy(scores.data.argmax(axis=1)).astype(np.int64)
