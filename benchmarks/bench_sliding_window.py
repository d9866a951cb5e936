"""Sliding windows: cropping every window vs one fully convolutional pass.

A ``PatchClassifier`` (18x18 windows, stride 4) scores every window of square images of
several sizes, once by cropping each window and classifying the crops as one batch
(``classify_windows_naive``) and once by the same network with its fully connected layers
rewritten as convolutions (``to_fully_convolutional``). Both in this process, on the same
image, medians of several runs after a warm-up; the score maps must agree to 1e-5. Prints a
Markdown table and writes ``benchmarks/results/sliding_window.json``.

    PYTHONPATH=. python benchmarks/bench_sliding_window.py
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
from timing import median_seconds, write_results

import minivision as mv
from minivision.models.sliding_window import (
    PatchClassifier,
    classify_windows_naive,
    to_fully_convolutional,
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[34, 66, 130, 258])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    mv.manual_seed(0)
    model = PatchClassifier(num_classes=3)
    fully_conv = to_fully_convolutional(model)
    rng = np.random.default_rng(0)
    rows = []
    with mv.no_grad():
        for size in args.sizes:
            image = rng.random((3, size, size), dtype=np.float32)
            naive = classify_windows_naive(model, image, model.window, model.stride)
            dense = fully_conv(mv.tensor(image[None]))[0]
            diff = float(np.abs(naive.numpy() - dense.numpy()).max())
            naive_ms = 1e3 * median_seconds(
                lambda: classify_windows_naive(model, image, model.window, model.stride),
                args.repeats,
            )
            dense_ms = 1e3 * median_seconds(
                lambda: fully_conv(mv.tensor(image[None])), args.repeats
            )
            rows.append(
                {
                    "image": size,
                    "windows": int(np.prod(naive.shape[1:])),
                    "naive_ms": naive_ms,
                    "convolutional_ms": dense_ms,
                    "speedup": naive_ms / dense_ms,
                    "max_abs_diff": diff,
                }
            )
    print("| image | windows | naive ms | convolutional ms | speed-up | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['image']}x{r['image']} | {r['windows']:,} | {r['naive_ms']:.2f} | {r['convolutional_ms']:.2f} | "
            f"{r['speedup']:.1f}x | {r['max_abs_diff']:.1e} |"
        )
    info = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "window": model.window,
        "stride": model.stride,
        "repeats": args.repeats,
        "rows": rows,
    }
    print(f"wrote {write_results('sliding_window.json', info)}")


if __name__ == "__main__":
    main()
