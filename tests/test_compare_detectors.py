"""benchmarks/compare_detectors.py: COCO mAP on a size range, and a tiny run of the whole table."""

import importlib.util
import json
import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivision.metrics import evaluate_detections
from tests.helpers import REPO, benchmark_module
from tests.metrics.test_detection_map import image


@pytest.fixture(scope="module")
def detectors():
    """The script as a module; its ``from timing import ...`` needs benchmarks/ on sys.path."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        yield benchmark_module("compare_detectors")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


# One image. Class 1: a small object S = [0,0,10,10] (side 10) and a large one L = [50,50,90,90]
# (side 40); class 2: a large object at [0,50,40,90] that nothing detects. Class-1 detections,
# every one either exactly on an object (IoU 1 at every threshold) or on nothing:
#   0.90 on L, 0.85 a small box [20,0,30,10] on nothing, 0.80 on S, 0.70 a large box [0,0,40,40]
#   on nothing (IoU with S: 100/1600, below 0.5).
SCENE = (
    [
        image(
            [[50, 50, 90, 90], [20, 0, 30, 10], [0, 0, 10, 10], [0, 0, 40, 40]],
            labels=[1, 1, 1, 1],
            scores=[0.9, 0.85, 0.8, 0.7],
        )
    ],
    [image([[0, 0, 10, 10], [50, 50, 90, 90], [0, 50, 40, 90]], labels=[1, 1, 2])],
)


def test_small_objects_hand_worked(detectors):
    # L is ignored, so the 0.90 detection on it is ignored; the 0.70 box is unmatched and large:
    # ignored. Left: 0.85 FP, 0.80 TP, one positive: precision 1/2 at recall 1 -> AP 1/2.
    # Class 2 has no small object, so it is left out of the mean.
    assert detectors.coco_map_in_range(*SCENE, 0, 16) == pytest.approx(0.5)


def test_large_objects_hand_worked(detectors):
    # Class 1: S ignored, the 0.80 detection on it ignored, the unmatched small 0.85 box ignored.
    # Left: 0.90 TP, 0.70 FP -> AP 1. Class 2: one large object, no detection -> AP 0. Mean 1/2.
    assert detectors.coco_map_in_range(*SCENE, 32, math.inf) == pytest.approx(0.5)


def test_whole_range_hand_worked(detectors):
    # Class 1: 0.90 TP, 0.85 FP, 0.80 TP, 0.70 FP; recall 1/2, 1/2, 1, 1; precision 1, 1/2,
    # 2/3, 1/2. Recall levels 0 .. 0.50 (51 of 101) see envelope 1, the other 50 see 2/3:
    # (51 + 50 * 2/3) / 101 = 253/303. Class 2: 0. Mean 253/606.
    assert detectors.coco_map_in_range(*SCENE, 0, math.inf) == pytest.approx(253 / 606)


@pytest.mark.parametrize("side, small, large", [(16, 1.0, math.nan), (32, math.nan, 1.0)])
def test_range_limits_are_included(detectors, side, small, large):
    # a perfect detection of one object whose side is exactly a limit: it counts in that range,
    # and the other range has no object (NaN)
    scene = (
        [image([[0, 0, side, side]], labels=[1], scores=[0.9])],
        [image([[0, 0, side, side]], labels=[1])],
    )
    assert detectors.coco_map_in_range(*scene, *detectors.SIZE_RANGES["small"]) == pytest.approx(
        small, nan_ok=True
    )
    assert detectors.coco_map_in_range(*scene, *detectors.SIZE_RANGES["large"]) == pytest.approx(
        large, nan_ok=True
    )


def test_bad_range_is_refused(detectors):
    with pytest.raises(ValueError, match=r"need 0 <= low <= high, got low=32, high=16"):
        detectors.coco_map_in_range(*SCENE, 32, 16)


@st.composite
def scenes(draw):
    """A few images of random boxes (sides 1-60), labels 0-2, some ground truth difficult."""

    def boxes(count):
        corners = draw(
            st.lists(
                st.tuples(*[st.floats(0, 100)] * 2, *[st.floats(1, 60)] * 2),
                min_size=count,
                max_size=count,
            )
        )
        return [[x, y, x + w, y + h] for x, y, w, h in corners]

    predictions, targets = [], []
    for _ in range(draw(st.integers(1, 3))):
        num_gt, num_det = draw(st.integers(0, 4)), draw(st.integers(0, 6))
        labels = st.lists(st.integers(0, 2), min_size=num_gt, max_size=num_gt)
        targets.append(
            image(
                boxes(num_gt),
                labels=draw(labels),
                difficult=draw(st.lists(st.booleans(), min_size=num_gt, max_size=num_gt)),
            )
        )
        # detections partly copies of the ground truth, so that some match
        det_boxes = boxes(num_det) + [
            list(b) for b in targets[-1]["boxes"][: draw(st.integers(0, num_gt))]
        ]
        count = len(det_boxes)
        labels_drawn = draw(st.lists(st.integers(0, 2), min_size=count, max_size=count))
        predictions.append(
            image(
                det_boxes,
                labels=labels_drawn,
                scores=draw(st.lists(st.floats(0, 1), min_size=count, max_size=count)),
            )
        )
    return predictions, targets


@settings(max_examples=60)
@given(scenes())
def test_whole_range_equals_evaluate_detections_coco(detectors, scene):
    expected = evaluate_detections(*scene, method="coco").map
    assert detectors.coco_map_in_range(*scene, 0, math.inf) == pytest.approx(expected, nan_ok=True)


def pycocotools_range_map(predictions, targets, low, high):
    """pycocotools' bbox mAP (100 detections) over the area range [low², high²]."""
    from tests.metrics.test_coco_parity import coco_evaluation

    evaluation = coco_evaluation(predictions, targets, (low**2, min(high, 1e5) ** 2))
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # the one area range, 100 detections
    return float(precision[precision > -1].mean()) if (precision > -1).any() else math.nan


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("low, high", [(0, 16), (32, math.inf), (20, 40)])
def test_range_map_equals_pycocotools_area_range(detectors, seed, low, high):
    pytest.importorskip("pycocotools")
    from tests.metrics.test_coco_parity import random_scene

    rng = np.random.default_rng(seed)
    predictions, targets = random_scene(rng, num_images=int(rng.integers(3, 12)))
    expected = pycocotools_range_map(predictions, targets, low, high)
    assert detectors.coco_map_in_range(predictions, targets, low, high) == pytest.approx(
        expected, abs=1e-6, nan_ok=True
    )


