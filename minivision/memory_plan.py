"""How much memory a run will need, known before it starts, and a refusal when it will not fit.

A step's peak is what stays (the weights; in training also their gradients and Adam's two
moments, 4 x the weights' bytes), one batch of images, and what the step allocates on top:
activations and workspace, which grow with the batch and with the image's area. That last
part is measured, not modelled: one step of the tiny model itself on ``PROBE_SIZE`` images, at
batch 1 and batch 2, under ``tracemalloc`` (NumPy reports its allocations there). The
difference is one image's share, scaled by area to the size asked for; the rest is the
step's fixed workspace. The weights are counted at two probe sizes too, since a model with a
fully connected layer after its convolutions (the localizer) has weights that grow with the
image's area (unless the model's class sets ``step_memory_grows_with_area = False``, as
R-CNN, whose step works on fixed-size crops, does). Training also holds the epoch's shuffled
index (8 bytes an image, twice while it is drawn).

The probes cost a few tenths of a second. Sizes so large that the batch alone cannot fit are
refused before any probe runs. ``MINIVISION_MEMORY_LIMIT`` (bytes, or with a K/M/G suffix)
sets the memory a run may use instead of what the machine has free.
"""

from __future__ import annotations

import functools
import math
import os
import tracemalloc
from dataclasses import dataclass

import numpy as np

from minivision.backend import _load_cupy
from minivision.tensor import no_grad

PROBE_SIZE = 64
# Two batch sizes: their difference is the images' share; the smaller one also shows the step's
# fixed workspace. Each is measured after one unmeasured step, since a first call allocates
# once-only caches (10 MB and more) that would read as workspace.
PROBE_BATCHES = (4, 16)
ENV_LIMIT = "MINIVISION_MEMORY_LIMIT"
# Allocations that tracemalloc does not see (Numba's own arrays, the allocator's slack) and
# the probe's error when scaled up: the plan asks for this much more than it measured.
SAFETY = 1.25
_SUFFIXES = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_bytes(text: str, name: str) -> int:
    """'1500000', '512M', '2G' -> bytes; a ValueError naming ``name`` otherwise."""
    cleaned = str(text).strip().upper().removesuffix("B").removesuffix("I")
    number, suffix = (
        (cleaned[:-1], cleaned[-1]) if cleaned and cleaned[-1] in _SUFFIXES else (cleaned, "")
    )
    try:
        value = float(number) * _SUFFIXES[suffix]
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 1:
        raise ValueError(
            f"{name} must be a positive number of bytes such as 2G or 512M, got {text!r}"
        )
    return int(value)


def available_memory(device: str) -> tuple[int, str]:
    """(bytes a run may use on ``device``, where that figure comes from)."""
    if os.environ.get(ENV_LIMIT):
        return parse_bytes(os.environ[ENV_LIMIT], ENV_LIMIT), f"allowed by {ENV_LIMIT}"
    if device == "cuda":
        return int(_load_cupy().cuda.runtime.memGetInfo()[0]), "free on the GPU"
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024, "available"
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"), "free"


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1e3:.0f} kB"


