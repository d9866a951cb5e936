"""Box kernels: minivision vs torchvision (CPU, when installed) vs a plain NumPy reference.

Cases: ``nms`` on clustered random boxes (N = 1,000, 5,000, 20,000), ``batched_nms`` with
80 classes, and ``box_iou`` 2,000 x 3,000. Each op is warmed up first (Numba compiles or
loads its cache), then timed as the median of several runs. Kept indices must be
identical across implementations. Prints a Markdown table and writes
``benchmarks/results/boxes.json``.

With torchvision installed (CPU only), ``roi_pool`` and ``roi_align`` (float32, forward
and forward + backward with a fixed random upstream gradient) on a Faster R-CNN-sized map
and a tiny model's: alternating blocks of each library (``timing.compare``), outputs and
input gradients checked equal to the bit, a second table with each ratio's range over
the blocks. ``--threads`` sets minivision's and PyTorch's thread counts alike.

    PYTHONPATH=. python benchmarks/bench_boxes.py [--device cuda] [--threads 2]

With ``--device cuda`` minivision gets CuPy arrays (its bitmask NMS kernel) and torchvision
CUDA tensors; kept indices are compared on the host (results in boxes_cuda.json).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics

import numpy as np
from timing import compare, synchronizer, timed, write_results
from tqdm import tqdm

import minivision as mv
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
    keep = np.concatenate(
        [
            np.flatnonzero(idxs == c)[numpy_nms(boxes[idxs == c], scores[idxs == c], iou_threshold)]
            for c in np.unique(idxs)
        ]
    )
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


def random_rois(num_images, per_image, image_hw, rng, min_side=16.0):
    """(num_images * per_image, 5) float32 rows (batch index, x1, y1, x2, y2) inside an image of
    ``image_hw``: sides log-uniform between ``min_side`` and the image's side (proposals
    from small objects to whole-image ones), positions uniform."""
    count = num_images * per_image
    extent = np.array(image_hw[::-1], dtype=np.float64)  # (W, H)
    sides = np.exp(rng.uniform(np.log(min_side), np.log(extent), (count, 2)))
    corner = rng.uniform(0, 1, (count, 2)) * (extent - sides)
    index = np.repeat(np.arange(num_images, dtype=np.float64), per_image)[:, None]
    return np.concatenate([index, corner, corner + sides], axis=1).astype(np.float32)


# name: (input (N, C, H, W), RoIs per image, image (H, W), spatial_scale, output size)
ROI_SETUPS = {
    "Faster R-CNN": ((1, 512, 38, 50), 300, (600, 800), 1 / 16, 7),
    "tiny model": ((8, 64, 16, 16), 64, (64, 64), 1 / 4, 4),
}
# name: (minivision op, torchvision op, keyword arguments)
ROI_OPS = {
    "roi_pool": ("roi_pool", {}),
    "roi_align ratio 2, aligned": ("roi_align", {"sampling_ratio": 2, "aligned": True}),
    "roi_align ratio -1": ("roi_align", {"sampling_ratio": -1, "aligned": False}),
}


def roi_case(setup, op_name, rng, repeats, rounds):
    """Forward and forward + backward of one RoI op on one setup, float32, CPU: median times,
    each block's ratio minivision / torchvision, and the equality checks (raise if unequal)."""
    shape, per_image, image_hw, scale, out = ROI_SETUPS[setup]
    op, kwargs = ROI_OPS[op_name]
    x = rng.standard_normal(shape).astype(np.float32)
    rois = random_rois(shape[0], per_image, image_hw, rng)
    upstream = rng.standard_normal((len(rois), shape[1], out, out)).astype(np.float32)
    mv_x, mv_up = mv.tensor(x, requires_grad=True), mv.tensor(upstream)
    tv_x, tv_rois, tv_up = (
        torch.tensor(x, requires_grad=True),
        torch.from_numpy(rois),
        torch.from_numpy(upstream),
    )
    mv_op, tv_op = getattr(mvops, op), getattr(tvops, op)

    def runners(x_in, boxes, up, fn, no_grad):
        def forward():
            with no_grad():
                return fn(x_in, boxes, out, scale, **kwargs)

        def both():
            x_in.grad = None
            fn(x_in, boxes, out, scale, **kwargs).backward(up)
            return x_in.grad

        return forward, both

    mv_fwd, mv_both = runners(mv_x, rois, mv_up, mv_op, mv.no_grad)
    tv_fwd, tv_both = runners(tv_x, tv_rois, tv_up, tv_op, torch.no_grad)
    np.testing.assert_array_equal(
        mv_fwd().numpy(), tv_fwd().numpy(), err_msg=f"{op_name} {setup} forward"
    )
    np.testing.assert_array_equal(
        mv_both().numpy(), tv_both().numpy(), err_msg=f"{op_name} {setup} input gradient"
    )
    row = {
        "case": f"{op_name}, {setup}",
        "input": list(shape),
        "rois": len(rois),
        "spatial_scale": scale,
        "output_size": out,
        "identical": True,
    }
    for part, mv_fn, tv_fn in (("forward", mv_fwd, tv_fwd), ("forward_backward", mv_both, tv_both)):
        blocks = [compare(mv_fn, tv_fn, repeats, rounds=1) for _ in range(rounds)]
        row[f"{part}_minivision_s"] = statistics.median(b[0] for b in blocks)
        row[f"{part}_torchvision_s"] = statistics.median(b[1] for b in blocks)
        row[f"{part}_block_ratios"] = [b[0] / b[1] for b in blocks]
    return row


