"""The detectors side by side: each tiny configuration trained with its recipe on the same Shapes data.

Every model sees the same data: Shapes at 96x96 with 1-3 objects of 8-48 pixels (SSD's recipe;
training split seed 0, the first ``train_images`` of it; validation split seed 1). Each is built
by ``cls.tiny(3, 96)`` and trained as ``minivision train`` trains it (``fit``, Adam, cosine
decay) with its recipe's epochs, learning rate, batch size and number of training images, then
scored on the validation split:

- mAP@0.5 (VOC, all-point) and COCO mAP@[.5:.95] (``minivision.metrics.evaluate_detections``);
- COCO mAP on small and on large objects (``coco_map_in_range``): small = sqrt(box area) at
  most 16 px, large = at least 32 px, a sixth and a third of the image side. COCO's limits
  (32 and 96 px) are meant for images of about 640 px: taken as they are, nearly every
  object here would be small; scaled to 96 px, nearly every one would be large;
- training time (wall time of ``fit``), inference images per second (the validation split
  through ``predict`` in batches of 32, after one untimed batch) and parameters.

The localizer and OverFeat predict one box per image (trained on each image's largest
object): they run on the same multi-object images and their mAP counts the objects they cannot
see as missed. Results go to benchmarks/results/detectors.json (rows and the Markdown table)
and, with matplotlib, a bar chart detectors.png beside it.

    python benchmarks/compare_detectors.py [--models yolo ssd] [--epochs 1] [--train-images 256]
                                           [--val-images 256] [--device cuda]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import time

import numpy as np
from timing import write_results
from tqdm.auto import tqdm

import minivision as mv
from minivision import optim
from minivision.metrics import evaluate_detections
from minivision.metrics._inputs import read_images
from minivision.metrics.detection import (
    COCO_IOU_THRESHOLDS,
    COCO_MAX_DETECTIONS,
    _average_precision,
)
from minivision.metrics.matching import match_coco
from minivision.models import RECIPES, model_class
from minivision.ops import box_iou
from minivision.train import fit
from minivision.workflow import VAL_IMAGES, loader, make_dataset

DETECTORS = ("localizer", "overfeat", "yolo", "faster_rcnn", "ssd")
ONE_BOX = ("localizer", "overfeat")  # predict a single box per image
IMAGE_SIZE = 96
OBJECT_SIZES = RECIPES["ssd"].object_sizes  # (1/12, 1/2) of the side: 8-48 px at 96
MAX_OBJECTS = 3
# sqrt(box area) in pixels, limits included as in pycocotools' area ranges
SIZE_RANGES = {"small": (0.0, 16.0), "large": (32.0, math.inf)}
PREDICT_BATCH = 32
COLUMNS = (
    "model",
    "boxes_per_image",
    "epochs",
    "train_images",
    "map50",
    "coco_map",
    "map_small",
    "map_large",
    "train_minutes",
    "images_per_s",
    "parameters",
)
HEADERS = (
    "model",
    "boxes / image",
    "epochs",
    "train images",
    "mAP@0.5",
    "COCO mAP",
    "mAP small",
    "mAP large",
    "training min",
    "images/s",
    "parameters",
)


def _outside(boxes: np.ndarray, low: float, high: float) -> np.ndarray:
    """(K,) bool: boxes (K, 4) whose sqrt(area) lies outside [low, high]."""
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    return (side < low) | (side > high)


def coco_map_in_range(predictions, targets, low: float, high: float) -> float:
    """COCO mAP@[.5:.95] on the objects whose sqrt(box area) lies in [low, high] pixels, as
    pycocotools scores an area range: other objects are ignored (like "difficult" ones: a
    detection matched to one is ignored), an unmatched detection outside the range is
    ignored, and the mean runs over classes with objects in the range (NaN without any).

    predictions, targets: one dict per image, as ``evaluate_detections`` takes them."""
    if not 0 <= low <= high:
        raise ValueError(
            f"coco_map_in_range: need 0 <= low <= high, got low={low!r}, high={high!r}"
        )
    images = read_images(predictions, targets)
    aps = []
    for label in sorted({int(x) for _, gts in images for x in gts.labels}):
        scores, true_positive, ignored, num_positives = [], [], [], 0
        for dets, gts in images:
            gt_boxes = gts.boxes[gts.labels == label]
            gt_ignored = gts.difficult[gts.labels == label] | _outside(gt_boxes, low, high)
            num_positives += int((~gt_ignored).sum())
            mine = dets.labels == label
            order = np.argsort(-dets.scores[mine], kind="stable")[:COCO_MAX_DETECTIONS]
            det_boxes = dets.boxes[mine][order]
            tp, ign = match_coco(box_iou(det_boxes, gt_boxes), gt_ignored, COCO_IOU_THRESHOLDS)
            scores.append(dets.scores[mine][order])
            true_positive.append(tp)
            ignored.append(ign | (~tp & _outside(det_boxes, low, high)))
        if num_positives:
            aps.append(
                _average_precision(
                    np.concatenate(scores),
                    np.concatenate(true_positive, -1),
                    np.concatenate(ignored, -1),
                    num_positives,
                    "coco",
                )
            )
    return float(np.mean(aps)) if aps else math.nan


def detection_scores(predictions, targets) -> dict:
    """mAP@0.5 (VOC), COCO mAP and COCO mAP on small and large objects."""
    scores = {
        "map50": evaluate_detections(predictions, targets, 0.5, method="voc").map,
        "coco_map": evaluate_detections(predictions, targets, method="coco").map,
    }
    for size, (low, high) in SIZE_RANGES.items():
        scores[f"map_{size}"] = coco_map_in_range(predictions, targets, low, high)
    return scores


def object_counts(targets) -> dict:
    """How many objects of ``targets`` (one dict per image) fall in each of SIZE_RANGES, and in all."""
    boxes = np.concatenate(
        [np.asarray(target["boxes"], np.float64).reshape(-1, 4) for target in targets]
    )
    counts = {
        size: int((~_outside(boxes, low, high)).sum()) for size, (low, high) in SIZE_RANGES.items()
    }
    return {**counts, "all": len(boxes)}


def training_options(name: str, epochs=None, train_images=None) -> dict:
    """The recipe's epochs, lr, batch size and training images, ``epochs``/``train_images`` replacing theirs."""
    recipe = RECIPES[name]
    return {
        "epochs": epochs or recipe.epochs,
        "lr": recipe.lr,
        "batch_size": recipe.batch_size,
        "train_images": train_images or recipe.train_images,
    }


