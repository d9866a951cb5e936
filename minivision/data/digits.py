"""DigitsOnCanvas: scikit-learn's bundled 8x8 digit glyphs, scaled and placed on a canvas.

``sklearn.datasets.load_digits`` ships with scikit-learn (1797 glyphs, no download);
scikit-learn is the optional extra ``minivision[data]`` and is imported only when a
DigitsOnCanvas is made.
"""

from __future__ import annotations

import functools

import numpy as np

from minivision.data._canvas import CanvasDataset
from minivision.data._image import require, resize_bilinear

DIGIT_CLASSES = tuple(str(d) for d in range(10))
SPLITS = ("all", "train", "test")


@functools.lru_cache(maxsize=1)
def _load_glyphs() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) float32 glyphs scaled to [0, 1] and their (1797,) digits."""
    datasets = require("sklearn.datasets", "DigitsOnCanvas (scikit-learn's load_digits)")
    digits = datasets.load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


class DigitsOnCanvas(CanvasDataset):
    """10-class detection and segmentation: handwritten digits painted on a textured canvas.

    Args:
        num_images: dataset length.
        canvas_size: images are (3, canvas_size, canvas_size); at least 16.
        min_objects, max_objects: digits per image, drawn uniformly in this range.
        glyph_size: (smallest, largest) side in pixels of a scaled glyph; default
            (canvas_size // 5, canvas_size // 2), at least (6, 8).
        split: which glyphs to use: "train" (4 in 5), "test" (the other 1 in 5) or "all",
            so a model can be evaluated on handwriting it has not seen.
        noise, seed, transform: as in ``Shapes``.

    Label k + 1 is digit k (``class_names[k] == str(k)``), 0 is the background; target
    keys boxes, labels, masks, semantic, image_id. A glyph's mask is where its
    bilinearly scaled ink exceeds one half.
    """

    class_names = DIGIT_CLASSES

    def __init__(
        self,
        num_images: int,
        canvas_size: int = 64,
        min_objects: int = 1,
        max_objects: int = 3,
        glyph_size=None,
        split: str = "all",
        noise: float = 0.05,
        seed: int = 0,
        transform=None,
    ):
        super().__init__(
            num_images,
            canvas_size,
            min_objects,
            max_objects,
            noise,
            seed,
            transform,
            size_name="canvas_size",
        )
        low, high = (
            (max(6, canvas_size // 5), max(8, canvas_size // 2))
            if glyph_size is None
            else glyph_size
        )
        if not 4 <= low <= high <= canvas_size:
            raise ValueError(
                f"glyph_size must be (low, high) with 4 <= low <= high <= canvas_size "
                f"({canvas_size}), got {glyph_size!r}"
            )
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        glyphs, digits = _load_glyphs()
        held_out = np.arange(len(glyphs)) % 5 == 0
        keep = {"all": np.ones_like(held_out), "train": ~held_out, "test": held_out}[split]
        self.glyphs, self.digits = glyphs[keep], digits[keep]
        self.glyph_size = (int(low), int(high))
        self.split = split

    def _sample_object(self, rng):
        size = self.image_size
        pick = int(rng.integers(len(self.glyphs)))
        side = int(rng.integers(self.glyph_size[0], self.glyph_size[1] + 1))
        ink = resize_bilinear(self.glyphs[pick][None], (side, side))[0]
        top, left = rng.integers(0, size - side + 1, size=2)
        mask = np.zeros((size, size), dtype=bool)
        mask[top : top + side, left : left + side] = ink > 0.5
        return mask, int(self.digits[pick]) + 1
