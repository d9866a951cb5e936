"""Pictures a person would rather see than read: boxes, masks, score heatmaps, loss curves.

Each function returns a matplotlib ``Figure`` (built without pyplot, so no window and no
global state) and, given ``path``, also saves it as a PNG (written atomically).
matplotlib is imported on first use: ``import minivision`` does not need it.
"""

from __future__ import annotations

import os

import numpy as np

from minivision.data.voc import voc_colormap
from minivision.serialization import atomic_write
from minivision.tensor import to_host


def require_matplotlib(purpose: str = "minivision.viz draws") -> None:
    """Raise an ImportError that says how to install matplotlib, before any work that ends
    in a picture is started."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{purpose} with matplotlib, which is not installed: pip install 'minivision[viz]'"
        ) from exc


def _figure(width=5.0, height=5.0):
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def to_hwc_image(image) -> np.ndarray:
    """(H, W, 3) float in [0, 1] from a (3, H, W) or (H, W, 3) or (H, W) array or Tensor."""
    array = to_host(image).astype(np.float64)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    elif array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"image must be (3, H, W), (H, W, 3) or (H, W), got shape {array.shape}")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    low, high = array.min(initial=0.0), array.max(initial=1.0)
    if low < 0 or high > 1:  # a normalised image: stretch it back to [0, 1] for display
        array = (array - low) / max(high - low, 1e-12)
    return array


def save_figure(fig, path) -> None:
    """Save ``fig`` as PNG at ``path`` through a temporary file, so no half-written PNG remains."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, format="png", bbox_inches="tight"))


def _finish(fig, path):
    if path is not None:
        save_figure(fig, path)
    return fig


def draw_boxes(image, boxes, labels=None, scores=None, class_names=None, title=None, path=None):
    """Image with (K, 4) xyxy boxes outlined, captioned by class name and score."""
    boxes = to_host(boxes).reshape(-1, 4)
    labels = None if labels is None else to_host(labels).reshape(-1)
    scores = None if scores is None else to_host(scores).reshape(-1)
    for name, values in (("labels", labels), ("scores", scores)):
        if values is not None and len(values) != len(boxes):
            raise ValueError(f"draw_boxes: {name} has {len(values)} entries for {len(boxes)} boxes")
    from matplotlib.patches import Rectangle

    fig = _figure()
    ax = fig.add_subplot()
    ax.imshow(to_hwc_image(image), interpolation="nearest")
    colours = voc_colormap(256) / 255.0  # label k drawn in the colour its mask would have
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        label = int(labels[i]) if labels is not None else 0
        colour = colours[label % 256]
        ax.add_patch(
            Rectangle(
                (x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=2
            )
        )
        caption = []
        if labels is not None:
            caption.append(
                class_names[label]
                if class_names is not None and label < len(class_names)
                else str(label)
            )
        if scores is not None:
            caption.append(f"{scores[i]:.2f}")
        if caption:
            ax.text(
                x1 - 0.5,
                y1 - 1.5,
                " ".join(caption),
                color="white",
                fontsize=8,
                bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "edgecolor": "none"},
            )
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def colorize_mask(mask) -> np.ndarray:
    """(H, W, 3) uint8 colours of an (H, W) label mask in the VOC palette."""
    mask = to_host(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W) labels, got shape {mask.shape}")
    return voc_colormap(256)[np.clip(mask, 0, 255).astype(np.int64)]


def overlay_mask(image, mask, alpha: float = 0.5, title=None, path=None):
    """The image with an (H, W) label mask blended on top in the VOC palette (0 shows through)."""
    rgb = to_hwc_image(image)
    colours = colorize_mask(mask) / 255.0
    if colours.shape[:2] != rgb.shape[:2]:
        raise ValueError(f"mask is {colours.shape[:2]} but the image is {rgb.shape[:2]}")
    labelled = (to_host(mask) != 0)[..., None]
    blended = np.where(labelled, (1 - alpha) * rgb + alpha * colours, rgb)
    fig = _figure()
    ax = fig.add_subplot()
    ax.imshow(blended, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def mask_rows(images, truths, predictions, model_name: str = "prediction", caption=None, path=None):
    """One row per image: the image, its true (H, W) label mask and the predicted one, in the
    VOC palette, columns titled "image", "truth" and ``model_name``; ``caption`` under the grid."""
    if not len(images) == len(truths) == len(predictions):
        raise ValueError(
            f"need as many truths and predictions as images, got {len(images)}, {len(truths)} "
            f"and {len(predictions)}"
        )
    rows = len(images)
    fig = _figure(7.5, 2.6 * rows)
    for row, (image, truth, predicted) in enumerate(zip(images, truths, predictions)):
        panels = (to_hwc_image(image), colorize_mask(truth), colorize_mask(predicted))
        for column, (panel, title) in enumerate(zip(panels, ("image", "truth", model_name))):
            ax = fig.add_subplot(rows, 3, 3 * row + column + 1)
            ax.imshow(panel, interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title)
    if caption:
        fig.text(0.5, 0.08 if rows > 1 else 0.0, caption, ha="center")
    return _finish(fig, path)


def score_heatmap(image, scores, title=None, path=None):
    """A (h, w) map of sliding-window scores stretched over the image it was computed on."""
    rgb = to_hwc_image(image)
    scores = to_host(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be an (h, w) map, got shape {scores.shape}")
    fig = _figure(6.0, 5.0)
    ax = fig.add_subplot()
    ax.imshow(rgb, interpolation="nearest")
    h, w = rgb.shape[:2]
    shown = ax.imshow(
        scores,
        cmap="inferno",
        alpha=0.6,
        extent=(-0.5, w - 0.5, h - 0.5, -0.5),
        interpolation="nearest",
    )
    fig.colorbar(shown, ax=ax, fraction=0.046)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def loss_curves(history, keys=None, title="training", path=None):
    """One line per metric over epochs, from ``fit``'s history (a list of dicts)."""
    if not history:
        raise ValueError("loss_curves needs a non-empty history")
    keys = keys or [k for k in history[0] if k not in ("epoch", "lr")]
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot()
    for key in keys:
        ax.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.legend()
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return _finish(fig, path)
