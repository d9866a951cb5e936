"""Box kernels: minivision vs torchvision (CPU, when installed) vs a plain NumPy reference.

Cases: ``nms`` on clustered random boxes (N = 1,000, 5,000, 20,000), ``batched_nms`` with
80 classes, and ``box_iou`` 2,000 x 3,000. Each op is warmed up first (Numba compiles or
loads its cache), then timed as the median of several runs. Kept indices must be
identical across implementations. Prints a Markdown table and writes
``benchmarks/results/boxes.json``.

    PYTHONPATH=. python benchmarks/bench_boxes.py [--device cuda]

With ``--device cuda`` minivision gets CuPy arrays (its bitmask NMS kernel) and torchvision
CUDA tensors; kept indices are compared on the host (results in boxes_cuda.json).
"""
from __future__ import annotations

import argparse
import os
import platform

import numpy as np
from timing import synchronizer, timed, write_results
from tqdm import tqdm

import minivision.ops as mvops

try:
    import torch
    import torchvision
    import torchvision.ops as tvops
except ImportError:  # the benchmark still compares against the NumPy reference
    torch = tvops = None

IOU_THRESHOLD = 0.5


def clustered_boxes(n, rng, image_size=2000.0, per_cluster=20):
    """Detector-like output: boxes jittered around ``n / per_cluster`` objects of
    random size, float32, with distinct random scores (torchvision's sort is not stable,
    so tied scores could legitimately come back in another order)."""
    num_objects = max(1, n // per_cluster)
    centres = rng.uniform(0, image_size, (num_objects, 2))
    sizes = rng.uniform(16, 160, (num_objects, 2))
    which = rng.integers(0, num_objects, n)
    centre = centres[which] + rng.normal(0, 0.15, (n, 2)) * sizes[which]
    half = sizes[which] * rng.uniform(0.7, 1.3, (n, 2)) / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)
    return boxes, ((rng.permutation(n) + 0.5) / n).astype(np.float32)


def numpy_nms(boxes, scores, iou_threshold):
    """The classic vectorised NumPy NMS: keep the best box, drop its overlaps, repeat."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def numpy_batched_nms(boxes, scores, idxs, iou_threshold):
    """``numpy_nms`` class by class, then all kept boxes by decreasing score."""
    keep = np.concatenate([np.flatnonzero(idxs == c)[numpy_nms(boxes[idxs == c], scores[idxs == c], iou_threshold)]
                           for c in np.unique(idxs)])
    return keep[np.lexsort((keep, -scores[keep]))]


def numpy_box_iou(boxes1, boxes2):
    """Broadcast IoU, the way one writes it in NumPy."""
    top_left = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = np.clip(bottom_right - top_left, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    return inter / (area1[:, None] + area2[None, :] - inter)


class Device:
    """Where each library's inputs live: NumPy/CPU tensors, or CuPy/CUDA tensors."""

    def __init__(self, name: str):
        self.name, self.synchronize = name, synchronizer(name)

    def mv(self, array):
        if self.name == "cpu":
            return array
        import cupy

        return cupy.asarray(array)

    def torch(self, array):
        return torch.from_numpy(array).to(self.name)


def host(array) -> np.ndarray:
    """A NumPy copy of a NumPy, CuPy or torch result."""
    if hasattr(array, "get"):
        return array.get()
    if hasattr(array, "cpu"):
        return array.cpu().numpy()
    return np.asarray(array)


