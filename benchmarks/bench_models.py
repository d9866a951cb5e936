"""One training step (forward, loss, backward, SGD step) of each tiny model, minivision vs PyTorch CPU.

Both frameworks run the same architecture (and, for the detectors, the same loss) on the same
batch of 64x64 Shapes images (1-3 objects each; SSD300: 2 images of 300x300) in this process; the
table shows the median step time of each and the ratio (minivision / PyTorch). SSD300's twin
holds minivision's weights and its loss is checked against minivision's before timing; the
Faster R-CNN twin is torchvision's, so that case needs torchvision (skipped without it).
Results go to benchmarks/results/models.json. Add a model by appending a ``Case`` to ``CASES``
(a minivision constructor and a function building the same net in PyTorch).

    python benchmarks/bench_models.py [--batch-size 32] [--steps 5] [--rounds 3] [--device cuda]
                                      [--models yolo ssd]

minivision splits its work over its own threads and runs BLAS on one thread inside them
(``minivision.threads``; ``MINIVISION_NUM_THREADS`` sets their number); PyTorch keeps its
defaults. The thread settings are recorded with the results.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from timing import compare, synchronizer, write_results
from torch_twins_detection import (
    copy_parameters,
    faster_rcnn_loss,
    torch_conv_block,
    torch_faster_rcnn,
    torch_multibox_loss,
    torch_ssd,
)

import minivision as mv
from minivision import optim
from minivision.data import DataLoader, Shapes
from minivision.models.faster_rcnn import FasterRCNN
from minivision.models.fcn import BACKBONES, FCN, crop_offsets
from minivision.models.multibox import encode_targets as ssd_targets
from minivision.models.multibox import match, multibox_loss
from minivision.models.ssd import SSD
from minivision.models.unet import UNet
from minivision.models.yolo import TINY, YOLOv1, encode_targets, predicted_corners
from minivision.ops import box_iou


# --------------------------------------------------------------------------- PyTorch twins
def torch_unet(model: UNet):
    """The same U-Net ("same" padding) in PyTorch."""
    import torch
    from torch import nn as tnn

    cfg = model.config
    widths = [cfg["base_channels"] * 2**level for level in range(cfg["depth"] + 1)]

    def double(cin, cout):
        return tnn.Sequential(
            torch_conv_block(tnn, cin, cout, batch_norm=cfg["batch_norm"]),
            torch_conv_block(tnn, cout, cout, batch_norm=cfg["batch_norm"]),
        )

    class TorchUNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.down = tnn.ModuleList(
                double(i, o) for i, o in zip([cfg["in_channels"]] + widths[:-2], widths[:-1])
            )
            self.bottom = double(widths[-2], widths[-1])
            self.up = tnn.ModuleList(
                tnn.ConvTranspose2d(w, w // 2, 2, stride=2) for w in reversed(widths[1:])
            )
            self.decode = tnn.ModuleList(double(w, w // 2) for w in reversed(widths[1:]))
            self.classifier = tnn.Conv2d(widths[0], cfg["num_classes"], 1)

        def forward(self, x):
            skips = []
            for level in self.down:
                x = level(x)
                skips.append(x)
                x = torch.max_pool2d(x, 2)
            x = self.bottom(x)
            for up, decode, skip in zip(self.up, self.decode, reversed(skips)):
                x = decode(torch.cat([skip, up(x)], dim=1))
            return self.classifier(x)

    return TorchUNet()


def torch_fcn(model: FCN):
    """The same FCN (tiny backbone) in PyTorch, with the same crop offsets."""
    from torch import nn as tnn

    cfg = model.config
    spec, classes, variant = BACKBONES[cfg["backbone"]], cfg["num_classes"], cfg["variant"]
    offsets = crop_offsets(spec, variant)

    def up(factor):
        return tnn.ConvTranspose2d(classes, classes, 2 * factor, stride=factor, bias=False)

    def crop(x, offset, like):
        return x[:, :, offset : offset + like.shape[2], offset : offset + like.shape[3]]

    class TorchFCN(tnn.Module):
        def __init__(self):
            super().__init__()
            stages, channels = [], cfg["in_channels"]
            for index, widths in enumerate(spec.stages):
                layers = []
                for width in widths:
                    padding = spec.first_padding if index == 0 and not layers else 1
                    layers.append(
                        torch_conv_block(tnn, channels, width, 3, padding, spec.batch_norm)
                    )
                    channels = width
                stages.append(tnn.Sequential(*layers, tnn.MaxPool2d(2, ceil_mode=True)))
            self.stages = tnn.ModuleList(stages)
            self.fc = tnn.Sequential(
                torch_conv_block(tnn, channels, spec.fc_width, spec.fc6_kernel, 0, spec.batch_norm),
                torch_conv_block(tnn, spec.fc_width, spec.fc_width, 1, 0, spec.batch_norm),
            )
            self.score_fr = tnn.Conv2d(spec.fc_width, classes, 1)
            self.score_pool4 = tnn.Conv2d(spec.stages[3][-1], classes, 1)
            self.score_pool3 = tnn.Conv2d(spec.stages[2][-1], classes, 1)
            self.upscore2, self.upscore_pool4 = up(2), up(2)
            self.upscore = up({"32s": 32, "16s": 16, "8s": 8}[variant])

        def forward(self, images):
            pools, x = [], images
            for stage in self.stages:
                x = stage(x)
                pools.append(x)
            score = self.score_fr(self.fc(x))
            if variant in ("16s", "8s"):
                score = self.upscore2(score)
                score = score + crop(self.score_pool4(pools[3]), offsets["score_pool4"], score)
            if variant == "8s":
                score = self.upscore_pool4(score)
                score = score + crop(self.score_pool3(pools[2]), offsets["score_pool3"], score)
            return crop(self.upscore(score), offsets["upscore"], images)

    return TorchFCN()


def torch_yolo(model: YOLOv1):
    """The same tiny YOLO in PyTorch: conv-BN-LeakyReLU stack, 1x1 head, sigmoid boxes, softmax classes."""
    import torch
    from torch import nn as tnn

    cfg = model.config
    layers, channels = [], cfg["in_channels"]
    for item in TINY:
        if item == "M":
            layers.append(tnn.MaxPool2d(2))
            continue
        kernel, filters, step = item
        layers += [
            tnn.Conv2d(channels, filters, kernel, stride=step, padding=kernel // 2, bias=False),
            tnn.BatchNorm2d(filters),
            tnn.LeakyReLU(0.1),
        ]
        channels = filters
    boxes = 5 * cfg["B"]

    class TorchYOLO(tnn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = tnn.Sequential(*layers)
            self.head = tnn.Conv2d(channels, boxes + cfg["num_classes"], 1)

        def forward(self, images):
            raw = self.head(self.backbone(images)).permute(0, 2, 3, 1)
            return torch.cat(
                [torch.sigmoid(raw[..., :boxes]), torch.softmax(raw[..., boxes:], dim=-1)], dim=-1
            )

    return TorchYOLO()


def _yolo_loss(net, images, targets, B=2, image_size=64):
    """The paper's loss as ``minivision.models.yolo.yolo_loss`` computes it, in PyTorch (the
    NumPy bookkeeping, targets on the grid and the responsible predictor, is shared)."""
    import torch

    output = net(images)
    n, S = output.shape[:2]
    has_object, goal, labels, corners = encode_targets(targets, S, image_size)
    preds, probs = output[..., : 5 * B].reshape(n, S, S, B, 5), output[..., 5 * B :]
    guesses = predicted_corners(
        preds.detach().cpu().numpy()[..., :4].astype(np.float64), image_size
    )
    ious = np.zeros((n, S, S, B))
    for k, i, j in zip(*np.nonzero(has_object)):
        ious[k, i, j] = box_iou(guesses[k, i, j], corners[k, i, j][None])[:, 0]
    responsible = np.zeros((n, S, S, B), bool)
    responsible[has_object] = np.eye(B, dtype=bool)[ious[has_object].argmax(axis=-1)]
    const = lambda a: torch.tensor(np.asarray(a), dtype=output.dtype, device=output.device)  # noqa: E731
    obj, noobj, goal_b = const(responsible), const(~responsible), const(goal[:, :, :, None, :])
    x, y, w, h, confidence = preds.unbind(-1)
    coord = ((x - goal_b[..., 0]) ** 2 + (y - goal_b[..., 1]) ** 2) * obj
    size = (
        (w.clamp(min=1e-12).sqrt() - goal_b[..., 2].sqrt()) ** 2
        + (h.clamp(min=1e-12).sqrt() - goal_b[..., 3].sqrt()) ** 2
    ) * obj
    one_hot = np.eye(probs.shape[-1])[labels] * has_object[..., None]
    classes = ((probs - const(one_hot)) ** 2) * const(has_object[..., None])
    total = (
        5.0 * (coord.sum() + size.sum())
        + ((confidence - const(ious)) ** 2 * obj).sum()
        + 0.5 * (confidence**2 * noobj).sum()
        + classes.sum()
    )
    return total / n


# --------------------------------------------------------------------------- cases
@dataclass
class Case:
    """A model to time: a minivision constructor, and a builder of the same net in PyTorch.

    A step's ``targets`` are ``prepare(model, batch targets)`` when given (work done once, for
    both sides), else the batch's targets. With ``copy_weights`` the twin starts from minivision's
    weights; ``loss_tolerance`` then bounds the two losses' relative difference before timing."""

    name: str
    build: Callable  # () -> minivision model
    build_torch: Callable  # (minivision model) -> torch.nn.Module
    torch_loss: Callable  # (torch module, images, targets) -> scalar torch loss
    mv_loss: Callable = lambda model, images, targets: model.loss(images, targets)  # noqa: E731
    batch: Callable | None = None  # (batch size) -> (images, targets), else the shared 64x64 batch
    prepare: Callable | None = None  # (minivision model, batch targets) -> the steps' targets
    copy_weights: bool = False
    loss_tolerance: float | None = None
    requires: str | None = None  # a module the twin needs; the case is skipped without it


