"""Sliding windows, naive and convolutional (the lecture's step from classifier to detector).

    patch (N, 3, 18, 18) -> conv3x3-ReLU -> pool 2 -> conv3x3-ReLU -> pool 2 -> (N, 32, 3, 3)
        -> flatten -> fc hidden -> ReLU -> fc num_classes                     (PatchClassifier)

Naive: crop every window of the image and classify each crop, so overlapping windows
recompute the same convolutions. Convolutional: rewrite the first fully connected layer as
a convolution whose kernel is the whole 3x3 feature map and the later ones as 1x1
convolutions (the same weights, reshaped), then run the network once over the whole
image: each output position is one window, at a stride of 4 pixels (the two pools).

The convolutions are unpadded on purpose: a padded convolution sees zeros at a crop's
border but real pixels inside the full image, and the two answers would differ.
"""

from __future__ import annotations

import minivision as mv
from minivision import nn


class PatchClassifier(nn.Module):
    """Scores (N, num_classes) for (N, in_channels, window, window) patches: conv layers, then fc layers."""

    def __init__(
        self,
        num_classes: int = 3,
        in_channels: int = 3,
        window: int = 18,
        widths=(16, 32),
        hidden: int = 64,
    ):
        super().__init__()
        layers, channels, side = [], in_channels, window
        for width in widths:
            if (side - 2) % 2 or side - 2 < 2:
                raise ValueError(
                    f"window={window}: each conv3x3 + pool 2 stage needs an even size >= 2 after the "
                    f"conv, got {side - 2} at width {width}"
                )
            layers += [nn.Conv2d(channels, width, 3), nn.ReLU(), nn.MaxPool2d(2)]
            channels, side = width, (side - 2) // 2
        self.window, self.stride = window, 2 ** len(widths)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * side * side, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, patches):
        return self.classifier(self.features(patches))


def windows(image, window: int, stride: int):
    """Every window x window crop of image (C, H, W), row by row: ((K, C, window, window), (rows, cols))."""
    data = image.data if isinstance(image, mv.Tensor) else image
    xp = mv.backend.get_array_module(data)
    data = xp.asarray(data)  # a list or NumPy array becomes NumPy; a CuPy array stays on the GPU
    if data.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {data.shape}")
    height, width = data.shape[1:]
    if min(height, width) < window:
        raise ValueError(f"image {height}x{width} is smaller than the {window}x{window} window")
    rows, cols = (height - window) // stride + 1, (width - window) // stride + 1
    crops = [
        data[:, r * stride : r * stride + window, c * stride : c * stride + window]
        for r in range(rows)
        for c in range(cols)
    ]
    return xp.stack(crops), (rows, cols)


def classify_windows_naive(model: PatchClassifier, image, window: int, stride: int) -> mv.Tensor:
    """Crop every window of image (C, H, W) and classify the crops: scores (num_classes, rows, cols)."""
    crops, (rows, cols) = windows(image, window, stride)
    scores = model(
        mv.tensor(crops, device=model.features[0].weight.device)
    )  # (rows * cols, num_classes)
    return scores.permute(1, 0).reshape(scores.shape[1], rows, cols)


def to_fully_convolutional(model: PatchClassifier) -> nn.Sequential:
    """The same network with its fully connected layers as convolutions (weights copied).

    The first fc layer reads the flattened (C, h, w) feature map, so its weight
    (hidden, C * h * w) is a (hidden, C, h, w) convolution kernel; each later fc layer is a
    1x1 convolution. The result maps (N, C, H, W) to scores (N, num_classes, rows, cols).
    """
    first = model.features[0]
    features_out = model.features(
        mv.zeros(1, first.in_channels, model.window, model.window, device=first.weight.device)
    ).shape[1:]
    layers = list(model.features)
    for layer in model.classifier:
        if isinstance(layer, nn.Flatten):
            continue
        if not isinstance(layer, nn.Linear):
            layers.append(layer)
            continue
        first = len(layers) == len(model.features)
        kernel = features_out[1:] if first else (1, 1)
        conv = nn.Conv2d(layer.in_features // (kernel[0] * kernel[1]), layer.out_features, kernel)
        conv.weight.data = layer.weight.data.reshape(conv.weight.shape).copy()
        conv.bias.data = layer.bias.data.copy()
        layers.append(conv)
    return nn.Sequential(*layers)
