"""Vision layers, minivision vs PyTorch on the CPU: same inputs, same process, float32.

Times the forward pass and forward + backward (with a fixed random upstream gradient) of
each layer, the median of ``--rounds`` alternating blocks of ``--repeats`` runs per library
(``timing.compare``), prints a Markdown table with
ratios (minivision time / PyTorch time; below 1 means minivision is faster) and writes
benchmarks/results/layers.json.

    python benchmarks/bench_layers.py [--repeats 5] [--rounds 3] [--quick] [--no-mkldnn] [--no-winograd] [--device cuda]

With ``--device cuda`` both libraries run on the GPU (CuPy against PyTorch CUDA/cuDNN, TF32
off on both sides) and the results go to layers_cuda.json.
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
import torch
from timing import compare, synchronizer, write_results

import minivision as mv
import minivision.functional as F

TF = torch.nn.functional


def _conv(n, c_in, c_out, size, k, stride=1, padding=0):
    shapes = [(n, c_in, size, size), (c_out, c_in, k, k), (c_out,)]
    kw = dict(stride=stride, padding=padding)
    return (
        shapes,
        (lambda x, w, b: F.conv2d(x, w, b, **kw)),
        (lambda x, w, b: TF.conv2d(x, w, b, **kw)),
    )


def _conv_transpose(n, c_in, c_out, size, k, stride, padding):
    shapes = [(n, c_in, size, size), (c_in, c_out, k, k), (c_out,)]
    kw = dict(stride=stride, padding=padding)
    return (
        shapes,
        (lambda x, w, b: F.conv_transpose2d(x, w, b, **kw)),
        (lambda x, w, b: TF.conv_transpose2d(x, w, b, **kw)),
    )


def _unpool_case(n, c, size, device):
    """Unpool the maxima of a 2x2 pool: switches come from the same pool in each library."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, size, size)).astype(np.float32)
    _, mv_switches = F.max_pool2d(mv.tensor(x, device=device), 2, return_indices=True)
    _, th_switches = TF.max_pool2d(torch.tensor(x, device=device), 2, return_indices=True)
    shape = [(n, c, size // 2, size // 2)]
    return (
        shape,
        (lambda v: F.max_unpool2d(v, mv_switches, 2)),
        (lambda v: TF.max_unpool2d(v, th_switches, 2)),
    )


CASES = {
    "conv 3x3 N16 64->64 56x56": lambda device: _conv(16, 64, 64, 56, 3, padding=1),
    "conv 3x3 N4 64->64 128x128": lambda device: _conv(4, 64, 64, 128, 3, padding=1),
    "conv 3x3 N8 256->256 28x28": lambda device: _conv(8, 256, 256, 28, 3, padding=1),
    "conv 7x7/2 N8 3->64 224x224": lambda device: _conv(8, 3, 64, 224, 7, stride=2, padding=3),
    "conv 1x1 N16 256->64 56x56": lambda device: _conv(16, 256, 64, 56, 1),
    "conv_transpose 4x4/2 N8 64->32 64x64": lambda device: _conv_transpose(8, 64, 32, 64, 4, 2, 1),
    "max_pool 2x2 + switches N16 C64 112x112": lambda device: (
        [(16, 64, 112, 112)],
        (lambda x: F.max_pool2d(x, 2, return_indices=True)[0]),
        (lambda x: TF.max_pool2d(x, 2, return_indices=True)[0]),
    ),
    "max_unpool 2x2 N16 C64 56->112": lambda device: _unpool_case(16, 64, 112, device),
    "bilinear 2x N8 C64 112->224": lambda device: (
        [(8, 64, 112, 112)],
        (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear")),
        (lambda x: TF.interpolate(x, scale_factor=2, mode="bilinear")),
    ),
}
# GPU only (issue 7's reference shape; too slow to repeat on two CPU cores), and an
# overlapping pool, whose gradient is the CUDA gather kernel rather than a plain scatter.
CUDA_CASES = {
    "conv 3x3 N32 64->64 128x128": lambda device: _conv(32, 64, 64, 128, 3, padding=1),
    "max_pool 3x3/2 + switches N16 C64 112x112": lambda device: (
        [(16, 64, 112, 112)],
        (lambda x: F.max_pool2d(x, 3, 2, padding=1, return_indices=True)[0]),
        (lambda x: TF.max_pool2d(x, 3, 2, padding=1, return_indices=True)[0]),
    ),
}


def _runners(shapes, mv_fn, th_fn, device="cpu"):
    """forward-only and forward+backward closures for both libraries on the same float32 data."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) * 0.1 for s in shapes]
    mv_in = [mv.tensor(a, device=device, requires_grad=True) for a in arrays]
    th_in = [torch.tensor(a, device=device, requires_grad=True) for a in arrays]
    with mv.no_grad():
        out_shape = mv_fn(*mv_in).shape
    upstream_array = rng.standard_normal(out_shape).astype(np.float32)
    upstream = mv.tensor(upstream_array, device=device)
    th_upstream = torch.tensor(upstream_array, device=device)

    def mv_forward():
        with mv.no_grad():
            mv_fn(*mv_in)

    def th_forward():
        with torch.no_grad():
            th_fn(*th_in)

    def mv_both():
        for t in mv_in:
            t.grad = None
        mv_fn(*mv_in).backward(upstream)

    def th_both():
        for t in th_in:
            t.grad = None
        th_fn(*th_in).backward(th_upstream)

    return mv_forward, th_forward, mv_both, th_both


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating blocks of --repeats runs per library"
    )
    parser.add_argument(
        "--quick", action="store_true", help="one repeat and one round per timing (a smoke run)"
    )
    parser.add_argument(
        "--no-mkldnn",
        action="store_true",
        help="time PyTorch without oneDNN (its im2col + GEMM convolution, like minivision's)",
    )
    parser.add_argument(
        "--no-winograd", action="store_true", help="minivision's 3x3 convolutions through im2col"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    torch.backends.mkldnn.enabled = not args.no_mkldnn
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    F.conv.set_winograd_enabled(not args.no_winograd)
    repeats, sync = (1 if args.quick else args.repeats), synchronizer(args.device)
    if args.quick:
        args.rounds = 1
    rows = []
    cases = {**CASES, **CUDA_CASES} if args.device == "cuda" else CASES
    for name, build in cases.items():
        mv_forward, th_forward, mv_both, th_both = _runners(*build(args.device), device=args.device)
        timings = [
            *compare(mv_forward, th_forward, repeats, sync, args.rounds),
            *compare(mv_both, th_both, repeats, sync, args.rounds),
        ]
        row = dict(
            layer=name,
            mv_forward_s=timings[0],
            torch_forward_s=timings[1],
            mv_forward_backward_s=timings[2],
            torch_forward_backward_s=timings[3],
        )
        row["forward_ratio"] = row["mv_forward_s"] / row["torch_forward_s"]
        row["forward_backward_ratio"] = (
            row["mv_forward_backward_s"] / row["torch_forward_backward_s"]
        )
        rows.append(row)
    print(
        "| layer | fwd minivision ms | fwd PyTorch ms | fwd ratio "
        "| fwd+bwd minivision ms | fwd+bwd PyTorch ms | fwd+bwd ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['layer']} | {1e3 * r['mv_forward_s']:.1f} | {1e3 * r['torch_forward_s']:.1f} | {r['forward_ratio']:.2f} "
            f"| {1e3 * r['mv_forward_backward_s']:.1f} | {1e3 * r['torch_forward_backward_s']:.1f} "
            f"| {r['forward_backward_ratio']:.2f} |"
        )
    meta = dict(
        numpy=np.__version__,
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        cpu_count=os.cpu_count(),
        machine=platform.machine(),
        dtype="float32",
        repeats=repeats,
        rounds=args.rounds,
        minivision_threads=mv.get_num_threads(),
        torch_mkldnn=torch.backends.mkldnn.enabled,
        winograd=not args.no_winograd,
        device=args.device,
    )
    suffix = "".join(
        f"_{flag}"
        for flag, on in (
            ("no_mkldnn", args.no_mkldnn),
            ("no_winograd", args.no_winograd),
            (args.device, args.device != "cpu"),
        )
        if on
    )
    write_results(f"layers{suffix}.json", dict(meta=meta, results=rows))


if __name__ == "__main__":
    main()
