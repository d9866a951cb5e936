"""One training step (forward, loss, backward, SGD step) of each tiny model, minivision vs PyTorch CPU.

Both frameworks run the same architecture on the same batch of 64x64 Shapes images in this
process; the table shows the median step time of each and the ratio (minivision / PyTorch).
Results go to benchmarks/results/models.json. Add a model by appending a ``Case`` to ``CASES``
(a minivision constructor and a function building the same net in PyTorch).

    python benchmarks/bench_models.py [--batch-size 32] [--steps 7]

OpenBLAS busy-waits for its threads, so on cores shared with other work
OPENBLAS_NUM_THREADS=1 can be several times faster than the default; the thread settings are
recorded with the results.
"""
from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from timing import median_seconds, write_results

import minivision as mv
from minivision import optim
from minivision.data import DataLoader, Shapes
from minivision.models.fcn import BACKBONES, FCN, crop_offsets
from minivision.models.unet import UNet

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

    labels = torch.from_numpy(np.stack([t["semantic"] for t in targets]))
    return torch.nn.functional.cross_entropy(net(images), labels, ignore_index=255)


CASES = [
    Case("tiny U-Net", lambda: UNet.tiny(3, 64), torch_unet, _segmentation_loss),
    Case("tiny FCN-8s", lambda: FCN.tiny(3, 64), torch_fcn, _segmentation_loss),
]


def time_case(case: Case, images, targets, steps: int) -> dict:
    import torch

    mv.manual_seed(0)
    model = case.build()
    opt = optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def mv_step():
        loss = model.loss(images, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()

    net = case.build_torch(model)
    torch_opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    torch_images = torch.from_numpy(images.numpy())

    def torch_step():
        loss = case.torch_loss(net, torch_images, targets)
        torch_opt.zero_grad()
        loss.backward()
        torch_opt.step()

    mv_time, torch_time = median_seconds(mv_step, steps), median_seconds(torch_step, steps)
    return {"model": case.name, "minivision_s": mv_time, "torch_s": torch_time, "ratio": mv_time / torch_time,
            "parameters": sum(p.numel() for p in model.parameters())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=7, help="timed steps per model (median reported)")
    args = parser.parse_args(argv)
    import torch

    images, targets = next(iter(DataLoader(Shapes(args.batch_size, image_size=64, max_objects=1), batch_size=args.batch_size)))
    rows = [time_case(case, images, targets, args.steps) for case in CASES]
    print(f"one training step, batch {args.batch_size} of 3x64x64, median of {args.steps}")
    print(f"{'model':14s} {'params':>8s} {'minivision':>11s} {'PyTorch':>9s} {'ratio':>6s}")
    for row in rows:
        print(f"{row['model']:14s} {row['parameters']:8d} {row['minivision_s'] * 1e3:9.1f}ms "
              f"{row['torch_s'] * 1e3:7.1f}ms {row['ratio']:6.2f}")
    environment = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                   "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                   "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")}
    path = write_results("models.json", {"batch_size": args.batch_size, "steps": args.steps,
                                         "environment": environment, "results": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