def train(name: str, options: dict, device: str, progress: bool):
    """(model, seconds): the tiny ``name`` trained on the shared data as ``minivision train``
    trains it, and the wall time of ``fit``."""
    train_set = make_dataset(
        "shapes",
        "train",
        IMAGE_SIZE,
        max_objects=MAX_OBJECTS,
        num_images=options["train_images"],
        object_sizes=OBJECT_SIZES,
    )
    mv.manual_seed(0)
    model = model_class(name).tiny(train_set.num_classes, IMAGE_SIZE).to(device)
    opt = optim.Adam(model.parameters(), lr=options["lr"])
    start = time.perf_counter()
    fit(
        model,
        loader(train_set, options["batch_size"], shuffle=True),
        opt,
        lambda m, batch: m.loss(batch[0].to(device), batch[1]),
        options["epochs"],
        scheduler=optim.CosineAnnealingLR(opt, options["epochs"]),
        progress=progress,
    )
    return model, time.perf_counter() - start


def predict_all(model, batches) -> tuple[list, float]:
    """(predictions for every image of ``batches``, images per second): one untimed batch
    first, then the whole list timed. ``predict`` returns NumPy arrays, so the GPU is done
    when it returns."""
    model.eval()
    with mv.no_grad():
        model.predict(batches[0][0])
        start = time.perf_counter()
        predictions = [result for images, _ in batches for result in model.predict(images)]
        seconds = time.perf_counter() - start
    return predictions, len(predictions) / seconds


def measure(name: str, batches, truths, options: dict, device: str, progress: bool) -> dict:
    """One row of the table: ``name`` trained, timed and scored on the validation ``batches``."""
    model, seconds = train(name, options, device, progress)
    predictions, speed = predict_all(model, batches)
    return {
        "model": name,
        "boxes_per_image": "1" if name in ONE_BOX else "any",
        "epochs": options["epochs"],
        "train_images": options["train_images"],
        **detection_scores(predictions, truths),
        "train_minutes": seconds / 60,
        "images_per_s": speed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "lr": options["lr"],
        "batch_size": options["batch_size"],
    }