def test_tiny_run_writes_every_column(detectors, tmp_path, monkeypatch):
    import timing

    monkeypatch.setattr(timing, "RESULTS", tmp_path)
    rows = detectors.main(
        [
            "--models",
            "localizer",
            "ssd",
            "--epochs",
            "1",
            "--train-images",
            "16",
            "--val-images",
            "8",
            "--no-progress",
        ]
    )
    written = json.loads((tmp_path / "detectors.json").read_text())
    assert (
        [row["model"] for row in written["results"]]
        == ["localizer", "ssd"]
        == [row["model"] for row in rows]
    )
    for row in written["results"]:
        assert set(detectors.COLUMNS) <= set(row)
        numbers = [
            row[column]
            for column in detectors.COLUMNS
            if column not in ("model", "boxes_per_image")
        ]
        assert all(isinstance(value, (int, float)) and math.isfinite(value) for value in numbers), (
            row
        )
        assert row["epochs"] == 1 and row["train_images"] == 16
        assert all(0 <= row[key] <= 1 for key in ("map50", "coco_map", "map_small", "map_large"))
        assert row["train_minutes"] > 0 and row["images_per_s"] > 0 and row["parameters"] > 0
    assert [row["boxes_per_image"] for row in rows] == ["1", "any"]
    lines = written["table"].splitlines()
    assert lines[0] == "| " + " | ".join(detectors.HEADERS) + " |"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| localizer", "| ssd"]
    assert written["settings"]["val_images"] == 8
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "detectors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("option", ["--epochs", "--train-images", "--val-images"])
def test_counts_below_one_are_refused(detectors, option, capsys):
    with pytest.raises(SystemExit):
        detectors.main([option, "0"])
    assert f"{option} must be at least 1, got 0" in capsys.readouterr().err
