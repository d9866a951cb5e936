"""Localization as regression (the lecture's first model): one conv backbone, two heads.

    image (N, 3, S, S) -> [conv3x3-BN-ReLU, maxpool 2x2] x len(widths) -> features
        -> global max pool -> class head: (N, num_classes) scores   (cross-entropy, "what")
        -> flatten -> fc-ReLU -> box head: (N, 4) box               (smooth L1, "where")

The class head sees features max-pooled over all positions: what the object is does not
depend on where it is, and pooling says so (with a flattened input the class head has to
learn every shape at every position and, on 1,000 images, stays at chance). The box head
needs the positions, so it reads the flattened map.

The box head regresses (cx, cy, w, h) as fractions of the image size, so the target does
not depend on the image's pixel size. It is a plain linear output: behind a sigmoid, a
large early step saturates w or h at 0 and training stalls there for epochs. One object per image:
with several, the largest is the one to localize.
"""

from __future__ import annotations

import numpy as np

import minivision as mv
from minivision import functional as F
from minivision import nn


def largest_object(target: dict) -> tuple[np.ndarray, int]:
    """The (4,) xyxy box and label of the largest box in a detection target dict."""
    boxes = np.asarray(target["boxes"], dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        raise ValueError("localization needs at least one object per image, got an image with none")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    k = int(np.argmax(areas))
    return boxes[k], int(np.asarray(target["labels"])[k])


class Localizer(nn.Module):
    """Classify the single object in an image and regress its box.

    Labels follow the detection convention 1..num_classes (0 is background and never
    predicted here); ``forward`` returns (scores (N, num_classes), boxes (N, 4) as
    normalized cxcywh).
    """

    task = "detection"

    def __init__(
        self,
        num_classes: int,
        image_size: int = 64,
        in_channels: int = 3,
        widths=(16, 32, 64, 128),
        hidden: int = 256,
        box_weight: float = 5.0,
    ):
        super().__init__()
        if image_size % (2 ** len(widths)):
            raise ValueError(
                f"image_size must be divisible by {2 ** len(widths)} for {len(widths)} pooling stages, got {image_size}"
            )
        self.config = {
            "num_classes": num_classes,
            "image_size": image_size,
            "in_channels": in_channels,
            "widths": list(widths),
            "hidden": hidden,
            "box_weight": box_weight,
        }
        layers, channels = [], in_channels
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, 3, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = width
        side = image_size // 2 ** len(widths)
        self.backbone = nn.Sequential(*layers)
        self.neck = nn.Sequential(
            nn.Flatten(), nn.Linear(channels * side * side, hidden), nn.ReLU()
        )
        self.classifier = nn.Linear(channels, num_classes)
        self.box_head = nn.Linear(hidden, 4)

    @classmethod
    def tiny(cls, num_classes: int, image_size: int = 64) -> "Localizer":
        """The configuration trained on synthetic data by ``minivision train``."""
        return cls(num_classes, image_size=image_size)

    def forward(self, images):
        features = self.backbone(images)
        scores = self.classifier(features.max(dim=(2, 3)))
        return scores, self.box_head(self.neck(features))

    def loss(self, images, targets) -> mv.Tensor:
        """Cross-entropy on the class plus ``box_weight`` x smooth L1 on the normalized box."""
        scores, boxes = self(images)
        height, width = images.shape[-2:]
        labels, goals = [], []
        for target in targets:
            (x1, y1, x2, y2), label = largest_object(target)
            labels.append(label - 1)
            goals.append(
                [
                    (x1 + x2) / 2 / width,
                    (y1 + y2) / 2 / height,
                    (x2 - x1) / width,
                    (y2 - y1) / height,
                ]
            )
        goals = mv.tensor(np.asarray(goals, dtype=boxes.dtype), device=boxes.device)
        labels = mv.tensor(np.asarray(labels, dtype=np.int64), device=scores.device)
        return F.cross_entropy(scores, labels) + self.config["box_weight"] * F.smooth_l1_loss(
            boxes, goals, beta=0.05
        )

    def predict(self, images) -> list[dict]:
        """One detection per image: {"boxes": (1, 4) xyxy pixels, "labels": (1,), "scores": (1,)}."""
        with mv.no_grad():
            scores, boxes = self(images)
        probs = F.softmax(scores, dim=1).numpy()
        cx, cy, w, h = np.clip(boxes.numpy(), 0.0, 1.0).T
        height, width = images.shape[-2:]
        xyxy = np.stack(
            [
                (cx - w / 2) * width,
                (cy - h / 2) * height,
                (cx + w / 2) * width,
                (cy + h / 2) * height,
            ],
            axis=1,
        )
        return [
            {
                "boxes": xyxy[i : i + 1].astype(np.float32),
                "labels": np.array([probs[i].argmax() + 1]),
                "scores": np.array([probs[i].max()], dtype=np.float32),
            }
            for i in range(len(xyxy))
        ]
