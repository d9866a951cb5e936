"""Issue 7's GPU targets, read off the GPU benchmarks' results: one table, each row met or missed.

    python benchmarks/gpu_targets.py [RESULTS_DIR]      # after gpu_check.sh; default benchmarks/results

- conv2d forward+backward at most 2.5x PyTorch CUDA (every conv row of layers_cuda.json);
- pooling and unpooling forward+backward at most 1.5x;
- NMS at most 1.5x torchvision CUDA, with identical kept indices (boxes_cuda.json);
- a tiny-YOLO training step at least 10x faster on the GPU than on the CPU (models_cuda.json
  against models.json, both from the same machine).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _read(directory: Path, name: str):
    path = directory / name
    return json.loads(path.read_text())["results"] if path.exists() else None


def targets(directory: Path) -> list[dict]:
    """Rows (what, measured, target, met) for every target whose results are in ``directory``."""
    rows = []
    for row in _read(directory, "layers_cuda.json") or []:
        limit = 2.5 if row["layer"].startswith("conv") else 1.5 if "pool" in row["layer"] else None
        if limit is not None:
            ratio = row["forward_backward_ratio"]
            rows.append(
                dict(
                    what=f"{row['layer']} fwd+bwd / PyTorch",
                    measured=f"{ratio:.2f}",
                    target=f"<= {limit}",
                    met=ratio <= limit,
                )
            )
    for row in _read(directory, "boxes_cuda.json") or []:
        if "nms" in row["case"] and "torchvision_s" in row:
            ratio = row["minivision_s"] / row["torchvision_s"]
            rows.append(
                dict(
                    what=f"{row['case']} / torchvision",
                    measured=f"{ratio:.2f}, identical: {row['same_as_torchvision']}",
                    target="<= 1.5, identical",
                    met=ratio <= 1.5 and row["same_as_torchvision"],
                )
            )
    gpu, cpu = _read(directory, "models_cuda.json"), _read(directory, "models.json")
    if gpu and cpu:
        step = {r["model"]: r["minivision_s"] for r in cpu}
        for row in gpu:
            if row["model"] == "tiny YOLO" and row["model"] in step:
                speedup = step[row["model"]] / row["minivision_s"]
                rows.append(
                    dict(
                        what="tiny YOLO step, CPU time / GPU time",
                        measured=f"{speedup:.1f}",
                        target=">= 10",
                        met=speedup >= 10,
                    )
                )
    return rows


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rows = targets(Path(argv[0]) if argv else RESULTS)
    if not rows:
        print("no GPU benchmark results found: run benchmarks/gpu_check.sh first")
        return 1
    print("| target | measured | wanted | met |\n|---|---:|---|---|")
    for row in rows:
        print(
            f"| {row['what']} | {row['measured']} | {row['target']} | {'yes' if row['met'] else 'NO'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
