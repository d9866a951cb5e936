"""Run a model over a loader and score it with the metric of its task."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from minivision.metrics import SegmentationMetric, evaluate_detections, localization_accuracy
from minivision.tensor import no_grad


def evaluate_model(model, loader, progress: bool = False) -> dict:
    """Metrics of ``model`` on every batch of ``loader``, in eval mode, without gradients.

    detection: ``map50`` (VOC all-point AP at IoU 0.5) and ``loc_acc`` (class right and
    IoU > 0.5, the lecture's localization accuracy); segmentation: ``miou``, ``pixel_acc``.
    """
    model.eval()
    if model.task == "segmentation":
        metric = SegmentationMetric(model.config["num_classes"])
        with no_grad():
            for images, targets in tqdm(
                loader, desc="evaluating", disable=not progress, leave=False
            ):
                metric.update(model.predict(images), np.stack([t["semantic"] for t in targets]))
        scores = metric.compute()
        return {"miou": scores.mean_iou, "pixel_acc": scores.pixel_accuracy}
    predictions, truths = [], []
    with no_grad():
        for images, targets in tqdm(loader, desc="evaluating", disable=not progress, leave=False):
            predictions += model.predict(images)
            truths += targets
    return {
        "map50": evaluate_detections(predictions, truths, 0.5, method="voc").map,
        "loc_acc": localization_accuracy(predictions, truths),
    }