def _segmentation_loss(net, images, targets):
    import torch

    labels = torch.from_numpy(np.stack([t["semantic"] for t in targets])).to(images.device)
    return torch.nn.functional.cross_entropy(net(images), labels, ignore_index=255)


def shapes_batch(size: int, image_size: int = 64, **options):
    """(images, targets): the first ``size`` Shapes images (1-3 objects) as one batch."""
    return next(
        iter(
            DataLoader(
                Shapes(size, image_size=image_size, max_objects=3, **options), batch_size=size
            )
        )
    )


def _ssd_targets(model, targets):
    """(labels (N, P) int64, box targets (N, P, 4) float32): the default boxes matched once on
    the host (``match``, ``encode_targets``), the same for both sides' losses."""
    labels, goals = [], []
    for target in targets:
        image_labels, matched = match(model.default_boxes, target["boxes"], target["labels"])
        labels.append(image_labels)
        goals.append(ssd_targets(model.default_boxes, target["boxes"], matched))
    return np.stack(labels), np.stack(goals).astype(np.float32)


def _torch_ssd_loss(net, images, targets):
    import torch

    labels, goals = (torch.from_numpy(a).to(images.device) for a in targets)
    return torch_multibox_loss(*net(images), labels, goals)


CASES = [
    Case("tiny YOLO", lambda: YOLOv1.tiny(3, 64), torch_yolo, _yolo_loss),
    Case("tiny U-Net", lambda: UNet.tiny(3, 64), torch_unet, _segmentation_loss),
    Case("tiny FCN-8s", lambda: FCN.tiny(3, 64), torch_fcn, _segmentation_loss),
    # Batch 2 whatever --batch-size: a VGG16 step at 300x300 takes seconds on 2 cores.
    Case(
        "SSD300",
        lambda: SSD("ssd300", num_classes=20),
        torch_ssd,
        _torch_ssd_loss,
        mv_loss=lambda model, images, targets: multibox_loss(*model(images), *targets),
        batch=lambda _: shapes_batch(2, 300, object_sizes=(30, 200)),
        prepare=_ssd_targets,
        copy_weights=True,
        loss_tolerance=1e-4,
    ),
    Case(
        "tiny Faster R-CNN",
        lambda: FasterRCNN.tiny(3, 64),
        torch_faster_rcnn,
        faster_rcnn_loss,
        copy_weights=True,
        requires="torchvision",
    ),
]