def nms_case(n, rng, repeats, device, num_classes=None):
    boxes, scores = clustered_boxes(n, rng)
    idxs = None if num_classes is None else rng.integers(0, num_classes, n)
    mb, ms = device.mv(boxes), device.mv(scores)
    if idxs is None:
        name = f"nms N={n:,}"
        mv = lambda: mvops.nms(mb, ms, IOU_THRESHOLD)  # noqa: E731
        ref = lambda: numpy_nms(boxes, scores, IOU_THRESHOLD)  # noqa: E731
    else:
        name = f"batched_nms N={n:,}, {num_classes} classes"
        mi = device.mv(idxs)
        mv = lambda: mvops.batched_nms(mb, ms, mi, IOU_THRESHOLD)  # noqa: E731
        ref = lambda: numpy_batched_nms(boxes, scores, idxs, IOU_THRESHOLD)  # noqa: E731
    row = {"case": name}
    row["minivision_s"], kept = timed(mv, repeats, device.synchronize)
    kept = host(kept)
    row["numpy_s"], ref_kept = timed(ref, max(1, repeats // 3))
    row["kept"] = int(len(kept))
    row["same_as_numpy"] = bool(np.array_equal(kept, ref_kept))
    if tvops is not None:
        tb, ts = device.torch(boxes), device.torch(scores)
        if idxs is None:
            tv = lambda: tvops.nms(tb, ts, IOU_THRESHOLD)  # noqa: E731
        else:
            ti = device.torch(idxs)
            tv = lambda: tvops.batched_nms(tb, ts, ti, IOU_THRESHOLD)  # noqa: E731
        row["torchvision_s"], tv_kept = timed(tv, repeats, device.synchronize)
        row["same_as_torchvision"] = bool(np.array_equal(kept, host(tv_kept)))
    return row


def iou_case(n, m, rng, repeats, device):
    boxes1, _ = clustered_boxes(n, rng)
    boxes2, _ = clustered_boxes(m, rng)
    row = {"case": f"box_iou {n:,} x {m:,}"}
    m1, m2 = device.mv(boxes1), device.mv(boxes2)
    row["minivision_s"], iou = timed(lambda: mvops.box_iou(m1, m2), repeats, device.synchronize)
    iou = host(iou)
    row["numpy_s"], ref = timed(lambda: numpy_box_iou(boxes1, boxes2), max(1, repeats // 3))
    row["max_abs_diff_numpy"] = float(np.abs(iou - ref).max())
    if tvops is not None:
        t1, t2 = device.torch(boxes1), device.torch(boxes2)
        row["torchvision_s"], tv = timed(lambda: tvops.box_iou(t1, t2), repeats, device.synchronize)
        row["max_abs_diff_torchvision"] = float(np.abs(iou - host(tv)).max())
    return row


def markdown(rows):
    def ms(seconds):
        return f"{seconds * 1e3:.2f}" if seconds is not None else "-"

    def ratio(row, other):
        return f"{row['minivision_s'] / row[other]:.3f}" if other in row else "-"

    def same(row):
        if "max_abs_diff_numpy" in row:
            diffs = [row[k] for k in ("max_abs_diff_numpy", "max_abs_diff_torchvision") if k in row]
            return f"max diff {max(diffs):.1e}"
        checks = [row[k] for k in ("same_as_numpy", "same_as_torchvision") if k in row]
        return f"{'yes' if all(checks) else 'NO'} ({row['kept']:,} kept)"

    lines = [
        "| case | minivision ms | torchvision ms | NumPy ms | mv / tv | mv / NumPy | identical |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {ms(row['minivision_s'])} | {ms(row.get('torchvision_s'))} | "
            f"{ms(row['numpy_s'])} | {ratio(row, 'torchvision_s')} | {ratio(row, 'numpy_s')} | {same(row)} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per case (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    rng, device = np.random.default_rng(args.seed), Device(args.device)

    cases = [lambda n=n: nms_case(n, rng, args.repeats, device) for n in (1_000, 5_000, 20_000)]
    cases.append(lambda: nms_case(20_000, rng, args.repeats, device, num_classes=80))
    cases.append(lambda: iou_case(2_000, 3_000, rng, args.repeats, device))
    rows = [case() for case in tqdm(cases, desc="bench_boxes", unit="case")]

    table = markdown(rows)
    print(table)
    if tvops is None:
        print("\ntorchvision is not installed: compared with the NumPy reference only.")
    environment = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__ if torch is not None else None,
        "torchvision": torchvision.__version__ if tvops is not None else None,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "device": args.device,
    }
    path = write_results("boxes.json" if args.device == "cpu" else f"boxes_{args.device}.json", {"environment": environment, "iou_threshold": IOU_THRESHOLD,
                                        "repeats": args.repeats, "results": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
