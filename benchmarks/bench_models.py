"""One training step (forward, loss, backward, SGD step) of each tiny model, minivision vs PyTorch CPU.

Both frameworks run the same architecture (and, for YOLO, the same loss) on the same batch of
64x64 Shapes images (1-3 objects each) in this process; the table shows the median step time of each and the ratio (minivision / PyTorch).
Results go to benchmarks/results/models.json. Add a model by appending a ``Case`` to ``CASES``
(a minivision constructor and a function building the same net in PyTorch).

    python benchmarks/bench_models.py [--batch-size 32] [--steps 5] [--rounds 3] [--device cuda]

minivision splits its work over its own threads and runs BLAS on one thread inside them
(``minivision.threads``; ``MINIVISION_NUM_THREADS`` sets their number); PyTorch keeps its
defaults. The thread settings are recorded with the results.
"""
from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from timing import compare, synchronizer, write_results

import minivision as mv
from minivision import optim
from minivision.data import DataLoader, Shapes
from minivision.models.fcn import BACKBONES, FCN, crop_offsets
from minivision.models.unet import UNet
from minivision.models.yolo import TINY, YOLOv1, encode_targets, predicted_corners
from minivision.ops import box_iou

# --------------------------------------------------------------------------- PyTorch twins
def _torch_conv_block(tnn, cin, cout, kernel=3, padding=1, batch_norm=True):
    layers = [tnn.Conv2d(cin, cout, kernel, padding=padding, bias=not batch_norm)]
    layers += [tnn.BatchNorm2d(cout)] if batch_norm else []
    return tnn.Sequential(*layers, tnn.ReLU())