def roi_markdown(rows):
    def cells(row, part):
        ratios = row[f"{part}_block_ratios"]
        return (
            f"{row[f'{part}_minivision_s'] * 1e3:.2f} | {row[f'{part}_torchvision_s'] * 1e3:.2f} | "
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        )

    lines = [
        "| case | fwd mv ms | fwd tv ms | fwd mv / tv (range) | fwd+bwd mv ms | fwd+bwd tv ms | "
        "fwd+bwd mv / tv (range) | identical |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {cells(row, 'forward')} | {cells(row, 'forward_backward')} | "
            f"{'yes' if row['identical'] else 'NO'} |"
        )
    return "\n".join(lines)


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
    parser.add_argument(
        "--repeats", type=int, default=9, help="timed runs per case (median reported)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="minivision's and PyTorch's thread count (default: the cores)",
    )
    parser.add_argument(
        "--roi-rounds",
        type=int,
        default=5,
        help="alternating blocks of --repeats runs per library for each RoI case",
    )
    parser.add_argument("--roi-only", action="store_true", help="only the RoI cases")
    args = parser.parse_args()
    rng, device = np.random.default_rng(args.seed), Device(args.device)
    mv.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)

    cases = (
        []
        if args.roi_only
        else [
            *(lambda n=n: nms_case(n, rng, args.repeats, device) for n in (1_000, 5_000, 20_000)),
            lambda: nms_case(20_000, rng, args.repeats, device, num_classes=80),
            lambda: iou_case(2_000, 3_000, rng, args.repeats, device),
        ]
    )
    if tvops is not None and args.device == "cpu":  # the RoI cases compare with torchvision only
        cases += [
            lambda s=s, o=o: roi_case(s, o, rng, args.repeats, args.roi_rounds)
            for s in ROI_SETUPS
            for o in ROI_OPS
        ]
    rows = [case() for case in tqdm(cases, desc="bench_boxes", unit="case")]
    box_rows = [row for row in rows if "minivision_s" in row]
    roi_rows = [row for row in rows if "forward_minivision_s" in row]

    if box_rows:
        print(markdown(box_rows))
    if roi_rows:
        print("\n" + roi_markdown(roi_rows))
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
        "minivision_threads": mv.get_num_threads(),
        "device": args.device,
    }
    path = write_results(
        "boxes.json" if args.device == "cpu" else f"boxes_{args.device}.json",
        {
            "environment": environment,
            "iou_threshold": IOU_THRESHOLD,
            "repeats": args.repeats,
            "results": rows,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
