# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 4. Detection and non-maximum suppression
# A detector outputs an object for every window whose score passes a threshold. A window
# that scores high has neighbours that score high too: they see almost the same pixels.
# Non-maximum suppression (NMS) keeps the best of each cluster. This tutorial shows the
# clusters, runs NMS step by step, and measures the effect on mean average precision.

# %%
import os
from pathlib import Path

import numpy as np

from minivision import ops
from minivision.metrics import evaluate_detections

FIGURES = Path(os.environ.get("MINIVISION_FIGURES", "tutorial_figures"))
rng = np.random.default_rng(0)

# %% [markdown]
# ## Windows around two objects
# Two ground-truth boxes; slide a 20x20 window over a 64x64 image with stride 2 and give
# each window a score: how much it overlaps an object (IoU), plus a little noise. This
# stands in for a classifier's confidence. The second object is harder to see (half
# hidden, say), so its windows score lower: 0.75 x IoU.

# %%
truth = np.array([[10.0, 12.0, 30.0, 32.0], [36.0, 30.0, 56.0, 50.0]], dtype=np.float32)
corners = np.arange(0, 64 - 20 + 1, 2, dtype=np.float32)
x1, y1 = np.meshgrid(corners, corners)
windows = np.stack([x1.ravel(), y1.ravel(), x1.ravel() + 20, y1.ravel() + 20], axis=1)
visibility = np.array([1.0, 0.75], dtype=np.float32)
scores = (ops.box_iou(windows, truth) * visibility).max(axis=1) + 0.05 * rng.random(
    len(windows)
).astype(np.float32)
detections = windows[scores > 0.5]
det_scores = scores[scores > 0.5]
print(f"{len(windows)} windows, {len(detections)} score above 0.5 for 2 objects")
assert len(detections) > 10  # many neighbours pass the threshold

# %% [markdown]
# ## NMS, step by step
# Sort by score. Take the best remaining window, keep it, and drop every remaining
# window whose IoU with it is above the threshold. Repeat until none remain.


# %%
def nms_step_by_step(boxes, scores, iou_threshold):
    order = list(np.argsort(-scores, kind="stable"))
    kept = []
    while order:
        best = order.pop(0)
        kept.append(best)
        overlaps = ops.box_iou(boxes[best][None], boxes[order])[0] if order else np.zeros(0)
        dropped = [i for i, iou in zip(order, overlaps) if iou > iou_threshold]
        print(
            f"keep window {best} (score {scores[best]:.2f}); it suppresses {len(dropped)} neighbours"
        )
        order = [i for i, iou in zip(order, overlaps) if iou <= iou_threshold]
    return np.array(kept)


kept_by_hand = nms_step_by_step(detections, det_scores, 0.3)
kept = ops.nms(detections, det_scores, 0.3)
assert kept.tolist() == kept_by_hand.tolist()
# the library's readable version of the same loop: `nms` in minivision/reference/nms.py
from minivision.reference import nms as reference_nms  # noqa: E402

assert reference_nms.nms(detections, det_scores, 0.3).tolist() == kept.tolist()
print("kept boxes:\n", detections[kept])
assert len(kept) == 2

# %% [markdown]
# ## Mean average precision, before and after NMS
# Average precision ranks detections by score and asks, at each recall level, what share
# of the detections so far matched an object (IoU > 0.5, each object matched once).
# Duplicates of an already-found object count as false positives: ranked above the
# other object's first match, they lower the precision at which full recall is reached.

# %%
target = [{"boxes": truth, "labels": np.array([1, 1])}]
before = evaluate_detections(
    [{"boxes": detections, "scores": det_scores, "labels": np.ones(len(detections), int)}], target
)
after = evaluate_detections(
    [{"boxes": detections[kept], "scores": det_scores[kept], "labels": np.ones(len(kept), int)}],
    target,
)
print(f"AP before NMS: {before.map:.3f}   AP after NMS: {after.map:.3f}")
assert after.map > before.map

# %% [markdown]
# Detectors with several classes run NMS per class: `ops.batched_nms(boxes, scores,
# labels, iou_threshold)` never lets a box suppress one of another class.

# %%
labels = np.array([1, 2])
same_place = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]], dtype=np.float32)
both = ops.batched_nms(same_place, np.array([0.9, 0.8], dtype=np.float32), labels, 0.5)
assert both.tolist() == [0, 1]

# %%
try:
    from minivision import viz

    FIGURES.mkdir(parents=True, exist_ok=True)
    image = np.full((3, 64, 64), 0.2, dtype=np.float32)
    viz.draw_boxes(
        image, detections, scores=det_scores, title="before NMS", path=FIGURES / "04_before_nms.png"
    )
    viz.draw_boxes(
        image,
        detections[kept],
        scores=det_scores[kept],
        title="after NMS",
        path=FIGURES / "04_after_nms.png",
    )
    print("figures:", FIGURES / "04_before_nms.png", FIGURES / "04_after_nms.png")
except ImportError:
    print("matplotlib is not installed: no figures")
