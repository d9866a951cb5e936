"""Array helpers shared by the datasets and transforms: reading, resizing, tight boxes.

Images are (C, H, W) float32 NumPy arrays in [0, 1]. A pixel (r, c) covers the square
[c, c + 1) x [r, r + 1), so a mask whose columns run from c0 to c1 has the box edge
x1 = c0, x2 = c1 + 1 (DESIGN.md: continuous coordinates, no "+1" in widths).

Image files are checked against a pixel limit read from their header before anything is
decoded: ``DEFAULT_MAX_IMAGE_PIXELS`` (8192 x 8192), or the environment variable
``MINIVISION_MAX_IMAGE_PIXELS``, or a ``max_pixels=`` argument.
"""

from __future__ import annotations

import contextlib
import importlib
import operator
import os
import threading

import numpy as np

# 8192 x 8192 = 67 Mpx: full-resolution photos from phones and most cameras fit, and an image at
# the limit decodes into at most 256 MiB of 8-bit pixels (Pillow keeps 4 bytes a pixel).
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192
MAX_PIXELS_ENV = "MINIVISION_MAX_IMAGE_PIXELS"


def require(module: str, purpose: str):
    """Import an optional dependency, or raise an ImportError saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{purpose} needs the optional package {module.split('.')[0]!r}, which is not "
            f"installed; install it with pip install 'minivision[data]'"
        ) from exc


def _positive_int(value, name: str) -> int:
    """``value`` as an int >= 1, or a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be a positive integer, got {type(value).__name__} {value!r}"
        ) from None
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {number}")
    return number