@dataclass(frozen=True)
class MemoryPlan:
    """A run's peak, in bytes, by what it holds."""

    batch_size: int
    weights: int  # weights (+ gradients and optimizer moments in training)
    indices: int  # the epoch's shuffled index
    workspace: int  # what one step allocates whatever its batch
    per_image: int  # one image of the batch, and what the step allocates for it
    probed: bool = True  # False: only the images and the index, known without a probe

    @property
    def total(self) -> int:
        return self.weights + self.indices + self.workspace + self.batch_size * self.per_image

    def largest_batch(self, available: int) -> int:
        """The largest batch size whose plan fits in ``available`` bytes (0: none does)."""
        room = available - self.weights - self.indices - self.workspace
        return max(int(room // max(self.per_image, 1)), 0)

    def describe(self) -> str:
        if not self.probed:
            return (
                f"at least {format_bytes(self.total)} (its batch of {self.batch_size} images "
                f"{format_bytes(self.batch_size * self.per_image)}, data index {format_bytes(self.indices)})"
            )
        return (
            f"about {format_bytes(self.total)} (weights {format_bytes(self.weights)}, "
            f"batch of {self.batch_size} {format_bytes(self.batch_size * self.per_image)}, "
            f"workspace {format_bytes(self.workspace)}, data index {format_bytes(self.indices)})"
        )


def _probe(model, training: bool) -> tuple[int, int]:
    """Bytes one step of ``model`` (built at PROBE_SIZE) allocates on top of its inputs, at
    each of PROBE_BATCHES synthetic images: a loss and its backward in training, else a
    forward pass without gradients. One unmeasured step runs first."""
    from minivision.data import Shapes
    from minivision.tensor import tensor

    data = Shapes(max(PROBE_BATCHES), image_size=PROBE_SIZE, min_objects=1, max_objects=1, seed=0)
    samples = [data[i] for i in range(max(PROBE_BATCHES))]
    model.train(training)

    def step(batch_size):
        images = tensor(np.stack([image for image, _ in samples[:batch_size]]))
        if training:
            model.loss(images, [target for _, target in samples[:batch_size]]).backward()
        else:
            with no_grad():
                model(images)

    step(PROBE_BATCHES[0])
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    peaks = []
    for batch_size in PROBE_BATCHES:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        step(batch_size)
        peaks.append(tracemalloc.get_traced_memory()[1] - before)
    if not was_tracing:
        tracemalloc.stop()
    return peaks[0], peaks[1]


def _nbytes(model) -> int:
    return sum(p.data.nbytes for p in model.parameters())


@functools.lru_cache(maxsize=None)
def _measure(model_class, num_classes: int, training: bool) -> tuple[int, int, int, int]:
    """The probe's two peaks (``_probe``) and the weights' bytes at PROBE_SIZE and twice that,
    measured once per model class, class count and mode in a process."""
    model = model_class.tiny(num_classes, PROBE_SIZE)
    small, large = _probe(model, training)
    return small, large, _nbytes(model), _nbytes(model_class.tiny(num_classes, 2 * PROBE_SIZE))


def plan_run(
    model_class,
    num_classes: int,
    image_size: int,
    batch_size: int,
    *,
    training: bool,
    num_images: int = 0,
    cheap_only: bool = False,
) -> MemoryPlan:
    """The plan of a training step (``training``) or an evaluation step of the tiny
    ``model_class`` at ``image_size`` and ``batch_size``; ``num_images`` training images.
    ``cheap_only``: only what needs no probe (the images and the index), the rest 0."""
    image = 3 * image_size**2 * 4  # float32 RGB
    indices = 16 * num_images if training else 0
    if cheap_only:
        return MemoryPlan(batch_size, 0, indices, 0, image, probed=False)
    small, large, weights_small, weights_large = _measure(model_class, num_classes, training)
    # a model whose step works on fixed-size crops (R-CNN) says so: then only its images grow
    area = (
        (image_size / PROBE_SIZE) ** 2
        if getattr(model_class, "step_memory_grows_with_area", True)
        else 1.0
    )
    step_per_image = max(large - small, 0) / (PROBE_BATCHES[1] - PROBE_BATCHES[0]) * area
    # the fixed part is scaled with the area too: part of it is per-image work done once
    workspace = max(small - PROBE_BATCHES[0] * step_per_image / area, 0) * max(area, 1.0)
    # the weights: a constant part plus a part that grows with the image's area (a fully
    # connected layer after the convolutions, as in the localizer)
    weights_per_area = (weights_large - weights_small) / (3 * PROBE_SIZE**2)
    weights = int(weights_small + weights_per_area * (image_size**2 - PROBE_SIZE**2)) * (
        4 if training else 1
    )
    return MemoryPlan(
        batch_size, weights, indices, int(SAFETY * workspace), int(SAFETY * step_per_image) + image
    )