def torch_unet(model: UNet):
    """The same U-Net ("same" padding) in PyTorch."""
    import torch
    from torch import nn as tnn

    cfg = model.config
    widths = [cfg["base_channels"] * 2 ** level for level in range(cfg["depth"] + 1)]

    def double(cin, cout):
        return tnn.Sequential(_torch_conv_block(tnn, cin, cout, batch_norm=cfg["batch_norm"]),
                              _torch_conv_block(tnn, cout, cout, batch_norm=cfg["batch_norm"]))

    class TorchUNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.down = tnn.ModuleList(double(i, o) for i, o in zip([cfg["in_channels"]] + widths[:-2], widths[:-1]))
            self.bottom = double(widths[-2], widths[-1])
            self.up = tnn.ModuleList(tnn.ConvTranspose2d(w, w // 2, 2, stride=2) for w in reversed(widths[1:]))
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
        return x[:, :, offset:offset + like.shape[2], offset:offset + like.shape[3]]

    class TorchFCN(tnn.Module):
        def __init__(self):
            super().__init__()
            stages, channels = [], cfg["in_channels"]
            for index, widths in enumerate(spec.stages):
                layers = []
                for width in widths:
                    padding = spec.first_padding if index == 0 and not layers else 1
                    layers.append(_torch_conv_block(tnn, channels, width, 3, padding, spec.batch_norm))
                    channels = width
                stages.append(tnn.Sequential(*layers, tnn.MaxPool2d(2, ceil_mode=True)))
            self.stages = tnn.ModuleList(stages)
            self.fc = tnn.Sequential(_torch_conv_block(tnn, channels, spec.fc_width, spec.fc6_kernel, 0, spec.batch_norm),
                                     _torch_conv_block(tnn, spec.fc_width, spec.fc_width, 1, 0, spec.batch_norm))
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
        layers += [tnn.Conv2d(channels, filters, kernel, stride=step, padding=kernel // 2, bias=False),
                   tnn.BatchNorm2d(filters), tnn.LeakyReLU(0.1)]
        channels = filters
    boxes = 5 * cfg["B"]

    class TorchYOLO(tnn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = tnn.Sequential(*layers)
            self.head = tnn.Conv2d(channels, boxes + cfg["num_classes"], 1)

        def forward(self, images):
            raw = self.head(self.backbone(images)).permute(0, 2, 3, 1)
            return torch.cat([torch.sigmoid(raw[..., :boxes]), torch.softmax(raw[..., boxes:], dim=-1)], dim=-1)

    return TorchYOLO()


def _yolo_loss(net, images, targets, B=2, image_size=64):
    """The paper's loss as ``minivision.models.yolo.yolo_loss`` computes it, in PyTorch (the
    NumPy bookkeeping, targets on the grid and the responsible predictor, is shared)."""
    import torch

    output = net(images)
    n, S = output.shape[:2]
    has_object, goal, labels, corners = encode_targets(targets, S, image_size)
    preds, probs = output[..., :5 * B].reshape(n, S, S, B, 5), output[..., 5 * B:]
    guesses = predicted_corners(preds.detach().cpu().numpy()[..., :4].astype(np.float64), image_size)
    ious = np.zeros((n, S, S, B))
    for k, i, j in zip(*np.nonzero(has_object)):
        ious[k, i, j] = box_iou(guesses[k, i, j], corners[k, i, j][None])[:, 0]
    responsible = np.zeros((n, S, S, B), bool)
    responsible[has_object] = np.eye(B, dtype=bool)[ious[has_object].argmax(axis=-1)]
    const = lambda a: torch.tensor(np.asarray(a), dtype=output.dtype, device=output.device)  # noqa: E731
    obj, noobj, goal_b = const(responsible), const(~responsible), const(goal[:, :, :, None, :])
    x, y, w, h, confidence = preds.unbind(-1)
    coord = ((x - goal_b[..., 0]) ** 2 + (y - goal_b[..., 1]) ** 2) * obj
    size = ((w.clamp(min=1e-12).sqrt() - goal_b[..., 2].sqrt()) ** 2
            + (h.clamp(min=1e-12).sqrt() - goal_b[..., 3].sqrt()) ** 2) * obj
    one_hot = np.eye(probs.shape[-1])[labels] * has_object[..., None]
    classes = ((probs - const(one_hot)) ** 2) * const(has_object[..., None])
    total = (5.0 * (coord.sum() + size.sum()) + ((confidence - const(ious)) ** 2 * obj).sum()
             + 0.5 * (confidence ** 2 * noobj).sum() + classes.sum())
    return total / n


# --------------------------------------------------------------------------- cases
@dataclass
class Case:
    """A model to time: a minivision constructor, and a builder of the same net in PyTorch."""

    name: str
    build: Callable            # () -> minivision model with .loss(images, targets)
    build_torch: Callable      # (minivision model) -> torch.nn.Module giving per-pixel scores
    torch_loss: Callable       # (torch module, images, targets) -> scalar torch loss


def _segmentation_loss(net, images, targets):
    import torch

    labels = torch.from_numpy(np.stack([t["semantic"] for t in targets])).to(images.device)
    return torch.nn.functional.cross_entropy(net(images), labels, ignore_index=255)


CASES = [
    Case("tiny YOLO", lambda: YOLOv1.tiny(3, 64), torch_yolo, _yolo_loss),
    Case("tiny U-Net", lambda: UNet.tiny(3, 64), torch_unet, _segmentation_loss),
    Case("tiny FCN-8s", lambda: FCN.tiny(3, 64), torch_fcn, _segmentation_loss),
]


def time_case(case: Case, images, targets, steps: int, rounds: int, device: str = "cpu") -> dict:
    import torch

    mv.manual_seed(0)
    model = case.build().to(device)
    opt = optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    mv_images = images.to(device)

    def mv_step():
        loss = model.loss(mv_images, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()

    net = case.build_torch(model).to(device)
    torch_opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    torch_images = torch.from_numpy(images.numpy()).to(device)

    def torch_step():
        loss = case.torch_loss(net, torch_images, targets)
        torch_opt.zero_grad()
        loss.backward()
        torch_opt.step()

    sync = synchronizer(device)
    mv_time, torch_time = compare(mv_step, torch_step, steps, sync, rounds)
    return {"model": case.name, "minivision_s": mv_time, "torch_s": torch_time, "ratio": mv_time / torch_time,
            "parameters": sum(p.numel() for p in model.parameters())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per block (median of all reported)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating blocks of --steps per library")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    import torch

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    images, targets = next(iter(DataLoader(Shapes(args.batch_size, image_size=64, max_objects=3), batch_size=args.batch_size)))
    rows = [time_case(case, images, targets, args.steps, args.rounds, args.device) for case in CASES]
    print(f"one training step on {args.device}, batch {args.batch_size} of 3x64x64, "
          f"median of {args.rounds} x {args.steps} per library, minivision on {mv.get_num_threads()} threads")
    print(f"{'model':14s} {'params':>8s} {'minivision':>11s} {'PyTorch':>9s} {'ratio':>6s}")
    for row in rows:
        print(f"{row['model']:14s} {row['parameters']:8d} {row['minivision_s'] * 1e3:9.1f}ms "
              f"{row['torch_s'] * 1e3:7.1f}ms {row['ratio']:6.2f}")
    environment = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                   "torch_threads": torch.get_num_threads(), "minivision_threads": mv.get_num_threads(),
                   "cpus": os.cpu_count(),
                   "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"), "device": args.device}
    name = "models.json" if args.device == "cpu" else f"models_{args.device}.json"
    path = write_results(name, {"batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds,
                                "environment": environment, "results": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
