"""Upsample: ``F.interpolate`` as a layer (nearest or bilinear)."""

from __future__ import annotations

from minivision.functional.upsample import interpolate
from minivision.nn.module import Module


class Upsample(Module):
    """Resize (N, C, H, W) to ``size`` or by ``scale_factor``; see ``F.interpolate``."""

    def __init__(
        self,
        size=None,
        scale_factor=None,
        mode: str = "nearest",
        align_corners=None,
        recompute_scale_factor=None,
    ):
        super().__init__()
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, input):
        return interpolate(
            input,
            self.size,
            self.scale_factor,
            self.mode,
            self.align_corners,
            self.recompute_scale_factor,
        )

    def extra_repr(self) -> str:
        shape = (
            f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        )
        return f"{shape}, mode={self.mode!r}"
