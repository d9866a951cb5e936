"""R-CNN vs Fast R-CNN: the body run on every warped proposal vs once per image.

The tiny R-CNN (proposals warped to 16x16, conv stages of 32 and 64 channels, 4x4 pooling,
fc 256) and a Fast
R-CNN holding the same weights score the same proposals of one image, forward only (no
gradients, eval mode), as the proposals grow: each count is a seeded random draw from
``grid_proposals``. Medians of ``--rounds`` alternating blocks of ``--repeats`` timed calls per
model after a warm-up (``timing.compare``). Prints a Markdown table and writes
``benchmarks/results/rcnn.json``.

    PYTHONPATH=. python benchmarks/bench_rcnn.py [--proposals 10 100 1000] [--image-size 64]
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
from timing import compare, write_results
from tqdm import tqdm

import minivision as mv
from minivision.data import Shapes
from minivision.models.rcnn import RCNN, FastRCNN, grid_proposals


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    mv.manual_seed(0)
    slow = RCNN.tiny(3, args.image_size).eval()
    fast = FastRCNN(**{k: v for k, v in slow.config.items() if k not in ("warp", "context")}).eval()
    fast.load_state_dict(slow.state_dict())
    image = mv.tensor(Shapes(1, image_size=args.image_size, seed=0)[0][0][None])
    grid = grid_proposals(args.image_size, args.image_size)
    rng = np.random.default_rng(0)
    rows = []
    with mv.no_grad():
        for count in tqdm(args.proposals, desc="proposals"):
            boxes = [grid[rng.choice(len(grid), count, replace=count > len(grid))]]
            slow_s, fast_s = compare(
                lambda: slow(image, boxes),
                lambda: fast(image, boxes),
                args.repeats,
                rounds=args.rounds,
            )
            rows.append(
                {
                    "proposals": count,
                    "rcnn_ms": 1e3 * slow_s,
                    "fast_rcnn_ms": 1e3 * fast_s,
                    "speedup": slow_s / fast_s,
                }
            )
    print("| proposals | R-CNN ms | Fast R-CNN ms | speed-up |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['proposals']:,} | {r['rcnn_ms']:.2f} | {r['fast_rcnn_ms']:.2f} | {r['speedup']:.1f}x |"
        )
    info = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "image_size": args.image_size,
        "config": slow.config,
        "repeats": args.repeats,
        "rounds": args.rounds,
        "rows": rows,
    }
    print(f"wrote {write_results('rcnn.json', info)}")


if __name__ == "__main__":
    main()