def time_case(case: Case, images, targets, steps: int, rounds: int, device: str = "cpu") -> dict:
    import torch

    mv.manual_seed(0)
    model = case.build().to(device)
    if case.batch is not None:
        images, targets = case.batch(images.shape[0])
    targets = case.prepare(model, targets) if case.prepare is not None else targets
    opt = optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    mv_images = images.to(device)

    def mv_step():
        loss = case.mv_loss(model, mv_images, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()

    torch.manual_seed(0)
    net = case.build_torch(model).to(device)
    if case.copy_weights:
        copy_parameters(model, net)
    torch_opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    torch_images = torch.from_numpy(images.numpy()).to(device)

    def torch_step():
        loss = case.torch_loss(net, torch_images, targets)
        torch_opt.zero_grad()
        loss.backward()
        torch_opt.step()

    row = {"model": case.name, "batch": int(images.shape[0]), "image_size": int(images.shape[-1])}
    if case.loss_tolerance is not None:  # same weights, same data: the same loss, before any step
        mine = case.mv_loss(model, mv_images, targets).item()
        theirs = case.torch_loss(net, torch_images, targets).item()
        row["loss_relative_difference"] = abs(mine - theirs) / abs(theirs)
        if not row["loss_relative_difference"] <= case.loss_tolerance:
            raise RuntimeError(
                f"{case.name}: minivision's loss {mine} and PyTorch's {theirs} differ by more than "
                f"{case.loss_tolerance:g} relative: the twin does not compute the same thing"
            )
    sync = synchronizer(device)
    mv_time, torch_time = compare(mv_step, torch_step, steps, sync, rounds)
    return {
        **row,
        "minivision_s": mv_time,
        "torch_s": torch_time,
        "ratio": mv_time / torch_time,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def select_cases(patterns) -> list[Case]:
    """The cases whose names contain one of ``patterns`` (case-insensitive); all when None."""
    if patterns is None:
        return CASES
    chosen = [case for case in CASES if any(p.lower() in case.name.lower() for p in patterns)]
    if not chosen:
        raise SystemExit(
            f"--models {' '.join(patterns)} matches none of {[case.name for case in CASES]}"
        )
    return chosen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--steps", type=int, default=5, help="timed steps per block (median of all reported)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating blocks of --steps per library"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="NAME",
        help="time only the models whose names contain one of these (case-insensitive)",
    )
    args = parser.parse_args(argv)
    import torch

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    images, targets = shapes_batch(args.batch_size)
    rows = []
    for case in select_cases(args.models):
        if case.requires is not None and importlib.util.find_spec(case.requires) is None:
            print(
                f"skipped {case.name}: its PyTorch twin needs {case.requires}, which is not installed"
            )
            continue
        rows.append(time_case(case, images, targets, args.steps, args.rounds, args.device))
    print(
        f"one training step on {args.device}, median of {args.rounds} x {args.steps} per library, "
        f"minivision on {mv.get_num_threads()} threads"
    )
    print(
        f"{'model':18s} {'batch':>9s} {'params':>9s} {'minivision':>11s} {'PyTorch':>9s} {'ratio':>6s}"
    )
    for row in rows:
        batch = f"{row['batch']}x{row['image_size']}"
        print(
            f"{row['model']:18s} {batch:>9s} {row['parameters']:9d} {row['minivision_s'] * 1e3:9.1f}ms "
            f"{row['torch_s'] * 1e3:7.1f}ms {row['ratio']:6.2f}"
        )
        if "loss_relative_difference" in row:
            print(
                f"{'':18s} losses before timing differ by {row['loss_relative_difference']:.1e} relative"
            )
    environment = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "minivision_threads": mv.get_num_threads(),
        "cpus": os.cpu_count(),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "device": args.device,
    }
    name = "models.json" if args.device == "cpu" else f"models_{args.device}.json"
    path = write_results(
        name,
        {
            "batch_size": args.batch_size,
            "steps": args.steps,
            "rounds": args.rounds,
            "environment": environment,
            "results": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