def _cell(value) -> str:
    """A table cell: scores and minutes to 3 decimals, speeds to 1, counts with thousands commas."""
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return "-"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"


def markdown_table(rows) -> str:
    """The rows' COLUMNS as a Markdown table, numbers right-aligned."""
    align = ["---" if column in ("model", "boxes_per_image") else "---:" for column in COLUMNS]
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_cell(row[column]) for column in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def draw_chart(rows, path) -> None:
    """Bars of mAP@0.5 and COCO mAP per model, and of training minutes, saved as a PNG."""
    from matplotlib.figure import Figure

    from minivision.viz import save_figure

    names, where = [row["model"] for row in rows], np.arange(len(rows))
    fig = Figure(figsize=(10.0, 4.0), dpi=100)
    scores, minutes = fig.subplots(1, 2)
    for offset, (key, label) in zip(
        (-0.2, 0.2), (("map50", "mAP@0.5 (VOC)"), ("coco_map", "COCO mAP@[.5:.95]"))
    ):
        scores.bar(where + offset, [row[key] for row in rows], width=0.4, label=label)
    scores.set_ylim(0, 1)
    scores.set_title("validation mAP")
    scores.legend()
    minutes.bar(where, [row["train_minutes"] for row in rows], color="tab:gray")
    minutes.set_title("training time (minutes)")
    for ax in (scores, minutes):
        ax.set_xticks(where, names, rotation=20)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def _json_number(value):
    """NaN as null: JSON has no NaN."""
    return None if isinstance(value, float) and math.isnan(value) else value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=DETECTORS, default=list(DETECTORS))
    parser.add_argument(
        "--epochs", type=int, help="epochs for every model (default: each recipe's)"
    )
    parser.add_argument(
        "--train-images", type=int, help="training images for every model (default: each recipe's)"
    )
    parser.add_argument(
        "--val-images", type=int, default=VAL_IMAGES, help="validation images (seed 1)"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--no-progress", action="store_true", help="no per-epoch progress bars")
    args = parser.parse_args(argv)
    for option, value in (
        ("--epochs", args.epochs),
        ("--train-images", args.train_images),
        ("--val-images", args.val_images),
    ):
        if value is not None and value < 1:
            parser.error(f"{option} must be at least 1, got {value}")
    val_set = make_dataset(
        "shapes",
        "val",
        IMAGE_SIZE,
        max_objects=MAX_OBJECTS,
        num_images=args.val_images,
        object_sizes=OBJECT_SIZES,
    )
    # rendered once, before any timing: predict's time is the model's alone
    batches = [
        (images.to(args.device), targets)
        for images, targets in loader(val_set, PREDICT_BATCH, shuffle=False)
    ]
    truths = [target for _, targets in batches for target in targets]
    rows = []
    for name in tqdm(args.models, desc="detectors"):
        options = training_options(name, args.epochs, args.train_images)
        rows.append(measure(name, batches, truths, options, args.device, not args.no_progress))
    table = markdown_table(rows)
    counts = object_counts(truths)
    print(
        f"Shapes {IMAGE_SIZE}x{IMAGE_SIZE}, 1-{MAX_OBJECTS} objects, {len(truths)} validation images with "
        f"{counts['all']} objects ({counts['small']} small, {counts['large']} large), {args.device}"
    )
    print(table)
    environment = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "minivision_threads": mv.get_num_threads(),
        "device": args.device,
    }
    settings = {
        "image_size": IMAGE_SIZE,
        "max_objects": MAX_OBJECTS,
        "object_sizes_px": [f * IMAGE_SIZE for f in OBJECT_SIZES],
        "size_ranges_px": {
            size: [low, high if math.isfinite(high) else None]  # None: no upper limit
            for size, (low, high) in SIZE_RANGES.items()
        },
        "val_images": len(truths),
        "val_objects": counts,
        "predict_batch": PREDICT_BATCH,
    }
    path = write_results(
        "detectors.json",
        {
            "settings": settings,
            "environment": environment,
            "table": table,
            "results": [{k: _json_number(v) for k, v in row.items()} for row in rows],
        },
    )
    print(f"wrote {path}")
    if importlib.util.find_spec("matplotlib") is None:
        print("no chart: matplotlib is not installed (pip install 'minivision[viz]')")
    else:
        draw_chart(rows, path.with_suffix(".png"))
        print(f"wrote {path.with_suffix('.png')}")
    return rows


if __name__ == "__main__":
    main()