def max_image_pixels(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` if given, else $MINIVISION_MAX_IMAGE_PIXELS,
    else ``DEFAULT_MAX_IMAGE_PIXELS``."""
    if max_pixels is not None:
        return _positive_int(max_pixels, "max_pixels")
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(
            f"environment variable {MAX_PIXELS_ENV}={raw!r} is not a positive integer "
            f"number of pixels (the default is {DEFAULT_MAX_IMAGE_PIXELS})"
        )
    return limit


_pil_limit_lock = threading.Lock()
_pil_limit_readers = 0
_pil_limit_saved = None


@contextlib.contextmanager
def _pil_limit_lifted(image_module):
    """Switch off Pillow's own decompression-bomb limit while minivision reads (its check in
    ``open`` fires before the size is known, and would preempt ours); counted so that
    concurrent reads restore the user's value only when the last one ends."""
    global _pil_limit_readers, _pil_limit_saved
    with _pil_limit_lock:
        if _pil_limit_readers == 0:
            _pil_limit_saved = image_module.MAX_IMAGE_PIXELS
            image_module.MAX_IMAGE_PIXELS = None
        _pil_limit_readers += 1
    try:
        yield
    finally:
        with _pil_limit_lock:
            _pil_limit_readers -= 1
            if _pil_limit_readers == 0:
                image_module.MAX_IMAGE_PIXELS = _pil_limit_saved


@contextlib.contextmanager
def _open_checked(path, max_pixels: int | None):
    """Open an image lazily (header only) and yield it once its size passes the pixel limit;
    file errors raised while the caller decodes it become one-line ValueErrors."""
    image_module = require("PIL.Image", "reading images")
    limit = max_image_pixels(max_pixels)
    try:
        # close(), unlike Pillow's __exit__, also frees the decoded pixels
        with _pil_limit_lifted(image_module), contextlib.closing(image_module.open(path)) as img:
            width, height = img.size
            if width < 1 or height < 1:
                raise ValueError(
                    f"image file {str(path)!r} is {width} x {height} pixels; "
                    f"expected a width and height of at least 1"
                )
            if width * height > limit:
                raise ValueError(
                    f"image file {str(path)!r} is {width} x {height} = {width * height:,} pixels, over "
                    f"minivision's limit of {limit:,}; if the file is trusted, raise the limit with the "
                    f"environment variable {MAX_PIXELS_ENV} (or max_pixels=)"
                )
            yield img
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {str(path)!r} does not exist") from None
    except OSError as exc:  # Pillow's UnidentifiedImageError and truncated files are OSErrors
        raise ValueError(f"image file {str(path)!r} could not be decoded: {exc}") from exc


def image_size(path, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) of an image file, read from its header alone; refused like ``read_image``."""
    with _open_checked(path, max_pixels) as img:
        return img.size


def _fit_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(width, height) with the longer side ``max_side`` and the aspect ratio of ``size``."""
    scale = max_side / max(size)
    return tuple(max(1, round(side * scale)) for side in size)


def _rgb_within(img, max_side: int | None):
    """A Pillow image in RGB mode, box-reduced so that its longer side is at most ``max_side``."""
    if max_side is not None and max(img.size) > max_side:
        target = _fit_size(img.size, max_side)
        img.draft("RGB", target)  # JPEG decodes at 1/2, 1/4 or 1/8 scale; other formats ignore it
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")  # palette indices and alpha must not be averaged
        if img.size != target:
            img = img.resize(target, require("PIL.Image", "reading images").Resampling.BOX)
    return img if img.mode == "RGB" else img.convert("RGB")


def read_image(path, max_side: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as a (3, H, W) float32 array in [0, 1] (grey, palette and RGBA become RGB).

    A file over the pixel limit (``max_image_pixels(max_pixels)``) is refused from its header.
    With ``max_side``, an image whose longer side exceeds it comes back reduced, aspect ratio
    kept, to a longer side of ``max_side``: JPEGs are decoded at 1/2, 1/4 or 1/8 scale where
    that still covers the target, then the 8-bit pixels are area-averaged (box filter) before
    the float conversion, so no full-size float array exists.
    """
    if max_side is not None:
        max_side = _positive_int(max_side, "max_side")
    with _open_checked(path, max_pixels) as img:
        rgb = np.asarray(_rgb_within(img, max_side))  # (H, W, 3) uint8
    # Pillow's copy of the pixels is freed (closed) before the float array is made.
    image = np.array(rgb.transpose(2, 0, 1), dtype=np.float32, order="C")
    image /= np.float32(255.0)
    return image


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight (K, 4) float32 xyxy boxes around (K, H, W) boolean masks.

    An empty mask gets the box (0, 0, 0, 0); callers drop such instances.
    """
    masks = np.asarray(masks, dtype=bool)
    boxes = np.zeros((masks.shape[0], 4), dtype=np.float32)
    for k, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if rows.size:
            boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def _source_positions(in_size: int, out_size: int) -> np.ndarray:
    """Source coordinate of each output pixel centre (half-pixel alignment, like
    ``F.interpolate(align_corners=False)``), in input pixel-centre units."""
    return (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes (..., H, W) -> (..., out_h, out_w).

    Used for masks and label maps, whose values must not be blended.
    """
    out_h, out_w = size
    in_h, in_w = array.shape[-2:]
    rows = np.clip(np.floor(_source_positions(in_h, out_h) + 0.5).astype(np.int64), 0, in_h - 1)
    cols = np.clip(np.floor(_source_positions(in_w, out_w) + 0.5).astype(np.int64), 0, in_w - 1)
    return array[..., rows[:, None], cols[None, :]]


def _linear_taps(in_size: int, out_size: int):
    """For each output position: the two source indices and the weight of the second."""
    src = np.clip(_source_positions(in_size, out_size), 0, in_size - 1)
    low = np.floor(src).astype(np.int64)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, (src - low).astype(np.float32)


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a (C, H, W) float image to (C, out_h, out_w), half-pixel aligned."""
    out_h, out_w = size
    low, high, weight = _linear_taps(image.shape[-2], out_h)
    image = image[:, low, :] * (1 - weight)[:, None] + image[:, high, :] * weight[:, None]
    low, high, weight = _linear_taps(image.shape[-1], out_w)
    image = image[:, :, low] * (1 - weight) + image[:, :, high] * weight
    return image.astype(np.float32, copy=False)
