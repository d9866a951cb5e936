"""The reference against the fast paths: one training step of each tiny model, and the
lecture's layers, run both ways in the same process on the same inputs (float32, CPU).

Prints a Markdown table of the median times and the ratio reference / fast (how much slower
the readable code is), the median of ``--rounds`` alternating blocks of ``--repeats`` runs
(``timing.compare``), and writes benchmarks/results/reference.json.

    python benchmarks/bench_reference.py [--models yolo,unet] [--batch-size 16] [--repeats 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
from timing import compare, write_results

import minivision as mv
import minivision.functional as F
from minivision.data import Shapes
from minivision.models import MODELS, RECIPES


def _step(model, images, targets):
    def run():
        model.zero_grad()
        model.loss(images, targets).backward()

    return run


def model_cases(names, batch_size: int):
    """(name, step) for each model's tiny form at its recipe's image size."""
    for name in names:
        recipe = RECIPES[name]
        data = Shapes(
            batch_size, image_size=recipe.image_size, max_objects=recipe.max_objects, seed=0
        )
        samples = [data[i] for i in range(batch_size)]
        mv.manual_seed(0)
        model = MODELS[name].tiny(len(data.class_names), recipe.image_size)
        images = mv.tensor(np.stack([image for image, _ in samples]))
        yield (
            f"{name} training step, batch {batch_size} at {recipe.image_size} px",
            _step(model, images, [target for _, target in samples]),
        )


def layer_cases():
    """(name, forward + backward) of the lecture's layers at a course size."""
    rng = np.random.default_rng(0)

    def case(name, fn, *shapes):
        inputs = [
            mv.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in shapes
        ]
        upstream = mv.tensor(rng.standard_normal(fn(*inputs).shape).astype(np.float32))
        return name, lambda: (fn(*inputs) * upstream).sum().backward()

    yield case(
        "conv2d 3x3, 16x64x56x56",
        lambda x, w: F.conv2d(x, w, padding=1),
        (16, 64, 56, 56),
        (64, 64, 3, 3),
    )
    yield case(
        "conv2d 1x1, 16x64x56x56", lambda x, w: F.conv2d(x, w), (16, 64, 56, 56), (64, 64, 1, 1)
    )
    yield case(
        "conv_transpose2d 4x4/2, 16x32x28x28",
        lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1),
        (16, 32, 28, 28),
        (32, 32, 4, 4),
    )
    yield case("max_pool2d 2x2, 16x64x56x56", lambda x: F.max_pool2d(x, 2), (16, 64, 56, 56))
    yield case(
        "batch_norm, 16x64x56x56",
        lambda x: F.batch_norm(x, None, None, training=True),
        (16, 64, 56, 56),
    )
    yield case(
        "bilinear x2, 16x32x28x28",
        lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
        (16, 32, 28, 28),
    )


def _with_reference(mode: bool, run):
    def switched():
        with mv.use_reference(mode):
            run()

    return switched


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default="localizer,yolo,fcn,segnet,unet,ssd,fast_rcnn,faster_rcnn"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    cases = [*layer_cases(), *model_cases(args.models.split(","), args.batch_size)]
    print("| case | fast (ms) | reference (ms) | reference / fast |\n| --- | ---: | ---: | ---: |")
    for name, run in cases:
        fast, reference = compare(
            _with_reference(False, run),
            _with_reference(True, run),
            args.repeats,
            rounds=args.rounds,
        )
        rows.append(
            {"case": name, "fast_s": fast, "reference_s": reference, "ratio": reference / fast}
        )
        print(
            f"| {name} | {1e3 * fast:.1f} | {1e3 * reference:.1f} | {reference / fast:.2f} |",
            flush=True,
        )
    write_results(
        "reference.json", {"machine": platform.processor() or platform.machine(), "rows": rows}
    )


if __name__ == "__main__":
    main()
